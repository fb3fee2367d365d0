// Progress on stderr for long CLI jobs: bytes read (MB/s), tokens produced (tokens/s) and an ETA.
// cli-progress draws a bar on a terminal; without one (logs, CI) a line is printed every few seconds.
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
