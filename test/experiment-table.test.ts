// The experiment's table and its reading of the claims: means, sample spread and the verdict
// against the seeds' spread, from a hand-made results file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { claims, markdownTable } from '../src/experiments/table';
import { downstreamSummary, ExperimentResults, RESULTS_KIND } from '../src/experiments/results';

const upos = (arm: string, label: string, seed: number, value: number) => ({ arm, label, task: 'upos' as const, seed, scores: { upos_accuracy: value }, seconds: 1 });
const parse = (arm: string, label: string, seed: number, las: number) => ({ arm, label, task: 'parsing' as const, seed, scores: { uas: las + 0.1, las }, seconds: 1 });

const results: ExperimentResults = {
  kind: RESULTS_KIND, command: 'npm run experiment:objectives -- --budget-minutes 5', machine: '2 x test CPU', device: 'cpu',
  budget: { minutes: 5, pretrain_seconds_per_arm: 30, finetune_steps: { upos: 40, parsing: 30 } }, seeds: [1, 2],
  pretraining: [{ arm: 'electra-gdes', label: 'ELECTRA + GDES', run_dir: 'pretrain/electra-gdes', steps: 50, seconds: 29.6, tokens: 204_800, parameters: 410_000, flops: 3.2e11, final: { mlm_loss: 5.1, disc_loss: 0.3, eval_mlm_accuracy: 0.12, eval_disc_auc: 0.7 } }],
  downstream: [
    upos('electra-gdes', 'ELECTRA + GDES', 1, 0.80), upos('electra-gdes', 'ELECTRA + GDES', 2, 0.82),
    upos('electra-es', 'ELECTRA + ES', 1, 0.70), upos('electra-es', 'ELECTRA + ES', 2, 0.71),
    upos('mlm', 'MLM', 1, 0.81), upos('mlm', 'MLM', 2, 0.85),
    parse('electra-gdes', 'ELECTRA + GDES', 1, 0.30), parse('electra-gdes', 'ELECTRA + GDES', 2, 0.30),
    parse('mlm', 'MLM', 1, 0.40), parse('mlm', 'MLM', 2, 0.42),
  ],
  total_seconds: 290,
};

test('summary: mean, sample std and range per arm and metric', () => {
  const gdes = downstreamSummary(results.downstream).find((r) => r.arm === 'electra-gdes')!;
  assert.ok(Math.abs(gdes.metrics.upos_accuracy!.mean - 0.81) < 1e-12);
  assert.ok(Math.abs(gdes.metrics.upos_accuracy!.std - Math.SQRT2 * 0.01) < 1e-12);
  assert.equal([gdes.metrics.las!.min, gdes.metrics.las!.max, gdes.metrics.las!.n], [0.3, 0.3, 2]);
});

test('claims: held beyond the spread, held within it, or not held', () => {
  const lines = claims(results);
  const es = lines.find((l) => l.startsWith('- GDES over ES'))!;
  assert.ok(es.includes('UPOS +10.50 points (HELD; spread 2.00)'), es);
  const mlm = lines.find((l) => l.startsWith('- ELECTRA (GDES) over MLM'))!;
  assert.ok(mlm.includes('UPOS -2.00 points (did NOT hold') && mlm.includes('LAS -11.00 points (did NOT hold'), mlm);
  // No arm without runs is compared.
  assert.not.ok(lines.some((l) => l.includes('no sharing') || l.includes('random init')), lines.join('\n'));
});

test('table: budget line, one row per arm, scores in percent with spread', () => {
  const table = markdownTable(results, true);
  assert.ok(table.includes('Budget 5 min for the whole command (290 s used): 30 s of pretraining per arm (steps from a timing run, capped by max_seconds)'), table);
  assert.ok(table.includes('| ELECTRA + GDES | 50 | 30 | 204.80k | 320.00G | 410.00k | 5.1000 | 0.3000 | 0.1200 | 0.7000 |'), table);
  assert.ok(table.includes('| MLM | 83.00 ± 2.83 (81.00-85.00) | 51.00 ± 1.41 (50.00-52.00) | 41.00 ± 1.41 (40.00-42.00) |'), table);
});

test.run();
