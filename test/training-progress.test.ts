// The training progress: plain lines without a terminal (CI logs), a cli-progress bar on one, with
// the same facts: step N/T, the values given, tokens/s and an ETA from this run's own rate.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createTrainingProgress, formatDuration, formatMetric } from '../src/cli/progress';

/** A stream that records what is written; `isTTY` decides bar or plain lines. */
function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const stream = { isTTY, columns: 200, write(chunk: string | Uint8Array) { chunks.push(String(chunk)); return true; } };
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => chunks.join('') };
}

/** A clock the test moves by hand, in milliseconds. */
function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let time = start;
  return { now: () => time, advance: (ms) => { time += ms; } };
}

test('non-TTY: a line at the first step, then one per interval, and the final state at stop', () => {
  const { stream, text } = fakeStream(false);
  const clock = manualClock();
  const progress = createTrainingProgress({ totalSteps: 100, startStep: 0, label: 'pretrain', stream, now: clock.now, lineIntervalMs: 5000 });
  for (let step = 1; step <= 30; step += 1) {
    clock.advance(1000);   // one step a second, 2,000 tokens a step
    progress.update(step, 2000, { loss: 10 - step / 10, lr: step * 1e-5 });
    if (step === 12) progress.log('checkpoint saved at step 12');
  }
  progress.stop();
  assert.equal(text().split('\n'), [
    'pretrain: step 1/100 | loss 9.9000 | lr 1.00e-5 | 2.0k tokens/s | ETA 1m39s',
    'pretrain: step 6/100 | loss 9.4000 | lr 6.00e-5 | 2.0k tokens/s | ETA 1m34s',
    'pretrain: step 11/100 | loss 8.9000 | lr 1.10e-4 | 2.0k tokens/s | ETA 1m29s',
    'checkpoint saved at step 12',
    'pretrain: step 16/100 | loss 8.4000 | lr 1.60e-4 | 2.0k tokens/s | ETA 1m24s',
    'pretrain: step 21/100 | loss 7.9000 | lr 2.10e-4 | 2.0k tokens/s | ETA 1m19s',
    'pretrain: step 26/100 | loss 7.4000 | lr 2.60e-4 | 2.0k tokens/s | ETA 1m14s',
    'pretrain: step 30/100 | loss 7.0000 | lr 3.00e-4 | 2.0k tokens/s | ETA 1m10s',
    '',
  ]);
});

test('a resumed run counts its rate and ETA from startStep, not from step 0', () => {
  const { stream, text } = fakeStream(false);
  const clock = manualClock();
  const progress = createTrainingProgress({ totalSteps: 1000, startStep: 900, stream, now: clock.now });
  clock.advance(2000);
  // 10 steps in 2 s: 90 steps left take 18 s (counting 910 steps in 2 s would say 0 s).
  progress.update(910, 5000);
  progress.stop();
  assert.is(text(), 'train: step 910/1000 | 2.5k tokens/s | ETA 18s\n');
});

test('values keep their last given number; the final step shows ETA 0s; nothing before any progress', () => {
  const { stream, text } = fakeStream(false);
  const clock = manualClock();
  const progress = createTrainingProgress({ totalSteps: 3, startStep: 0, stream, now: clock.now });
  clock.advance(500);
  progress.update(1, 100, { loss: 2.5 });
  clock.advance(500);
  progress.update(2, 100);
  clock.advance(500);
  progress.update(3, 100, { accuracy: 0.75 });
  progress.stop();
  assert.equal(text().split('\n'), [
    'train: step 1/3 | loss 2.5000 | 200 tokens/s | ETA 1s',
    'train: step 3/3 | loss 2.5000 | accuracy 0.7500 | 200 tokens/s | ETA 0s',
    '',
  ]);
});

test('disabled: no progress output, but log() messages still print', () => {
  const { stream, text } = fakeStream(true);
  const progress = createTrainingProgress({ totalSteps: 10, startStep: 0, stream, enabled: false });
  progress.update(1, 10, { loss: 1 });
  progress.log('warning: loss scale dropped');
  progress.stop();
  assert.is(text(), 'warning: loss scale dropped\n');
});

test('TTY: a cli-progress bar with step, values, tokens/s and ETA; the final state stays as a line', () => {
  const { stream, text } = fakeStream(true);
  const clock = manualClock();
  const progress = createTrainingProgress({ totalSteps: 50, startStep: 10, label: 'pretrain', stream, now: clock.now });
  clock.advance(4000);
  progress.update(30, 8000, { loss: 4.125 });
  progress.stop();
  const output = text();
  assert.match(output, /pretrain \S+ step 30\/50 \| loss 4\.1250 \| 2\.0k tokens\/s \| ETA 4s/);
  assert.ok(output.endsWith('pretrain: step 30/50 | loss 4.1250 | 2.0k tokens/s | ETA 4s\n'), JSON.stringify(output.slice(-120)));
});

test('formatting of values and durations; bad options are errors', () => {
  assert.equal([3.14159, 1e-4, 12345.678, 0, 42, -0.5, 65536, 2 ** 40, Number.NaN].map(formatMetric),
    ['3.1416', '1.00e-4', '1.23e+4', '0.0000', '42.0000', '-0.5000', '65536', '1.10e+12', 'NaN']);
  assert.equal([0, 59.6, 61, 3725, Number.NaN].map(formatDuration), ['0s', '1m00s', '1m01s', '1h02m05s', '?']);
  assert.throws(() => createTrainingProgress({ totalSteps: 10, startStep: 11 }), /startStep must be an integer in \[0, totalSteps=10\], got 11/);
  assert.throws(() => createTrainingProgress({ totalSteps: -1, startStep: 0 }), /totalSteps must be a non-negative integer/);
});

test.run();
