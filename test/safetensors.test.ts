import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  SafetensorsError, SafetensorsTensor, readSafetensors, readSafetensorsFromBuffer, readSafetensorsHeader,
  readShardedIndex, readShardedSafetensors, readSafetensorsCheckpoint, serializeSafetensors, tensorFromTypedArray,
  typedArrayOf, writeSafetensors,
} from '../src/io/safetensors';
import { runPython } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-safetensors-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Tensors covering every common dtype plus the ordering traps of the reference writer. */
function sampleTensors(): Map<string, SafetensorsTensor> {
  const t = new Map<string, SafetensorsTensor>();
  t.set('weight.f32', tensorFromTypedArray('F32', [2, 3], new Float32Array([1.5, -2, 3.25, 0, -0.125, 1e-7])));
  t.set('a.f32', tensorFromTypedArray('F32', [1], new Float32Array([42])));
  t.set('ids', tensorFromTypedArray('I64', [3], new BigInt64Array([0n, -5n, 2n ** 60n + 1n])));
  t.set('f64', tensorFromTypedArray('F64', [2], new Float64Array([Math.PI, -1e300])));
  t.set('half', tensorFromTypedArray('F16', [2], new Uint16Array([0x3e00, 0xbc00]))); // 1.5, -1
  t.set('brain', tensorFromTypedArray('BF16', [2, 1], new Uint16Array([0x3fc0, 0xc000]))); // 1.5, -2
  t.set('i32', tensorFromTypedArray('I32', [2], new Int32Array([-7, 2147483647])));
  t.set('i16', tensorFromTypedArray('I16', [1], new Int16Array([-300])));
  t.set('i8', tensorFromTypedArray('I8', [3], new Int8Array([-128, 0, 127])));
  t.set('u8', tensorFromTypedArray('U8', [3], new Uint8Array([0, 128, 255])));
  t.set('mask', tensorFromTypedArray('BOOL', [4], new Uint8Array([1, 0, 0, 1])));
  t.set('scalar', tensorFromTypedArray('F32', [], new Float32Array([7])));
  t.set('empty', tensorFromTypedArray('F32', [0, 3], new Float32Array(0)));
  // UTF-8 order (the reference's) puts U+FF21 before U+1F600; UTF-16 order would not.
  t.set('\u{1F600}', tensorFromTypedArray('U8', [1], new Uint8Array([1])));
  t.set('\u{FF21}', tensorFromTypedArray('U8', [1], new Uint8Array([2])));
  t.set('Z', tensorFromTypedArray('U8', [1], new Uint8Array([3])));
  return t;
}

function assertSameTensors(actual: Map<string, SafetensorsTensor>, expected: Map<string, SafetensorsTensor>) {
  assert.equal([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [name, tensor] of expected) {
    const got = actual.get(name)!;
    assert.is(got.dtype, tensor.dtype, name);
    assert.equal(got.shape, tensor.shape, name);
    assert.equal(Buffer.from(got.data), Buffer.from(tensor.data), name);
  }
}

test('round trip through a file, a buffer and the header reader', () => {
  const tensors = sampleTensors();
  const file = path.join(tmp, 'roundtrip.safetensors');
  writeSafetensors(file, tensors, { format: 'pt', note: 'ünïcode' });
  const read = readSafetensors(file);
  assertSameTensors(read.tensors, tensors);
  assert.equal(read.metadata, { format: 'pt', note: 'ünïcode' });

  const bytes = fs.readFileSync(file);
  assert.equal(Buffer.from(serializeSafetensors(tensors, { format: 'pt', note: 'ünïcode' })), bytes);
  assertSameTensors(readSafetensorsFromBuffer(bytes).tensors, tensors);

  const header = readSafetensorsHeader(file);
  assert.is(header.dataStart % 8, 0, 'data section 8-byte aligned');
  assert.is(header.dataStart + header.dataLength, bytes.byteLength);
  assert.equal(header.entries.get('ids')!.shape, [3]);

  const subset = readSafetensors(file, { names: ['ids'] });
  assert.equal([...subset.tensors.keys()], ['ids']);
  assert.equal(typedArrayOf(subset.tensors.get('ids')!), new BigInt64Array([0n, -5n, 2n ** 60n + 1n]));
  assert.throws(() => readSafetensors(file, { names: ['nope'] }), /tensor "nope": not in the file/);
});

test('no metadata: the __metadata__ key is absent and reads back undefined', () => {
  const bytes = serializeSafetensors({ x: tensorFromTypedArray('F32', [1], new Float32Array([1])) });
  const header = bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8');
  // 54 bytes of JSON padded with spaces to 56, a multiple of 8.
  assert.is(header, '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  ');
  assert.is(readSafetensorsFromBuffer(bytes).metadata, undefined);
});

test('byte-identical to Python safetensors.torch.save_file, and Python reads our values', () => {
  const ours = path.join(tmp, 'ours.safetensors');
  const theirs = path.join(tmp, 'theirs.safetensors');
  writeSafetensors(ours, sampleTensors(), { format: 'pt' });
  const { stdout } = runPython(['-c', `
import sys, json, torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open
ours, theirs = sys.argv[1], sys.argv[2]
t = load_file(ours)
with safe_open(ours, 'pt') as f: meta = f.metadata()
save_file(t, theirs, metadata=meta)
print(json.dumps({'weight': t['weight.f32'].tolist(), 'ids': [str(v) for v in t['ids'].tolist()],
  'brain': t['brain'].float().flatten().tolist(), 'half': t['half'].float().tolist(), 'mask': t['mask'].tolist(),
  'scalar_shape': list(t['scalar'].shape), 'empty_shape': list(t['empty'].shape), 'meta': meta}))
`, ours, theirs]);
  assert.equal(fs.readFileSync(ours), fs.readFileSync(theirs), 'same bytes as save_file');
  const seen = JSON.parse(stdout);
  assert.equal(seen.weight, [[1.5, -2, 3.25], [0, -0.125, Math.fround(1e-7)]]);
  assert.equal(seen.ids, ['0', '-5', String(2n ** 60n + 1n)]);
  assert.equal(seen.brain, [1.5, -2]);
  assert.equal(seen.half, [1.5, -1]);
  assert.equal(seen.mask, [true, false, false, true]);
  assert.equal(seen.scalar_shape, []);
  assert.equal(seen.empty_shape, [0, 3]);
  assert.equal(seen.meta, { format: 'pt' });
});

test('reads files written by Python', () => {
  const file = path.join(tmp, 'python.safetensors');
  runPython(['-c', `
import sys, torch
from safetensors.torch import save_file
save_file({
  'w': torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4,
  'ids': torch.tensor([[1, -2], [2**62, 0]], dtype=torch.int64),
  'bf': torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
  'h': torch.tensor([0.5], dtype=torch.float16),
  'b': torch.tensor([True, False]),
  'd': torch.tensor([0.1], dtype=torch.float64),
}, sys.argv[1], metadata={'producer': 'python'})
`, file]);
  const { metadata, tensors } = readSafetensors(file);
  assert.equal(metadata, { producer: 'python' });
  assert.equal(tensors.get('w')!.shape, [3, 4]);
  assert.equal(Array.from(typedArrayOf(tensors.get('w')!) as Float32Array), Array.from({ length: 12 }, (_, i) => i / 4));
  assert.equal(typedArrayOf(tensors.get('ids')!), new BigInt64Array([1n, -2n, 2n ** 62n, 0n]));
  assert.equal(typedArrayOf(tensors.get('bf')!), new Uint16Array([0x3fc0, 0xc000]));
  assert.equal(typedArrayOf(tensors.get('h')!), new Uint16Array([0x3800]));
  assert.equal(typedArrayOf(tensors.get('b')!), new Uint8Array([1, 0]));
  assert.equal(typedArrayOf(tensors.get('d')!), new Float64Array([0.1]));
});

// --- malformed files ---------------------------------------------------------------------------

/** A file from a header (object or raw text), data bytes, and optionally a forged length field. */
function frame(header: unknown, data: Uint8Array = new Uint8Array(0), lengthField?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(lengthField ?? BigInt(json.byteLength));
  return Buffer.concat([length, json, data]);
}
function rawFrame(json: Uint8Array): Buffer {
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.byteLength));
  return Buffer.concat([length, json]);
}
const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
const valid = (extra: Record<string, unknown> = {}) => ({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });

const malformed: [string, Buffer, RegExp][] = [
  ['empty file', Buffer.alloc(0), /0 bytes, shorter than the 8-byte header length field/],
  ['shorter than 8 bytes', Buffer.from([1, 0, 0]), /3 bytes, shorter than the 8-byte/],
  ['header length past the end', frame(valid(), f32([1, 2]), 10_000n), /header length 10000 runs past the end of the file/],
  ['huge header length (2^63)', frame(valid(), f32([1, 2]), 2n ** 63n), /header length 9223372036854775808 exceeds the 100000000-byte limit/],
  ['header length just over the cap', frame(valid(), f32([1, 2]), 100_000_001n), /exceeds the 100000000-byte limit/],
  ['truncated data', frame(valid(), f32([1, 2]).subarray(0, 5)), /tensor "a": data_offsets \[0, 8\] run past the end of the data section \(5 bytes; truncated\?\)/],
  ['invalid JSON', frame('{"a": {'), /header is not valid JSON/],
  ['invalid UTF-8', rawFrame(Buffer.from([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/],
  ['header is an array', frame([1, 2]), /header must be a JSON object, got \[1,2\]/],
  ['entry not an object', frame({ a: [1, 2] }), /tensor "a": entry must be an object/],
  ['unknown dtype', frame({ a: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, f32([1, 2])), /tensor "a": unknown dtype "F33"/],
  ['dtype not a string', frame({ a: { dtype: 4, shape: [2], data_offsets: [0, 8] } }, f32([1, 2])), /tensor "a": dtype must be a string, got 4/],
  ['sub-byte dtype', frame({ a: { dtype: 'F4', shape: [2], data_offsets: [0, 1] } }, new Uint8Array(1)), /tensor "a": dtype F4 is a packed sub-byte type/],
  ['negative dimension', frame({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32([1, 2])), /tensor "a": shape\[0\] must be a non-negative integer, got -2/],
  ['fractional dimension', frame({ a: { dtype: 'F32', shape: [1, 1.5], data_offsets: [0, 8] } }, f32([1, 2])), /tensor "a": shape\[1\] must be a non-negative integer, got 1.5/],
  ['shape not an array', frame({ a: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, f32([1, 2])), /tensor "a": shape must be an array/],
  ['offsets not a pair', frame({ a: { dtype: 'F32', shape: [2], data_offsets: [0] } }, f32([1, 2])), /tensor "a": data_offsets must be \[begin, end\]/],
  ['offsets not integers', frame({ a: { dtype: 'F32', shape: [2], data_offsets: ['0', 8] } }, f32([1, 2])), /tensor "a": data_offsets must be \[begin, end\]/],
  ['begin after end', frame({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, f32([1, 2])), /tensor "a": data_offsets \[8, 0\] end before they begin/],
  ['size does not match shape', frame({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32([1, 2])), /tensor "a": data_offsets \[0, 8\] hold 8 bytes but F32 \[3\] needs 12/],
  ['giant shape claim', frame({ a: { dtype: 'F32', shape: [2 ** 40], data_offsets: [0, 2 ** 42] } }, f32([1, 2])), /tensor "a": data_offsets \[0, 4398046511104\] run past the end of the data section/],
  ['overlapping offsets', frame({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32([1, 2, 3])),
    /tensor "b": data_offsets \[4, 12\] overlap tensor "a" which ends at 8/],
  ['gap between tensors', frame({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, f32([1, 2, 3])),
    /tensor "b": data_offsets \[8, 12\] leave bytes 4..8 of the data section covered by no tensor/],
  ['trailing bytes', frame(valid(), f32([1, 2, 3])), /the data section has 12 bytes but the tensors cover only 8/],
  ['metadata value not a string', frame(valid({ __metadata__: { format: 1 } }), f32([1, 2])), /__metadata__\["format"\] must be a string, got 1/],
];

for (const [name, bytes, message] of malformed) {
  test(`rejects a malformed file: ${name}`, () => {
    const file = path.join(tmp, `bad-${name.replace(/\W+/g, '-')}.safetensors`);
    fs.writeFileSync(file, bytes);
    for (const read of [() => readSafetensors(file), () => readSafetensorsHeader(file)]) {
      try {
        read();
        assert.unreachable('accepted a malformed file');
      } catch (error) {
        assert.instance(error, SafetensorsError);
        assert.match((error as Error).message, file, 'message names the file');
        assert.match((error as Error).message, message);
      }
    }
    assert.throws(() => readSafetensorsFromBuffer(bytes, 'mem'), (e: Error) => e instanceof SafetensorsError && message.test(e.message));
  });
}

test('the reference implementation rejects the same malformed files', () => {
  // Our rules are meant to equal the reference's (plus the sub-byte types we do not support).
  const files = malformed.filter(([name]) => name !== 'sub-byte dtype').map(([name, bytes]) => {
    const file = path.join(tmp, `ref-${name.replace(/\W+/g, '-')}.safetensors`);
    fs.writeFileSync(file, bytes);
    return file;
  });
  const { stdout } = runPython(['-c', `
import sys, json
from safetensors.torch import load_file
accepted = []
for f in sys.argv[1:]:
    try:
        load_file(f); accepted.append(f)
    except Exception:
        pass
print(json.dumps(accepted))
`, ...files]);
  assert.equal(JSON.parse(stdout), [], 'files the reference accepts but we reject');
});

// --- writing -----------------------------------------------------------------------------------

test('writes atomically: replaces the old file, leaves no temporary file, and a failed write changes nothing', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'atomic-'));
  const file = path.join(dir, 'model.safetensors');
  writeSafetensors(file, { a: tensorFromTypedArray('F32', [1], new Float32Array([1])) });
  writeSafetensors(file, { b: tensorFromTypedArray('F32', [1], new Float32Array([2])) });
  assert.equal([...readSafetensors(file).tensors.keys()], ['b']);
  const before = fs.readFileSync(file);
  const bad = { c: { dtype: 'F32' as const, shape: [2], data: new Uint8Array(4) } };
  assert.throws(() => writeSafetensors(file, bad), /tensor "c": data has 4 bytes but F32 \[2\] needs 8/);
  assert.equal(fs.readFileSync(file), before);
  assert.equal(fs.readdirSync(dir), ['model.safetensors']);
});

test('the writer rejects what a reader would reject', () => {
  const one = tensorFromTypedArray('F32', [1], new Float32Array([1]));
  assert.throws(() => serializeSafetensors({ __metadata__: one }), /reserved/);
  assert.throws(() => serializeSafetensors([['x', one], ['x', one]]), /tensor "x": given twice/);
  assert.throws(() => serializeSafetensors({ x: { ...one, dtype: 'F33' as never } }), /unsupported dtype "F33"/);
  assert.throws(() => serializeSafetensors({ x: { ...one, shape: [-1] } }), /shape must be non-negative integers/);
  assert.throws(() => serializeSafetensors({ x: one }, { n: 3 as never }), /metadata\["n"\] must be a string/);
});

test('typedArrayOf copies a misaligned view instead of failing', () => {
  const bytes = serializeSafetensors({ a: tensorFromTypedArray('F32', [2], new Float32Array([1.5, -3])) });
  const shifted = new Uint8Array(bytes.byteLength + 1);
  shifted.set(bytes, 1);
  const tensor = readSafetensorsFromBuffer(shifted.subarray(1)).tensors.get('a')!;
  assert.is(tensor.data.byteOffset % 4 !== 0, true, 'the view really is misaligned');
  assert.equal(typedArrayOf(tensor), new Float32Array([1.5, -3]));
});

// --- sharded checkpoints -----------------------------------------------------------------------

function shardedDir(weightMap: Record<string, string>, shards: Record<string, Record<string, number[]>>): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'sharded-'));
  for (const [file, tensors] of Object.entries(shards)) {
    writeSafetensors(path.join(dir, file), Object.fromEntries(Object.entries(tensors).map(([n, v]) => [n, tensorFromTypedArray('F32', [v.length], new Float32Array(v))])));
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 12 }, weight_map: weightMap }));
  return dir;
}

test('sharded checkpoints: index read and all shards merged', () => {
  const dir = shardedDir({ a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', c: 'model-00001-of-00002.safetensors' },
    { 'model-00001-of-00002.safetensors': { a: [1], c: [3] }, 'model-00002-of-00002.safetensors': { b: [2] } });
  const index = readShardedIndex(dir);
  assert.equal(index.shards, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  assert.equal(index.metadata, { total_size: 12 });
  const { tensors } = readShardedSafetensors(dir);
  assert.equal([...tensors.keys()].sort(), ['a', 'b', 'c']);
  assert.equal(typedArrayOf(tensors.get('b')!), new Float32Array([2]));
  assert.equal([...readSafetensorsCheckpoint(dir).keys()].sort(), ['a', 'b', 'c']);
});

test('sharded checkpoints: inconsistent or hostile indexes are rejected', () => {
  const shard = { 's.safetensors': { a: [1], b: [2] } };
  assert.throws(() => readShardedSafetensors(shardedDir({ a: 's.safetensors' }, shard)), /tensor "b": not listed in model.safetensors.index.json/);
  assert.throws(() => readShardedSafetensors(shardedDir({ a: 's.safetensors', b: 's.safetensors', z: 's.safetensors' }, shard)),
    /tensor "z": listed in model.safetensors.index.json but missing from the shard/);
  assert.throws(() => readShardedIndex(shardedDir({ a: '../s.safetensors' }, shard)), /tensor "a": weight_map entry must name a file in the same directory/);
  assert.throws(() => readShardedIndex(shardedDir({ a: 3 } as never, shard)), /tensor "a": weight_map entry must name a file/);
  const noMap = fs.mkdtempSync(path.join(tmp, 'nomap-'));
  fs.writeFileSync(path.join(noMap, 'model.safetensors.index.json'), '{"metadata": {}}');
  assert.throws(() => readShardedIndex(noMap), /"weight_map" must be an object/);
  assert.throws(() => readSafetensorsCheckpoint(fs.mkdtempSync(path.join(tmp, 'none-'))), /neither model.safetensors nor model.safetensors.index.json exists/);
});

test.run();
