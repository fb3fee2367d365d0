// The training metrics log: log.jsonl, one JSON object per line, `step` first. It is the record a
// resumed run continues and the file tests and scripts read (TensorBoard gets the same scalars
// through src/io/tensorboard.ts).
//
// Crash safety: every line goes out in one write(2) of the whole line with its newline, so a
// crash leaves at worst one torn last line. Opening the log again repairs that, and a run resumed
// from an earlier checkpoint first drops the lines of the steps it will redo.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomicSyncFrom } from '../io/atomic';

export type MetricsRecord = { step: number } & Record<string, number | string | null>;

export interface MetricsLogOptions {
  /** Drops the lines whose step is greater than this before appending (resume from that step's checkpoint). */
  truncateAfterStep?: number;
}

interface ParsedLog {
  /** Complete lines, each still as written, with what it parsed to. */
  lines: Array<{ text: string; record: Record<string, unknown> }>;
  /** True when the file did not end as a sequence of whole lines (a crash mid-write). */
  tornTail: boolean;
}

function parseLog(file: string, content: string): ParsedLog {
  const pieces = content.split('\n');
  // A file of whole lines ends with '\n', so its last piece is empty; anything else was cut short.
  const tail = pieces.pop() ?? '';
  const lines: ParsedLog['lines'] = [];
  pieces.forEach((text, index) => {
    if (text.trim() === '') return;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (error) {
      throw new Error(`${file}:${index + 1}: not a JSON line (${(error as Error).message}); only the last line may be torn`);
    }
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      throw new Error(`${file}:${index + 1}: a line must be a JSON object`);
    }
    lines.push({ text, record: record as Record<string, unknown> });
  });
  if (tail === '') return { lines, tornTail: false };
  // A write cut exactly before its newline left a complete object: that record is whole and kept.
  // Any shorter prefix of a line cannot parse (it lacks the closing brace or ends inside a string).
  try {
    const record: unknown = JSON.parse(tail);
    if (record !== null && typeof record === 'object' && !Array.isArray(record)) {
      lines.push({ text: tail, record: record as Record<string, unknown> });
    }
  } catch {
    // torn: dropped
  }
  return { lines, tornTail: true };
}

function stepOf(file: string, record: Record<string, unknown>): number {
  const step = record.step;
  if (typeof step !== 'number' || !Number.isInteger(step)) {
    throw new Error(`${file}: a line has no integer "step": ${JSON.stringify(record).slice(0, 200)}`);
  }
  return step;
}

/** Every complete record of a log.jsonl, in file order (a torn last line is left out). */
export function readMetricsLog(file: string): Array<Record<string, unknown>> {
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`readMetricsLog: cannot read ${file}: ${(error as Error).message}`);
  }
  return parseLog(file, content).lines.map((line) => line.record);
}

export class MetricsLog {
  readonly file: string;
  private fd: number | undefined;

  /**
   * Opens `file` for appending (created, with its directory, if missing). A torn last line is
   * dropped; with `truncateAfterStep`, so are the lines whose step is greater. The repaired file
   * replaces the old one atomically, so a crash during the repair loses nothing.
   */
  constructor(file: string, options: MetricsLogOptions = {}) {
    this.file = file;
    const { truncateAfterStep } = options;
    if (truncateAfterStep !== undefined && !Number.isInteger(truncateAfterStep)) {
      throw new Error(`MetricsLog: truncateAfterStep must be an integer, got ${truncateAfterStep}`);
    }
    try {
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    } catch (error) {
      throw new Error(`MetricsLog: cannot create the directory of ${file}: ${(error as Error).message}`);
    }
    if (fs.existsSync(file)) {
      const parsed = parseLog(file, fs.readFileSync(file, 'utf8'));
      const kept = truncateAfterStep === undefined
        ? parsed.lines
        : parsed.lines.filter((line) => stepOf(file, line.record) <= truncateAfterStep);
      if (parsed.tornTail || kept.length !== parsed.lines.length) {
        writeFileAtomicSyncFrom(file, kept.map((line) => `${line.text}\n`).join(''));
      }
    }
    try {
      this.fd = fs.openSync(file, 'a', 0o644);
    } catch (error) {
      throw new Error(`MetricsLog: cannot open ${file} for appending: ${(error as Error).message}`);
    }
  }

  /** Appends one line. Non-finite numbers are written as null (JSON has no NaN or Infinity). */
  append(record: MetricsRecord): void {
    if (this.fd === undefined) throw new Error(`MetricsLog: ${this.file} is closed`);
    const { step, ...values } = record;
    if (!Number.isSafeInteger(step) || step < 0) {
      throw new Error(`MetricsLog.append: step must be a non-negative integer, got ${step}`);
    }
    for (const [key, value] of Object.entries(values)) {
      if (value !== null && typeof value !== 'number' && typeof value !== 'string') {
        throw new Error(`MetricsLog.append: '${key}' must be a number, a string or null, got ${typeof value}`);
      }
    }
    const line = Buffer.from(`${JSON.stringify({ step, ...values })}\n`, 'utf8');
    // One write(2) for the whole line: appends are atomic with respect to other appenders and a
    // crash tears at most this line. A short write (disk full) is finished rather than left torn.
    let written = 0;
    while (written < line.byteLength) {
      written += fs.writeSync(this.fd, line, written, line.byteLength - written);
    }
  }

  /** Forces the lines to the disk (fsync); append() alone already survives a crash of the process. */
  flush(): void {
    if (this.fd !== undefined) fs.fsyncSync(this.fd);
  }

  /** Flushes and closes; a second call does nothing. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}
