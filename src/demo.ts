// node dist/demo.js — the product end to end on a laptop CPU in a few minutes: configs/tiny.json
// (a tiny ELECTRA + GDES pair) pretrains on the built-in French sample (data/demo/: text written
// for this project), which is first tokenized with a tokenizer trained on it; the run exports a
// discriminator and a generator, which transformers loads (checked when a Python with
// transformers is found: the project's .venv, or $PYTHON).
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { createCli, integerOption, listOption, runCli, stringOption, UsageError } from './cli/args';
import { loadTrainConfig, TrainConfigError } from './pretrain/config';
import { train } from './pretrain/trainer';
import { readMetricsLog } from './pretrain/metrics-log';

const packageRoot = path.resolve(__dirname, '..');
const DEFAULT_DATA = path.join(packageRoot, 'data', 'demo');
const DEFAULT_CONFIG = path.join(packageRoot, 'configs', 'tiny.json');

/** Loads the export with transformers; a line saying what it found, or why it could not look. */
function checkWithTransformers(exportDir: string): string {
  const venvPython = path.join(packageRoot, '.venv', 'bin', 'python3');
  const python = process.env.PYTHON ?? (fs.existsSync(venvPython) ? venvPython : 'python3');
  const script = `
import sys, json
try:
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    import transformers
except ImportError:
    print(json.dumps({"skipped": "transformers is not installed"})); sys.exit(0)
transformers.utils.logging.set_verbosity_error()
out = {}
for name, cls in (("discriminator", AutoModel), ("generator", AutoModelForMaskedLM)):
    model, info = cls.from_pretrained(sys.argv[1] + "/" + name, output_loading_info=True)
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1] + "/" + name)
    out[name] = {"class": type(model).__name__, "tokenizer": type(tokenizer).__name__,
                 "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
                 "tokens": tokenizer.convert_ids_to_tokens(tokenizer("La bibliothèque ouvre le dimanche matin.")["input_ids"])}
print(json.dumps(out))
`;
  const result = spawnSync(python, ['-c', script, exportDir], { encoding: 'utf8', env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
  if (result.error) return `not checked (no Python at ${python}: ${result.error.message})`;
  if (result.status !== 0) throw new Error(`transformers could not load ${exportDir}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const report = JSON.parse(result.stdout.trim().split('\n').pop()!);
  if (report.skipped) return `not checked (${report.skipped})`;
  const lines: string[] = [];
  for (const [name, r] of Object.entries(report) as [string, { class: string; tokenizer: string; missing: string[]; unexpected: string[]; tokens: string[] }][]) {
    if (r.missing.length || r.unexpected.length) {
      throw new Error(`transformers loads ${name} with missing ${JSON.stringify(r.missing)} and unexpected ${JSON.stringify(r.unexpected)} keys`);
    }
    lines.push(`${name}: ${r.class} + ${r.tokenizer} load it with no missing or unexpected keys`);
  }
  lines.push(`tokens: ${(report.discriminator.tokens as string[]).join(' ')}`);
  return lines.join('\n      ');
}

const cli = createCli('demo.js', 'A tiny ELECTRA + GDES pretraining on the built-in French sample, on CPU, exported for transformers (and checked with it when it is installed).')
  .option('output', stringOption('run directory (rerunning continues or re-exports it)', { default: 'runs/demo' }))
  .option('data', listOption('text files or directories (blank lines separate documents)', { default: [DEFAULT_DATA], defaultDescription: 'data/demo/, the built-in French sample' }))
  .option('config', stringOption('training config', { default: DEFAULT_CONFIG, defaultDescription: 'configs/tiny.json' }))
  .option('steps', integerOption('--steps', 'optimizer steps (overrides the config\'s max_steps)', { min: 1 }))
  .option('threads', integerOption('--threads', 'intra-op CPU threads (0: all cores)', { min: 0 }, { default: 1 }))
  .option('seed', integerOption('--seed', 'random seed', { min: 0 }, { default: 0 }));

void runCli(cli, async (args) => {
  const sets = [
    `data.path=${JSON.stringify(args.data.length === 1 ? args.data[0] : args.data)}`,
    `output_dir=${JSON.stringify(args.output)}`,
    `threads=${args.threads}`,
    `seed=${args.seed}`,
    ...(args.steps === undefined ? [] : [`max_steps=${args.steps}`]),
  ];
  let config;
  try {
    config = loadTrainConfig(args.config, sets);
  } catch (error) {
    // A --steps shorter than the config's warm-up: warm up over the first tenth instead.
    const warmupTooLong = error instanceof TrainConfigError && args.steps !== undefined && error.problems.every((p) => p.key === 'schedule.warmup_steps');
    if (!warmupTooLong) throw error instanceof TrainConfigError ? new UsageError(error.message) : error;
    config = loadTrainConfig(args.config, [...sets, `schedule.warmup_steps=${Math.floor(args.steps! / 10)}`]);
  }
  const say = (line: string) => process.stderr.write(`${line}\n`);
  say(`demo: ${config.objective} + ${config.electra.embedding_sharing} pretraining of configs/${path.basename(args.config)} on ${args.data.join(', ')} for ${config.max_steps} steps`);
  const result = await train({ config, source: args.config, resume: 'auto', log: say });
  if (result.status !== 'done') {
    say(`demo: stopped by ${result.status} at step ${result.step}; run the same command again to continue`);
    process.exit(result.status === 'SIGINT' ? 130 : 143);
  }
  const log = readMetricsLog(path.join(result.outputDir, 'log.jsonl')).filter((r) => typeof r.gen_loss === 'number');
  if (log.length >= 2) {
    const [first, last] = [log[0], log[log.length - 1]];
    const f = (v: unknown) => Number(v).toFixed(3);
    say(`demo: generator MLM loss ${f(first.gen_loss)} -> ${f(last.gen_loss)}, accuracy ${f(first.gen_accuracy)} -> ${f(last.gen_accuracy)}; `
      + `discriminator accuracy ${f(first.disc_accuracy)} -> ${f(last.disc_accuracy)}, recall of replaced tokens ${f(first.disc_recall)} -> ${f(last.disc_recall)} `
      + `(replaced fraction ${f(last.replaced_fraction)})`);
  }
  say(`demo: exported ${result.exportDir}: ${fs.readdirSync(result.exportDir!).sort().join(', ')}`);
  say(`demo: transformers: ${checkWithTransformers(result.exportDir!)}`);
});
