// train.js --profile N: where the first N steps' time goes, by phase of the loop (data, forward,
// backward, communication, optimizer, the rest: logging, evaluation, checkpoints), then by
// operator (libtorch's profiler over the same steps: the ops that take the most self time), printed
// once and written to OUTPUT_DIR/profile.json.
// On CUDA each phase ends with a device synchronisation, so the figures are the device's time, not
// the launch time; that costs a little speed, which is why it is off by default. The operator
// profiler costs a few microseconds per op while it records, which the phase figures include.
// Without --profile none of this runs: no synchronisation, no profiler, no file.
import * as path from 'path';
import { getNumThreads, synchronize } from '../tensor';
import { OperatorSummary, startOperatorProfiler, stopOperatorProfiler, summarizeOperators } from '../tensor/profiler';
import { writeFileAtomicSyncFrom } from '../io/atomic';

export interface PhaseTimer {
  phase<T>(name: string, fn: () => T): T;
  phaseAsync<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** After each optimizer step; returns the report once `steps` steps were timed (then stops timing). */
  endStep(tokens: number): string | null;
  /** Stops the operator profiler if the run ends before the report (an error, a signal, fewer steps). */
  close(): void;
}

export interface PhaseTimerOptions {
  /** Record operators over the profiled steps with libtorch's profiler (default true). */
  operators?: boolean;
  /** Where profile.json goes (the writing rank's OUTPUT_DIR); none: no file. */
  outputDir?: string | null;
  /** How many operators the report lists (default 15; the file has them all). */
  topOperators?: number;
}

/** What OUTPUT_DIR/profile.json holds (times in milliseconds, totals over the profiled steps). */
export interface ProfileFile {
  format: 'camemberta.profile';
  version: 1;
  steps: number;
  device: string;
  /** intra-op threads (an op's self time is wall time on the thread that called it, whatever threads its kernel used) */
  threads: number;
  /** each phase ended with a device synchronisation (CUDA) */
  synchronised: boolean;
  wall_ms: number;
  step_ms: number;
  tokens: number;
  tokens_per_s: number;
  phases: { name: string; ms: number; ms_per_step: number; share: number }[];
  /** every recorded operator and runtime call, by self time (device self time first on CUDA) */
  operators: { name: string; calls: number; self_cpu_ms: number; cpu_ms: number; self_device_ms: number; device_ms: number; self_share: number }[] | null;
  /** why there is no operator table, when there is none */
  operators_note?: string;
  operator_events: number;
  /** device kernels no recorded op launched (in no operator's time) */
  unlinked_device_ms: number;
}

const off: PhaseTimer = {
  phase: (_name, fn) => fn(),
  phaseAsync: (_name, fn) => fn(),
  endStep: () => null,
  close: () => undefined,
};

export const PROFILE_FILE = 'profile.json';

export function createPhaseTimer(steps: number, device: string, options: PhaseTimerOptions = {}): PhaseTimer {
  if (steps <= 0) return off;
  const onCuda = device.startsWith('cuda');
  const sync = onCuda ? () => synchronize() : () => undefined;
  const totals = new Map<string, number>();
  let timed = 0;
  let tokens = 0;
  let inPhase = 0;
  let done = false;
  // The operator profiler records from here to the end of the last profiled step: the same span
  // as the phase totals (the first step's 'other' counts from here too).
  let recording = false;
  let operatorNote: string | null = null;
  if (options.operators ?? true) {
    try {
      startOperatorProfiler({ cuda: onCuda });
      recording = true;
    } catch (error) {
      operatorNote = `the operator profiler did not start (${(error as Error).message.split('\n')[0]})`;
    }
  }
  let stepStarted = performance.now();
  let stepPhasesMs = 0;
  const add = (name: string, ms: number) => {
    totals.set(name, (totals.get(name) ?? 0) + ms);
    stepPhasesMs += ms;
  };
  const stopRecording = (keep: boolean): OperatorSummary | null => {
    if (!recording) return null;
    recording = false;
    const events = stopOperatorProfiler({ keep });
    return events ? summarizeOperators(events) : null;
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
      let summary: OperatorSummary | null = null;
      try {
        summary = stopRecording(true);
      } catch (error) {
        operatorNote = `the operator profiler failed (${(error as Error).message.split('\n')[0]})`;
      }
      if (summary === null && operatorNote === null && (options.operators ?? true)) operatorNote = 'the operator profiler recorded nothing';
      const total = [...totals.values()].reduce((a, b) => a + b, 0);
      const phases = [...totals.entries()].sort((a, b) => b[1] - a[1]);
      const lines = [`train: profile of ${timed} step(s): ${(total / timed).toFixed(1)} ms per step, ${(tokens / (total / 1000)).toFixed(0)} tokens/s${onCuda ? ' (each phase synchronised)' : ''}`];
      for (const [name, ms] of phases) {
        lines.push(`train:   ${name.padEnd(52)} ${(ms / timed).toFixed(1).padStart(9)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)}%`);
      }
      if (summary) lines.push(...operatorTable(summary, timed, total, onCuda, options.topOperators ?? 15));
      else if (operatorNote) lines.push(`train: no operator table: ${operatorNote}`);
      if (options.outputDir) {
        const file = path.join(options.outputDir, PROFILE_FILE);
        const content: ProfileFile = {
          format: 'camemberta.profile', version: 1, steps: timed, device, threads: getNumThreads(), synchronised: onCuda,
          wall_ms: total, step_ms: total / timed, tokens, tokens_per_s: tokens / (total / 1000),
          phases: phases.map(([name, ms]) => ({ name, ms, ms_per_step: ms / timed, share: ms / total })),
          operators: summary ? operatorRows(summary, total) : null,
          ...(summary ? {} : { operators_note: operatorNote ?? 'operators were not recorded' }),
          operator_events: summary?.events ?? 0,
          unlinked_device_ms: summary?.unlinkedDeviceMs ?? 0,
        };
        try {
          writeFileAtomicSyncFrom(file, `${JSON.stringify(content, null, 2)}\n`);
          lines.push(`train: profile written to ${file}`);
        } catch (error) {
          lines.push(`train: profile not written to ${file}: ${(error as Error).message}`);
        }
      }
      return lines.join('\n');
    },
    close() {
      done = true;
      try {
        stopRecording(false);
      } catch {
        // the run is ending anyway; an error here must not hide the one that ended it
      }
    },
  };
}

function operatorRows(summary: OperatorSummary, totalMs: number): NonNullable<ProfileFile['operators']> {
  const { onDevice } = summary;
  return summary.operators.map((o) => ({
    name: o.name, calls: o.calls, self_cpu_ms: o.selfCpuMs, cpu_ms: o.cpuMs, self_device_ms: o.selfDeviceMs, device_ms: o.deviceMs,
    self_share: (onDevice ? o.selfDeviceMs : o.selfCpuMs) / totalMs,
  }));
}

function formatCalls(calls: number): string {
  return Number.isInteger(calls) ? String(calls) : calls.toFixed(1);
}

/** The top operators by self time: per step, and as a share of the profiled wall time. */
function operatorTable(summary: OperatorSummary, steps: number, totalMs: number, onCuda: boolean, top: number): string[] {
  const { operators, onDevice } = summary;
  const share = (ms: number) => `${((100 * ms) / totalMs).toFixed(1)}%`.padStart(6);
  const perStep = (ms: number, width: number) => (ms / steps).toFixed(2).padStart(width);
  const selfCpu = operators.reduce((sum, o) => sum + o.selfCpuMs, 0);
  const shown = operators.slice(0, top);
  const width = Math.min(52, Math.max(24, ...shown.map((o) => o.name.length)));
  const clip = (name: string) => (name.length > width ? `${name.slice(0, width - 1)}…` : name);
  const lines = [`train: top ${shown.length} of ${operators.length} operators by self ${onDevice ? 'CUDA' : 'CPU'} time, same ${steps} step(s) (libtorch profiler, ${summary.events} events)`];
  if (onDevice) {
    lines.push(`train:   ${'operator'.padEnd(width)} ${'calls/step'.padStart(10)} ${'self CUDA ms/step'.padStart(18)}  share ${'self CPU ms/step'.padStart(17)}  share`);
    for (const o of shown) {
      lines.push(`train:   ${clip(o.name).padEnd(width)} ${formatCalls(o.calls / steps).padStart(10)} ${perStep(o.selfDeviceMs, 18)} ${share(o.selfDeviceMs)} ${perStep(o.selfCpuMs, 17)} ${share(o.selfCpuMs)}`);
    }
    const selfDevice = operators.reduce((sum, o) => sum + o.selfDeviceMs, 0);
    lines.push(`train:   all operators: ${(selfDevice / steps).toFixed(2)} ms of kernels (${share(selfDevice).trim()}), ${(selfCpu / steps).toFixed(2)} ms of CPU (${share(selfCpu).trim()}) per step` +
      (summary.unlinkedDeviceMs > 0 ? `; ${(summary.unlinkedDeviceMs / steps).toFixed(2)} ms of kernels launched outside any op` : ''));
  } else {
    lines.push(`train:   ${'operator'.padEnd(width)} ${'calls/step'.padStart(10)} ${'self ms/step'.padStart(13)}  share ${'total ms/step'.padStart(14)}`);
    for (const o of shown) {
      lines.push(`train:   ${clip(o.name).padEnd(width)} ${formatCalls(o.calls / steps).padStart(10)} ${perStep(o.selfCpuMs, 13)} ${share(o.selfCpuMs)} ${perStep(o.cpuMs, 14)}`);
    }
    lines.push(`train:   all operators: ${(selfCpu / steps).toFixed(2)} ms per step (${share(selfCpu).trim()}); the rest is outside libtorch's ops (JavaScript, the binding, data, waits)`);
  }
  lines.push('train:   (self: not counting the ops an op calls; share: of the profiled wall time)');
  if (onCuda && !onDevice) lines.push('train:   no CUDA kernel was recorded (is CUPTI available?): the times are the host\'s');
  return lines;
}
