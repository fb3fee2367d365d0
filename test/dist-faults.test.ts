// Faults end in a DistributedError within the timeout, never in a hang: a rank that never joins a
// collective, a peer killed (SIGKILL) or stopped (SIGSTOP) mid-training, a port already in use,
// an unreachable master, and ranks that do not add up to the world size.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as net from 'net';
import { freePort, spawnRanks, outcomes, killAll, RankRun } from './helpers/dist-ranks';
import { initProcessGroup, DistributedError } from '../src/dist';

const TIMEOUT_MS = 2000;

async function withRuns<T>(runs: RankRun[], body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } finally {
    for (const run of runs) if (run.child.signalCode === null && run.child.exitCode === null) run.child.kill('SIGCONT');
    killAll(runs);
  }
}

async function rejection(promise: Promise<unknown>): Promise<DistributedError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, DistributedError, String(error));
    return error as DistributedError;
  }
  throw new assert.Assertion({ message: 'expected a rejection', generated: false, operator: 'rejects', expects: 'error', actual: 'resolved' });
}

test('a rank that never joins a barrier: the error names the collective and the missing rank', async () => {
  const runs = spawnRanks('never-joins', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  await withRuns(runs, async () => {
    await runs[1].waitFor('idle');
    const [zero] = await outcomes([runs[0]]);
    assert.is(zero.event, 'error', JSON.stringify(zero));
    assert.is(zero.code, 'ERR_DIST_COLLECTIVE');
    assert.is(zero.collective, 'barrier');
    assert.equal(zero.notJoinedRanks, [1]);
    assert.match(zero.message as string, /barrier \(collective #1 of group '[^']+', rank 0 of 2\) failed after \d+ ms/);
    assert.match(zero.message as string, /rank 1 is alive but has not joined it/);
  });
});

test('a peer killed with SIGKILL mid-training: the survivor fails with a DistributedError, not a hang', async () => {
  const runs = spawnRanks('loop', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  await withRuns(runs, async () => {
    await runs[1].waitFor('looping');
    runs[1].child.kill('SIGKILL');
    const [zero] = await outcomes([runs[0]]);
    assert.is(zero.event, 'error', JSON.stringify(zero));
    assert.is(zero.code, 'ERR_DIST_COLLECTIVE');
    assert.is(zero.collective, 'allReduce');
    assert.match(zero.message as string, /allReduce \(collective #\d+ of group/);
    console.log(`  SIGKILL: ${String(zero.message)} (after ${String(zero.elapsedMs)} ms of looping)`);
  });
});

test('a peer stopped with SIGSTOP: the survivor times out and names the silent rank', async () => {
  const runs = spawnRanks('loop', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  await withRuns(runs, async () => {
    await runs[1].waitFor('looping');
    runs[1].child.kill('SIGSTOP');
    const [zero] = await outcomes([runs[0]]);
    assert.is(zero.event, 'error', JSON.stringify(zero));
    assert.is(zero.code, 'ERR_DIST_COLLECTIVE');
    assert.equal(zero.unresponsiveRanks, [1]);
    assert.match(zero.message as string, /rank 1 has sent no heartbeat for \d+ ms/);
  });
});

test('rank 0 whose store host is stopped: the client ranks say the store is gone', async () => {
  const runs = spawnRanks('loop', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS });
  await withRuns(runs, async () => {
    await runs[0].waitFor('looping');
    runs[0].child.kill('SIGSTOP');
    const [one] = await outcomes([runs[1]]);
    assert.is(one.event, 'error', JSON.stringify(one));
    assert.is(one.code, 'ERR_DIST_COLLECTIVE');
    assert.ok(one.storeDown || (one.unresponsiveRanks as number[]).includes(0), String(one.message));
  });
});

test('a port already in use is a clear error', async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const error = await rejection(initProcessGroup({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: TIMEOUT_MS }));
    assert.is(error.code, 'EADDRINUSE');
    assert.match(error.message, new RegExp(`cannot host the store on 127\\.0\\.0\\.1:${port}: the port is already in use`));
  } finally {
    server.close();
  }
});

test('an unreachable master is a clear error within the timeout', async () => {
  const port = await freePort();
  const error = await rejection(initProcessGroup({ rank: 1, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1500 }));
  assert.is(error.code, 'ERR_DIST_UNREACHABLE');
  assert.match(error.message, new RegExp(`rank 1 could not reach the store at 127\\.0\\.0\\.1:${port} within 1500 ms`));
});

test('world size 3 but only 2 ranks join: both name the missing rank', async () => {
  const runs = spawnRanks('join', { worldSize: 3, ranks: [0, 1], port: await freePort(), timeoutMs: TIMEOUT_MS });
  await withRuns(runs, async () => {
    for (const result of await outcomes(runs)) {
      assert.is(result.event, 'error', JSON.stringify(result));
      assert.is(result.code, 'ERR_DIST_JOIN_TIMEOUT');
      assert.match(result.message as string, /world size is 3 but only 2 process\(es\) joined .* \(joined: rank 0, 1; missing: rank 2\)/);
    }
  });
});

test('ranks started with different world sizes: the later one names both', async () => {
  const runs = spawnRanks('join', { worldSize: 2, port: await freePort(), timeoutMs: TIMEOUT_MS, worldSizeOf: (r) => (r === 0 ? 2 : 3) });
  await withRuns(runs, async () => {
    const results = await outcomes(runs);
    const mismatch = results.find((r) => r.code === 'ERR_DIST_WORLD_SIZE');
    assert.ok(mismatch, JSON.stringify(results));
    assert.match(mismatch!.message as string, /world size mismatch: rank \d was started with world size \d, rank \d with \d/);
    // the other rank cannot complete its rendezvous either
    for (const result of results) assert.is(result.event, 'error');
  });
});

test('two processes given the same rank: the second is told so', async () => {
  const runs = spawnRanks('join', { worldSize: 3, ranks: [0, 1, 1], port: await freePort(), timeoutMs: TIMEOUT_MS });
  await withRuns(runs, async () => {
    const results = await outcomes(runs);
    const duplicates = results.filter((r) => r.code === 'ERR_DIST_DUPLICATE_RANK');
    assert.is(duplicates.length, 1, JSON.stringify(results));
    assert.match(duplicates[0].message as string, /rank 1 joined twice on 127\.0\.0\.1:\d+/);
    for (const result of results) assert.is(result.event, 'error');
  });
});

test('bad options are refused before any connection', async () => {
  const error = await rejection(initProcessGroup({ rank: 2, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 1, timeoutMs: 100 }));
  assert.is(error.code, 'ERR_DIST_OPTIONS');
  assert.match(error.message, /rank must be an integer in \[0, 1\], got 2/);
});

test.run();
