// What the Node examples (kernel.js, predict.js) share: the .proto files loaded at run time,
// tensors to and from the wire, a unary call with metadata and a deadline, input chunks for
// the streaming calls, and how an error ends the script.
'use strict';

const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Both services in one load: the messages they share (Tensor, InputChunk, KernelKind; both
// files import tensor.proto, model_service.proto imports kernel_service.proto) exist once.
const definition = protoLoader.loadSync(
  ['ntkserve/v1/kernel_service.proto', 'ntkserve/v1/model_service.proto'],
  {
    includeDirs: [path.join(__dirname, '..', '..', 'proto')],
    keepCase: true, // field names as in the .proto (out_dim, w_std, x1_shape), not camelCase
    longs: String, // int64 arrives as a decimal string: a JS number is exact only below 2**53
    enums: String, // enums arrive as names ("DTYPE_FLOAT32"); requests may use names or numbers
    defaults: false, // unsent fields stay undefined; proto3 never sends zeros: read `x ?? 0`
    oneofs: true, // a oneof's chosen field is also named in a virtual field (`payload: 'model'`)
  },
);
const { KernelService, ModelService } = grpc.loadPackageDefinition(definition).ntkserve.v1;

// grpc-js receives at most 4 MiB per message by default; the server sends up to 256 MiB.
const CHANNEL_OPTIONS = { 'grpc.max_receive_message_length': 256 * 1024 * 1024 };

// A client of `Service` (KernelService, ModelService) at HOST:PORT, without TLS. Clients made
// with the same target and options share one connection (grpc-js pools its subchannels).
function connect(Service, target) {
  return new Service(target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

// A typed array's bytes, as the wire wants them: little-endian, C order. The Buffer is a view
// (no copy) of the array's own memory; only a big-endian host (s390x) must swap, on a copy.
function encodeFloat32(array, shape) {
  const bytes = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
  const data = os.endianness() === 'LE' ? bytes : Buffer.from(bytes).swap32();
  return { dtype: 'DTYPE_FLOAT32', shape, data };
}

function encodeFloat64(array, shape) {
  const bytes = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
  const data = os.endianness() === 'LE' ? bytes : Buffer.from(bytes).swap64();
  return { dtype: 'DTYPE_FLOAT64', shape, data };
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
  // A 0-d tensor has no shape entries, and `defaults: false` leaves the field undefined.
  const shape = (tensor.shape ?? []).map((d, i) => toSafeNumber(d, `${field}.shape[${i}]`));
  const count = shape.reduce((a, b) => a * b, 1);
  const data = tensor.data ?? Buffer.alloc(0);
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

// Every call carries these: NTKSERVE_TOKEN, when set, as "authorization: Bearer <token>"
// (a server started with --auth-tokens refuses calls without one: UNAUTHENTICATED).
function metadata() {
  const result = new grpc.Metadata();
  if (process.env.NTKSERVE_TOKEN) {
    result.add('authorization', `Bearer ${process.env.NTKSERVE_TOKEN}`);
  }
  return result;
}

// A deadline for every call: the first call of a new network waits for it to compile.
function deadline(seconds = 120) {
  return new Date(Date.now() + seconds * 1000);
}

// A unary call as a promise, with the auth metadata and a deadline.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), { deadline: deadline() }, (err, response) =>
      err ? reject(err) : resolve(response),
    );
  });
}

// Bytes of input per InputChunk: well under gRPC's default 4 MiB message limit, as the
// Python client sends them.
const CHUNK_BYTES = 1024 * 1024;

// An input's bytes (a Tensor's `data`, little-endian, C order) as the InputChunks of a
// streaming call: `offset` is the chunk's first byte within the input, and the server wants
// them in order, each starting where the last ended. `subarray` is a view, not a copy: only
// the message being encoded holds a second copy of its chunk.
function* inputChunks(slot, data) {
  for (let offset = 0; offset < data.length; offset += CHUNK_BYTES) {
    yield { slot, offset, data: data.subarray(offset, offset + CHUNK_BYTES) };
  }
}

// How each script ends on an error: a gRPC error (a numeric status code, the server's message
// in `details`) as "CODE: message", exit status 1; anything else (bad arguments, a response
// that does not decode) as its message, exit status 2.
function runMain(main) {
  main().catch((err) => {
    const rpc = typeof err.code === 'number' && 'details' in err;
    process.stderr.write(`${rpc ? `${grpc.status[err.code]}: ${err.details}` : err.message}\n`);
    process.exitCode = rpc ? 1 : 2;
  });
}

module.exports = {
  CHUNK_BYTES,
  KernelService,
  ModelService,
  call,
  connect,
  deadline,
  decodeTensor,
  encodeFloat32,
  encodeFloat64,
  inputChunks,
  metadata,
  runMain,
  toSafeNumber,
};
