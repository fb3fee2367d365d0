// Learning-rate schedules as NVIDIA's TF2 ELECTRA computes them (optimization.py: `WarmUp` around
// Keras `PolynomialDecay`, cycle=False):
//   step < warmupSteps:  peakLr * step / warmupSteps          (the first update, step 0, gets lr 0)
//   otherwise:           (peakLr - endLr) * (1 - p)^power + endLr,
//                        p = min(step - warmupSteps, decaySteps) / decaySteps, decaySteps = totalSteps - warmupSteps
// so past totalSteps the rate stays at endLr. 'linear' is power 1; 'constant' holds peakLr after
// the warm-up. `step` counts completed updates, as Keras evaluates the schedule at
// optimizer.iterations before incrementing it.

export interface ScheduleConfig {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  decay: 'polynomial' | 'linear' | 'constant';
  /** Exponent of the polynomial decay (CamemBERTa: 0.5); default 1. */
  power?: number;
  /** The rate reached at totalSteps; default 0. */
  endLr?: number;
}

const DECAYS = ['polynomial', 'linear', 'constant'];

/** What is wrong with a schedule, one message per problem naming the field; empty when it is usable. */
export function validateSchedule(config: ScheduleConfig): string[] {
  const problems: string[] = [];
  const { peakLr, warmupSteps, totalSteps, decay } = config;
  const endLr = config.endLr ?? 0;
  const power = config.power ?? 1;
  if (typeof peakLr !== 'number' || !Number.isFinite(peakLr) || peakLr < 0) problems.push(`peakLr must be a finite number >= 0, got ${peakLr}`);
  if (typeof endLr !== 'number' || !Number.isFinite(endLr) || endLr < 0) problems.push(`endLr must be a finite number >= 0, got ${endLr}`);
  if (!Number.isInteger(totalSteps) || totalSteps <= 0) problems.push(`totalSteps must be a positive integer, got ${totalSteps}`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) problems.push(`warmupSteps must be a non-negative integer, got ${warmupSteps}`);
  if (!DECAYS.includes(decay)) problems.push(`decay must be one of ${DECAYS.join(', ')}, got ${JSON.stringify(decay)}`);
  if (typeof power !== 'number' || !Number.isFinite(power) || power <= 0) problems.push(`power must be a positive number, got ${power}`);
  if (Number.isInteger(totalSteps) && totalSteps > 0 && Number.isInteger(warmupSteps) && warmupSteps >= 0) {
    if (warmupSteps > totalSteps) {
      problems.push(`warmupSteps (${warmupSteps}) must not exceed totalSteps (${totalSteps})`);
    } else if (warmupSteps === totalSteps && decay !== 'constant') {
      // Keras' PolynomialDecay would divide by decay_steps = 0 at the end of the warm-up.
      problems.push(`warmupSteps (${warmupSteps}) must be below totalSteps (${totalSteps}) for a ${decay} decay: nothing would be left to decay over`);
    }
  }
  return problems;
}

/** The learning rate of the update that follows `step` completed updates. */
export function learningRate(config: ScheduleConfig, step: number): number {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`learningRate: step must be a non-negative integer, got ${step}`);
  const problems = validateSchedule(config);
  if (problems.length > 0) throw new Error(`learningRate: invalid schedule: ${problems.join('; ')}`);
  const { peakLr, warmupSteps, totalSteps, decay } = config;
  if (step < warmupSteps) return peakLr * (step / warmupSteps);
  if (decay === 'constant') return peakLr;
  const endLr = config.endLr ?? 0;
  const power = decay === 'linear' ? 1 : config.power ?? 1;
  const decaySteps = totalSteps - warmupSteps;
  const progress = Math.min(step - warmupSteps, decaySteps) / decaySteps;
  return (peakLr - endLr) * (1 - progress) ** power + endLr;
}
