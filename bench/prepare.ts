// npm run bench:prepare — tokenization throughput of our tokenizer (encodeMany with the word cache,
// worker threads over all cores; the default backend, native libsentencepiece when built, and the
// sentencepiece-js fallback) next to Python sentencepiece on the same text in the same run (one
// thread per line, and its own multi-threaded batch encode), then the whole prepare over fr-roman19.
// Every figure is the median of 3 runs; ours start each run with fresh workers (cold word caches).
//   BENCH_MB=8 (text size), BENCH_THREADS=<cores>, BENCH_SKIP_PREPARE=1, PYTHON=...,
//   CAMEMBERTA_SENTENCEPIECE=native|wasm (the default backend)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Worker } from 'worker_threads';
import { BACKEND_ENV, SentencePieceBackend, SentencePieceTokenizer } from '../src/tokenizer/sentencepiece';
import { trainTokenizer } from '../src/tokenizer/train';
import { prepare } from '../src/data/prepare';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const corpusDir = path.join(repoRoot, '..', 'shared', 'data', 'fr-roman19');
const megabytes = Number(process.env.BENCH_MB ?? 8);
const threads = Number(process.env.BENCH_THREADS ?? os.availableParallelism());
const RUNS = 3;

function python(): string {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = path.join(repoRoot, '.venv', 'bin', 'python3');
  return fs.existsSync(venv) ? venv : 'python3';
}

const PYTHON_BENCH = `
import json, os, sys, time
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
lines = open(sys.argv[2], encoding="utf-8").read().split("\\n")
size = os.path.getsize(sys.argv[2])
result = {"version": spm.__version__}
for name, run in [("loop", lambda: [sp.encode(line) for line in lines]),
                  ("batch", lambda: sp.encode(lines, num_threads=os.cpu_count()))]:
    times = []
    for _ in range(${RUNS}):
        start = time.perf_counter(); ids = run(); times.append(time.perf_counter() - start)
    result[name] = {"seconds": sorted(times)[len(times) // 2], "tokens": sum(len(x) for x in ids), "bytes": size}
print(json.dumps(result))
`;

// Each worker encodes its share of the lines in batches with a fresh tokenizer (cold word cache).
const WORKER = `
const { parentPort, workerData } = require('worker_threads');
const { SentencePieceTokenizer } = require(workerData.module);
SentencePieceTokenizer.load(workerData.model, { backend: workerData.backend }).then((sp) => {
  parentPort.once('message', (lines) => {
    const start = process.hrtime.bigint();
    let tokens = 0;
    for (let i = 0; i < lines.length; i += 2000) tokens += sp.encodeMany(lines.slice(i, i + 2000)).ids.length;
    parentPort.postMessage({ tokens, seconds: Number(process.hrtime.bigint() - start) / 1e9 });
  });
  parentPort.postMessage('ready');
});
`;

async function oursOnce(model: string, backend: SentencePieceBackend, lines: string[]): Promise<{ seconds: number; tokens: number }> {
  const workers = Array.from({ length: threads }, () => new Worker(WORKER, {
    eval: true,
    workerData: { model, backend, module: path.join(__dirname, '..', 'src', 'tokenizer', 'sentencepiece.js') },
  }));
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
  // Contiguous slices, as prepare hands out consecutive documents.
  const share = Math.ceil(lines.length / threads);
  const start = process.hrtime.bigint();
  const results = await Promise.all(workers.map((worker, w) => new Promise<{ tokens: number }>((resolve) => {
    worker.once('message', resolve);
    worker.postMessage(lines.slice(w * share, (w + 1) * share));
  })));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await Promise.all(workers.map((worker) => worker.terminate()));
  return { seconds, tokens: results.reduce((sum, r) => sum + r.tokens, 0) };
}

async function ours(model: string, backend: SentencePieceBackend, lines: string[]): Promise<{ seconds: number; tokens: number }> {
  const runs: { seconds: number; tokens: number }[] = [];
  for (let run = 0; run < RUNS; run++) runs.push(await oursOnce(model, backend, lines));
  return runs.sort((a, b) => a.seconds - b.seconds)[Math.floor(RUNS / 2)];
}

function rate(bytes: number, tokens: number, seconds: number): string {
  return `${(bytes / 1e6 / seconds).toFixed(2).padStart(6)} MB/s  ${(tokens / 1e6 / seconds).toFixed(2).padStart(5)} M tokens/s`;
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-bench-prepare-'));
  try {
    const files = fs.readdirSync(corpusDir).filter((name) => name.endsWith('.txt')).sort().map((name) => path.join(corpusDir, name));
    process.stderr.write('training an 8,000-piece tokenizer on 4 novels...\n');
    const tokenizerDir = path.join(work, 'tokenizer');
    await trainTokenizer({ inputs: files.slice(0, 4), vocabSize: 8000, outputDir: tokenizerDir });
    const model = path.join(tokenizerDir, 'spm.model');

    // The benchmark text: novels the tokenizer did not see, up to BENCH_MB, one paragraph a line.
    const lines: string[] = [];
    let bytes = 0;
    for (const file of files.slice(4)) {
      for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        if (bytes >= megabytes * 1e6) break;
        lines.push(line);
        bytes += Buffer.byteLength(line) + 1;
      }
    }
    const textPath = path.join(work, 'text.txt');
    fs.writeFileSync(textPath, lines.join('\n'));
    bytes = fs.statSync(textPath).size;

    const py = spawnSync(python(), ['-c', PYTHON_BENCH, model, textPath], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (py.status !== 0) throw new Error(`Python sentencepiece benchmark failed: ${py.stderr}`);
    const reference = JSON.parse(py.stdout) as { version: string } & Record<'loop' | 'batch', { seconds: number; tokens: number }>;
    // The default backend (what prepare uses), then the other one when it is available.
    const probe = await SentencePieceTokenizer.load(model);
    const backends: SentencePieceBackend[] = [probe.backend];
    if (probe.backend === 'native') backends.push('wasm');
    const results = new Map<SentencePieceBackend, { seconds: number; tokens: number; description: string }>();
    for (const backend of backends) {
      const description = backend === probe.backend ? probe.backendDescription : (await SentencePieceTokenizer.load(model, { backend })).backendDescription;
      results.set(backend, { ...await ours(model, backend, lines), description });
    }
    const mine = results.get(probe.backend)!;
    if (mine.tokens !== reference.loop.tokens) process.stderr.write(`note: ${mine.tokens} tokens vs Python's ${reference.loop.tokens}: the native backend should give Python's ids exactly (docs/DATA.md)\n`);

    const pad = (label: string) => label.padEnd(62);
    console.log(`tokenization of ${(bytes / 1e6).toFixed(1)} MB of fr-roman19 (${lines.length} lines), ${os.availableParallelism()} cores, median of ${RUNS} runs`);
    console.log(`backend: ${probe.backendDescription} (set ${BACKEND_ENV}=native|wasm to choose)`);
    for (const [backend, result] of results) {
      const label = `  ours${backend === probe.backend ? '' : ' (fallback)'}, ${result.description}, ${threads} worker thread${threads === 1 ? '' : 's'}:`;
      console.log(`${pad(label)} ${rate(bytes, result.tokens, result.seconds)}`);
    }
    console.log(`${pad(`  Python sentencepiece ${reference.version}, encode() per line, 1 thread:`)} ${rate(bytes, reference.loop.tokens, reference.loop.seconds)}`);
    console.log(`${pad(`  Python sentencepiece ${reference.version}, encode(list, num_threads=${os.cpus().length}):`)} ${rate(bytes, reference.batch.tokens, reference.batch.seconds)}`);
    console.log(`  ratio ours (${probe.backend}) / Python per line, 1 thread: ${(reference.loop.seconds / mine.seconds).toFixed(2)}x`);
    console.log(`  ratio ours (${probe.backend}) / Python batch, all cores:   ${(reference.batch.seconds / mine.seconds).toFixed(2)}x  (target >= 1.0x)`);

    if (!process.env.BENCH_SKIP_PREPARE) {
      const totalBytes = files.reduce((sum, file) => sum + fs.statSync(file).size, 0);
      const start = Date.now();
      let setup = '';
      const manifest = await prepare({
        inputs: [corpusDir], tokenizerPath: model, outputDir: path.join(work, 'shards'), shardSizeMB: 4, onInfo: (message) => { setup = message; },
      });
      const seconds = (Date.now() - start) / 1000;
      console.log(`prepare, whole fr-roman19 (${(totalBytes / 1e6).toFixed(1)} MB, sentence splitting + tokenization + shards; ${setup}): ${seconds.toFixed(1)} s, ${rate(totalBytes, manifest.counts.tokens, seconds)}`);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  process.stderr.write(`bench:prepare: ${error.message}\n`);
  process.exit(1);
});
