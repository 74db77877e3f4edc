#!/usr/bin/env node
// The NNGP and NTK of a small fully connected network, computed by an ntkserve server, from
// Node.js with no generated code: the .proto files are loaded at run time.
//
//   node kernel.js HOST:PORT                          # x1: a fixed 4 x 8 float32 array
//   node kernel.js HOST:PORT --x1 FILE --shape N,D    # x1: raw little-endian float32, C order
//
// Prints {"architecture_id", "nngp": {"dtype", "shape", "values"}, "ntk": {...}} as JSON
// (values flattened in C order); a server error as "CODE: message" on stderr, exit status 1.
// NTKSERVE_TOKEN, when set, is sent as "authorization: Bearer <token>" (--auth-tokens).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const definition = protoLoader.loadSync('ntkserve/v1/kernel_service.proto', {
  includeDirs: [path.join(__dirname, '..', '..', 'proto')],
  keepCase: true, // field names exactly as in the .proto (out_dim, w_std, x1_shape), not camelCase
  longs: String, // int64 arrives as a decimal string: a JS number is exact only below 2**53
  enums: String, // enums arrive as names ("DTYPE_FLOAT32"); requests may use names or numbers
  defaults: false, // unsent fields stay undefined; proto3 never sends zeros: read `x ?? 0`
  oneofs: true,
});
const { KernelService } = grpc.loadPackageDefinition(definition).ntkserve.v1;

// Dense(512, W_std=1.5, b_std=0.05) -> Relu -> Dense(1, W_std=1.5, b_std=0.05), NTK
// parameterization. w_std and b_std are proto3 `optional`: an absent w_std means 1.0 and an
// absent b_std means no bias at all, so both are spelled out.
const architecture = {
  layers: [
    { dense: { out_dim: 512, w_std: 1.5, b_std: 0.05 } },
    { relu: {} },
    { dense: { out_dim: 1, w_std: 1.5, b_std: 0.05 } },
  ],
};

// A Float32Array's bytes, as the wire wants them: little-endian, C order. The Buffer is a view
// (no copy) of the array's own memory; only a big-endian host (s390x) must swap, on a copy.
function encodeFloat32(array, shape) {
  const bytes = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
  const data = os.endianness() === 'LE' ? bytes : Buffer.from(bytes).swap32();
  return { dtype: 'DTYPE_FLOAT32', shape, data };
}

function toSafeNumber(value, field) {
  const n = Number(value); // a string: from the command line, or an int64 (longs: String)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${field}: bad dimension ${value}`);
  return n;
}

// A response Tensor as {dtype, shape, values}. `tensor.data` is a Buffer that protobufjs
// sliced out of the received bytes without copying: it shares an ArrayBuffer (for small
// messages, Node's 8 KiB Buffer pool) with other data, at whatever offset the field landed
// (1319 was seen), generally not a multiple of 4 (8 for float64). `new Float32Array(
// data.buffer, data.byteOffset, n)` then throws a RangeError, and a view of data.buffer from 0
// would read unrelated bytes. A DataView reads at any offset, in an explicit byte order.
function decodeTensor(tensor, field) {
  const itemsize = { DTYPE_FLOAT32: 4, DTYPE_FLOAT64: 8 }[tensor.dtype];
  if (itemsize === undefined) throw new Error(`${field}.dtype: unexpected ${tensor.dtype}`);
  const shape = tensor.shape.map((d, i) => toSafeNumber(d, `${field}.shape[${i}]`));
  const count = shape.reduce((a, b) => a * b, 1);
  const { data } = tensor;
  if (data.length !== count * itemsize) {
    throw new Error(`${field}.data: ${data.length} bytes for shape [${shape}] of ${tensor.dtype}`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = itemsize === 4 ? new Float32Array(count) : new Float64Array(count);
  for (let i = 0; i < count; i++) {
    values[i] = itemsize === 4 ? view.getFloat32(4 * i, true) : view.getFloat64(8 * i, true);
  }
  return { dtype: tensor.dtype, shape, values: Array.from(values) };
}

function parseArgs(argv) {
  const [target, ...rest] = argv;
  const options = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (!['--x1', '--shape'].includes(rest[i]) || rest[i + 1] === undefined) {
      throw new Error(`unexpected argument ${rest[i]}`);
    }
    options[rest[i].slice(2)] = rest[i + 1];
  }
  if (!target || target.startsWith('--') || ('x1' in options) !== ('shape' in options)) {
    throw new Error('usage: node kernel.js HOST:PORT [--x1 FILE --shape N,D]');
  }
  return { target, ...options };
}

// x1 from a raw float32 file, sent as read: the server checks that its size fits the shape
// and answers INVALID_ARGUMENT naming the field ("x1.data") when it does not.
function readInput(options) {
  if (options.x1 !== undefined) {
    const file = fs.readFileSync(options.x1);
    const shape = options.shape.split(',').map((d, i) => toSafeNumber(d, `--shape[${i}]`));
    return { dtype: 'DTYPE_FLOAT32', shape, data: file };
  }
  // 4 x 8 small multiples of 1/4: exact in float32, so any language can rebuild this input.
  const x1 = Float32Array.from({ length: 32 }, (_, k) => ((k % 7) - 3) / 4);
  return encodeFloat32(x1, [4, 8]);
}

// A unary call as a promise, with the auth metadata and a deadline (the first call of a new
// network waits for it to compile).
function call(client, method, request) {
  const metadata = new grpc.Metadata();
  if (process.env.NTKSERVE_TOKEN) {
    metadata.add('authorization', `Bearer ${process.env.NTKSERVE_TOKEN}`);
  }
  const deadline = new Date(Date.now() + 120_000);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const x1 = readInput(options);
  // grpc-js receives at most 4 MiB per message by default; the server sends up to 256 MiB.
  const client = new KernelService(options.target, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 256 * 1024 * 1024,
  });
  try {
    const { architecture_id } = await call(client, 'RegisterArchitecture', { architecture });
    const response = await call(client, 'ComputeKernel', {
      architecture_id,
      x1, // x2 absent: the kernel of x1 with itself
      get: ['KERNEL_KIND_NNGP', 'KERNEL_KIND_NTK'],
    });
    const result = {
      architecture_id,
      nngp: decodeTensor(response.nngp, 'nngp'),
      ntk: decodeTensor(response.ntk, 'ntk'),
    };
    // A float32 widened to a JS number is exact, and JSON prints the shortest decimal that
    // reads back as the same number: the values survive JSON bit for bit.
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    client.close();
  }
}

main().catch((err) => {
  // gRPC errors carry a numeric status code and the server's message in `details`.
  const rpc = typeof err.code === 'number' && 'details' in err;
  process.stderr.write(`${rpc ? `${grpc.status[err.code]}: ${err.details}` : err.message}\n`);
  process.exitCode = rpc ? 1 : 2;
});
