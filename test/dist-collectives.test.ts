// Process groups across real processes: every collective's values (float32 and int64) with 2 and
// 3 ranks, the store, and a barrier that waits without blocking the event loop.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'child_process';
import { freePort, spawnRanks, outcomes, killAll, WorkerEvent, RankRun } from './helpers/dist-ranks';
import { pythonExecutable } from './helpers/python';

const TIMEOUT_MS = 20_000;

async function runCollectives(worldSize: number): Promise<WorkerEvent[]> {
  const port = await freePort();
  const runs: RankRun[] = spawnRanks('collectives', { worldSize, port, timeoutMs: TIMEOUT_MS });
  try {
    return await outcomes(runs);
  } finally {
    killAll(runs);
  }
}

function sumOver(worldSize: number, f: (r: number) => number): number {
  let total = 0;
  for (let r = 0; r < worldSize; r++) total += f(r);
  return total;
}

function check(worldSize: number, results: WorkerEvent[]): void {
  const ranks = Array.from({ length: worldSize }, (_, r) => r);
  results.forEach((result, rank) => {
    assert.is(result.event, 'result', `rank ${rank}: ${JSON.stringify(result)}`);
    const expectFloat = (key: string, expected: number[]) => {
      const got = result[key] as number[];
      assert.is(got.length, expected.length, key);
      got.forEach((g, i) => assert.ok(Math.abs(g - expected[i]) < 1e-5, `rank ${rank} ${key}[${i}]: ${g} vs ${expected[i]}`));
    };
    const sum = [sumOver(worldSize, (r) => r + 1), sumOver(worldSize, (r) => 10 * (r + 1)), sumOver(worldSize, (r) => -r)];
    expectFloat('allReduce.float32.sum', sum);
    expectFloat('allReduce.float32.avg', sum.map((s) => s / worldSize));
    expectFloat('allReduce.float32.max', [worldSize, 10 * worldSize, 0]);
    expectFloat('allReduce.float32.min', [1, 10, -(worldSize - 1)]);
    // int64 beyond 32 bits: 3e9 * (1 + 2 + ...) survives exactly.
    assert.equal(result['allReduce.int64.sum'], [sum[0], 3_000_000_000 * sum[0], sum[2]]);
    assert.equal(result['allReduce.int64.max'], [worldSize, 3_000_000_000 * worldSize, 0]);
    assert.equal(result['allReduce.int64.min'], [1, 3_000_000_000, -(worldSize - 1)]);
    assert.match(result['allReduce.int64.avg'] as string, /'avg' needs floating tensors/);
    const [a, transposed, matrix, c] = result['allReduce.list'] as number[][];
    const rankSum = sumOver(worldSize, (r) => r);
    const scale = sumOver(worldSize, (r) => r + 1);
    assert.equal(a, [worldSize + rankSum, 2 * worldSize + rankSum]);
    // the transposed view was reduced and written back through the view
    assert.equal(transposed, [1, 3, 2, 4].map((v) => v * scale));
    assert.equal(matrix, [1, 2, 3, 4].map((v) => v * scale));
    assert.equal(c, [5 * worldSize]);
    const root = worldSize - 1;
    assert.equal(result['broadcast'], [[root, root + 0.5], [root * 7, -root]]);
    assert.equal(result['allGather.float32'], ranks.map((r) => [r, 100 + r]));
    assert.equal(result['allGather.int64'], ranks.map((r) => [r, 100 + r]));
    const scattered = [sumOver(worldSize, (r) => 10 * rank + r), sumOver(worldSize, (r) => -(r + 1))];
    expectFloat('reduceScatter.sum', scattered);
    expectFloat('reduceScatter.avg', scattered.map((s) => s / worldSize));
    assert.is(result['store.get'], `hello ${(rank + 1) % worldSize}`);
    assert.is(result['store.final'], sumOver(worldSize, (r) => r + 1));
    // rank 0 joins the barrier 0.8 s late: the others' timers fired while they waited
    if (rank !== 0) assert.ok((result['barrier.ticks'] as number) >= 3, `rank ${rank} ticks: ${String(result['barrier.ticks'])}`);
  });
}

test('2 ranks: all-reduce (sum/avg/max/min), broadcast, all-gather, reduce-scatter, barrier and store give the right values', async () => {
  check(2, await runCollectives(2));
});

test('3 ranks: the same', async () => {
  check(3, await runCollectives(3));
});

test('TORCHELASTIC_USE_AGENT_STORE=True: every rank, rank 0 included, joins the store the launcher hosts (PyTorch\'s TCPStore)', async () => {
  const port = await freePort();
  // torchrun's agent: PyTorch's own (libuv) TCPStore server, alive until its stdin closes.
  const agent = spawn(pythonExecutable(), ['-c', [
    'import sys, datetime',
    'from torch.distributed import TCPStore',
    `store = TCPStore("127.0.0.1", ${port}, is_master=True, wait_for_workers=False, timeout=datetime.timedelta(seconds=30))`,
    'print("listening", flush=True)',
    'sys.stdin.read()',
  ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      agent.stdout!.once('data', () => resolve());
      agent.once('exit', (code) => reject(new Error(`the agent store exited (${String(code)})`)));
    });
    const runs = spawnRanks('join', { worldSize: 2, port, timeoutMs: TIMEOUT_MS, extraEnv: { TORCHELASTIC_USE_AGENT_STORE: 'True' } });
    try {
      for (const result of await outcomes(runs)) assert.equal(result, { event: 'result', joined: true });
    } finally {
      killAll(runs);
    }
  } finally {
    agent.stdin!.end();
    agent.kill();
  }
});

test.run();
