// Issue 13's I/O and model-config hardening: concurrent writers, files over 2 GiB, hostile
// configs and files, and leak-free failure paths. Each test failed before its fix.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Generator, loadTensors, tidy } from '../src/tensor';
import { readCheckpoint } from '../src/io';
import { temporarySibling } from '../src/io/atomic';
import { DebertaV2Model } from '../src/models';
import { parseDebertaConfig } from '../src/models/deberta/config';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-io-hardening-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));

const tinyConfig = {
  model_type: 'deberta-v2', vocab_size: 30, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 16, relative_attention: true, pos_att_type: ['p2c', 'c2p'], position_buckets: 4,
  share_att_key: true, norm_rel_ebd: 'layer_norm', position_biased_input: false, max_position_embeddings: 16,
};

function runNode(script: string, args: string[], onOutput: (text: string) => void = () => {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; onOutput(output); });
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.on('close', (code) => resolve({ code, output }));
  });
}

// ---- item 6: one atomic-write helper, safe under concurrent writers ---------------------------

test('temporary names are random, not pid-based', () => {
  const names = new Set(Array.from({ length: 1000 }, () => path.basename(temporarySibling(path.join(root, 'x.bin'), 'tmp'))));
  assert.is(names.size, 1000);
  for (const name of names) assert.not.ok(name.includes(String(process.pid)), name);
});

test('8 concurrent savePretrained into one new directory, all with the same pid: none fails, the result loads', async () => {
  // Several rounds, each into another new directory: one round rarely hits the race window.
  const ROUNDS = 3;
  const target = path.join(root, 'concurrent', 'model');
  const shared = path.join(root, 'concurrent', 'shared.bin');
  const go = path.join(root, 'go');
  // Every child claims pid 1, as processes in separate pid namespaces do; each builds the same
  // seeded model, says it is ready, spins until all are (the go file), then saves.
  const script = `
    const ROUNDS = ${ROUNDS};
    Object.defineProperty(process, 'pid', { value: 1 });
    const [srcDir, target, shared, go, configJson] = process.argv.slice(1);
    const { savePretrained } = require(srcDir + '/io');
    const { saveTensors, Generator } = require(srcDir + '/tensor');
    const { DebertaV2Model } = require(srcDir + '/models');
    const { parseDebertaConfig } = require(srcDir + '/models/deberta/config');
    const model = new DebertaV2Model(parseDebertaConfig(JSON.parse(configJson)), { generator: new Generator({ seed: 5 }) });
    console.log('ready');
    const deadline = Date.now() + 60000; // a sibling that died before 'ready' must not hang the rest
    while (!require('fs').existsSync(go) && Date.now() < deadline) {}
    for (let round = 0; round < ROUNDS; round++) {
      savePretrained(model, target + '-' + round, { format: 'both' });
      saveTensors(shared, model.stateDict());
    }
    console.log('saved');
  `;
  const srcDir = path.join(__dirname, '..', 'src');
  const ready = new Set<number>();
  const results = await Promise.all(Array.from({ length: 8 }, (_, child) =>
    runNode(script, [srcDir, target, shared, go, JSON.stringify(tinyConfig)], (output) => {
      if (output.includes('ready')) ready.add(child);
      if (ready.size === 8 && !fs.existsSync(go)) fs.writeFileSync(go, '');
    })));
  for (const { code, output } of results) assert.is(code, 0, output);
  const targets = Array.from({ length: ROUNDS }, (_, round) => `${target}-${round}`);
  for (const dir of targets) assert.equal(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'pytorch_model.bin']);
  assert.equal(fs.readdirSync(path.dirname(target)).sort(), [...targets.map((dir) => path.basename(dir)), 'shared.bin'].sort(),
    'no staging or temporary file left');
  const expected = new DebertaV2Model(parseDebertaConfig(tinyConfig), { generator: new Generator({ seed: 5 }) });
  try {
    const last = targets[ROUNDS - 1];
    for (const file of [path.join(last, 'model.safetensors'), path.join(last, 'pytorch_model.bin'), shared]) {
      const tensors = file === shared ? loadTensors(shared) : readCheckpoint(last).tensors;
      try {
        assert.equal([...tensors.keys()].sort(), [...expected.stateDict().keys()].sort(), file);
        tidy(() => {
          for (const [key, t] of tensors) assert.is(t.sub(expected.stateDict().get(key)!).abs().max().item(), 0, `${file}: ${key}`);
        });
      } finally {
        for (const t of tensors.values()) t.dispose();
      }
    }
  } finally {
    expected.dispose();
  }
});

test.run();
