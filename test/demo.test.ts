// The README's first command, shortened: a tiny ELECTRA + GDES pretraining on the built-in sample
// whose export transformers loads (the demo checks it with Python itself).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { repoRoot } from './helpers/python';

const DEMO = path.join(repoRoot, 'dist', 'demo.js');

test('demo: tiny ELECTRA + GDES run, generator loss falls, export loads in transformers; a rerun re-exports', () => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-demo-')), 'run');
  try {
    const result = spawnSync(process.execPath, [DEMO, '--output', out, '--steps', '30'], { encoding: 'utf8' });
    assert.is(result.status, 0, result.stderr);
    const losses = /generator MLM loss ([\d.]+) -> ([\d.]+)/.exec(result.stderr);
    assert.ok(losses, result.stderr);
    assert.ok(Number(losses![2]) < Number(losses![1]), `the generator loss did not fall: ${losses![0]}`);
    assert.match(result.stderr, /discriminator: DebertaV2Model \+ \w+ load it with no missing or unexpected keys/);
    assert.match(result.stderr, /generator: DebertaV2ForMaskedLM \+ \w+ load it with no missing or unexpected keys/);
    for (const file of ['discriminator/config.json', 'discriminator/model.safetensors', 'discriminator/rtd_head.safetensors', 'discriminator/spm.model', 'generator/model.safetensors', 'generator/tokenizer_config.json']) {
      assert.ok(fs.existsSync(path.join(out, 'export', file)), `${file} exported`);
    }
    const again = spawnSync(process.execPath, [DEMO, '--output', out, '--steps', '30'], { encoding: 'utf8' });
    assert.is(again.status, 0, again.stderr);
    assert.match(again.stderr, /resumed from .*step-00000030/);
  } finally {
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  }
});

test('demo: bad options are one-line errors with exit code 2', () => {
  const result = spawnSync(process.execPath, [DEMO, '--steps', 'many'], { encoding: 'utf8' });
  assert.is(result.status, 2);
  assert.match(result.stderr, /--steps must be an integer/);
});

test.run();
