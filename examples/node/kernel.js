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
const {
  KernelService,
  call,
  connect,
  decodeTensor,
  encodeFloat32,
  runMain,
  toSafeNumber,
} = require('./wire'); // the .proto loading, tensors on the wire, calls: shared with predict.js

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

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const x1 = readInput(options);
  // grpc-js receives at most 4 MiB per message by default; connect raises it to the server's
  // 256 MiB, and each call sends NTKSERVE_TOKEN and a deadline (wire.js).
  const client = connect(KernelService, options.target);
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

// A server error as "CODE: message" on stderr, exit status 1; a usage error, exit status 2.
runMain(main);
