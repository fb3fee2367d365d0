// Memory the addon holds outside JavaScript's view: tensors that leave every tidy() scope are
// reported to V8 (so dropping them lets the garbage collector's safety net free them), and the
// caching CPU allocator shares blocks between near sizes, evicts under its cap, retries after
// emptying itself, and sizes its default cap per process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { zeros, empty, tidy, liveTensorCount, cpuAllocatorStats, emptyCpuCache } from '../src';

const tensorModule = path.join(__dirname, '..', 'src', 'tensor');

// A child process with only the allocator settings given (the parent's are left out).
function runNode(code: string, env: Record<string, string> = {}) {
  const base = { ...process.env };
  delete base.CAMEMBERTA_CPU_CACHE_MB;
  delete base.LOCAL_WORLD_SIZE;
  delete base.CAMEMBERTA_CPU_ALLOCATOR;
  const result = spawnSync(process.execPath, ['-e', `const t = require(${JSON.stringify(tensorModule)});\n${code}`],
    { encoding: 'utf8', env: { ...base, ...env } });
  return { ...result, last: () => JSON.parse(result.stdout.trim().split('\n').pop() || 'null') };
}

test('tensors returned from the outermost tidy() and then dropped are collected: memory stays bounded', async () => {
  // 200 results of 2 MiB (400 MiB in all). They were never reported to V8 as external memory, so
  // nothing made it collect them: all 200 stayed alive (RSS grew without bound).
  const before = liveTensorCount();
  let mostAlive = 0;
  for (let i = 0; i < 200; i++) {
    tidy(() => zeros([512 * 1024]).add(1));
    if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve)); // finalizers run from the event loop
    mostAlive = Math.max(mostAlive, liveTensorCount() - before);
  }
  assert.ok(mostAlive < 120, `${mostAlive} dropped 2 MiB results were alive at once`);
});

test('near sizes share cached blocks', () => {
  emptyCpuCache();
  // 4.25 MiB and 4 MiB: different 256 KiB multiples, one size class apart.
  empty([(4 << 20) / 4 + 65536]).dispose();
  const before = cpuAllocatorStats()!;
  empty([(4 << 20) / 4]).dispose();
  const after = cpuAllocatorStats()!;
  assert.is(after.hits, before.hits + 1, 'the 4 MiB allocation reused the 4.25 MiB block');
  emptyCpuCache();
});

test('a full cache evicts its oldest blocks, so new sizes are still served from it', () => {
  const result = runNode(`
    const old = [];
    for (let i = 0; i < 12; i++) old.push(t.empty([5 * 1024 * 1024 / 4]));   // 60 MiB of one size
    for (const x of old) x.dispose();                                         // fills the 64 MiB cache
    const start = t.cpuAllocatorStats();
    for (let i = 0; i < 20; i++) t.empty([10 * 1024 * 1024 / 4]).dispose();   // then another size, over and over
    const end = t.cpuAllocatorStats();
    console.log(JSON.stringify({ cap: end.capBytes, cached: end.cachedBytes, hits: end.hits - start.hits, evictions: end.evictions }));
  `, { CAMEMBERTA_CPU_CACHE_MB: '64' });
  assert.is(result.status, 0, result.stderr.slice(-600));
  const { cap, cached, hits, evictions } = result.last();
  assert.is(cap, 64 << 20);
  assert.ok(cached <= cap, `${cached} bytes cached over a cap of ${cap}`);
  assert.ok(hits >= 19, `only ${hits} of 20 allocations of the new size came from the cache`);
  assert.ok(evictions >= 1);
});

test('an allocation the system refuses empties the cache and is retried before failing', () => {
  // The address-space limit leaves 0.7 GB free: 1.2 GB fit only once the 1 GB cached block is
  // gone, with 0.5 GB to spare for what other threads map meanwhile (one malloc arena each at most).
  const result = runNode(`
    const fs = require('fs');
    const vmSize = () => Number(/VmSize:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    const { execFileSync } = require('child_process');
    execFileSync('prlimit', ['--version']);   // the first spawn maps memory of its own: before measuring
    t.empty([1e9 / 4]).dispose();
    const limit = vmSize() + 700e6;
    execFileSync('prlimit', ['--pid', String(process.pid), '--as=' + limit]);
    let ok = false, message = '';
    try { const big = t.empty([1.2e9 / 4]); ok = big.numel() === 300e6; big.dispose(); } catch (error) { message = error.message; }
    const stats = t.cpuAllocatorStats();
    console.log(JSON.stringify({ ok, message, emptiedToRetry: stats.emptiedToRetry }));
  `, { CAMEMBERTA_CPU_CACHE_MB: '4096', MALLOC_ARENA_MAX: '1' });
  assert.is(result.status, 0, result.stderr.slice(-600));
  const { ok, message, emptiedToRetry } = result.last();
  assert.ok(ok, `the 1.2 GB allocation failed: ${message}`);
  assert.is(emptiedToRetry, 1);
});

test('the default cap is shared among the processes of one host (LOCAL_WORLD_SIZE); settings are checked', () => {
  const read = (env: Record<string, string>) => runNode('console.log(JSON.stringify(t.cpuAllocatorStats().capBytes))', env);
  const four = read({ LOCAL_WORLD_SIZE: '4' });
  assert.is(four.status, 0, four.stderr.slice(-600));
  const capOfFour = four.last() as number;
  assert.ok(capOfFour > 0 && capOfFour <= os.totalmem() / 8 / 4, `a cap of ${capOfFour} bytes for each of 4 ranks`);
  const one = cpuAllocatorStats();
  if (one !== null && !process.env.CAMEMBERTA_CPU_CACHE_MB && !process.env.LOCAL_WORLD_SIZE) {
    assert.ok(one.capBytes >= capOfFour && one.capBytes <= Math.min(4 * 2 ** 30, os.totalmem() / 8));
  }
  const bad = read({ LOCAL_WORLD_SIZE: '0' });
  assert.is.not(bad.status, 0);
  assert.match(bad.stderr, /LOCAL_WORLD_SIZE='0' is not a positive integer/);
  const badCap = read({ CAMEMBERTA_CPU_CACHE_MB: '4GB' });
  assert.match(badCap.stderr, /CAMEMBERTA_CPU_CACHE_MB='4GB' is not a non-negative integer/);
});

test.run();
