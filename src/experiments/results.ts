// The file an experiment directory carries (experiment-results.json): what plot.js and the
// Markdown table read. Written by src/experiments/objectives.ts, once every run it names is done.
import * as fs from 'fs';
import * as path from 'path';

export const RESULTS_FILE = 'experiment-results.json';
export const RESULTS_KIND = 'camemberta-experiment-objectives';

export type DownstreamMetric = 'upos_accuracy' | 'uas' | 'las';

export const METRIC_LABELS: Record<DownstreamMetric, string> = {
  upos_accuracy: 'UPOS accuracy',
  uas: 'UAS',
  las: 'LAS',
};

export interface ArmPretraining {
  /** Stable id (directory name): electra-gdes, electra-es, electra-none, mlm. */
  arm: string;
  label: string;
  /** The run directory, relative to the experiment directory (its log.jsonl is the curve). */
  run_dir: string;
  steps: number;
  /** Training wall time as train.js counted it (log.jsonl elapsed_s, evaluations included). */
  seconds: number;
  tokens: number;
  /** Parameters of every model the objective trains (ELECTRA: generator + discriminator + E_delta). */
  parameters: number;
  flops: number;
  final: Record<string, number | null>;
}

export interface DownstreamRun {
  /** An arm id, or "random-init" for the floor. */
  arm: string;
  label: string;
  task: 'upos' | 'parsing';
  seed: number;
  scores: Partial<Record<DownstreamMetric, number>>;
  seconds: number;
}

export interface ExperimentResults {
  kind: typeof RESULTS_KIND;
  command: string;
  machine: string;
  device: string;
  budget: {
    minutes: number;
    pretrain_seconds_per_arm: number;
    finetune_steps: { upos: number; parsing: number };
  };
  seeds: number[];
  pretraining: ArmPretraining[];
  downstream: DownstreamRun[];
  total_seconds: number;
}

export function readExperimentResults(dir: string): ExperimentResults | null {
  const file = path.join(dir, RESULTS_FILE);
  if (!fs.existsSync(file)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: not JSON: ${(error as Error).message}`);
  }
  if ((parsed as { kind?: unknown }).kind !== RESULTS_KIND) throw new Error(`${file}: "kind" is not ${JSON.stringify(RESULTS_KIND)}`);
  return parsed as ExperimentResults;
}

export interface Spread {
  mean: number;
  min: number;
  max: number;
  /** Sample standard deviation (0 with one value). */
  std: number;
  n: number;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new Error('spread: no values');
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
  return { mean, min: Math.min(...values), max: Math.max(...values), std: Math.sqrt(variance), n: values.length };
}

/** Per (arm, metric): the spread over seeds, arms in the order they first appear. */
export function downstreamSummary(runs: readonly DownstreamRun[]): Array<{ arm: string; label: string; metrics: Partial<Record<DownstreamMetric, Spread>> }> {
  const arms: Array<{ arm: string; label: string; values: Partial<Record<DownstreamMetric, number[]>> }> = [];
  for (const run of runs) {
    let entry = arms.find((a) => a.arm === run.arm);
    if (!entry) arms.push(entry = { arm: run.arm, label: run.label, values: {} });
    for (const [metric, value] of Object.entries(run.scores) as Array<[DownstreamMetric, number]>) (entry.values[metric] ??= []).push(value);
  }
  return arms.map(({ arm, label, values }) => ({
    arm, label,
    metrics: Object.fromEntries(Object.entries(values).map(([metric, list]) => [metric, spread(list!)])) as Partial<Record<DownstreamMetric, Spread>>,
  }));
}
