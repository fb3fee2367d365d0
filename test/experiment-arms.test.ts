// The objectives experiment compares like with like: the four arms' resolved train.js configs
// (every default filled in, as train.js would run them) differ only in the objective and the
// embedding sharing, besides the per-arm budget (step count) and output directory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'path';
import { repoRoot } from './helpers/python';
import { differingKeys } from '../src/pretrain/config';
import { ARM_KEYS, ARMS, armOverrides, BUDGET_KEYS, resolveArmConfig, SharedSettings, supportsMaxSeconds } from '../src/experiments/arms';

const BASE = path.join(repoRoot, 'configs', 'experiment_objectives.json');
const shared: SharedSettings = {
  data: '/data/prepared', device: 'cpu', threads: 2, warmupSteps: 7, loggingEvery: 3, evalEvery: 20, extra: ['model.preset=tiny'],
};
// Different budgets per arm, as the calibration gives them.
const resolved = ARMS.map((arm, i) => ({
  arm,
  config: resolveArmConfig(BASE, armOverrides(arm, shared, { maxSteps: 40 + 13 * i, maxSeconds: supportsMaxSeconds(BASE) ? 30 : 0, outputDir: `/runs/${arm.id}` })),
}));

test('arms: the resolved configs differ pairwise only in the objective and the embedding sharing', () => {
  for (const a of resolved) {
    for (const b of resolved) {
      const differences = differingKeys(a.config, b.config, BUDGET_KEYS);
      const outside = differences.filter((key) => !(ARM_KEYS as readonly string[]).includes(key));
      assert.equal(outside, [], `${a.arm.id} vs ${b.arm.id}: ${outside.join(', ')}`);
    }
  }
  const byId = Object.fromEntries(resolved.map((r) => [r.arm.id, r.config]));
  assert.equal(differingKeys(byId['electra-gdes'], byId['electra-es'], BUDGET_KEYS), ['electra.embedding_sharing']);
  assert.equal(differingKeys(byId['electra-gdes'], byId['electra-none'], BUDGET_KEYS), ['electra.embedding_sharing']);
  assert.equal(differingKeys(byId['electra-gdes'], byId.mlm, BUDGET_KEYS), ['objective']);
  assert.equal(differingKeys(byId['electra-es'], byId.mlm, BUDGET_KEYS).sort(), ['electra.embedding_sharing', 'objective']);
});

test('arms: each runs what it says, and the shared settings reach every arm', () => {
  const expected: Record<string, [string, string]> = {
    'electra-gdes': ['electra', 'gdes'], 'electra-es': ['electra', 'es'], 'electra-none': ['electra', 'none'], mlm: ['mlm', 'gdes'],
  };
  for (const { arm, config } of resolved) {
    assert.equal([config.objective, config.electra.embedding_sharing], expected[arm.id], arm.id);
    // The MLM arm is the discriminator's architecture: the same model section as the ELECTRA arms.
    assert.equal(config.model.type, 'deberta-v2', arm.id);
    assert.equal([config.data.path, config.schedule.warmup_steps, config.eval.every, config.threads], ['/data/prepared', 7, 20, 2], arm.id);
    assert.equal(config.output_dir, `/runs/${arm.id}`);
  }
  assert.equal(resolved.map((r) => r.config.max_steps), [40, 53, 66, 79]);
});

test.run();
