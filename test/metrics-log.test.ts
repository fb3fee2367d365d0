// log.jsonl: one record a line, repaired and truncated on resume so that a run continued from a
// checkpoint holds each step once, and a crash mid-write costs at most its last line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MetricsLog, readMetricsLog } from '../src/pretrain/metrics-log';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-metrics-log-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

let runs = 0;
/** A fresh log path in a directory that does not exist yet. */
function freshLog(): string {
  runs += 1;
  return path.join(tmp, `run-${runs}`, 'log.jsonl');
}

function writeSteps(file: string, steps: number[], options?: { truncateAfterStep?: number }): void {
  const log = new MetricsLog(file, options);
  for (const step of steps) log.append({ step, loss: 10 - step / 10 });
  log.close();
}

const stepsOf = (file: string) => readMetricsLog(file).map((record) => record.step);

test('append writes one JSON object a line, step first; reading gives the records back', () => {
  const file = freshLog();
  const log = new MetricsLog(file);
  log.append({ loss: 3.25, step: 1, phase: 'warmup', scale: null });
  log.append({ step: 2, loss: Number.NaN, lr: Infinity, tokens: 4096 });
  log.close();
  log.close();
  assert.is(fs.readFileSync(file, 'utf8'), [
    '{"step":1,"loss":3.25,"phase":"warmup","scale":null}',
    // JSON has no NaN or Infinity: they become null rather than unparseable text.
    '{"step":2,"loss":null,"lr":null,"tokens":4096}',
    '',
  ].join('\n'));
  assert.equal(readMetricsLog(file), [
    { step: 1, loss: 3.25, phase: 'warmup', scale: null },
    { step: 2, loss: null, lr: null, tokens: 4096 },
  ]);
  assert.throws(() => log.append({ step: 3 }), /is closed/);
});

test('reopening without options appends after what is there', () => {
  const file = freshLog();
  writeSteps(file, [1, 2, 3]);
  writeSteps(file, [4, 5]);
  assert.equal(stepsOf(file), [1, 2, 3, 4, 5]);
});

test('resume from an earlier checkpoint: lines after truncateAfterStep are dropped before appending', () => {
  const file = freshLog();
  writeSteps(file, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  // Crashed after step 10, checkpoint at step 6: steps 7.. are redone.
  writeSteps(file, [7, 8], { truncateAfterStep: 6 });
  assert.equal(stepsOf(file), [1, 2, 3, 4, 5, 6, 7, 8]);
  // The kept lines are the original bytes.
  assert.is(fs.readFileSync(file, 'utf8').split('\n')[5], JSON.stringify({ step: 6, loss: 10 - 0.6 }));
  // A checkpoint past the last line keeps everything; truncating to before the first keeps nothing.
  writeSteps(file, [9], { truncateAfterStep: 100 });
  assert.equal(stepsOf(file), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  writeSteps(file, [1], { truncateAfterStep: 0 });
  assert.equal(stepsOf(file), [1]);
});

test('a torn last line (crash mid-write) is skipped when read and dropped when the log is reopened', () => {
  const file = freshLog();
  writeSteps(file, [1, 2, 3]);
  fs.appendFileSync(file, '{"step":4,"loss":2.');
  assert.equal(stepsOf(file), [1, 2, 3]);
  writeSteps(file, [4, 5]);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  assert.is(lines.length, 6);
  assert.equal(lines.slice(0, 5).map((line) => JSON.parse(line).step), [1, 2, 3, 4, 5]);

  // Torn and truncated together.
  fs.appendFileSync(file, '{"step":6,"lo');
  writeSteps(file, [4], { truncateAfterStep: 3 });
  assert.equal(stepsOf(file), [1, 2, 3, 4]);
});

test('a write cut just before its newline left a whole record: it is kept', () => {
  const file = freshLog();
  writeSteps(file, [1]);
  fs.appendFileSync(file, '{"step":2,"loss":9.8}');
  assert.equal(stepsOf(file), [1, 2]);
  writeSteps(file, [3]);
  assert.equal(stepsOf(file), [1, 2, 3]);
  assert.ok(fs.readFileSync(file, 'utf8').endsWith('}\n'));
});

test('damage that is not a torn tail is an error naming the file and line, and nothing is rewritten', () => {
  const file = freshLog();
  writeSteps(file, [1, 2]);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const damaged = [lines[0], '{"step":', lines[1], ''].join('\n');
  fs.writeFileSync(file, damaged);
  assert.throws(() => readMetricsLog(file), (error: Error) => error.message.includes(`${file}:2: not a JSON line`));
  assert.throws(() => new MetricsLog(file, { truncateAfterStep: 1 }), (error: Error) => error.message.includes(`${file}:2`));
  assert.is(fs.readFileSync(file, 'utf8'), damaged);

  const noStep = freshLog();
  fs.mkdirSync(path.dirname(noStep));
  fs.writeFileSync(noStep, '{"loss":1}\n');
  assert.throws(() => new MetricsLog(noStep, { truncateAfterStep: 1 }), /no integer "step"/);
  assert.throws(() => readMetricsLog(path.join(tmp, 'missing.jsonl')), /cannot read .*missing\.jsonl/);
});

test('bad records and options name what is wrong', () => {
  const log = new MetricsLog(freshLog());
  assert.throws(() => log.append({ step: -1 }), /step must be a non-negative integer, got -1/);
  assert.throws(() => log.append({ step: 1, loss: { value: 1 } as unknown as number }), /'loss' must be a number, a string or null/);
  log.close();
  assert.throws(() => new MetricsLog(freshLog(), { truncateAfterStep: 1.5 }), /truncateAfterStep must be an integer/);
});

test.run();
