// libtorch's operator profiler (native/profiler.cc, the Kineto profiler torch.profiler drives):
// start, stop, and a per-operator table computed here from the raw events, as torch.profiler's
// key_averages() computes it: an op's self time is its time less that of the ops it called, and on
// CUDA a kernel's time goes to the op that launched it.
//
// The profiler only observes: the ops run as they would without it (a few microseconds more each).
import { native } from './native';

/** The events of one profiled span, as columns (one entry per event). */
export interface ProfilerEvents {
  names: string[];
  /** index into names */
  name: Int32Array;
  thread: Float64Array;
  /** nanoseconds from the first event */
  start: Float64Array;
  end: Float64Array;
  /** the event's correlation id (for a CPU op: the id its kernels and runtime calls name) */
  correlation: Float64Array;
  /** the correlation id of the CPU op a kernel or a runtime call (cudaLaunchKernel) belongs to; 0: none */
  linked: Float64Array;
  /** c10::DeviceType: 0 CPU, 1 CUDA */
  device: Int32Array;
  /** libkineto's ActivityType */
  activity: Int32Array;
  /** 1 for an event that does not nest in its thread's timeline (async, or ending on another thread) */
  async: Uint8Array;
}

// libtorch/kineto ActivityType codes of the device-side events that take device time: memcpy,
// memset, kernel. Other device-side events (GPU-side annotations of user ranges, CUDA_SYNC and
// CUDA_EVENT markers) span kernels already counted, or no work.
const DEVICE_WORK = new Set([3, 4, 5]);
// A CPU-side point in time, not an interval.
const CPU_INSTANT_EVENT = 9;

/** One operator (or runtime call) over the profiled span, all its calls together. */
export interface OperatorStats {
  name: string;
  calls: number;
  /** time in the op itself, not in the ops it called (wall time on the calling thread) */
  selfCpuMs: number;
  /** time from the op's start to its end, the ops it called included */
  cpuMs: number;
  /** device time of the kernels the op itself launched (0 on CPU) */
  selfDeviceMs: number;
  /** device time of the kernels it and the ops it called launched (0 on CPU) */
  deviceMs: number;
}

export interface OperatorSummary {
  operators: OperatorStats[];
  /** events read (CPU ops, runtime calls and device kernels) */
  events: number;
  /** device kernels whose launching op is unknown (not counted in any operator) */
  unlinkedDeviceMs: number;
  /** some kernel was charged to an op: the operators are sorted by device time */
  onDevice: boolean;
}

/** Starts recording the ATen ops of this thread (and with `cuda`, the CUDA kernels they launch). */
export function startOperatorProfiler(options: { cuda?: boolean } = {}): void {
  native.profilerStart(options.cuda ?? false);
}

/** Stops the profiler and returns what it recorded (null when none was running, or `keep` is false). */
export function stopOperatorProfiler(options: { keep?: boolean } = {}): ProfilerEvents | null {
  return native.profilerStop(options.keep ?? true) ?? null;
}

/** Whether a profiler is recording on this thread. */
export function operatorProfilerActive(): boolean {
  return native.profilerActive();
}

/** Per-name totals, sorted by self time (device time first when any kernel was recorded). */
export function summarizeOperators(events: ProfilerEvents): OperatorSummary {
  const count = events.name.length;
  // CPU-side events that nest in a thread's timeline: ATen ops, autograd nodes, runtime calls.
  const cpu: number[] = [];
  // A CPU op's correlation id -> its event; runtime calls and kernels name it in `linked`.
  const opByCorrelation = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    if (events.device[i] !== 0 || events.async[i] || events.activity[i] === CPU_INSTANT_EVENT) continue;
    cpu.push(i);
    if (events.linked[i] === 0) opByCorrelation.set(events.correlation[i], i);
  }
  // A runtime call (cudaLaunchKernel) is recorded on the OS thread id: move it to its op's thread so
  // that it nests in the op, as torch.profiler does.
  const thread = Float64Array.from(events.thread);
  for (const i of cpu) {
    const owner = events.linked[i] > 0 ? opByCorrelation.get(events.linked[i]) : undefined;
    if (owner !== undefined) thread[i] = events.thread[owner];
  }
  // Nesting per thread: sorted by start (the longer first on a tie), each event's parent is the
  // innermost open event that contains it.
  cpu.sort((a, b) => thread[a] - thread[b] || events.start[a] - events.start[b] || events.end[b] - events.end[a]);
  const parent = new Int32Array(count).fill(-1);
  const childNs = new Float64Array(count);
  const stack: number[] = [];
  let currentThread = NaN;
  for (const i of cpu) {
    if (thread[i] !== currentThread) {
      stack.length = 0;
      currentThread = thread[i];
    }
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (events.start[i] >= events.end[top] || events.end[i] > events.end[top]) stack.pop();
      else break;
    }
    if (stack.length > 0) {
      const top = stack[stack.length - 1];
      parent[i] = top;
      childNs[top] += events.end[i] - events.start[i];
    }
    stack.push(i);
  }
  // Device kernels and copies: charged to the CPU op whose correlation id they name.
  const selfDeviceNs = new Float64Array(count);
  const deviceNs = new Float64Array(count);
  let unlinkedNs = 0;
  for (let i = 0; i < count; i++) {
    if (events.device[i] === 0 || !DEVICE_WORK.has(events.activity[i])) continue;
    const ns = events.end[i] - events.start[i];
    const op = events.linked[i] > 0 ? opByCorrelation.get(events.linked[i]) : undefined;
    if (op === undefined) {
      unlinkedNs += ns;
      continue;
    }
    selfDeviceNs[op] += ns;
    for (let at = op; at >= 0; at = parent[at]) deviceNs[at] += ns;
  }
  const byName = new Map<string, OperatorStats>();
  for (const i of cpu) {
    const name = events.names[events.name[i]];
    let stats = byName.get(name);
    if (!stats) {
      stats = { name, calls: 0, selfCpuMs: 0, cpuMs: 0, selfDeviceMs: 0, deviceMs: 0 };
      byName.set(name, stats);
    }
    const ns = events.end[i] - events.start[i];
    stats.calls += 1;
    stats.cpuMs += ns / 1e6;
    stats.selfCpuMs += Math.max(0, ns - childNs[i]) / 1e6;
    stats.selfDeviceMs += selfDeviceNs[i] / 1e6;
    stats.deviceMs += deviceNs[i] / 1e6;
  }
  const operators = [...byName.values()];
  const onDevice = operators.some((o) => o.selfDeviceMs > 0);
  operators.sort(onDevice
    ? (a, b) => b.selfDeviceMs - a.selfDeviceMs || b.selfCpuMs - a.selfCpuMs || a.name.localeCompare(b.name)
    : (a, b) => b.selfCpuMs - a.selfCpuMs || a.name.localeCompare(b.name));
  return { operators, events: count, unlinkedDeviceMs: unlinkedNs / 1e6, onDevice };
}
