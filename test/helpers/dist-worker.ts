// One rank of a distributed test, spawned by test/helpers/dist-ranks.ts:
//   node build/ts/test/helpers/dist-worker.js SCENARIO   (RANK, WORLD_SIZE, MASTER_PORT, DIST_TIMEOUT_MS set)
// It prints one JSON object per line: {"event": "ready"} after the rendezvous, {"event": "result", ...}
// or {"event": "error", message, code, ...} at the end. The checks happen in the test files.
import {
  Tensor, tensor, zeros, ones, randn, tidy, liveTensorCount, manualSeed, setNumThreads, grad as autogradGrad, noGrad,
} from '../../src';
import {
  initProcessGroup, processGroupOptionsFromEnv, ProcessGroup, GradientReducer, broadcastParameters, DistributedError,
  toDistributedError,
} from '../../src/dist';

function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function errorFields(error: unknown): Record<string, unknown> {
  const e = toDistributedError(error);
  if (e instanceof DistributedError) {
    return { message: e.message, code: e.code, collective: e.collective, notJoinedRanks: e.notJoinedRanks,
      unresponsiveRanks: e.unresponsiveRanks, storeDown: e.storeDown, isDistributedError: true };
  }
  return { message: e instanceof Error ? e.message : String(e), isDistributedError: false };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const values = (t: Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);

type Scenario = (pg: ProcessGroup, timeoutMs: number) => Promise<Record<string, unknown>>;

// Every collective with rank-dependent inputs; the test compares with the values it expects.
const collectives: Scenario = async (pg) => {
  const r = pg.rank;
  const out: Record<string, unknown> = {};
  for (const op of ['sum', 'avg', 'max', 'min'] as const) {
    const t = tensor([r + 1, 10 * (r + 1), -r], { dtype: 'float32' });
    await pg.allReduce([t], op);
    out[`allReduce.float32.${op}`] = values(t);
    t.dispose();
  }
  for (const op of ['sum', 'max', 'min'] as const) {
    const t = tensor([r + 1, 3_000_000_000 * (r + 1), -r], { dtype: 'int64' });
    await pg.allReduce([t], op);
    out[`allReduce.int64.${op}`] = values(t);
    t.dispose();
  }
  // A list of mixed dtypes, one of them a non-contiguous view: coalesced per dtype, copied back.
  {
    const a = tensor([1, 2], { dtype: 'float32' }).add(r);
    const matrix = tensor([[1, 2], [3, 4]], { dtype: 'float32' }).mul(r + 1);
    const transposed = matrix.t();
    const c = tensor([5], { dtype: 'int64' });
    await pg.allReduce([a, transposed, c], 'sum');
    out['allReduce.list'] = [values(a), values(transposed.contiguous()), values(matrix), values(c)];
  }
  try {
    await pg.allReduce([tensor([1], { dtype: 'int64' })], 'avg');
    out['allReduce.int64.avg'] = 'no error';
  } catch (error) {
    out['allReduce.int64.avg'] = (error as Error).message;
  }
  {
    const f = tensor([r, r + 0.5], { dtype: 'float32' });
    const i = tensor([r * 7, -r], { dtype: 'int64' });
    await pg.broadcast([f, i], pg.worldSize - 1);
    out['broadcast'] = [values(f), values(i)];
  }
  for (const dtype of ['float32', 'int64'] as const) {
    const outputs = Array.from({ length: pg.worldSize }, () => zeros([2], { dtype }));
    await pg.allGather(outputs, tensor([r, 100 + r], { dtype }));
    out[`allGather.${dtype}`] = outputs.map(values);
  }
  for (const op of ['sum', 'avg'] as const) {
    const output = zeros([2]);
    const inputs = Array.from({ length: pg.worldSize }, (_, k) => tensor([10 * k + r, -(r + 1)], { dtype: 'float32' }));
    await pg.reduceScatter(output, inputs, op);
    out[`reduceScatter.${op}`] = values(output);
  }
  // The event loop keeps turning while a barrier waits for the last rank (rank 0 arrives late).
  if (r === 0) await sleep(800);
  let ticks = 0;
  const ticker = setInterval(() => { ticks++; }, 10);
  await pg.barrier();
  clearInterval(ticker);
  out['barrier.ticks'] = ticks;
  await pg.store.set(`from-${r}`, `hello ${r}`);
  out['store.get'] = await pg.store.get(`from-${(r + 1) % pg.worldSize}`);
  out['store.add'] = await pg.store.add('counter', r + 1);
  await pg.barrier();
  out['store.final'] = await pg.store.add('counter', 0);
  // rank 0 hosts the store: nobody may still be using it when rank 0 exits
  await pg.barrier();
  return out;
};

// Rank 1 never joins rank 0's barrier (it stays alive, idle, until killed).
const neverJoins: Scenario = async (pg, timeoutMs) => {
  if (pg.rank !== 0) {
    emit('idle');
    await sleep(timeoutMs * 10);
    return {};
  }
  await pg.barrier();
  return { unexpected: 'the barrier completed' };
};

// All ranks run all-reduces in a loop until one fails; the test kills or stops a rank meanwhile.
const loop: Scenario = async (pg) => {
  const t = ones([1024]);
  for (let i = 0; ; i++) {
    await pg.allReduce([t], 'avg');
    if (i === 3) emit('looping');
    await sleep(20);
  }
};

const join: Scenario = async (pg) => {
  await pg.barrier();
  return { joined: true };
};

// ---- DDP ------------------------------------------------------------------------------------

const WIDTH = 24;
const LAYERS = 4;

function makeParameters(seed: number): Tensor[] {
  manualSeed(seed);
  const params: Tensor[] = [];
  for (let l = 0; l < LAYERS; l++) {
    params.push(randn([WIDTH, WIDTH]).mul(0.3).requiresGrad_(true));
    params.push(randn([WIDTH]).mul(0.1).requiresGrad_(true));
  }
  return params;
}

function lossOf(params: Tensor[], x: Tensor, skipLast = false): Tensor {
  return tidy(() => {
    let h = x;
    const layers = skipLast ? LAYERS - 1 : LAYERS;
    for (let l = 0; l < layers; l++) h = h.matmul(params[2 * l].t()).add(params[2 * l + 1]).tanh();
    return h.square().mean();
  });
}

function inputFor(rank: number, micro: number): Tensor {
  manualSeed(1000 + 10 * rank + micro);
  return randn([6, WIDTH]);
}

function maxDifference(a: Tensor, b: Tensor): number {
  return tidy(() => a.sub(b).abs().max().item() as number);
}

const ddp: Scenario = async (pg) => {
  const r = pg.rank;
  // Different seeds per rank: broadcastParameters must make them equal to rank 0's.
  const params = makeParameters(r === 0 ? 7 : 7 + 100 * r);
  await broadcastParameters(pg, params);
  const reference = makeParameters(7);
  const initialDifference = Math.max(...params.map((p, i) => maxDifference(p, reference[i])));
  const reducer = new GradientReducer(pg, params, { bucketCapMb: 1.5 / 1024, names: params.map((_, i) => `p${i}`) });
  const buckets = reducer.bucketAssignment;

  // Two micro-batches: the first accumulates locally, the second is reduced.
  const issuedBefore = (pg as unknown as { progress: { issued: number } }).progress.issued;
  const l0 = lossOf(params, inputFor(r, 0)).div(2);
  l0.backward();
  l0.dispose();
  const issuedAfterLocal = (pg as unknown as { progress: { issued: number } }).progress.issued;
  reducer.prepareForBackward();
  const l1 = lossOf(params, inputFor(r, 1)).div(2);
  l1.backward();
  l1.dispose();
  await reducer.finish();
  const issuedAfterSync = (pg as unknown as { progress: { issued: number } }).progress.issued;

  // The same average, computed in this process over every rank's inputs.
  const expected = tidy(() => {
    const sums = reference.map((p) => zeros(p.shape));
    for (let rank = 0; rank < pg.worldSize; rank++) {
      for (let micro = 0; micro < 2; micro++) {
        const loss = lossOf(reference, inputFor(rank, micro)).div(2);
        autogradGrad(loss, reference).forEach((g, i) => sums[i].add_(g!));
      }
    }
    return sums.map((s) => s.div(pg.worldSize));
  });
  const gradDifference = Math.max(...params.map((p, i) => tidy(() => maxDifference(p.grad!, expected[i]))));
  const stats = reducer.stats;

  // Many steps: the tensor count must not grow.
  const step = async (): Promise<void> => {
    for (const p of params) p.grad = null;
    reducer.prepareForBackward();
    const x = inputFor(r, 0);
    const loss = lossOf(params, x);
    x.dispose();
    loss.backward();
    loss.dispose();
    await reducer.finish();
    noGrad(() => tidy(() => { for (const p of params) p.sub_(p.grad!.mul(0.01)); }));
  };
  await step();
  const liveBefore = liveTensorCount();
  for (let i = 0; i < 25; i++) await step();
  const liveAfter = liveTensorCount();
  // Parameters must still agree across ranks after the updates.
  const checksum = tidy(() => params.reduce((s, p) => s + (p.sum().item() as number), 0));
  const gathered = Array.from({ length: pg.worldSize }, () => zeros([1]));
  await pg.allGather(gathered, tensor([checksum], { dtype: 'float32' }));
  reducer.destroy();
  return {
    initialDifference, gradDifference, buckets, stats, issuedBefore, issuedAfterLocal, issuedAfterSync,
    liveBefore, liveAfter, checksums: gathered.map((g) => values(g)[0]),
  };
};

// The last layer takes no part in the loss on any rank: finish() names its parameters.
const ddpUnused: Scenario = async (pg) => {
  const params = makeParameters(7);
  const reducer = new GradientReducer(pg, params, { names: params.map((_, i) => `layer${i >> 1}.${i % 2 ? 'bias' : 'weight'}`) });
  reducer.prepareForBackward();
  const loss = lossOf(params, inputFor(pg.rank, 0), true);
  loss.backward();
  try {
    await reducer.finish();
    return { unexpected: 'finish() succeeded' };
  } catch (error) {
    return { finishError: errorFields(error) };
  }
};

// findUnusedParameters: rank 1 leaves the last layer out of its loss, rank 0 uses it.
const ddpPartlyUnused: Scenario = async (pg) => {
  const params = makeParameters(7);
  const reducer = new GradientReducer(pg, params, { bucketCapMb: 1.5 / 1024, findUnusedParameters: true });
  const skips = (rank: number) => rank === 1;
  const results: number[] = [];
  for (let step = 0; step < 2; step++) {
    for (const p of params) p.grad = null;
    const x = inputFor(pg.rank, step);
    const loss = lossOf(params, x, skips(pg.rank));
    x.dispose();
    reducer.prepareForBackward(loss);
    loss.backward();
    loss.dispose();
    await reducer.finish();
    const reference = makeParameters(7);
    const expected = tidy(() => {
      const sums = reference.map((p) => zeros(p.shape));
      for (let rank = 0; rank < pg.worldSize; rank++) {
        const used = skips(rank) ? reference.slice(0, -2) : reference;
        const grads = autogradGrad(lossOf(reference, inputFor(rank, step), skips(rank)), used);
        grads.forEach((g, i) => sums[i].add_(g!));
      }
      return sums.map((s) => s.div(pg.worldSize));
    });
    results.push(Math.max(...params.map((p, i) => tidy(() => (p.grad ? maxDifference(p.grad, expected[i]) : 1e9)))));
  }
  return { gradDifferences: results, stats: reducer.stats };
};

// Training steps in a loop until one fails; the test kills or stops a rank meanwhile. The
// failure surfaces from backward(), which waits for the last buckets as PyTorch's does.
const ddpLoop: Scenario = async (pg) => {
  const params = makeParameters(7);
  const reducer = new GradientReducer(pg, params, { bucketCapMb: 1.5 / 1024 });
  const x = inputFor(pg.rank, 0);
  for (let i = 0; ; i++) {
    for (const p of params) p.grad = null;
    reducer.prepareForBackward();
    const loss = lossOf(params, x);
    try {
      loss.backward();
    } finally {
      loss.dispose();
    }
    await reducer.finish();
    if (i === 3) emit('looping');
    await sleep(20);
  }
};

// Latency and throughput of allReduce on this machine.
const bench: Scenario = async (pg) => {
  const result: Record<string, unknown> = {};
  for (const numel of [256, 262_144, 4_194_304]) {
    const t = ones([numel]);
    const repeats = numel <= 256 ? 200 : numel <= 262_144 ? 30 : 6;
    for (let i = 0; i < 3; i++) await pg.allReduce([t]);
    await pg.barrier();
    const started = process.hrtime.bigint();
    for (let i = 0; i < repeats; i++) await pg.allReduce([t]);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    result[`${numel * 4}B`] = { msPerCall: (seconds * 1000) / repeats, MBps: (numel * 4 * repeats) / seconds / 1e6 };
  }
  return result;
};

// A step's time with the Reducer (buckets overlap backward) against backward followed by one
// all-reduce of every gradient: `node build/ts/test/helpers/dist-worker.js ddp-bench` per rank.
const ddpBench: Scenario = async (pg) => {
  const width = 512;
  const layers = 8;
  manualSeed(3);
  const params: Tensor[] = [];
  for (let l = 0; l < layers; l++) params.push(randn([width, width]).mul(0.05).requiresGrad_(true));
  const x = randn([256, width]);
  const forward = () => tidy(() => params.reduce((h, w) => h.matmul(w).tanh(), x).square().mean());
  const reducer = new GradientReducer(pg, params, { bucketCapMb: 2 });
  const time = async (step: () => Promise<void>): Promise<number> => {
    for (let i = 0; i < 2; i++) await step();
    await pg.barrier();
    const started = process.hrtime.bigint();
    const repeats = 8;
    for (let i = 0; i < repeats; i++) await step();
    return Number(process.hrtime.bigint() - started) / 1e6 / repeats;
  };
  const backwardOnly = await time(async () => {
    for (const p of params) p.grad = null;
    const loss = forward();
    loss.backward();
    loss.dispose();
  });
  const thenAllReduce = await time(async () => {
    for (const p of params) p.grad = null;
    const loss = forward();
    loss.backward();
    loss.dispose();
    const grads = params.map((p) => p.grad!);
    await pg.allReduce(grads, 'avg');
    for (const g of grads) g.dispose();
  });
  const withReducer = await time(async () => {
    for (const p of params) p.grad = null;
    reducer.prepareForBackward();
    const loss = forward();
    loss.backward();
    loss.dispose();
    await reducer.finish();
  });
  return { gradientMB: (layers * width * width * 4) / 1e6, backwardOnly, thenAllReduce, withReducer, stats: reducer.stats };
};

const scenarios: Record<string, Scenario> = { collectives, 'never-joins': neverJoins, loop, join, ddp, 'ddp-unused': ddpUnused, 'ddp-loop': ddpLoop, 'ddp-partly-unused': ddpPartlyUnused, 'ddp-bench': ddpBench, bench };

async function main(): Promise<void> {
  setNumThreads(1);
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`unknown scenario '${name}'`);
  const timeoutMs = Number(process.env.DIST_TIMEOUT_MS ?? '10000');
  let pg: ProcessGroup;
  const started = Date.now();
  try {
    pg = await initProcessGroup(processGroupOptionsFromEnv(process.env, timeoutMs));
  } catch (error) {
    emit('error', { phase: 'init', elapsedMs: Date.now() - started, ...errorFields(error) });
    process.exit(1);
  }
  emit('ready', { rank: pg.rank, worldSize: pg.worldSize });
  const scenarioStarted = Date.now();
  try {
    const result = await scenario(pg, timeoutMs);
    emit('result', result);
    pg.destroy();
    process.exit(0);
  } catch (error) {
    emit('error', { phase: 'run', elapsedMs: Date.now() - scenarioStarted, ...errorFields(error) });
    process.exit(1);
  }
}

void main();
