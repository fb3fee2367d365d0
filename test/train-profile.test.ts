// train.js --profile N: the first N steps' time by phase, then by operator (libtorch's profiler),
// printed once and written to OUTPUT_DIR/profile.json, the run otherwise unchanged. No test here
// asserts a measured time: only the shape of the report and the bounds the figures must keep.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { microConfig, tempDir, writeConfig, runTrain, DEMO_TEXT } from './helpers/train';
import { loadTrainConfig } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';
import { ProfileFile } from '../src/pretrain/profile';
import { operatorProfilerActive, summarizeOperators, ProfilerEvents } from '../src/tensor';

test('a profile of the first steps names every phase with its share, once', async () => {
  const root = tempDir('train-profile');
  const configFile = writeConfig(root, microConfig(path.join(root, 'run'), { max_steps: 5, eval: { every: 0 }, checkpoint: { every: 0, keep: 1 } }));
  const lines: string[] = [];
  const result = await train({ config: loadTrainConfig(configFile, [`data.path=${JSON.stringify(DEMO_TEXT)}`]), source: configFile, log: (l) => lines.push(l), profileSteps: 3 });
  assert.is(result.status, 'done');
  const output = lines.join('\n');
  assert.is(output.match(/profile of 3 step\(s\)/g)?.length, 1, output);
  let shares = 0;
  for (const phase of ['forward', 'backward', 'optimizer', 'data', 'communication', 'other']) {
    const match = new RegExp(`train:\\s+${phase}.*?([\\d.]+) ms\\s+([\\d.]+)%`).exec(output);
    assert.ok(match, `${phase} in\n${output}`);
    shares += Number(match![2]);
  }
  assert.ok(Math.abs(shares - 100) < 0.5, `shares add up to ${shares}%`);
  fs.rmSync(root, { recursive: true, force: true });
});

test('train.js --profile 2 prints the top operators after the phases and writes profile.json', () => {
  const root = tempDir('train-profile-ops');
  const run = path.join(root, 'run');
  const configFile = writeConfig(root, microConfig(run, { max_steps: 3, eval: { every: 0 }, checkpoint: { every: 0, keep: 1 }, export: { at_end: false, pytorch_bin: false } }));
  const result = runTrain(['--config', configFile, '--data', DEMO_TEXT, '--profile', '2']);
  assert.is(result.status, 0, result.stderr);
  const output = result.stderr;
  const phases = output.indexOf('profile of 2 step(s)');
  const table = output.indexOf('train: top 15 of ');
  assert.ok(phases >= 0 && table > phases, `the operator table follows the phase table:\n${output}`);
  assert.is(output.match(/operators by self CPU time/g)?.length, 1, output);
  // Rows: name, calls per step, self ms per step, share, total ms per step.
  const rows = [...output.slice(table).matchAll(/^train:\s{3}(aten::\S+|autograd::\S.*?)\s+(\d+(?:\.\d)?)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)$/gm)];
  assert.ok(rows.length >= 10, `at least 10 operator rows:\n${output}`);
  assert.ok(rows.some((r) => /^aten::(mm|addmm|bmm)$/.test(r[1])), `a matrix product among the top operators:\n${output}`);
  for (const r of rows) assert.ok(Number(r[5]) >= Number(r[3]) - 0.011, `total >= self for ${r[0]}`);
  assert.match(output, /all operators: [\d.]+ ms per step/);
  assert.not.match(output, /USDT|profiler_start|profiler_stop/, 'Kineto\'s own start/stop lines are silenced');
  assert.not.match(output, /live tensors than after the first step/, 'no tensor leak');

  const file = path.join(run, 'profile.json');
  assert.match(output, `profile written to ${file}`);
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as ProfileFile;
  assert.is(profile.format, 'camemberta.profile');
  assert.is(profile.steps, 2);
  assert.is(profile.device, 'cpu');
  assert.is(profile.threads, 1);
  assert.ok(profile.wall_ms > 0 && Math.abs(profile.step_ms * 2 - profile.wall_ms) < 1e-6 * profile.wall_ms);
  assert.ok(Math.abs(profile.phases.reduce((s, p) => s + p.share, 0) - 1) < 1e-9, 'phase shares add up to 1');
  assert.ok(Math.abs(profile.phases.reduce((s, p) => s + p.ms, 0) - profile.wall_ms) < 1e-6 * profile.wall_ms, 'phases add up to the wall time');
  const ops = profile.operators!;
  assert.ok(ops.length >= 20, `${ops.length} operators`);
  const names = new Set(ops.map((o) => o.name));
  for (const name of ['aten::linear', 'aten::addmm', 'aten::mm', 'aten::layer_norm', 'aten::embedding']) assert.ok(names.has(name), `${name} in ${[...names].join(', ')}`);
  assert.ok([...names].some((n) => /Backward/.test(n)), 'backward nodes recorded (autograd runs under the profiler)');
  for (const o of ops) {
    assert.ok(Number.isInteger(o.calls) && o.calls > 0, `${o.name}: calls ${o.calls}`);
    assert.ok(o.self_cpu_ms >= 0 && o.cpu_ms >= o.self_cpu_ms - 1e-9, `${o.name}: self ${o.self_cpu_ms} total ${o.cpu_ms}`);
    assert.is(o.self_device_ms, 0);
    assert.is(o.device_ms, 0);
  }
  for (let i = 1; i < ops.length; i++) assert.ok(ops[i - 1].self_cpu_ms >= ops[i].self_cpu_ms, 'sorted by self time');
  // Self times are wall time on the calling thread within the profiled span.
  const selfTotal = ops.reduce((s, o) => s + o.self_cpu_ms, 0);
  assert.ok(selfTotal > 0 && selfTotal <= profile.wall_ms * profile.threads * 1.05 + 1, `self ${selfTotal} ms within wall ${profile.wall_ms} ms x ${profile.threads}`);
  assert.ok(Math.abs(ops.reduce((s, o) => s + o.self_share, 0) - selfTotal / profile.wall_ms) < 1e-9);
  fs.rmSync(root, { recursive: true, force: true });
});

test('the operator profiler only observes: the same metrics, no leak, and nothing at all without --profile', async () => {
  const root = tempDir('train-profile-same');
  const runs: Record<string, { metrics: Record<string, number>; active: boolean[]; lines: string[]; dir: string }> = {};
  for (const [name, profileSteps] of [['profiled', 2], ['plain', undefined]] as const) {
    const dir = path.join(root, name);
    const configFile = writeConfig(root, microConfig(dir, { max_steps: 4, eval: { every: 2, batches: 1 }, checkpoint: { every: 0, keep: 1 }, export: { at_end: false, pytorch_bin: false } }), `${name}.json`);
    const active: boolean[] = [];
    const lines: string[] = [];
    const result = await train({
      config: loadTrainConfig(configFile, [`data.path=${JSON.stringify(DEMO_TEXT)}`]), source: configFile, log: (l) => lines.push(l), profileSteps,
      onStep: () => active.push(operatorProfilerActive()),
    });
    assert.is(result.status, 'done');
    assert.not.ok(operatorProfilerActive(), `${name}: no profiler left running`);
    runs[name] = { metrics: result.lastMetrics, active, lines, dir };
  }
  const { profiled, plain } = runs;
  assert.equal(profiled.active, [true, false, false, false], 'recording during the first profiled step only, stopped at the end of the second');
  assert.equal(plain.active, [false, false, false, false], 'no profiler without --profile');
  // The trainer compares the live tensor count at the end with the count after the first step.
  // (Counts are not compared across the two runs: a run leaves a few dropped tensors to the garbage
  // collector, which frees them whenever it runs.)
  for (const { lines } of [profiled, plain]) assert.not.ok(lines.some((l) => /live tensors than after the first step/.test(l)), 'no leak reported');
  const timeless = (m: Record<string, number>) => Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'tokens_per_s' && k !== 'elapsed_s'));
  assert.ok(Object.keys(timeless(plain.metrics)).includes('loss'));
  assert.equal(timeless(profiled.metrics), timeless(plain.metrics), 'bit-identical metrics with and without the profiler');
  assert.ok(fs.existsSync(path.join(profiled.dir, 'profile.json')));
  assert.not.ok(fs.existsSync(path.join(plain.dir, 'profile.json')), 'no profile.json without --profile');
  assert.not.ok(plain.lines.some((l) => /profile of|operators by self|profile written/.test(l)), plain.lines.join('\n'));
  assert.ok(profiled.lines.some((l) => /operators by self CPU time/.test(l)), profiled.lines.join('\n'));
  fs.rmSync(root, { recursive: true, force: true });
});

test('the operator table: self time less nested ops, runtime calls on their op\'s thread, kernels charged to their launching op', () => {
  // Synthetic events in ns (1 ms = 1e6 ns). Thread 1: A [0, 100] holds B [10, 40] and C [50, 90],
  // C holds D [60, 70]; C's cudaLaunchKernel [55, 58] is recorded on OS thread 999 and links to C.
  // Kernels and copies: 30 ms linked to C, 10 ms to D, 10 ms to no op; an async event, an instant
  // event and a GPU-side annotation are left out.
  const ms = 1e6;
  // Activity codes (libkineto): 0 CPU op, 7 CUDA runtime, 5 kernel, 3 memcpy, 2 GPU-side user
  // annotation (spans kernels: no time of its own), 9 CPU instant event.
  const rows: [string, number, number, number, number, number, number, number, number][] = [
    // name, thread, start, end, correlation, linked, device, async, activity
    ['A', 1, 0, 100, 1, 0, 0, 0, 0],
    ['B', 1, 10, 40, 2, 0, 0, 0, 0],
    ['C', 1, 50, 90, 3, 0, 0, 0, 0],
    ['D', 1, 60, 70, 4, 0, 0, 0, 0],
    ['cudaLaunchKernel', 999, 55, 58, 77, 3, 0, 0, 7],
    ['kernelC', 7, 200, 225, 78, 3, 1, 0, 5],
    ['Memcpy HtoD', 7, 225, 230, 81, 3, 1, 0, 3],
    ['kernelD', 7, 240, 250, 79, 4, 1, 0, 5],
    ['kernelAlone', 7, 300, 310, 80, 0, 1, 0, 5],
    ['annotation', 7, 200, 250, 82, 1, 1, 0, 2],
    ['B', 1, 20, 500, 5, 0, 0, 1, 0],
    ['instant', 1, 30, 30, 6, 0, 0, 0, 9],
  ];
  const names = [...new Set(rows.map((r) => r[0]))];
  const events: ProfilerEvents = {
    names,
    name: Int32Array.from(rows, (r) => names.indexOf(r[0])),
    thread: Float64Array.from(rows, (r) => r[1]),
    start: Float64Array.from(rows, (r) => r[2] * ms),
    end: Float64Array.from(rows, (r) => r[3] * ms),
    correlation: Float64Array.from(rows, (r) => r[4]),
    linked: Float64Array.from(rows, (r) => r[5]),
    device: Int32Array.from(rows, (r) => r[6]),
    activity: Int32Array.from(rows, (r) => r[8]),
    async: Uint8Array.from(rows, (r) => r[7]),
  };
  const summary = summarizeOperators(events);
  const by = Object.fromEntries(summary.operators.map((o) => [o.name, o]));
  assert.equal(summary.operators.map((o) => o.name), ['C', 'D', 'A', 'B', 'cudaLaunchKernel'], 'by self device time, then self CPU time');
  assert.equal([by.A.selfCpuMs, by.B.selfCpuMs, by.C.selfCpuMs, by.D.selfCpuMs, by.cudaLaunchKernel.selfCpuMs], [30, 30, 27, 10, 3]);
  assert.equal([by.A.cpuMs, by.C.cpuMs], [100, 40]);
  assert.equal([by.A.calls, by.B.calls], [1, 1], 'the async event is not an op call');
  assert.equal([by.C.selfDeviceMs, by.D.selfDeviceMs, by.A.selfDeviceMs], [30, 10, 0]);
  assert.equal([by.A.deviceMs, by.C.deviceMs, by.D.deviceMs, by.B.deviceMs], [40, 40, 10, 0]);
  assert.is(summary.unlinkedDeviceMs, 10);
  assert.is(summary.events, rows.length);
});

test.run();
