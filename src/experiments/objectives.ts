// npm run experiment:objectives: the paper's two claims in miniature. Four arms (arms.ts) pretrain
// on one prepared corpus under the same wall-time budget, then each discriminator (or the MLM
// model) is fine-tuned on Sequoia UPOS and dependency parsing with one recipe and K seeds, with a
// random initialisation of the same architecture as the floor.
//
// The budget is the whole command's: data preparation (once) and a short timing run per arm and
// per task come first; what is left is split in two halves, pretraining (equal wall time per arm:
// steps = measured steps/s x its share, and max_seconds where train.js has it) and fine-tuning
// (equal steps for every run). Everything lands in the output directory; a rerun reuses the plan,
// the finished runs and the checkpoints of an interrupted one.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import { readMetricsLog } from '../pretrain/metrics-log';
import { writeFileAtomicSyncFrom } from '../io/atomic';
import { Arm, ARMS, armOverrides, ArmBudget, resolveArmConfig, SharedSettings, supportsMaxSeconds, trainArguments } from './arms';
import { modelSize, trainingFlops } from './flops';
import { ArmPretraining, DownstreamRun, ExperimentResults, RESULTS_FILE, RESULTS_KIND } from './results';
import { markdownTable } from './table';
import { figureSpec, loadPlotInputs, renderSvg, svgToPng } from './plot';

export interface ExperimentOptions {
  root: string;
  outputDir: string;
  data: string;
  ud: string;
  baseConfig: string;
  budgetMinutes: number;
  seeds: number[];
  device: 'cpu' | 'cuda';
  threads: number;
  extra: string[];
  command: string;
  say: (line: string) => void;
}

const PLAN_FILE = 'plan.json';
const CALIBRATION_STEPS = 4;
const FINETUNE_CALIBRATION_STEPS = 8;
// The fine-tuning recipe of eval:upos (a 64-wide model needs lr 1e-3), for every arm alike.
const FINETUNE_RECIPE = ['--lr', '1e-3', '--epochs', '3', '--batch-size', '16'];
const PARSER_RECIPE = ['--set', 'parser.arc_size=256', '--set', 'parser.rel_size=64'];
const MIN_PRETRAIN_STEPS = 5;
const MIN_FINETUNE_STEPS = 5;

export class ExperimentError extends Error {}

interface Plan {
  version: 1;
  budget_minutes: number;
  seeds: number[];
  device: string;
  base_config: string;
  extra: string[];
  data: string;
  shared: SharedSettings;
  arms: Record<string, ArmBudget & { steps_per_s: number; startup_s: number }>;
  finetune: { upos: number; parsing: number; per_step_s: { upos: number; parsing: number }; overhead_s: { upos: number; parsing: number } };
  pretrain_seconds_per_arm: number;
  max_seconds_supported: boolean;
  planned_after_s: number;
}

/** Runs a dist/ script, its output on our stderr; SIGINT/SIGTERM reach it once (train.js then checkpoints). */
function runNode(root: string, script: string, args: string[], say: (line: string) => void): Promise<number> {
  say(`node dist/${script} ${args.join(' ')}`);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'dist', script), ...args], { cwd: root, stdio: ['ignore', 2, 2], detached: true });
    const forward = (signal: NodeJS.Signals) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    const handlers: Array<[NodeJS.Signals, () => void]> = [['SIGINT', forward('SIGINT')], ['SIGTERM', forward('SIGTERM')]];
    for (const [signal, handler] of handlers) process.on(signal, handler);
    child.on('error', (error) => reject(error));
    child.on('exit', (code, signal) => {
      for (const [s, handler] of handlers) process.off(s, handler);
      if (code === 0) resolve((Date.now() - started) / 1000);
      else reject(new ChildFailed(script, code, signal));
    });
  });
}

export class ChildFailed extends ExperimentError {
  constructor(readonly script: string, readonly code: number | null, readonly signal: NodeJS.Signals | null) {
    super(`${script} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${code === 130 || code === 143 ? ' (stopped: rerun the same command to continue)' : ''}`);
  }
}

function trainingLines(logFile: string): Array<Record<string, unknown>> {
  return readMetricsLog(logFile).filter((r) => !Object.keys(r).some((k) => k.startsWith('eval_')));
}

function isPrepared(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'manifest.json'));
}

export async function runObjectivesExperiment(options: ExperimentOptions): Promise<ExperimentResults> {
  const { root, outputDir, say } = options;
  const started = Date.now();
  const budgetSeconds = options.budgetMinutes * 60;
  const split = (name: string) => path.join(options.ud, `fr_sequoia-ud-${name}.conllu`);
  for (const file of [options.data, options.baseConfig, split('train'), split('dev'), split('test')]) {
    if (!fs.existsSync(file)) throw new ExperimentError(`${file} does not exist`);
  }
  for (const script of ['train.js', 'finetune.js']) {
    if (!fs.existsSync(path.join(root, 'dist', script))) throw new ExperimentError(`dist/${script} is missing: run npm run build`);
  }
  const threads = options.threads || os.cpus().length;
  const maxSecondsSupported = supportsMaxSeconds(options.baseConfig);
  // Every arm's config is checked before anything runs (a bad --set names its key here).
  const draftShared: SharedSettings = { data: options.data, device: options.device, threads, warmupSteps: 1, loggingEvery: 1, evalEvery: 1, extra: options.extra };
  for (const arm of ARMS) resolveArmConfig(options.baseConfig, armOverrides(arm, draftShared, { maxSteps: 10, maxSeconds: 0, outputDir: path.join(outputDir, 'pretrain', arm.id) }));
  fs.mkdirSync(outputDir, { recursive: true });

  const planFile = path.join(outputDir, PLAN_FILE);
  let plan: Plan | null = fs.existsSync(planFile) ? JSON.parse(fs.readFileSync(planFile, 'utf8')) : null;
  if (plan) {
    const same = plan.budget_minutes === options.budgetMinutes && JSON.stringify(plan.seeds) === JSON.stringify(options.seeds) && plan.device === options.device
      && JSON.stringify(plan.extra) === JSON.stringify(options.extra) && plan.base_config === path.resolve(options.baseConfig);
    if (!same) {
      throw new ExperimentError(`${outputDir} holds an experiment planned with --budget-minutes ${plan.budget_minutes} --seeds ${plan.seeds.length} --device ${plan.device}`
        + `${plan.extra.length ? ` --set ${plan.extra.join(' ')}` : ''}: give the same flags to continue it, or another --output-dir`);
    }
    say(`continuing the experiment in ${outputDir} (planned ${plan.planned_after_s.toFixed(0)} s into its first run)`);
  } else {
    plan = await calibrate(options, threads, maxSecondsSupported, budgetSeconds, started);
    writeFileAtomicSyncFrom(planFile, `${JSON.stringify(plan, null, 2)}\n`);
  }

  // Pretraining, arm after arm; an interrupted arm resumes from its checkpoint.
  const pretraining: ArmPretraining[] = [];
  for (const arm of ARMS) {
    const budget = plan.arms[arm.id];
    const runDir = budget.outputDir;
    const encoder = path.join(runDir, arm.encoderDir);
    if (!fs.existsSync(path.join(encoder, 'config.json'))) {
      const resume = fs.existsSync(path.join(runDir, 'checkpoints')) ? ['--resume', 'auto'] : [];
      if (!resume.length) fs.rmSync(runDir, { recursive: true, force: true });
      await runNode(root, 'train.js', [...trainArguments(options.baseConfig, armOverrides(arm, plan.shared, budget)), ...resume], say);
      if (!fs.existsSync(path.join(encoder, 'config.json'))) {
        // max_seconds ended it before max_steps: train.js checkpointed; the export is ours to make.
        await runNode(root, 'export.js', ['--checkpoint', runDir, '--output', path.join(runDir, 'export')], say);
      }
    }
    pretraining.push(pretrainSummary(arm, runDir, outputDir));
  }

  // Fine-tuning: one recipe and step budget for every arm, the random-init floor and every seed.
  const downstream: DownstreamRun[] = [];
  const floorModel = path.join(plan.arms[ARMS[0].id].outputDir, ARMS[0].encoderDir);
  const subjects = [
    ...ARMS.map((arm) => ({ id: arm.id, label: arm.label, model: path.join(plan!.arms[arm.id].outputDir, arm.encoderDir), random: false })),
    { id: 'random-init', label: 'random init', model: floorModel, random: true },
  ];
  for (const seed of options.seeds) {
    for (const subject of subjects) {
      for (const task of ['upos', 'parsing'] as const) {
        const dir = path.join(outputDir, 'finetune', `${subject.id}-${task}-seed${seed}`);
        const resultsFile = path.join(dir, 'results.json');
        if (!fs.existsSync(resultsFile)) {
          await runNode(root, 'finetune.js', finetuneArguments(options, task, subject.model, dir, seed, plan.finetune[task], subject.random, threads), say);
        }
        const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'));
        downstream.push({
          arm: subject.id, label: subject.label, task, seed, seconds: results.train_seconds,
          scores: task === 'upos' ? { upos_accuracy: results.test.accuracy } : { uas: results.test.uas, las: results.test.las },
        });
      }
    }
  }

  const results: ExperimentResults = {
    kind: RESULTS_KIND,
    command: options.command,
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end`,
    device: options.device,
    budget: { minutes: options.budgetMinutes, pretrain_seconds_per_arm: plan.pretrain_seconds_per_arm, finetune_steps: { upos: plan.finetune.upos, parsing: plan.finetune.parsing } },
    seeds: options.seeds,
    pretraining,
    downstream,
    total_seconds: (Date.now() - started) / 1000 + earlierSeconds(outputDir),
  };
  writeFileAtomicSyncFrom(path.join(outputDir, RESULTS_FILE), `${JSON.stringify(results, null, 2)}\n`);
  recordInvocation(outputDir, (Date.now() - started) / 1000);
  const table = markdownTable(results, plan.max_seconds_supported);
  writeFileAtomicSyncFrom(path.join(outputDir, 'results.md'), table);
  const svg = await renderSvg(figureSpec(loadPlotInputs([outputDir])));
  writeFileAtomicSyncFrom(path.join(outputDir, 'objectives.png'), svgToPng(svg, 2));
  say(`wrote ${path.join(outputDir, RESULTS_FILE)}, results.md and objectives.png (${results.total_seconds.toFixed(0)} s in all, budget ${budgetSeconds} s)`);
  return results;
}

/**
 * The wall time of the earlier invocations of this experiment (the plan's timing and every run
 * they finished), so that a continued experiment reports what it cost in all; an invocation that
 * was interrupted before writing its results is not counted.
 */
function earlierSeconds(outputDir: string): number {
  const file = path.join(outputDir, 'invocations.json');
  const earlier: number[] = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : [];
  return earlier.reduce((a, b) => a + b, 0);
}

function recordInvocation(outputDir: string, seconds: number): void {
  const file = path.join(outputDir, 'invocations.json');
  const earlier: number[] = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : [];
  writeFileAtomicSyncFrom(file, `${JSON.stringify([...earlier, seconds])}\n`);
}

function finetuneArguments(options: ExperimentOptions, task: 'upos' | 'parsing', model: string, dir: string, seed: number, maxSteps: number, random: boolean, threads: number): string[] {
  const split = (name: string) => path.join(options.ud, `fr_sequoia-ud-${name}.conllu`);
  return [
    '--task', task === 'upos' ? 'token-classification' : 'dependency-parsing', '--model', model,
    '--train', split('train'), '--dev', split('dev'), '--test', split('test'), '--output-dir', dir, '--seed', String(seed),
    ...FINETUNE_RECIPE, ...(task === 'parsing' ? PARSER_RECIPE : []), '--max-steps', String(maxSteps),
    '--threads', String(threads), '--device', options.device, '--quiet', '--overwrite', ...(random ? ['--random-init'] : []),
  ];
}

/**
 * The timing runs: each arm trains CALIBRATION_STEPS steps (the first prepares the data when it is
 * raw text); its steps/s leaves the first step out (caches, allocator warm-up). Then one short
 * fine-tuning per task gives the seconds per step and the fixed cost of a fine-tuning process.
 */
async function calibrate(options: ExperimentOptions, threads: number, maxSecondsSupported: boolean, budgetSeconds: number, started: number): Promise<Plan> {
  const { root, outputDir, say } = options;
  const calibrationDir = path.join(outputDir, 'calibration');
  let data = options.data;
  const timing: Record<string, { stepsPerS: number; startupS: number }> = {};
  for (const arm of ARMS) {
    const runDir = path.join(calibrationDir, arm.id);
    fs.rmSync(runDir, { recursive: true, force: true });
    const shared: SharedSettings = { data, device: options.device, threads, warmupSteps: 1, loggingEvery: 1, evalEvery: 0, extra: options.extra };
    const overrides = [...armOverrides(arm, shared, { maxSteps: CALIBRATION_STEPS, maxSeconds: 0, outputDir: runDir }), 'checkpoint.every=0', 'schedule.total_steps=1000'];
    const wall = await runNode(root, 'train.js', trainArguments(options.baseConfig, overrides), say);
    const lines = trainingLines(path.join(runDir, 'log.jsonl'));
    const first = lines[0].elapsed_s as number;
    const last = lines[lines.length - 1].elapsed_s as number;
    const stepsPerS = (lines.length - 1) / Math.max(last - first, 1e-3);
    timing[arm.id] = { stepsPerS, startupS: Math.max(0, wall - last) };
    say(`calibration: ${arm.label}: ${stepsPerS.toFixed(3)} steps/s, ${timing[arm.id].startupS.toFixed(1)} s outside the training loop`);
    if (!isPrepared(data)) {
      data = path.join(runDir, 'data');
      // The prepared corpus must outlive the calibration directory's reuse: it moves to its own place.
      const shared = path.join(outputDir, 'data');
      fs.rmSync(shared, { recursive: true, force: true });
      fs.renameSync(data, shared);
      data = shared;
      // The startup of this run included tokenizer training and preparation, which no other run pays.
      timing[arm.id].startupS = NaN;
    }
  }
  const startups = Object.values(timing).map((t) => t.startupS).filter(Number.isFinite);
  const typicalStartup = startups.length ? startups.reduce((a, b) => a + b, 0) / startups.length : 5;
  for (const t of Object.values(timing)) if (!Number.isFinite(t.startupS)) t.startupS = typicalStartup;

  // Fine-tuning timing, on the first arm's calibration export (random init: the weights do not matter here).
  const model = path.join(calibrationDir, ARMS[0].id, ARMS[0].encoderDir);
  const perStep = { upos: 0, parsing: 0 };
  const overhead = { upos: 0, parsing: 0 };
  for (const task of ['upos', 'parsing'] as const) {
    const dir = path.join(calibrationDir, `finetune-${task}`);
    const args = [...finetuneArguments(options, task, model, dir, 0, FINETUNE_CALIBRATION_STEPS, true, threads), '--set', 'logging.every=1'];
    const wall = await runNode(root, 'finetune.js', args, say);
    // Per step from the logged steps (the first left out); the dev and test passes, loading and
    // writing are a run's fixed cost, paid once whatever its step count (below one epoch).
    const lines = trainingLines(path.join(dir, 'log.jsonl'));
    const first = lines[0].elapsed_s as number;
    const last = lines[lines.length - 1].elapsed_s as number;
    perStep[task] = Math.max(last - first, 1e-3) / Math.max(1, lines.length - 1);
    overhead[task] = Math.max(0, wall - perStep[task] * FINETUNE_CALIBRATION_STEPS);
    say(`calibration: fine-tuning ${task}: ${perStep[task].toFixed(2)} s/step, ${overhead[task].toFixed(1)} s of fixed cost (loading, dev and test passes)`);
  }

  const spent = (Date.now() - started) / 1000;
  // A margin for the table, the figure and the timing noise of a shared machine.
  const left = budgetSeconds - spent - Math.max(10, 0.05 * budgetSeconds);
  if (left <= 0) say(`warning: the timing runs took ${spent.toFixed(0)} s of the ${budgetSeconds} s budget; every run gets its minimum`);
  const pretrainSecondsPerArm = Math.max(0, left / 2 / ARMS.length);
  const finetuneRuns = (ARMS.length + 1) * options.seeds.length;
  const perRun = Math.max(0, left / 2 / finetuneRuns);
  // Both tasks get the same share of a run pair's time, each at its own speed.
  const finetuneSteps = {
    upos: Math.max(MIN_FINETUNE_STEPS, Math.floor((perRun / 2 - overhead.upos) / perStep.upos)),
    parsing: Math.max(MIN_FINETUNE_STEPS, Math.floor((perRun / 2 - overhead.parsing) / perStep.parsing)),
  };
  const arms: Plan['arms'] = {};
  for (const arm of ARMS) {
    const { stepsPerS, startupS } = timing[arm.id];
    const trainSeconds = Math.max(0, pretrainSecondsPerArm - startupS);
    arms[arm.id] = {
      maxSteps: Math.max(MIN_PRETRAIN_STEPS, Math.floor(trainSeconds * stepsPerS)),
      // No cap once the budget is spent: every arm then runs its minimum steps.
      maxSeconds: maxSecondsSupported && trainSeconds >= 1 ? Math.round(trainSeconds) : 0,
      outputDir: path.join(outputDir, 'pretrain', arm.id),
      steps_per_s: stepsPerS,
      startup_s: startupS,
    };
  }
  const fewest = Math.min(...Object.values(arms).map((a) => a.maxSteps));
  // Shared by every arm: warm-up, logging and evaluation are set from the arm with the fewest steps.
  const shared: SharedSettings = {
    data, device: options.device, threads, extra: options.extra,
    warmupSteps: Math.max(1, Math.min(Math.round(0.1 * fewest), fewest - 1)),
    loggingEvery: Math.max(1, Math.floor(fewest / 20)),
    evalEvery: Math.max(1, Math.floor(fewest / 4)),
  };
  for (const arm of ARMS) say(`plan: ${arm.label}: ${arms[arm.id].maxSteps} steps in ~${pretrainSecondsPerArm.toFixed(0)} s${maxSecondsSupported ? ` (max_seconds ${arms[arm.id].maxSeconds})` : ''}`);
  say(`plan: fine-tuning ${finetuneSteps.upos} UPOS / ${finetuneSteps.parsing} parsing steps per run, ${finetuneRuns * 2} runs`);
  return {
    version: 1, budget_minutes: options.budgetMinutes, seeds: options.seeds, device: options.device, base_config: path.resolve(options.baseConfig),
    extra: options.extra, data, shared, arms, finetune: { ...finetuneSteps, per_step_s: perStep, overhead_s: overhead },
    pretrain_seconds_per_arm: pretrainSecondsPerArm, max_seconds_supported: maxSecondsSupported, planned_after_s: spent,
  };
}

function pretrainSummary(arm: Arm, runDir: string, experimentDir: string): ArmPretraining {
  const config = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8'));
  const records = readMetricsLog(path.join(runDir, 'log.jsonl'));
  const training = records.filter((r) => !Object.keys(r).some((k) => k.startsWith('eval_')));
  const evals = records.filter((r) => Object.keys(r).some((k) => k.startsWith('eval_')));
  const checkpoints = fs.readdirSync(path.join(runDir, 'checkpoints')).filter((n) => /^step-\d+$/.test(n)).sort();
  const meta = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoints', checkpoints[checkpoints.length - 1], 'trainer.json'), 'utf8'));
  const tokens: number = meta.tokens;
  const lastTrain = training[training.length - 1] ?? {};
  const lastEval = evals[evals.length - 1] ?? {};
  const seq = config.data.seq_length;
  let parameters: number;
  let flops: number;
  if (config.objective === 'electra') {
    const disc = modelSize(path.join(runDir, 'export', 'discriminator'));
    const gen = modelSize(path.join(runDir, 'export', 'generator'));
    // GDES trains E_delta besides the shared table; ES one table; none two tables.
    const sharing = config.electra.embedding_sharing;
    const embeddingRows = disc.parameters - disc.nonEmbedding;
    parameters = disc.parameters + gen.parameters - (sharing === 'es' ? embeddingRows : 0);
    flops = trainingFlops([disc, gen], tokens, seq, config.electra.mask_prob, gen);
  } else {
    const model = modelSize(path.join(runDir, 'export', 'model'));
    parameters = model.parameters;
    flops = trainingFlops([model], tokens, seq, config.mlm.mask_prob, model);
  }
  const pick = (record: Record<string, unknown>, keys: string[]) => {
    const key = keys.find((k) => typeof record[k] === 'number');
    return key ? (record[key] as number) : null;
  };
  return {
    arm: arm.id, label: arm.label, run_dir: path.relative(experimentDir, runDir), steps: meta.step, seconds: meta.elapsedSeconds ?? (lastTrain.elapsed_s as number), tokens, parameters, flops,
    final: {
      mlm_loss: pick(lastTrain, ['gen_loss', 'loss']),
      disc_loss: pick(lastTrain, ['disc_loss']),
      eval_mlm_accuracy: pick(lastEval, ['eval_gen_accuracy', 'eval_mlm_accuracy']),
      eval_disc_auc: pick(lastEval, ['eval_disc_auc']),
    },
  };
}
