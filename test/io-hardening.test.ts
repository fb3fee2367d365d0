// Issue 13's I/O and model-config hardening: concurrent writers, files over 2 GiB, hostile
// configs and files, and leak-free failure paths. Each test failed before its fix.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, full, liveTensorCount, loadTensors, saveTensors, tidy, Tensor } from '../src/tensor';
import { readCheckpoint, loadPretrained, savePretrained } from '../src/io';
import { temporarySibling } from '../src/io/atomic';
import {
  iterateSafetensors, readSafetensors, readSafetensorsHeader, writeSafetensors, MAX_TENSORS_PER_FILE, SafetensorsSource,
} from '../src/io/safetensors';
import { DebertaV2Model } from '../src/models';
import { parseDebertaConfig } from '../src/models/deberta/config';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-io-hardening-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));

const tinyConfig = {
  model_type: 'deberta-v2', vocab_size: 30, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 16, relative_attention: true, pos_att_type: ['p2c', 'c2p'], position_buckets: 4,
  share_att_key: true, norm_rel_ebd: 'layer_norm', position_biased_input: false, max_position_embeddings: 16,
};

function runNode(script: string, args: string[], onOutput: (text: string) => void = () => {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; onOutput(output); });
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.on('close', (code) => resolve({ code, output }));
  });
}

// ---- item 6: one atomic-write helper, safe under concurrent writers ---------------------------

test('temporary names are random, not pid-based', () => {
  // A pid of 9 distinctive digits: a real pid (4-5 digits) turns up in random hex by chance.
  const realPid = Object.getOwnPropertyDescriptor(process, 'pid')!;
  Object.defineProperty(process, 'pid', { value: 987654321, configurable: true });
  try {
    const names = new Set(Array.from({ length: 1000 }, () => path.basename(temporarySibling(path.join(root, 'x.bin'), 'tmp'))));
    assert.is(names.size, 1000);
    for (const name of names) assert.not.ok(name.includes('987654321'), name);
  } finally {
    Object.defineProperty(process, 'pid', realPid);
  }
});

test('8 concurrent savePretrained into one new directory, all with the same pid: none fails, the result loads', async () => {
  // Several rounds, each into another new directory: one round rarely hits the race window.
  const ROUNDS = 3;
  const target = path.join(root, 'concurrent', 'model');
  const shared = path.join(root, 'concurrent', 'shared.bin');
  const go = path.join(root, 'go');
  // Every child claims pid 1, as processes in separate pid namespaces do; each builds the same
  // seeded model, says it is ready, spins until all are (the go file), then saves.
  const script = `
    const ROUNDS = ${ROUNDS};
    Object.defineProperty(process, 'pid', { value: 1 });
    const [srcDir, target, shared, go, configJson] = process.argv.slice(1);
    const { savePretrained } = require(srcDir + '/io');
    const { saveTensors, Generator } = require(srcDir + '/tensor');
    const { DebertaV2Model } = require(srcDir + '/models');
    const { parseDebertaConfig } = require(srcDir + '/models/deberta/config');
    const model = new DebertaV2Model(parseDebertaConfig(JSON.parse(configJson)), { generator: new Generator({ seed: 5 }) });
    console.log('ready');
    const deadline = Date.now() + 60000; // a sibling that died before 'ready' must not hang the rest
    while (!require('fs').existsSync(go) && Date.now() < deadline) {}
    for (let round = 0; round < ROUNDS; round++) {
      savePretrained(model, target + '-' + round, { format: 'both' });
      saveTensors(shared, model.stateDict());
    }
    console.log('saved');
  `;
  const srcDir = path.join(__dirname, '..', 'src');
  const ready = new Set<number>();
  const results = await Promise.all(Array.from({ length: 8 }, (_, child) =>
    runNode(script, [srcDir, target, shared, go, JSON.stringify(tinyConfig)], (output) => {
      if (output.includes('ready')) ready.add(child);
      if (ready.size === 8 && !fs.existsSync(go)) fs.writeFileSync(go, '');
    })));
  for (const { code, output } of results) assert.is(code, 0, output);
  const targets = Array.from({ length: ROUNDS }, (_, round) => `${target}-${round}`);
  for (const dir of targets) assert.equal(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'pytorch_model.bin']);
  assert.equal(fs.readdirSync(path.dirname(target)).sort(), [...targets.map((dir) => path.basename(dir)), 'shared.bin'].sort(),
    'no staging or temporary file left');
  const expected = new DebertaV2Model(parseDebertaConfig(tinyConfig), { generator: new Generator({ seed: 5 }) });
  try {
    const last = targets[ROUNDS - 1];
    for (const file of [path.join(last, 'model.safetensors'), path.join(last, 'pytorch_model.bin'), shared]) {
      const tensors = file === shared ? loadTensors(shared) : readCheckpoint(last).tensors;
      try {
        assert.equal([...tensors.keys()].sort(), [...expected.stateDict().keys()].sort(), file);
        tidy(() => {
          for (const [key, t] of tensors) assert.is(t.sub(expected.stateDict().get(key)!).abs().max().item(), 0, `${file}: ${key}`);
        });
      } finally {
        for (const t of tensors.values()) t.dispose();
      }
    }
  } finally {
    expected.dispose();
  }
});


// ---- item 5: files over 2 GiB ----------------------------------------------------------------

const GiB = 2 ** 30;

/** A directory with room for a 2.1 GiB file: tmpfs first (no disk traffic), else the temp dir. */
function roomForLargeFiles(): string | undefined {
  for (const dir of ['/dev/shm', os.tmpdir()]) {
    try {
      const stats = fs.statfsSync(dir);
      if (stats.bavail * stats.bsize >= 3 * GiB) return dir;
    } catch {
      // not there on this platform
    }
  }
  return undefined;
}

test('torch.save and safetensors files over 2 GiB write and read back, entry by entry', () => {
  const base = roomForLargeFiles();
  if (!base) {
    console.log('  skipped the >2 GiB file test: neither /dev/shm nor the temp directory has 3 GiB free');
    return;
  }
  const dir = fs.mkdtempSync(path.join(base, 'camemberta-large-'));
  // 9 tensors of 240 MiB: 2.11 GiB in all, each tensor filled with its own index + 1 so that a
  // storage read from the wrong offset shows.
  const count = 9;
  const elements = 60 * 2 ** 20;
  try {
    const bin = path.join(dir, 'large.bin');
    const sources = new Map<string, Tensor>();
    try {
      for (let i = 0; i < count; i++) sources.set(`t${i}`, full([elements], i + 1));
      saveTensors(bin, sources);
    } finally {
      for (const t of sources.values()) t.dispose();
    }
    assert.ok(fs.statSync(bin).size > 2 * GiB, `${fs.statSync(bin).size} bytes`);
    const before = liveTensorCount();
    const loaded = loadTensors(bin);
    try {
      assert.equal([...loaded.keys()], [...sources.keys()]);
      tidy(() => {
        for (const [i, t] of [...loaded.values()].entries()) {
          assert.equal(t.shape, [elements]);
          assert.is(t.select(0, 0).item(), i + 1);
          assert.is(t.select(0, elements - 1).item(), i + 1);
        }
      });
    } finally {
      for (const t of loaded.values()) t.dispose();
    }
    assert.is(liveTensorCount(), before);
    fs.rmSync(bin);

    // The writer asks for each tensor's bytes only when it reaches it: one scratch array serves all.
    const file = path.join(dir, 'large.safetensors');
    const scratch = new Float32Array(elements);
    const lazy = new Map<string, SafetensorsSource>(Array.from({ length: count }, (_, i) => [`t${i}`, {
      dtype: 'F32', shape: [elements], data: () => new Uint8Array(scratch.fill(i + 1).buffer),
    }]));
    writeSafetensors(file, lazy);
    assert.ok(fs.statSync(file).size > 2 * GiB);
    let seen = 0;
    for (const [name, entry] of iterateSafetensors(file)) {
      const values = new Float32Array(entry.data.buffer, entry.data.byteOffset, elements);
      const expected = Number(name.slice(1)) + 1;
      assert.is(values[0], expected, name);
      assert.is(values[elements - 1], expected, name);
      seen++;
    }
    assert.is(seen, count);
    const last = readSafetensors(file, { names: [`t${count - 1}`] }).tensors.get(`t${count - 1}`)!;
    assert.is(new Float32Array(last.data.buffer)[elements - 1], count);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- item 7: trust no file -------------------------------------------------------------------

/** A zip archive of stored entries, as torch.save writes them (CRCs are not checked by the reader). */
function zipArchive(entries: [string, Buffer][]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const op = (...parts: (number | string | Buffer)[]) => Buffer.concat(parts.map((part) =>
  typeof part === 'number' ? Buffer.from([part]) : typeof part === 'string' ? Buffer.from(part, 'latin1') : part));
const int32 = (value: number) => { const b = Buffer.alloc(4); b.writeInt32LE(value); return op(0x4a, b); };
const text = (value: string) => { const b = Buffer.alloc(4); b.writeUInt32LE(Buffer.byteLength(value)); return op(0x58, b, value); };

/** data.pkl of {'w': tensor} over FloatStorage '0' of `numel` elements, as torch.save pickles it. */
function tensorPickle(numel: number, offset: number, size: number[], stride: number[]): Buffer {
  const tuple = (items: number[]) => op(0x28, ...items.map(int32), 0x74);
  return op(0x80, 2, 0x7d, text('w'), 'ctorch._utils\n_rebuild_tensor_v2\n', 0x28,
    0x28, text('storage'), 'ctorch\nFloatStorage\n', text('0'), text('cpu'), int32(numel), 0x74, 0x51,
    int32(offset), tuple(size), tuple(stride), 0x89, 'ccollections\nOrderedDict\n', 0x29, 0x52, 0x74, 0x52, 0x73, 0x2e);
}

function writeTorchArchive(name: string, pickle: Buffer, storage: Buffer): string {
  const file = path.join(root, name);
  fs.writeFileSync(file, zipArchive([['archive/data.pkl', pickle], ['archive/data/0', storage]]));
  return file;
}

test('hand-made torch.save archives: a valid one loads; cyclic, truncated, odd-sized or negative-stride ones are errors naming the file', () => {
  const floats = Buffer.from(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
  const valid = writeTorchArchive('valid.bin', tensorPickle(6, 1, [2, 2], [2, 1]), floats);
  const loaded = loadTensors(valid);
  assert.equal(loaded.get('w')!.toArray(), [[2, 3], [4, 5]]);
  loaded.get('w')!.dispose();

  const before = liveTensorCount();
  const cases: [string, Buffer, Buffer, RegExp][] = [
    ['cyclic.bin', op(0x80, 2, 0x7d, 0x71, 0, text('a'), 0x68, 0, 0x73, 0x2e), floats, /contains itself \(cyclic pickle\)/],
    ['truncated.bin', tensorPickle(6, 1, [2, 2], [2, 1]).subarray(0, 60), floats, /data\.pkl: (truncated|ends without STOP)/],
    ['odd-size.bin', tensorPickle(6, 0, [1], [1]), floats.subarray(0, 6), /holds 6 bytes, not a multiple of its 4-byte elements/],
    ['negative-stride.bin', tensorPickle(6, 5, [2], [-1]), floats, /strides must be non-negative integers, got \[-1\]/],
    ['past-storage.bin', tensorPickle(6, 4, [2, 2], [2, 1]), floats, /reaches element 7 of storage 0, which holds 6/],
    ['wrong-numel.bin', tensorPickle(8, 0, [2], [1]), floats, /declares 8 elements but holds 6/],
  ];
  for (const [name, pickle, storage, message] of cases) {
    const file = writeTorchArchive(name, pickle, storage);
    assert.throws(() => loadTensors(file), (error: Error) => error.message.startsWith(file) && message.test(error.message), name);
  }
  const cut = path.join(root, 'cut.bin');
  fs.writeFileSync(cut, fs.readFileSync(valid).subarray(0, 100));
  assert.throws(() => loadTensors(cut), (error: Error) => error.message.startsWith(cut), 'a file cut short');
  assert.is(liveTensorCount(), before);
});

test('a safetensors header listing a million tensors is rejected quickly, naming the file', () => {
  const n = 1_000_000;
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`"t${i}":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`);
  const json = Buffer.from(`{${parts.join(',')}}`);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const file = path.join(root, 'million.safetensors');
  fs.writeFileSync(file, Buffer.concat([length, json, Buffer.alloc(n)]));
  const started = Date.now();
  assert.throws(() => readSafetensorsHeader(file), (error: Error) =>
    error.message.startsWith(file) && error.message.includes(`lists ${n} tensors, over the limit of ${MAX_TENSORS_PER_FILE}`));
  assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
});

// ---- item 8: failed loads free what they read -------------------------------------------------

test('a sharded .bin checkpoint with a bad second shard, and an architecture mismatch, leak no tensors', () => {
  const dir = path.join(root, 'sharded');
  const model = new DebertaV2Model(parseDebertaConfig(tinyConfig), { generator: new Generator({ seed: 8 }) });
  try {
    savePretrained(model, dir, { format: 'bin' });
    const weights = [...model.stateDict()];
    const half = Math.ceil(weights.length / 2);
    saveTensors(path.join(dir, 'shard-1.bin'), new Map(weights.slice(0, half)));
    fs.writeFileSync(path.join(dir, 'shard-2.bin'), 'not a zip archive');
    const weightMap = Object.fromEntries(weights.map(([key], i) => [key, i < half ? 'shard-1.bin' : 'shard-2.bin']));
    fs.rmSync(path.join(dir, 'pytorch_model.bin'));
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: weightMap }));
    const before = liveTensorCount();
    assert.throws(() => readCheckpoint(dir), /shard-2\.bin: not a zip archive/);
    assert.is(liveTensorCount(), before, 'the first shard was freed');
    saveTensors(path.join(dir, 'shard-2.bin'), new Map(weights.slice(half)));
    assert.throws(() => loadPretrained(dir, { architecture: 'RobertaModel' }), /RobertaModel is a roberta model/);
    assert.is(liveTensorCount(), before, 'the checkpoint read before the mismatch was found was freed');
    const { model: reloaded } = loadPretrained(dir);
    reloaded.dispose();
    assert.is(liveTensorCount(), before);
  } finally {
    model.dispose();
  }
});

// ---- item 10: layering -----------------------------------------------------------------------

test('models import nothing from io, and io/pretrained names no model type (the registry owns them)', () => {
  const sourceRoot = path.join(__dirname, '..', '..', '..', 'src');
  const modelFiles = (fs.readdirSync(path.join(sourceRoot, 'models'), { recursive: true }) as string[])
    .filter((name) => name.endsWith('.ts')).map((name) => path.join(sourceRoot, 'models', name));
  assert.ok(modelFiles.length > 5, `${modelFiles.length} model files under ${sourceRoot}`);
  for (const file of modelFiles) {
    const imports = [...fs.readFileSync(file, 'utf8').matchAll(/from '([^']+)'/g)].map((match) => match[1]);
    assert.equal(imports.filter((name) => /(^|\/)io(\/|$)/.test(name)), [], file);
  }
  const pretrained = fs.readFileSync(path.join(sourceRoot, 'io', 'pretrained.ts'), 'utf8');
  assert.not.match(pretrained, /'deberta-v2'|'roberta'|from '\.\.\/models\/(deberta|roberta)\//);
});

test.run();
