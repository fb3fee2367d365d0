// Progress on stderr for long CLI jobs: bytes read (MB/s), tokens produced (tokens/s) and an ETA
// (createThroughputProgress, for prepare and the tokenizer), and training steps with their loss
// (createTrainingProgress). cli-progress draws a bar on a terminal; without one (logs, CI) a line
// is printed every few seconds.
import { SingleBar } from 'cli-progress';

export interface ThroughputProgress {
  addBytes(bytes: number): void;
  addTokens(tokens: number): void;
  /** Prints a message above the bar (warnings), without breaking it. */
  log(message: string): void;
  stop(): { seconds: number; bytes: number; tokens: number };
}

function formatRate(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

export function createThroughputProgress(totalBytes: number, options: { enabled?: boolean; label?: string } = {}): ThroughputProgress {
  const started = Date.now();
  let bytes = 0;
  let tokens = 0;
  const enabled = options.enabled ?? true;
  const label = options.label ?? 'progress';
  const isTty = Boolean(process.stderr.isTTY);
  const bar = enabled && isTty
    ? new SingleBar({
      format: `${label} {bar} {percentage}% | {mbps} MB/s | {tps} tokens/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
      fps: 4,
    })
    : undefined;
  bar?.start(Math.max(1, totalBytes), 0, { mbps: '0.00', tps: '0' });
  let lastLine = started;
  const rates = () => {
    const seconds = Math.max(1e-3, (Date.now() - started) / 1000);
    return { seconds, mbps: (bytes / 1e6 / seconds).toFixed(2), tps: formatRate(tokens / seconds) };
  };
  const update = () => {
    const { seconds, mbps, tps } = rates();
    if (bar) {
      bar.update(Math.min(bytes, totalBytes), { mbps, tps });
    } else if (enabled && Date.now() - lastLine > 5000) {
      lastLine = Date.now();
      const fraction = totalBytes > 0 ? bytes / totalBytes : 0;
      const eta = fraction > 0 ? Math.round(seconds * (1 - fraction) / fraction) : NaN;
      process.stderr.write(`${label}: ${(100 * fraction).toFixed(1)}% | ${mbps} MB/s | ${tps} tokens/s | ETA ${Number.isFinite(eta) ? `${eta}s` : '?'}\n`);
    }
  };
  return {
    addBytes(count: number) { bytes += count; update(); },
    addTokens(count: number) { tokens += count; update(); },
    log(message: string) {
      if (bar) bar.stop();
      process.stderr.write(`${message}\n`);
      if (bar) bar.start(Math.max(1, totalBytes), Math.min(bytes, totalBytes), rates());
    },
    stop() {
      if (bar) {
        bar.update(Math.min(bytes, totalBytes), rates());
        bar.stop();
      }
      return { seconds: (Date.now() - started) / 1000, bytes, tokens };
    },
  };
}

export interface TrainingProgress {
  /** Called after every optimizer step; `tokens` = tokens processed in that step (host-known counts only). Values are shown when given. */
  update(step: number, tokens: number, values?: Record<string, number>): void;
  /** A line above the bar (or between the plain lines), without breaking it. */
  log(message: string): void;
  /** Draws the final state (a last plain line without a terminal) and releases the terminal. */
  stop(): void;
}

export interface TrainingProgressOptions {
  totalSteps: number;
  /** The step this run starts from (0, or the checkpoint's step on resume): rates and ETA count from here. */
  startStep: number;
  label?: string;
  /** false: nothing is drawn or printed, but log() still prints its messages. */
  enabled?: boolean;
  /** Where to draw (default process.stderr); a bar when it is a TTY, plain lines otherwise. */
  stream?: NodeJS.WriteStream;
  /** Milliseconds between plain lines without a terminal (default 5000). */
  lineIntervalMs?: number;
  /** The clock in milliseconds (default Date.now); tests pass their own. */
  now?: () => number;
}

/** A loss, a learning rate or a norm in a few characters: fixed-point for ordinary magnitudes (so a loss keeps its width), else exponent. */
export function formatMetric(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  // Large whole numbers are counts or loss scales: all their digits fit.
  if (Number.isInteger(value) && magnitude >= 1e4 && magnitude < 1e9) return String(value);
  if (magnitude === 0 || (magnitude >= 1e-2 && magnitude < 1e4)) return value.toFixed(4);
  return value.toExponential(2);
}

/** 3725 s -> "1h02m05s"; NaN or infinite -> "?". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) return `${h}h${pad(m)}m${pad(s)}s`;
  if (m > 0) return `${m}m${pad(s)}s`;
  return `${s}s`;
}

export function createTrainingProgress(options: TrainingProgressOptions): TrainingProgress {
  const { totalSteps, startStep } = options;
  if (!Number.isInteger(totalSteps) || totalSteps < 0) throw new Error(`createTrainingProgress: totalSteps must be a non-negative integer, got ${totalSteps}`);
  if (!Number.isInteger(startStep) || startStep < 0 || startStep > totalSteps) {
    throw new Error(`createTrainingProgress: startStep must be an integer in [0, totalSteps=${totalSteps}], got ${startStep}`);
  }
  const now = options.now ?? Date.now;
  const stream = options.stream ?? process.stderr;
  const enabled = options.enabled ?? true;
  const label = options.label ?? 'train';
  const lineIntervalMs = options.lineIntervalMs ?? 5000;
  const started = now();
  let step = startStep;
  let tokens = 0;
  let values: Record<string, number> = {};
  // The plain line of the current state is printed once: at the first step, every interval, and at stop.
  let lastLine = -Infinity;
  let unprinted = false;

  // The facts every view shows; the rates are over this run only, so a resumed run's ETA does not
  // count the steps its checkpoint already had.
  const facts = () => {
    const seconds = Math.max(1e-3, (now() - started) / 1000);
    const stepsPerSecond = (step - startStep) / seconds;
    const eta = step >= totalSteps ? 0 : stepsPerSecond > 0 ? (totalSteps - step) / stepsPerSecond : NaN;
    const shown = Object.entries(values).map(([name, value]) => `${name} ${formatMetric(value)} | `).join('');
    return { values: shown, tps: formatRate(tokens / seconds), etaText: formatDuration(eta) };
  };
  const plainLine = () => {
    const { values: shown, tps, etaText } = facts();
    return `${label}: step ${step}/${totalSteps} | ${shown}${tps} tokens/s | ETA ${etaText}\n`;
  };

  const bar = enabled && stream.isTTY
    ? new SingleBar({
      format: `${label} {bar} step {value}/{total} | {values}{tps} tokens/s | ETA {etaText}`,
      stream,
      hideCursor: true,
      // log() stops the bar to print above it; the stopped bar must not stay behind as a stale line.
      clearOnComplete: true,
      fps: 4,
    })
    : undefined;
  bar?.start(Math.max(1, totalSteps), step, facts());

  return {
    update(newStep: number, stepTokens: number, newValues?: Record<string, number>) {
      step = newStep;
      tokens += stepTokens;
      if (newValues) values = { ...values, ...newValues };
      if (!enabled) return;
      if (bar) {
        bar.update(step, facts());
        return;
      }
      unprinted = true;
      if (now() - lastLine >= lineIntervalMs) {
        lastLine = now();
        unprinted = false;
        stream.write(plainLine());
      }
    },
    log(message: string) {
      if (bar) bar.stop();
      stream.write(`${message}\n`);
      if (bar) bar.start(Math.max(1, totalSteps), step, facts());
    },
    stop() {
      if (!enabled) return;
      if (bar) {
        bar.stop();
        // The bar is cleared on stop: the final state stays on screen as a plain line.
        stream.write(plainLine());
      } else if (unprinted) {
        unprinted = false;
        stream.write(plainLine());
      }
    },
  };
}
