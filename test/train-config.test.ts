// Bad configs fail at start with exit code 2, one line per problem naming the key (and file), and
// leave the output directory as it was.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { microConfig, tempDir, writeConfig, runTrain, DEMO_TEXT } from './helpers/train';
import { parseTrainConfig, loadTrainConfig, applyOverrides, differingKeys, TrainConfigError } from '../src/pretrain/config';
import { train } from '../src/pretrain/trainer';

const root = tempDir('train-config');
const dataless = path.join(root, 'empty-dir');
fs.mkdirSync(dataless);

function snapshot(dir: string): string[] {
  if (!fs.existsSync(dir)) return ['<absent>'];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      out.push(`${path.relative(dir, full)}:${entry.isDirectory() ? 'dir' : fs.statSync(full).size}`);
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out.sort();
}

// Each case: config changes, extra CLI args, and a pattern the error must match (key and cause).
const cases: Array<{ name: string; change?: (c: Record<string, any>) => void; args?: string[]; expect: RegExp }> = [
  { name: 'unknown top-level key', change: (c) => { c.max_stepz = 3; }, expect: /max_stepz: unknown key/ },
  { name: 'unknown nested key', change: (c) => { c.optimizer.learning_rate = 1; }, expect: /optimizer\.learning_rate: unknown key/ },
  { name: 'unknown model config key', change: (c) => { c.model.config.hiden_size = 4; }, expect: /model\.config\.hiden_size: unknown model config key/ },
  { name: 'wrong type', change: (c) => { c.max_steps = 'ten'; }, expect: /max_steps: .*number/i },
  { name: 'zero size', change: (c) => { c.batch.micro_batch_size = 0; }, expect: /batch\.micro_batch_size: /},
  { name: 'negative size', change: (c) => { c.model.config.hidden_size = -32; }, expect: /model\.config\.hidden_size/ },
  { name: 'batch sizes that do not divide', change: (c) => { c.batch.global_batch_size = 10; }, expect: /batch\.global_batch_size: 10 is not a multiple of batch\.micro_batch_size/ },
  { name: 'vocabulary too small for the tokenizer', change: (c) => { c.model.config.vocab_size = 100; }, expect: /model\.config\.vocab_size: 100 rows cannot hold the tokenizer's 201 ids/ },
  { name: 'warm-up longer than the run', change: (c) => { c.schedule.warmup_steps = 50; }, expect: /schedule\.warmup_steps/ },
  { name: 'missing data directory', args: ['--data', path.join(root, 'no-such-dir')], expect: /data\.path: .*no such file or directory/ },
  { name: 'empty data directory', args: ['--data', dataless], expect: /data\.path: no corpus files/ },
  { name: 'unwritable output directory', change: (c) => { c.output_dir = '/proc/camemberta-run'; }, expect: /output_dir: .*not writable/ },
  { name: 'float16 on CPU', change: (c) => { c.precision = 'float16'; }, expect: /precision: float16 needs device "cuda"/ },
];

for (const { name, change, args = [], expect } of cases) {
  test(`bad config: ${name}`, async () => {
    const out = path.join(root, `run-${name.replace(/\W+/g, '-')}`);
    const config = microConfig(out) as Record<string, any>;
    change?.(config);
    const file = writeConfig(root, config, `${name.replace(/\W+/g, '-')}.json`);
    const before = snapshot(out);
    const dataIndex = args.indexOf('--data');
    const sets = [`data.path=${JSON.stringify(dataIndex >= 0 ? args[dataIndex + 1] : DEMO_TEXT)}`];
    let error: unknown;
    try {
      await train({ config: loadTrainConfig(file, sets), source: file, log: () => {} });
    } catch (caught) {
      error = caught;
    }
    assert.instance(error, TrainConfigError, `${name}: ${String(error)}`);
    assert.match((error as Error).message, expect);
    assert.equal(snapshot(out), before, 'the output directory is left as it was');
  });
}

test('the command line reports config problems on stderr, one line each, exit code 2, no stack trace', () => {
  const out = path.join(root, 'cli-run');
  const file = writeConfig(root, { ...microConfig(out), max_stepz: 3, threads: -1 }, 'cli.json');
  const result = runTrain(['--config', file, '--data', DEMO_TEXT]);
  assert.is(result.status, 2, result.stderr);
  assert.match(result.stderr, new RegExp(`train.js: ${file.replace(/[.]/g, '\\.')}: max_stepz: unknown key`));
  assert.match(result.stderr, /threads: /);
  assert.not.match(result.stderr, /\n\s+at /);
  assert.not.ok(fs.existsSync(out));
  const missing = runTrain(['--config', file.replace('cli.json', 'nope.json')]);
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /nope\.json: \(file\): cannot read: ENOENT/);
});

test('a config that is not JSON names the file', () => {
  const file = path.join(root, 'broken.json');
  fs.writeFileSync(file, '{ "max_steps": 3, }');
  const result = runTrain(['--config', file, '--data', DEMO_TEXT]);
  assert.is(result.status, 2);
  assert.match(result.stderr, /broken\.json: \(file\): not valid JSON/);
});

test('every problem of a config is reported at once', () => {
  try {
    parseTrainConfig({ max_steps: 0, batch: { micro_batch_size: 'x' }, bogus: true }, 'c.json');
    assert.unreachable('should throw');
  } catch (error) {
    assert.instance(error, TrainConfigError);
    const keys = (error as TrainConfigError).problems.map((p) => p.key).sort();
    assert.equal(keys, ['batch.micro_batch_size', 'bogus', 'max_steps']);
  }
});

test('--set overrides parse JSON values and refuse prototype keys', () => {
  const raw = applyOverrides({ optimizer: { lr: 1 } }, ['optimizer.lr=0.5', 'output_dir=runs/x', 'data.path=["a","b"]']);
  assert.equal(raw, { optimizer: { lr: 0.5 }, output_dir: 'runs/x', data: { path: ['a', 'b'] } });
  assert.throws(() => applyOverrides({}, ['__proto__.x=1']), /bad key segment/);
  assert.throws(() => applyOverrides({ a: 1 }, ['a.b=1']), /a: is not an object/);
});

test('a resumed run may change max_steps and logging, nothing that changes the training', () => {
  const a = parseTrainConfig(microConfig('x'), 'a');
  const b = parseTrainConfig({ ...microConfig('y'), max_steps: 99, logging: { every: 5 } }, 'b');
  assert.equal(differingKeys(a, b), []);
  const c = parseTrainConfig({ ...microConfig('x'), seed: 4, optimizer: { name: 'lamb', lr: 0.02 } }, 'c');
  assert.equal(differingKeys(a, c), ['optimizer.lr', 'seed']);
});

test.after(() => fs.rmSync(root, { recursive: true, force: true }));
test.run();
