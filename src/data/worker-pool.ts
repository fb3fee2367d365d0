// A pool of tokenize workers (one per core by default). Requests are answered in any order; callers
// keep the order themselves (prepare writes results strictly in document order).
import { availableParallelism } from 'os';
import { join } from 'path';
import { Worker } from 'worker_threads';
import type { SentencePieceBackend } from '../tokenizer/sentencepiece';
import type { TokenizeRequest, TokenizeResult, TokenizeWorkerData } from './tokenize-worker';

export class TokenizePool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: { request: TokenizeRequest; resolve: (r: TokenizeResult) => void; reject: (e: Error) => void }[] = [];
  private readonly inFlight = new Map<number, { resolve: (r: TokenizeResult) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failure: Error | undefined;
  /** the SentencePiece backend the workers loaded (SentencePieceTokenizer.backendDescription) */
  backendDescription = '';

  private constructor() {}

  static async start(modelPath: string, options: { threads?: number; locale?: string; backend?: SentencePieceBackend } = {}): Promise<TokenizePool> {
    const pool = new TokenizePool();
    // More workers than cores only cost memory (each holds a tokenizer and its word cache): 500
    // of them ran the process out of memory.
    const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), availableParallelism()));
    const data: TokenizeWorkerData = { modelPath, locale: options.locale ?? 'fr', backend: options.backend };
    await Promise.all(Array.from({ length: threads }, () => new Promise<void>((resolveReady, rejectReady) => {
      const worker = new Worker(join(__dirname, 'tokenize-worker.js'), { workerData: data });
      pool.workers.push(worker);
      worker.on('message', (message: TokenizeResult & { ready?: boolean; backend?: string; fatal?: string }) => {
        if (message.ready) {
          pool.backendDescription = message.backend!;
          pool.release(worker);
          resolveReady();
          return;
        }
        if (message.fatal) {
          const error = new Error(`tokenizer worker failed: ${message.fatal}`);
          pool.fail(error);
          rejectReady(error);
          return;
        }
        const pending = pool.inFlight.get(message.id);
        pool.inFlight.delete(message.id);
        pool.release(worker);
        if (!pending) return;
        if (message.error) pending.reject(new Error(message.error));
        else pending.resolve(message);
      });
      worker.on('error', (error) => { pool.fail(error); rejectReady(error); });
    })));
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  tokenize(documents: string[][]): Promise<TokenizeResult> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ request: { id: this.nextId++, documents }, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private release(worker: Worker): void {
    this.idle.push(worker);
    this.dispatch();
  }

  private dispatch(): void {
    while (this.idle.length && this.waiting.length) {
      const worker = this.idle.pop()!;
      const job = this.waiting.shift()!;
      this.inFlight.set(job.request.id, { resolve: job.resolve, reject: job.reject });
      worker.postMessage(job.request);
    }
  }

  private fail(error: Error): void {
    this.failure = error;
    for (const pending of this.inFlight.values()) pending.reject(error);
    for (const job of this.waiting.splice(0)) job.reject(error);
    this.inFlight.clear();
  }
}
