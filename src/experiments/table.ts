// The experiment's Markdown: the budget and machine, pretraining per arm (steps, wall time, tokens,
// FLOPs, final losses), downstream scores (mean ± sample std and min-max over seeds), and the
// two claims read off the numbers.
import { downstreamSummary, ExperimentResults, Spread } from './results';

const si = (value: number) => {
  const units: Array<[number, string]> = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [scale, unit] of units) if (Math.abs(value) >= scale) return `${(value / scale).toFixed(2)}${unit}`;
  return value.toFixed(0);
};
const num = (value: number | null | undefined, digits = 4) => (typeof value === 'number' ? value.toFixed(digits) : '-');
const score = (s: Spread | undefined) => (s ? `${(100 * s.mean).toFixed(2)} ± ${(100 * s.std).toFixed(2)} (${(100 * s.min).toFixed(2)}-${(100 * s.max).toFixed(2)})` : '-');

export function markdownTable(results: ExperimentResults, maxSecondsUsed: boolean): string {
  const lines: string[] = [];
  lines.push(`Command: \`${results.command}\``, '');
  lines.push(`Machine: ${results.machine}; device ${results.device}. Budget ${results.budget.minutes} min for the whole command `
    + `(${results.total_seconds.toFixed(0)} s used): ${results.budget.pretrain_seconds_per_arm.toFixed(0)} s of pretraining per arm `
    + `(${maxSecondsUsed ? 'steps from a timing run, capped by max_seconds' : 'steps from a timing run'}), `
    + `fine-tuning ${results.budget.finetune_steps.upos} UPOS / ${results.budget.finetune_steps.parsing} parsing steps per run, seeds ${results.seeds.join(', ')}.`, '');
  lines.push('| arm | steps | train s | tokens seen | est. FLOPs | params | final gen/MLM loss | final disc loss | held-out MLM acc | held-out disc AUC |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const arm of results.pretraining) {
    lines.push(`| ${arm.label} | ${arm.steps} | ${arm.seconds.toFixed(0)} | ${si(arm.tokens)} | ${si(arm.flops)} | ${si(arm.parameters)} | ${num(arm.final.mlm_loss)} | ${num(arm.final.disc_loss)} | ${num(arm.final.eval_mlm_accuracy)} | ${num(arm.final.eval_disc_auc)} |`);
  }
  lines.push('');
  const summary = downstreamSummary(results.downstream);
  lines.push(`Test scores on UD French-Sequoia, % (mean ± sample std (min-max) over ${results.seeds.length} seed(s)):`, '');
  lines.push('| arm | UPOS accuracy | UAS | LAS |', '| --- | ---: | ---: | ---: |');
  for (const row of summary) lines.push(`| ${row.label} | ${score(row.metrics.upos_accuracy)} | ${score(row.metrics.uas)} | ${score(row.metrics.las)} |`);
  lines.push('', ...claims(results));
  return `${lines.join('\n')}\n`;
}

/** The two claims, read off the means; "held" means the ordering the paper reports, with its margin. */
export function claims(results: ExperimentResults): string[] {
  const summary = Object.fromEntries(downstreamSummary(results.downstream).map((row) => [row.arm, row.metrics]));
  const out: string[] = [];
  const compare = (a: string, b: string, what: string) => {
    if (!summary[a] || !summary[b]) return;
    const parts = (['upos_accuracy', 'las'] as const).map((metric) => {
      const x = summary[a][metric];
      const y = summary[b][metric];
      if (!x || !y) return null;
      const delta = 100 * (x.mean - y.mean);
      // Within the seeds' spread the ordering says nothing.
      const noise = 100 * Math.max(x.max - x.min, y.max - y.min);
      const oneSeed = Math.min(x.n, y.n) < 2;
      const verdict = oneSeed ? `${delta > 0 ? 'higher' : 'not higher'} with one seed: no spread to judge it by`
        : delta > noise ? 'HELD' : delta > 0 ? 'held in the mean, within the seed spread' : 'did NOT hold';
      return `${metric === 'las' ? 'LAS' : 'UPOS'} ${delta >= 0 ? '+' : ''}${delta.toFixed(2)} points (${verdict}${oneSeed ? '' : `; spread ${noise.toFixed(2)}`})`;
    }).filter(Boolean);
    out.push(`- ${what}: ${parts.join(', ')}.`);
  };
  compare('electra-gdes', 'electra-es', 'GDES over ES');
  compare('electra-gdes', 'electra-none', 'GDES over no sharing');
  compare('electra-gdes', 'mlm', 'ELECTRA (GDES) over MLM at equal wall time');
  compare('mlm', 'random-init', 'MLM pretraining over random init (the floor)');
  compare('electra-gdes', 'random-init', 'ELECTRA (GDES) over random init (the floor)');
  return out;
}
