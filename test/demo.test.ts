// The README's first command, shortened: tokenizer, shards, masked-LM steps and an export that
// transformers loads (the demo itself checks the export with Python when it can).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { repoRoot } from './helpers/python';

test('demo: tokenizer, shards, training steps, export loadable by transformers', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-demo-'));
  try {
    const result = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'demo.js'), '--output', out, '--steps', '60'], { encoding: 'utf8' });
    assert.is(result.status, 0, result.stderr);
    const losses = /loss ([\d.]+) -> ([\d.]+)/.exec(result.stderr);
    assert.ok(losses, result.stderr);
    assert.ok(Number(losses![2]) < Number(losses![1]) - 0.5, `loss did not fall enough: ${losses![0]}`);
    assert.match(result.stderr, /load it with no missing or unexpected keys/);
    for (const file of ['config.json', 'model.safetensors', 'spm.model', 'tokenizer_config.json', 'special_tokens_map.json']) {
      assert.ok(fs.existsSync(path.join(out, 'model', file)), `${file} exported`);
    }
    assert.ok(fs.existsSync(path.join(out, 'data', 'manifest.json')));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('demo: bad options are one-line errors with exit code 2', () => {
  const result = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'demo.js'), '--steps', 'many'], { encoding: 'utf8' });
  assert.is(result.status, 2);
  assert.match(result.stderr, /--steps must be an integer/);
});

test.run();
