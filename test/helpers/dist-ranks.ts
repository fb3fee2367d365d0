// Spawns the ranks of a distributed test (test/helpers/dist-worker.ts), one Node process each, on
// 127.0.0.1 and a free port, and collects what each rank reports.
import * as net from 'net';
import * as path from 'path';
import { spawn, ChildProcess } from 'child_process';
import { repoRoot } from './python';

export const WORKER_JS = path.join(repoRoot, 'build', 'ts', 'test', 'helpers', 'dist-worker.js');

/** A port nobody listens on right now (the OS's pick, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export interface WorkerEvent {
  event: string;
  [key: string]: unknown;
}

export interface RankRun {
  rank: number;
  child: ChildProcess;
  events: WorkerEvent[];
  /** resolves with the exit of the process */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  /** resolves with the first event of that name (rejects if the process exits first) */
  waitFor(event: string): Promise<WorkerEvent>;
}

export interface SpawnOptions {
  worldSize: number;
  port: number;
  timeoutMs: number;
  /** ranks to start (default: all of them) */
  ranks?: number[];
  /** world size each rank is told (default worldSize) */
  worldSizeOf?: (rank: number) => number;
  extraEnv?: Record<string, string>;
}

export function spawnRanks(scenario: string, options: SpawnOptions): RankRun[] {
  const ranks = options.ranks ?? Array.from({ length: options.worldSize }, (_, r) => r);
  return ranks.map((rank) => {
    const child = spawn(process.execPath, [WORKER_JS, scenario], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(options.worldSizeOf ? options.worldSizeOf(rank) : options.worldSize),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(options.port),
        DIST_TIMEOUT_MS: String(options.timeoutMs),
        OMP_NUM_THREADS: '1',
        ...options.extraEnv,
      },
    });
    const events: WorkerEvent[] = [];
    const waiters: { name: string; resolve: (e: WorkerEvent) => void; reject: (e: Error) => void }[] = [];
    let buffered = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (!line.startsWith('{')) continue;
        const event = JSON.parse(line) as WorkerEvent;
        events.push(event);
        for (const waiter of waiters.filter((w) => w.name === event.event)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => { stderr += chunk; });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
      child.on('exit', (code, signal) => {
        // stdout may still hold the last lines: let it drain first.
        setImmediate(() => {
          for (const waiter of waiters.splice(0)) {
            waiter.reject(new Error(`rank ${rank} exited (${code ?? signal}) before '${waiter.name}'; stderr:\n${stderr.slice(-2000)}`));
          }
          resolve({ code, signal, stderr });
        });
      });
    });
    const waitFor = (name: string): Promise<WorkerEvent> => {
      const seen = events.find((e) => e.event === name);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => waiters.push({ name, resolve, reject }));
    };
    return { rank, child, events, exited, waitFor };
  });
}

/** Waits for every rank to exit and returns each one's last 'result' or 'error' event. */
export async function outcomes(runs: RankRun[]): Promise<WorkerEvent[]> {
  const exits = await Promise.all(runs.map((r) => r.exited));
  return runs.map((run, i) => {
    const last = [...run.events].reverse().find((e) => e.event === 'result' || e.event === 'error');
    if (!last) {
      throw new Error(`rank ${run.rank} reported nothing (exit ${exits[i].code ?? exits[i].signal}); stderr:\n${exits[i].stderr.slice(-3000)}`);
    }
    return last;
  });
}

export function killAll(runs: RankRun[]): void {
  for (const run of runs) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
}
