// The four arms of the objectives experiment and the train.js overrides each one runs with. Every
// arm reads one base config and one set of shared overrides; an arm adds only its objective and
// its embedding sharing, and the equal wall-time budget gives each its own step count.
import { loadTrainConfig, TrainConfig } from '../pretrain/config';

export interface Arm {
  id: string;
  label: string;
  /** What makes this arm this arm: nothing else may differ (test/experiment-arms). */
  overrides: string[];
  /** The HF directory to fine-tune, relative to the run directory. */
  encoderDir: string;
}

export const ARMS: readonly Arm[] = [
  { id: 'electra-gdes', label: 'ELECTRA + GDES', overrides: ['objective=electra', 'electra.embedding_sharing=gdes'], encoderDir: 'export/discriminator' },
  { id: 'electra-es', label: 'ELECTRA + ES', overrides: ['objective=electra', 'electra.embedding_sharing=es'], encoderDir: 'export/discriminator' },
  { id: 'electra-none', label: 'ELECTRA, no sharing', overrides: ['objective=electra', 'electra.embedding_sharing=none'], encoderDir: 'export/discriminator' },
  // The discriminator's architecture (model.* of the base config) trained with masked-LM.
  { id: 'mlm', label: 'MLM (discriminator-sized)', overrides: ['objective=mlm'], encoderDir: 'export/model' },
];

/** The keys in which the arms are allowed to differ by design. */
export const ARM_KEYS = ['objective', 'electra.embedding_sharing'] as const;

/**
 * The keys the budget and the plumbing set per arm: an equal wall time is a different number of
 * steps for objectives of different cost (max_steps, and max_seconds where train.js has it), and
 * each arm writes its own directory.
 */
export const BUDGET_KEYS = ['max_steps', 'max_seconds', 'output_dir'] as const;

/** What every arm shares, chosen once from the budget (src/experiments/objectives.ts). */
export interface SharedSettings {
  data: string;
  device: 'cpu' | 'cuda';
  threads: number;
  warmupSteps: number;
  loggingEvery: number;
  evalEvery: number;
  /** The user's --set overrides, applied to every arm alike (e.g. model.preset=small on a GPU). */
  extra: readonly string[];
}

export interface ArmBudget {
  maxSteps: number;
  /** 0: train.js has no max_seconds key, or the arm is not capped. */
  maxSeconds: number;
  outputDir: string;
}

/** The --set overrides of one arm's pretraining, in the order train.js applies them. */
export function armOverrides(arm: Arm, shared: SharedSettings, budget: ArmBudget): string[] {
  return [
    `data.path=${shared.data}`,
    `device=${shared.device}`,
    `threads=${shared.threads}`,
    `schedule.warmup_steps=${shared.warmupSteps}`,
    `logging.every=${shared.loggingEvery}`,
    `eval.every=${shared.evalEvery}`,
    `checkpoint.every=${shared.evalEvery}`,
    ...shared.extra,
    ...arm.overrides,
    `max_steps=${budget.maxSteps}`,
    ...(budget.maxSeconds > 0 ? [`max_seconds=${budget.maxSeconds}`] : []),
    `output_dir=${budget.outputDir}`,
  ];
}

/** train.js's arguments: the base config, then every override as --set (so that one list says it all). */
export function trainArguments(baseConfig: string, overrides: readonly string[]): string[] {
  return ['--config', baseConfig, ...overrides.flatMap((o) => ['--set', o])];
}

/** The resolved config train.js will run with (every default filled in), or a TrainConfigError. */
export function resolveArmConfig(baseConfig: string, overrides: readonly string[]): TrainConfig {
  return loadTrainConfig(baseConfig, overrides);
}

/** Whether this build of train.js knows max_seconds (a wall-time stop); else the steps alone set the budget. */
export function supportsMaxSeconds(baseConfig: string): boolean {
  try {
    loadTrainConfig(baseConfig, ['max_seconds=1']);
    return true;
  } catch {
    return false;
  }
}
