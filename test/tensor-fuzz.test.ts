// Seeded fuzzing of the whole tensor API: every Tensor method, getter and setter, every function
// of src/tensor (factories, nn.functional, foreach, autograd, runtime) and Generator, called with
// random kinds of arguments (tensors of random shapes and dtypes, disposed tensors, numbers
// including NaN, infinities and huge values, strings, arrays, objects, bigints...). No call may
// kill the process, every failure must be a JavaScript Error, and no tensor may be left behind.
// FUZZ_SEED=n picks another seed; FUZZ_TRACE=1 prints each call before making it (to find the
// call that killed a run).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as functions from '../src/tensor/functions';
import { Tensor, Generator, tidy, dispose, liveTensorCount, aten, isGradEnabled } from '../src';
import type { DType } from '../src';

const seed = Number(process.env.FUZZ_SEED ?? 20240613);
const trace = process.env.FUZZ_TRACE === '1';
const calls = 10_000;

function mulberry32(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = mulberry32(seed);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
const count = (max: number) => Math.floor(random() * (max + 1));

const dtypes: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];
// Sizes stay small so that no product of them allocates much; huge values only come alone and
// must be refused (or be views), never allocated.
const numbers = [-2, -1, 0, 1, 2, 3, 4, 0.5, -0.5, 1e-3, NaN, Infinity, -Infinity, 1e15, 2 ** 53, -1e300];
const strings = ['cpu', 'cuda', 'cuda:1', 'float32', 'int64', 'bool', 'none', 'tanh', 'trunc', 'floor', 'mean', 'sum',
  'ij,jk->ik', 'i,i->', '', 'xyz'];

interface Pool {
  tensors: Tensor[];
  disposed: Tensor;
  generator: Generator;
}

function randomTensor(): Tensor {
  const shape = Array.from({ length: count(3) }, () => count(4));
  const dtype = pick(dtypes);
  const floating = dtype.startsWith('float') || dtype === 'bfloat16';
  const tensor = tidy(() => functions.rand(shape).mul(6).sub(3).to(dtype));
  if (floating && random() < 0.3) tensor.requiresGrad_();
  return tensor;
}

function makePool(): Pool {
  const tensors = Array.from({ length: 6 }, randomTensor);
  const disposed = functions.zeros([2]);
  disposed.dispose();
  return { tensors, disposed, generator: new Generator({ seed: count(1000) }) };
}

function randomArgument(pool: Pool, depth = 0): unknown {
  switch (count(13)) {
    case 0: case 1: case 2: return pick(pool.tensors);
    case 3: return pool.disposed;
    case 4: case 5: return pick(numbers);
    case 6: return random() < 0.5;
    case 7: return pick(strings);
    case 8: return random() < 0.5 ? null : undefined;
    case 9: return Array.from({ length: count(3) }, () => pick(numbers.slice(0, 7)));
    case 10: return depth > 0 ? pick(pool.tensors) : Array.from({ length: count(3) }, () => randomArgument(pool, depth + 1));
    case 11: return pick([{}, { dtype: pick(dtypes) }, { device: pick(strings) }, { dtype: pick(strings), requiresGrad: true }, { dim: 0 }]);
    case 12: return pick([3n, -1n, 2n ** 70n, pool.generator, new Float32Array(4), new Uint8Array(3)]);
    default: return () => pick(pool.tensors);
  }
}

type Target = { name: string; call: (pool: Pool, args: unknown[]) => unknown };

function targets(): Target[] {
  const out: Target[] = [];
  for (const name of Object.getOwnPropertyNames(Tensor.prototype)) {
    if (name === 'constructor') continue;
    const descriptor = Object.getOwnPropertyDescriptor(Tensor.prototype, name)!;
    if (typeof descriptor.value === 'function') {
      out.push({ name: `Tensor.${name}`, call: (pool, args) => (descriptor.value as (...a: unknown[]) => unknown).apply(pick(pool.tensors), args) });
    }
    if (descriptor.get) out.push({ name: `get Tensor.${name}`, call: (pool) => descriptor.get!.call(pick(pool.tensors)) });
    if (descriptor.set) out.push({ name: `set Tensor.${name}`, call: (pool, args) => descriptor.set!.call(pick(pool.tensors), args[0]) });
  }
  // setNumThreads is left out: a valid random count would only slow the rest down (its checks
  // are tested in tensor-native).
  const skipped = new Set(['setNumThreads']);
  for (const [name, value] of Object.entries(functions)) {
    if (skipped.has(name)) continue;
    if (typeof value === 'function') {
      out.push({ name, call: (_pool, args) => (value as (...a: unknown[]) => unknown)(...args) });
    } else if (value !== null && typeof value === 'object') {
      for (const [method, fn] of Object.entries(value)) {
        if (typeof fn === 'function') out.push({ name: `${name}.${method}`, call: (_pool, args) => (fn as (...a: unknown[]) => unknown)(...args) });
      }
    }
  }
  out.push({ name: 'tidy', call: (_pool, args) => tidy(args[0] as () => unknown) });
  out.push({ name: 'dispose', call: (_pool, args) => dispose(args[0]) });
  out.push({ name: 'aten', call: (_pool, args) => aten(String(args[0])).schema });
  out.push({ name: 'new Generator', call: (_pool, args) => new Generator(args[0] as object).dispose() });
  for (const name of Object.getOwnPropertyNames(Generator.prototype)) {
    if (name === 'constructor' || name === 'handle') continue;
    const fn = (Generator.prototype as unknown as Record<string, unknown>)[name];
    if (typeof fn === 'function') out.push({ name: `Generator.${name}`, call: (pool, args) => fn.apply(pool.generator, args) });
  }
  return out;
}

function describe(value: unknown): string {
  if (value instanceof Tensor) return value.isDisposed ? 'Tensor(disposed)' : `Tensor(${value.shape}, ${value.dtype})`;
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'function';
  if (value instanceof Generator) return 'Generator';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  return JSON.stringify(value) ?? String(value);
}

test(`${calls} random calls over the whole tensor API (seed ${seed}): only JavaScript errors, no leaks`, () => {
  const all = targets();
  assert.ok(all.length > 200, `only ${all.length} entry points found`);
  const before = liveTensorCount();
  const notErrors: string[] = [];
  let failures = 0;
  const called = new Set<string>();
  let pool = makePool();
  const started = Date.now();
  for (let i = 0; i < calls; i++) {
    if (i % 50 === 0) {
      dispose(pool.tensors);
      pool.generator.dispose();
      pool = makePool();
    }
    const target = pick(all);
    const args = Array.from({ length: count(4) }, () => randomArgument(pool));
    if (trace) process.stdout.write(`${i} ${target.name}(${args.map(describe).join(', ')})\n`);
    called.add(target.name);
    try {
      tidy(() => { target.call(pool, args); });
    } catch (error) {
      failures++;
      if (!(error instanceof Error)) notErrors.push(`${target.name}: threw ${String(error)}`);
    }
  }
  dispose(pool.tensors);
  pool.generator.dispose();
  const seconds = (Date.now() - started) / 1000;
  assert.equal(notErrors, [], 'every failure is a JavaScript Error');
  assert.is(liveTensorCount(), before, 'tensors were left behind');
  assert.ok(isGradEnabled(), 'grad mode is restored');
  assert.ok(called.size > all.length * 0.9, `only ${called.size} of ${all.length} entry points were called`);
  assert.ok(failures > calls / 10 && failures < calls, `${failures} of ${calls} calls failed`);
  if (seconds > 5) console.log(`fuzz: ${calls} calls took ${seconds.toFixed(1)} s`);
});

test.run();
