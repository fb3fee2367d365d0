// Learning-rate schedules against a Python transcription of NVIDIA's TF2 ELECTRA WarmUp around
// Keras PolynomialDecay (test/python/optim_reference.py), and validation of bad configurations.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { learningRate, validateSchedule, ScheduleConfig } from '../src/optim';
import { runPython, pythonScript } from './helpers/python';

const base = { peakLr: 6e-3, warmupSteps: 10, totalSteps: 30 };
const CONFIGS: ScheduleConfig[] = [
  { ...base, decay: 'polynomial', power: 0.5 },
  { ...base, decay: 'polynomial', power: 1 },
  { ...base, decay: 'polynomial', power: 0.5, endLr: 1e-4 },
  { ...base, decay: 'linear' },
  { ...base, decay: 'constant' },
  { ...base, warmupSteps: 0, decay: 'polynomial', power: 0.5 },
];
// Past totalSteps too: Keras clamps the decay step, so the rate stays at endLr.
const STEPS = 36;

test('schedules match the WarmUp + PolynomialDecay transcription to 1e-6 (relative), past totalSteps included', () => {
  const { lrs } = JSON.parse(runPython([pythonScript('optim_reference.py'), 'schedule'],
    { input: JSON.stringify({ configs: CONFIGS, steps: STEPS }) }).stdout) as { lrs: number[][] };
  assert.is(lrs.length, CONFIGS.length);
  CONFIGS.forEach((config, c) => {
    assert.is(lrs[c].length, STEPS);
    lrs[c].forEach((expected, step) => {
      const actual = learningRate(config, step);
      assert.ok(Math.abs(actual - expected) <= 1e-6 * config.peakLr, `${JSON.stringify(config)} step ${step}: ${actual} vs ${expected}`);
    });
  });
});

test('warm-up starts at 0, reaches the peak at warmupSteps, and the decay ends at endLr', () => {
  const config: ScheduleConfig = { ...base, decay: 'polynomial', power: 0.5, endLr: 1e-4 };
  assert.is(learningRate(config, 0), 0);
  assert.is(learningRate(config, 5), 3e-3);
  assert.is(learningRate(config, 10), 6e-3);
  assert.ok(Math.abs(learningRate(config, 20) - (6e-3 - 1e-4) * Math.sqrt(0.5) - 1e-4) < 1e-15);
  assert.is(learningRate(config, 30), 1e-4);
  assert.is(learningRate(config, 1000), 1e-4);
  assert.is(learningRate({ ...base, decay: 'constant' }, 29), 6e-3);
});

test('validateSchedule names the bad fields; learningRate refuses an invalid schedule', () => {
  const good: ScheduleConfig = { ...base, decay: 'polynomial', power: 0.5 };
  assert.equal(validateSchedule(good), []);
  const problems = (config: Partial<ScheduleConfig>) => validateSchedule({ ...good, ...config } as ScheduleConfig);
  assert.match(problems({ warmupSteps: 31 }).join(), /warmupSteps \(31\) must not exceed totalSteps \(30\)/);
  assert.match(problems({ warmupSteps: 30 }).join(), /warmupSteps \(30\) must be below totalSteps/);
  assert.equal(problems({ warmupSteps: 30, decay: 'constant' }), []);
  assert.match(problems({ peakLr: -1e-3 }).join(), /peakLr must be/);
  assert.match(problems({ endLr: -1 }).join(), /endLr must be/);
  assert.match(problems({ totalSteps: 0, warmupSteps: 0 }).join(), /totalSteps must be a positive integer, got 0/);
  assert.match(problems({ warmupSteps: 2.5 }).join(), /warmupSteps must be a non-negative integer/);
  assert.match(problems({ power: 0 }).join(), /power must be a positive number/);
  assert.match(problems({ decay: 'cosine' as never }).join(), /decay must be one of polynomial, linear, constant, got "cosine"/);
  assert.is(problems({ peakLr: -1, totalSteps: 0, warmupSteps: 0 }).length, 2);
  assert.throws(() => learningRate({ ...good, totalSteps: 0 }, 0), /invalid schedule: .*totalSteps/);
  assert.throws(() => learningRate(good, -1), /step must be a non-negative integer/);
});

test.run();
