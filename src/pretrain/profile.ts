// train.js --profile N: where the first N steps' time goes, by phase of the loop (data, forward,
// backward, communication, optimizer, the rest: logging, evaluation, checkpoints), printed once.
// On CUDA each phase ends with a device synchronisation, so the figures are the device's time, not
// the launch time; that costs a little speed, which is why it is off by default.
import { synchronize } from '../tensor';

export interface PhaseTimer {
  phase<T>(name: string, fn: () => T): T;
  phaseAsync<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** After each optimizer step; returns the report once `steps` steps were timed (then stops timing). */
  endStep(tokens: number): string | null;
}

const off: PhaseTimer = {
  phase: (_name, fn) => fn(),
  phaseAsync: (_name, fn) => fn(),
  endStep: () => null,
};

export function createPhaseTimer(steps: number, device: string): PhaseTimer {
  if (steps <= 0) return off;
  const sync = device.startsWith('cuda') ? () => synchronize() : () => undefined;
  const totals = new Map<string, number>();
  let timed = 0;
  let tokens = 0;
  let stepStarted = performance.now();
  let stepPhasesMs = 0;
  let inPhase = 0;
  let done = false;
  const add = (name: string, ms: number) => {
    totals.set(name, (totals.get(name) ?? 0) + ms);
    stepPhasesMs += ms;
  };
  return {
    phase(name, fn) {
      if (done || inPhase > 0) return fn();
      inPhase++;
      sync();
      const started = performance.now();
      try {
        const out = fn();
        sync();
        return out;
      } finally {
        add(name, performance.now() - started);
        inPhase--;
      }
    },
    async phaseAsync(name, fn) {
      if (done || inPhase > 0) return fn();
      inPhase++;
      sync();
      const started = performance.now();
      try {
        const out = await fn();
        sync();
        return out;
      } finally {
        add(name, performance.now() - started);
        inPhase--;
      }
    },
    endStep(stepTokens) {
      if (done) return null;
      const now = performance.now();
      add('other (logging, evaluation, checkpoints, host waits)', Math.max(0, now - stepStarted - stepPhasesMs));
      stepPhasesMs = 0;
      stepStarted = now;
      timed += 1;
      tokens += stepTokens;
      if (timed < steps) return null;
      done = true;
      const total = [...totals.values()].reduce((a, b) => a + b, 0);
      const lines = [`train: profile of ${timed} step(s): ${(total / timed).toFixed(1)} ms per step, ${(tokens / (total / 1000)).toFixed(0)} tokens/s${device.startsWith('cuda') ? ' (each phase synchronised)' : ''}`];
      for (const [name, ms] of [...totals.entries()].sort((a, b) => b[1] - a[1])) {
        lines.push(`train:   ${name.padEnd(52)} ${(ms / timed).toFixed(1).padStart(9)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)}%`);
      }
      return lines.join('\n');
    },
  };
}
