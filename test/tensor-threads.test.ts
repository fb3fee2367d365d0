// The addon in worker threads: each Node-API environment (the main thread, every worker) has its
// own handle, generator and op tables, so concurrent workers cannot corrupt each other, and a
// worker's tensors are freed when it ends.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { zeros, tidy, liveTensorCount, cpuAllocatorStats, emptyCpuCache, Tensor } from '../src';

const tensorModule = path.join(__dirname, '..', 'src', 'tensor');

function runWorker(code: string, workerData: unknown = null): { worker: Worker; done: Promise<{ messages: unknown[]; exitCode: number }> } {
  const worker = new Worker(`const t = require(${JSON.stringify(tensorModule)});\n${code}`, { eval: true, workerData });
  const messages: unknown[] = [];
  const done = new Promise<{ messages: unknown[]; exitCode: number }>((resolve, reject) => {
    worker.on('message', (message) => messages.push(message));
    worker.on('error', reject);
    worker.on('exit', (exitCode) => resolve({ messages, exitCode }));
  });
  return { worker, done };
}

// Creates, computes on and disposes tensors in a tight loop: with process-wide tables, two of
// these at once crashed the process (SIGSEGV or "double free") every time.
const churn = `
  const { parentPort, workerData } = require('worker_threads');
  const start = t.liveTensorCount();
  const g = new t.Generator({ seed: workerData.seed });
  let checksum = 0;
  for (let i = 0; i < workerData.rounds; i++) {
    const held = [];
    for (let j = 0; j < 20; j++) held.push(t.randn([8], { generator: g }));
    checksum += t.tidy(() => {
      const w = t.zeros([8]).requiresGrad_();
      const loss = held.reduce((acc, x) => acc.add(x.mul(w)), t.zeros([8])).square().sum();
      loss.backward();
      const value = w.grad.abs().sum().item();
      w.dispose();
      return value;
    });
    for (let j = held.length - 1; j >= 0; j -= 2) held[j].dispose();
    for (let j = 0; j < held.length; j += 2) held[j].dispose();
  }
  g.dispose();
  parentPort.postMessage({ leaked: t.liveTensorCount() - start, finite: Number.isFinite(checksum) });
`;

test('workers and the main thread create and dispose tensors at the same time without corrupting each other', async () => {
  const mainBefore = liveTensorCount();
  const workers = [1, 2, 3].map((seed) => runWorker(churn, { seed, rounds: 100 }));
  // The main thread churns too while the workers run.
  const mine: Tensor[] = [];
  for (let i = 0; i < 3000; i++) {
    mine.push(tidy(() => zeros([4]).add(i)));
    if (mine.length > 10) mine.shift()!.dispose();
    if (i % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const results = await Promise.all(workers.map((w) => w.done));
  for (const { messages, exitCode } of results) {
    assert.is(exitCode, 0);
    assert.equal(messages, [{ leaked: 0, finite: true }]);
  }
  assert.is(liveTensorCount(), mainBefore + mine.length, 'worker tensors are not counted on the main thread');
  assert.equal(mine[mine.length - 1].toArray(), [2999, 2999, 2999, 2999]);
  for (const tensor of mine) tensor.dispose();
  assert.is(liveTensorCount(), mainBefore);
});

test('a worker that ends holding tensors frees them', async () => {
  emptyCpuCache();
  const { done } = runWorker(`
    const { parentPort } = require('worker_threads');
    const kept = [];
    for (let i = 0; i < 8; i++) kept.push(t.zeros([1024, 1024]));   // 4 MiB each, never disposed
    parentPort.postMessage(t.liveTensorCount());
  `);
  const { messages, exitCode } = await done;
  assert.is(exitCode, 0);
  assert.equal(messages, [8]);
  // The allocator is process-wide: the worker's freed blocks land in its cache.
  const stats = cpuAllocatorStats();
  if (stats !== null) assert.ok(stats.cachedBytes >= 32 << 20, `only ${stats.cachedBytes} bytes came back from the ended worker`);
  emptyCpuCache();
});

test('terminating a worker in the middle of tensor work leaves the process working', async () => {
  const { worker, done } = runWorker(`
    const { parentPort } = require('worker_threads');
    parentPort.postMessage('started');
    for (;;) t.tidy(() => t.randn([64, 64]).matmul(t.randn([64, 64])).sum().item());
  `);
  await new Promise<void>((resolve) => worker.once('message', () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 50));
  await worker.terminate();
  await done;
  assert.is(tidy(() => zeros([3]).add(2).sum().item()), 6);
});

test.run();
