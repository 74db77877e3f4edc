#!/usr/bin/env node
// Predictions of an infinitely wide network trained by gradient descent, served by ntkserve,
// from Node.js with no generated code: Fit a model on a training set (a bidirectional
// stream; the training kernel and its factorization stay on the server), then Predict on
// test inputs (unary; only the predictions travel).
//
//   node predict.js HOST:PORT                    # fits the fixed training set below
//   node predict.js HOST:PORT --model MODEL_ID   # predicts with a model fitted before
//
// Prints {"model_id", "solve": {"method", "jitter", "condition"}, "mean": {"dtype", "shape",
// "values"}, "variance": {...}} as JSON (values flattened in C order); a server error as
// "CODE: message" on stderr, exit status 1; a usage error, exit status 2.
// NTKSERVE_TOKEN, when set, is sent as "authorization: Bearer <token>" (--auth-tokens).
'use strict';

const { once } = require('node:events');
const {
  KernelService,
  ModelService,
  call,
  connect,
  deadline,
  decodeTensor,
  encodeFloat64,
  inputChunks,
  metadata,
  runMain,
} = require('./wire'); // the .proto loading, tensors on the wire, calls: shared with kernel.js

// The network kernel.js uses: Dense(512, W_std=1.5, b_std=0.05) -> Relu -> Dense(1,
// W_std=1.5, b_std=0.05), NTK parameterization, both optional fields spelled out.
const architecture = {
  layers: [
    { dense: { out_dim: 512, w_std: 1.5, b_std: 0.05 } },
    { relu: {} },
    { dense: { out_dim: 1, w_std: 1.5, b_std: 0.05 } },
  ],
};

// The data: small multiples of 1/4 and 1/8, exact in float64, so any language can rebuild
// them. x_train, 6 x 8: ((k % 7) - 3) / 4 for k = 0 .. 47, row by row. y_train, 6 targets
// (shape (6,), one output): (k % 3) - 1 for k = 0 .. 5. x_test, 2 x 8: ((k % 5) - 2) / 8 for
// k = 0 .. 15. y_train is always float64 on the wire; the inputs could be float32 instead
// (the kernels are then computed in float32, the solves still in float64).
const xTrain = Float64Array.from({ length: 48 }, (_, k) => ((k % 7) - 3) / 4);
const yTrain = Float64Array.from({ length: 6 }, (_, k) => (k % 3) - 1);
const xTest = Float64Array.from({ length: 16 }, (_, k) => ((k % 5) - 2) / 8);

function parseArgs(argv) {
  const [target, ...rest] = argv;
  const options = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i] !== '--model' || rest[i + 1] === undefined) {
      throw new Error(`unexpected argument ${rest[i]}`);
    }
    options.model = rest[i + 1];
  }
  if (!target || target.startsWith('--')) {
    throw new Error('usage: node predict.js HOST:PORT [--model MODEL_ID]');
  }
  return { target, ...options };
}

// Writes each message, pausing while grpc-js holds more than it has sent: write() answers
// false once 16 messages (an object stream's highWaterMark) wait to be handed to HTTP/2,
// whose flow control paces them to the server's reading; 'drain' says there is room again.
// Without the pause a large input would be copied into messages all at once, a second copy
// of it in memory. Stops as soon as the call has ended: a server error (INVALID_ARGUMENT
// for a bad header, say) arrives while the chunks are still being written.
async function writeAll(stream, messages, ended) {
  for (const message of messages) {
    if (ended()) return;
    if (!stream.write(message)) await once(stream, 'drain'); // rejects on 'error'
  }
  stream.end(); // the half-close: the inputs are complete, the server starts computing
}

// Fit: a bidirectional stream. The client writes a FitRequest with the header, then x_train's
// bytes (slot INPUT_SLOT_X1, in the header's dtype) and y_train's (INPUT_SLOT_Y_TRAIN,
// float64) as InputChunks in order, and half-closes. The server answers FitProgress messages
// while it computes the training kernel's tiles and factorizes, then the ModelRecord, sent
// only once the model is stored, and ends the call with OK. Resolves to the record.
function fit(client, header, x, y) {
  // A generator: each chunk becomes a message only when writeAll gets to it.
  function* messages() {
    yield { header };
    for (const chunk of inputChunks('INPUT_SLOT_X1', x.data)) yield { chunk };
    for (const chunk of inputChunks('INPUT_SLOT_Y_TRAIN', y.data)) yield { chunk };
  }
  return new Promise((resolve, reject) => {
    // A large training set takes longer: the deadline covers the upload and the whole fit.
    const stream = client.Fit(metadata(), { deadline: deadline(600) });
    let ended = false;
    let record;
    stream.on('data', (response) => {
      // `oneofs: true` names the payload present: 'progress' ({phase, tiles_done, tiles},
      // for a progress bar; not printed here) or 'model', the last message.
      if (response.payload === 'model') record = response.model;
    });
    // A server error ends the call with 'error' (gRPC code and details); 'end' follows the
    // last message of a call that ended OK (and may follow an error: a promise settles once).
    stream.on('error', (err) => {
      ended = true;
      reject(err);
    });
    stream.on('end', () => {
      ended = true;
      if (record) resolve(record);
      else reject(new Error('Fit ended without its model'));
    });
    writeAll(stream, messages(), () => ended).catch(reject);
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  // Two services, one server: clients of the same target and options share one connection.
  const kernels = connect(KernelService, options.target);
  const models = connect(ModelService, options.target);
  try {
    let modelId = options.model;
    if (modelId === undefined) {
      const { architecture_id } = await call(kernels, 'RegisterArchitecture', { architecture });
      const x = encodeFloat64(xTrain, [6, 8]);
      const y = encodeFloat64(yTrain, [6]); // (N,) or (N, outputs)
      const record = await fit(
        models,
        {
          architecture_id,
          get: 'KERNEL_KIND_NTK', // keeps the NTK and the NNGP: every posterior can be asked
          dtype: x.dtype,
          x_train_shape: x.shape,
          y_train_shape: y.shape,
          // Added to the training kernel's diagonal, relative to its mean diagonal (trace / N,
          // as neural-tangents does); diag_reg_absolute_scale: true for absolute units.
          diag_reg: 1e-3,
          // learning_rate is proto3 `optional`: absent means 1. tile_size 0: the server's.
        },
        x,
        y,
      );
      // Content addressed: the same tenant, architecture, data and settings give the same id,
      // and fitting again answers the stored model at once.
      modelId = record.model_id;
    }
    const response = await call(models, 'Predict', {
      model_id: modelId,
      x_test: encodeFloat64(xTest, [2, 8]), // the model's dtype; absent: the training set
      // Times of gradient descent (learning rate 1): a leading time axis of len(t). Empty:
      // t = infinity, no time axis. +Infinity may be among them.
      t: [1.0],
      // get absent: the model's own posterior (NTK here: the trained ensemble's).
      covariance: 'COVARIANCE_MARGINAL', // each test point's variance, (len(t), N_test)
    });
    const { solve } = response;
    const result = {
      model_id: modelId,
      // proto3 leaves zeros out (`defaults: false`): no jitter added arrives as undefined.
      solve: { method: solve.method, jitter: solve.jitter ?? 0, condition: solve.condition ?? 0 },
      mean: decodeTensor(response.mean, 'mean'), // (len(t), N_test, *outputs): (1, 2) here
      variance: decodeTensor(response.covariance, 'covariance'),
    };
    // A JS number is a float64, and JSON prints the shortest decimal that reads back as the
    // same number: the values survive JSON bit for bit (JSON has no -0, NaN or Infinity:
    // those would print as 0 and null).
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    kernels.close();
    models.close();
  }
}

runMain(main);
