// GradientReducer (libtorch's DDP Reducer) across 2 processes: initial weights broadcast from rank
// 0, gradients averaged over ranks with different inputs, gradient accumulation that communicates
// only on the last micro-batch, buckets launched while backward still runs, no tensor leak, and an
// unused parameter named by finish().
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort, spawnRanks, outcomes, killAll } from './helpers/dist-ranks';

const TIMEOUT_MS = 20_000;

test('2 ranks: averaged gradients equal one process\'s average over both inputs, buckets overlap backward, no leak', async () => {
  const runs = spawnRanks('ddp', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  let results;
  try {
    results = await outcomes(runs);
  } finally {
    killAll(runs);
  }
  for (const [rank, result] of results.entries()) {
    assert.is(result.event, 'result', JSON.stringify(result));
    assert.is(result.initialDifference, 0, `rank ${rank}: weights differ from rank 0's after broadcastParameters`);
    assert.ok((result.gradDifference as number) < 1e-6, `rank ${rank}: gradient differs by ${String(result.gradDifference)}`);
    const buckets = result.buckets as number[][];
    const stats = result.stats as { buckets: number; bucketsLaunchedDuringBackward: number; waitMs: number };
    assert.ok(buckets.length >= 3, `expected several buckets, got ${JSON.stringify(buckets)}`);
    assert.is(stats.buckets, buckets.length);
    // reverse parameter order, every parameter once
    assert.equal(buckets.flat(), Array.from({ length: buckets.flat().length }, (_, i) => buckets.flat().length - 1 - i));
    assert.ok(stats.bucketsLaunchedDuringBackward > 0, JSON.stringify(stats));
    assert.ok(stats.bucketsLaunchedDuringBackward < stats.buckets, 'the last bucket fills with the last gradient');
    // the first micro-batch communicated nothing; the second one bucket each
    assert.is(result.issuedAfterLocal, result.issuedBefore);
    assert.is((result.issuedAfterSync as number) - (result.issuedAfterLocal as number), buckets.length);
    assert.is(result.liveAfter, result.liveBefore, 'tensors leaked over 25 synchronized steps');
    const [a, b] = result.checksums as number[];
    assert.ok(Math.abs(a - b) < 1e-4, `parameters diverged across ranks: ${a} vs ${b}`);
    console.log(`  rank ${rank}: ${buckets.length} buckets, ${stats.bucketsLaunchedDuringBackward} launched during backward, ` +
      `tail wait ${stats.waitMs.toFixed(2)} ms, max grad difference ${String(result.gradDifference)}`);
  }
});

test('a parameter without gradient: finish() names it instead of hanging', async () => {
  const runs = spawnRanks('ddp-unused', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  let results;
  try {
    results = await outcomes(runs);
  } finally {
    killAll(runs);
  }
  for (const result of results) {
    assert.is(result.event, 'result', JSON.stringify(result));
    const error = result.finishError as { code: string; message: string; isDistributedError: boolean };
    assert.ok(error.isDistributedError);
    assert.is(error.code, 'ERR_DIST_UNUSED_PARAMETER');
    assert.match(error.message, /2 parameter\(s\) got no gradient in the synchronized backward \(layer3\.weight, layer3\.bias\)/);
  }
});

test('findUnusedParameters: a layer one rank leaves out counts as a zero gradient there', async () => {
  const runs = spawnRanks('ddp-partly-unused', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  let results;
  try {
    results = await outcomes(runs);
  } finally {
    killAll(runs);
  }
  for (const result of results) {
    assert.is(result.event, 'result', JSON.stringify(result));
    for (const difference of result.gradDifferences as number[]) assert.ok(difference < 1e-6, JSON.stringify(result));
  }
});

for (const signal of ['SIGKILL', 'SIGSTOP'] as const) {
  test(`a peer ${signal === 'SIGKILL' ? 'killed' : 'stopped'} (${signal}) mid-training: backward fails with a DistributedError naming it, not a hang`, async () => {
    const runs = spawnRanks('ddp-loop', { worldSize: 2, port: await freePort(), timeoutMs: 3000 });
    try {
      await runs[1].waitFor('looping');
      runs[1].child.kill(signal);
      const [zero] = await outcomes([runs[0]]);
      assert.is(zero.event, 'error', JSON.stringify(zero));
      assert.ok(zero.isDistributedError, String(zero.message));
      assert.match(zero.message as string, /allReduce\(DDP bucket \d+\) \(collective #\d+ of group '[^']+', rank 0 of 2\) failed after \d+ ms/);
      // Under load the survivor may see the connection drop before the dead peer's heartbeat goes
      // stale: either way the message names rank 1.
      assert.match(zero.message as string, /rank 1\b/, String(zero.message));
      assert.match(zero.collective as string, /^allReduce\(DDP bucket \d+\)$/);
    } finally {
      runs[1].child.kill('SIGCONT');
      killAll(runs);
    }
  });
}

test.run();
