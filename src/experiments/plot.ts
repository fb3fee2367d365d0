// Figures of pretraining runs (any train.js log.jsonl) and of an objectives experiment's
// downstream scores, as one Vega-Lite chart rendered headlessly to SVG, and to PNG by resvg.
import * as fs from 'fs';
import * as path from 'path';
import * as vega from 'vega';
import { compile, TopLevelSpec } from 'vega-lite';
import { Resvg } from '@resvg/resvg-js';
import { readMetricsLog } from '../pretrain/metrics-log';
import { downstreamSummary, DownstreamMetric, ExperimentResults, METRIC_LABELS, readExperimentResults } from './results';

export interface RunCurves {
  label: string;
  logFile: string;
  points: CurvePoint[];
}

export interface CurvePoint {
  run: string;
  panel: string;
  step: number;
  tokens: number;
  value: number;
}

interface Panel {
  id: string;
  title: string;
  yTitle: string;
  /** The first key of the record that holds a number is the panel's value (ELECTRA's name, then MLM's). */
  keys: string[];
  evalLine: boolean;
}

// The generator and an MLM model solve the same masked-LM task, so their losses share a panel.
const PANELS: Panel[] = [
  { id: 'mlm_loss', title: 'Generator / MLM loss (train)', yTitle: 'cross-entropy', keys: ['gen_loss', 'loss'], evalLine: false },
  { id: 'disc_loss', title: 'Discriminator loss (train)', yTitle: 'binary cross-entropy', keys: ['disc_loss'], evalLine: false },
  { id: 'mlm_accuracy', title: 'Held-out MLM accuracy', yTitle: 'accuracy', keys: ['eval_gen_accuracy', 'eval_mlm_accuracy'], evalLine: true },
  { id: 'disc_auc', title: 'Held-out discriminator AUC', yTitle: 'ROC AUC', keys: ['eval_disc_auc'], evalLine: true },
];

const isEvalRecord = (record: Record<string, unknown>) => Object.keys(record).some((key) => key.startsWith('eval_'));

/**
 * Tokens seen at each logged step. A training line's window holds tokens_per_s x its seconds, and
 * its seconds are the elapsed_s since the line before (both clocks are read at the log point), so
 * the running sum is the count train.js keeps. A `tokens` field, where a log has one, wins.
 */
export function tokensByStep(records: ReadonlyArray<Record<string, unknown>>): Map<number, number> {
  const out = new Map<number, number>();
  let tokens = 0;
  let lastElapsed = 0;
  for (const record of records) {
    if (isEvalRecord(record)) continue;
    const step = record.step as number;
    if (typeof record.tokens === 'number') {
      tokens = record.tokens;
    } else if (typeof record.tokens_per_s === 'number' && typeof record.elapsed_s === 'number') {
      tokens += record.tokens_per_s * Math.max(0, record.elapsed_s - lastElapsed);
    }
    if (typeof record.elapsed_s === 'number') lastElapsed = record.elapsed_s;
    out.set(step, tokens);
  }
  return out;
}

/** The training log of a run directory, or the file itself. */
export function logFileOf(input: string): string {
  if (!fs.existsSync(input)) throw new Error(`${input} does not exist`);
  if (fs.statSync(input).isFile()) return input;
  const file = path.join(input, 'log.jsonl');
  if (!fs.existsSync(file)) throw new Error(`${input}: no log.jsonl (a train.js run directory, a log.jsonl file or an experiment directory is expected)`);
  return file;
}

export function readRunCurves(logFile: string, label: string): RunCurves {
  const records = readMetricsLog(logFile);
  const tokens = tokensByStep(records);
  if (tokens.size === 0) throw new Error(`${logFile}: no training line (step, loss, tokens_per_s, elapsed_s)`);
  const points: CurvePoint[] = [];
  for (const record of records) {
    const step = record.step as number;
    const evalLine = isEvalRecord(record);
    // An evaluation line follows the training line of its step, when that step logged one.
    const seen = tokens.get(step) ?? tokensAtOrBefore(tokens, step);
    for (const panel of PANELS) {
      if (panel.evalLine !== evalLine) continue;
      const key = panel.keys.find((k) => typeof record[k] === 'number');
      if (key) points.push({ run: label, panel: panel.id, step, tokens: seen, value: record[key] as number });
    }
  }
  return { label, logFile, points };
}

function tokensAtOrBefore(tokens: Map<number, number>, step: number): number {
  let best = 0;
  for (const [s, t] of tokens) if (s <= step) best = t;
  return best;
}

export interface PlotInputs {
  runs: RunCurves[];
  experiment: ExperimentResults | null;
}

/**
 * Each input is a log.jsonl, a run directory, or an experiment directory (its
 * experiment-results.json: every arm's curve under the arm's name, and the downstream scores).
 * `labels` name the runs in order (default: the directory's name).
 */
export function loadPlotInputs(inputs: readonly string[], labels: readonly string[] = []): PlotInputs {
  if (inputs.length === 0) throw new Error('no run given: name run directories, log.jsonl files or an experiment directory');
  if (labels.length > inputs.length) throw new Error(`--label given ${labels.length} times for ${inputs.length} run(s)`);
  const runs: RunCurves[] = [];
  let experiment: ExperimentResults | null = null;
  inputs.forEach((input, i) => {
    const results = fs.existsSync(input) && fs.statSync(input).isDirectory() ? readExperimentResults(input) : null;
    if (results) {
      if (experiment) throw new Error(`${input}: only one experiment directory per figure`);
      experiment = results;
      for (const arm of results.pretraining) runs.push(readRunCurves(logFileOf(path.join(input, arm.run_dir)), arm.label));
      return;
    }
    const logFile = logFileOf(input);
    const fallback = path.basename(logFile) === 'log.jsonl' ? path.basename(path.dirname(path.resolve(logFile))) : path.basename(logFile);
    runs.push(readRunCurves(logFile, labels[i] ?? fallback));
  });
  const names = runs.map((r) => r.label);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) throw new Error(`two runs are both named ${JSON.stringify(repeated)}: name them with --label`);
  return { runs, experiment };
}

export interface FigureOptions {
  x?: 'tokens' | 'step';
  panelWidth?: number;
  panelHeight?: number;
  title?: string;
}

const FONT = 'DejaVu Sans';

/** The Vega-Lite spec: a row of curve panels (one line per run), then the downstream scores. */
export function figureSpec(inputs: PlotInputs, options: FigureOptions = {}): TopLevelSpec {
  const x = options.x ?? 'tokens';
  const width = options.panelWidth ?? 260;
  const height = options.panelHeight ?? 200;
  const runOrder = inputs.runs.map((r) => r.label);
  const allPoints = inputs.runs.flatMap((r) => r.points);
  // One colour scale for the whole figure: an arm has the same colour in its curves and its scores.
  const extra = (inputs.experiment?.downstream ?? []).map((run) => run.label).filter((label) => !runOrder.includes(label));
  const domain = [...runOrder, ...new Set(extra)];
  const color = { field: 'run', type: 'nominal' as const, title: inputs.experiment ? 'arm' : 'run', scale: { domain }, legend: { labelLimit: 260 } };
  const curvePanels = PANELS.filter((panel) => allPoints.some((p) => p.panel === panel.id)).map((panel) => ({
    title: panel.title,
    width, height,
    data: { values: allPoints.filter((p) => p.panel === panel.id) },
    mark: { type: 'line' as const, point: panel.evalLine, strokeWidth: 2 },
    encoding: {
      x: x === 'tokens'
        ? { field: 'tokens', type: 'quantitative' as const, title: 'tokens seen', axis: { format: '~s' } }
        : { field: 'step', type: 'quantitative' as const, title: 'optimizer step' },
      y: { field: 'value', type: 'quantitative' as const, title: panel.yTitle, scale: { zero: false } },
      color,
      tooltip: [{ field: 'run' }, { field: 'step' }, { field: 'value' }],
    },
  }));
  const rows: unknown[] = [{ hconcat: curvePanels }];
  if (inputs.experiment && inputs.experiment.downstream.length > 0) rows.push(downstreamSpec(inputs.experiment, domain, height));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: options.title ?? (inputs.experiment ? 'Pretraining objectives under one compute budget' : 'Pretraining curves'), fontSize: 16 },
    background: 'white',
    padding: 12,
    config: { font: FONT, axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 12, titleFontSize: 12 }, title: { fontSize: 13 } },
    vconcat: rows,
  } as unknown as TopLevelSpec;
}

/** One panel per metric: each seed as a dot, the mean as a tick, the min..max as a rule. */
function downstreamSpec(results: ExperimentResults, armOrder: string[], height: number): unknown {
  const seeds = results.downstream.flatMap((run) => (Object.entries(run.scores) as Array<[DownstreamMetric, number]>)
    .map(([metric, value]) => ({ arm: run.label, run: run.label, metric: METRIC_LABELS[metric], seed: run.seed, value })));
  const summary = downstreamSummary(results.downstream).flatMap(({ label, metrics }) => Object.entries(metrics)
    .map(([metric, s]) => ({ arm: label, run: label, metric: METRIC_LABELS[metric as DownstreamMetric], mean: s!.mean, min: s!.min, max: s!.max })));
  const order = armOrder;
  const metricOrder = Object.values(METRIC_LABELS).filter((m) => seeds.some((s) => s.metric === m));
  const armColor = { field: 'run', type: 'nominal', title: 'arm', scale: { domain: order } };
  const panel = (metric: string) => ({
    title: { text: `${metric} (test), ${results.seeds.length} seed(s)`, subtitle: 'dots: seeds, tick: mean, line: min-max' },
    width: 260, height,
    layer: [
      { data: { values: summary.filter((s) => s.metric === metric) }, mark: { type: 'rule', strokeWidth: 2 },
        encoding: { x: { field: 'arm', type: 'nominal', sort: order, title: null, axis: { labelAngle: -30, labelLimit: 240 } },
          y: { field: 'min', type: 'quantitative', title: metric, scale: { zero: false } }, y2: { field: 'max' }, color: armColor } },
      { data: { values: summary.filter((s) => s.metric === metric) }, mark: { type: 'tick', thickness: 3, size: 26 },
        encoding: { x: { field: 'arm', type: 'nominal', sort: order }, y: { field: 'mean', type: 'quantitative' }, color: armColor } },
      { data: { values: seeds.filter((s) => s.metric === metric) }, mark: { type: 'point', filled: true, size: 45, opacity: 0.8 },
        encoding: { x: { field: 'arm', type: 'nominal', sort: order }, y: { field: 'value', type: 'quantitative' }, color: armColor,
          tooltip: [{ field: 'arm' }, { field: 'seed' }, { field: 'value' }] } },
    ],
  });
  return { hconcat: metricOrder.map(panel) };
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** PNG bytes of an SVG at `scale` x its size, on the system's DejaVu Sans (what the spec asks for). */
export function svgToPng(svg: string, scale = 2): Buffer {
  const rendered = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: { loadSystemFonts: true, defaultFontFamily: FONT, sansSerifFamily: FONT },
  }).render();
  return rendered.asPng();
}

/** The SVG's own width and height (vega writes them on the root element). */
export function svgSize(svg: string): { width: number; height: number } {
  const match = /<svg[^>]*\swidth="([0-9.]+)"[^>]*\sheight="([0-9.]+)"/.exec(svg);
  if (!match) throw new Error('the SVG has no width/height');
  return { width: Number(match[1]), height: Number(match[2]) };
}
