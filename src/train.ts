#!/usr/bin/env node
// train.js: ELECTRA + GDES (or MLM) pretraining from a JSON config (docs/CONFIG.md).
//   node dist/train.js --config configs/tiny.json --data corpus/ [--output-dir runs/x] [--resume auto]
// Config problems are reported together, one line each, with exit code 2 and nothing written.
// SIGINT / SIGTERM stop after the current step with a checkpoint (exit 130 / 143); --resume auto continues.
import { createCli, runCli, stringOption, listOption, integerOption, UsageError } from './cli/args';
import { loadTrainConfig, TrainConfigError } from './pretrain/config';
import { resolveDistributedEnv, DistributedEnv, DistributedEnvError } from './dist/env';

const cli = createCli('train.js', 'Pretrain a DeBERTa-V3 the CamemBERTa way (ELECTRA replaced-token detection with gradient-disentangled embedding sharing), or with masked-LM, from a JSON config.')
  .option('config', stringOption('training config, JSON (keys: docs/CONFIG.md; examples in configs/)', { demandOption: true }))
  .option('data', listOption('training data: a prepared directory (manifest.json + shards) or raw .txt[.gz]/.jsonl[.gz] files and directories, tokenized into OUTPUT_DIR/data first (overrides data.path)'))
  .option('eval-data', listOption('evaluation data, same kinds (overrides data.eval_path; default: the held-out split of the training data)'))
  .option('output-dir', stringOption('run directory: config.json, log.jsonl, tensorboard/, checkpoints/, export/ (overrides output_dir)'))
  .option('max-steps', integerOption('--max-steps', 'optimizer steps (overrides max_steps)', { min: 1 }))
  .option('max-seconds', { type: 'number', requiresArg: true, describe: 'wall-time budget: the run ends (checkpoint, export) at the first step past it; 0: none (overrides max_seconds)' })
  .option('profile', integerOption('--profile', 'over the first N steps, time the loop\'s phases (data, forward, backward, communication, optimizer, the rest) and record libtorch\'s operators; print ms per step and share by phase, then the top 15 operators by self time (calls, self ms per step, share; kernel time too on CUDA), and write both to OUTPUT_DIR/profile.json. The results are unchanged (on CUDA each phase is synchronised)', { min: 1 }))
  .option('save-every', integerOption('--save-every', 'checkpoint every N steps, 0: only at the end and on SIGINT/SIGTERM (overrides checkpoint.every)', { min: 0 }))
  .option('seed', integerOption('--seed', 'random seed of initialisation, data order, masking and sampling (overrides seed)', { min: 0 }))
  .option('resume', { type: 'string', describe: '"auto" (also the flag alone): continue from the newest complete checkpoint in the output directory, or start if there is none; a path: continue from that checkpoint or run' })
  .option('init-discriminator', stringOption('continued pretraining: a HF DebertaV2Model / ForMaskedLM directory to start the discriminator (or the mlm model) from; the architecture then comes from its config.json (overrides init.discriminator)'))
  .option('init-generator', stringOption('a HF DebertaV2ForMaskedLM directory to start the generator from; default: fresh at model.generator\'s ratios (overrides init.generator)'))
  .option('set', listOption('config overrides key.path=value, the value parsed as JSON when it parses (e.g. --set optimizer.lr=1e-3 --set precision=bfloat16)'))
  .example('$0 --config configs/tiny.json --data data/demo/fr-demo.txt', 'a tiny ELECTRA + GDES run on CPU in minutes')
  .example('$0 --config configs/p1_base_1gpu.json --data shards/ --resume auto', 'phase 1 of CamemBERTa-base, resumable');

void runCli(cli, async (args) => {
  // One process, or one rank of several (launch.js, torchrun, SLURM: docs/DISTRIBUTED.md).
  let env: DistributedEnv;
  try {
    env = resolveDistributedEnv();
  } catch (error) {
    if (error instanceof DistributedEnvError) throw new UsageError(error.message);
    throw error;
  }
  const sets: string[] = [];
  const put = (key: string, value: unknown) => { if (value !== undefined) sets.push(`${key}=${JSON.stringify(value)}`); };
  put('data.path', args.data && (args.data.length === 1 ? args.data[0] : args.data));
  put('data.eval_path', args['eval-data'] && (args['eval-data'].length === 1 ? args['eval-data'][0] : args['eval-data']));
  put('output_dir', args['output-dir']);
  put('max_steps', args['max-steps']);
  put('max_seconds', args['max-seconds']);
  put('checkpoint.every', args['save-every']);
  put('seed', args.seed);
  put('init.discriminator', args['init-discriminator']);
  put('init.generator', args['init-generator']);
  // --set comes last, so it wins over the flags above.
  sets.push(...(args.set ?? []).map(String));
  // A restarted rank (torchrun --max-restarts, a requeued SLURM job) continues the run.
  const resume = args.resume === undefined ? (env.restartCount > 0 ? 'auto' : null) : args.resume === '' ? 'auto' : String(args.resume);
  const who = env.worldSize > 1 ? `train.js: rank ${env.rank}` : 'train.js';
  try {
    const config = loadTrainConfig(args.config, sets, { worldSize: env.worldSize });
    // Loaded once the config is known to be valid: the trainer brings libtorch (about 0.4 s).
    const { train } = await import('./pretrain/trainer');
    const joined = env.worldSize > 1 ? await (await import('./pretrain/distributed')).joinRun(env, config) : null;
    const context = joined?.context ?? { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, cpuThreads: env.cpuThreads };
    const result = await train({ config, source: args.config, resume, parallel: joined?.parallel, context, profileSteps: args.profile });
    joined?.parallel.close();
    if (result.status !== 'done') {
      process.stderr.write(`${who}: stopped by ${result.status} at step ${result.step}; continue with --resume auto\n`);
      process.exit(result.status === 'SIGINT' ? 130 : 143);
    }
  } catch (error) {
    // Every config problem on its own line, each naming its key and file.
    if (error instanceof TrainConfigError) {
      for (const line of error.message.split('\n')) process.stderr.write(`${who}: ${line}\n`);
      process.exit(2);
    }
    if (error instanceof Error && error.name === 'ConfigMismatchError') {
      process.stderr.write(`${who}: ${error.message}\n`);
      process.exit(2);
    }
    // A peer that died or hangs, a port in use, an unreachable master: one line, not a stack.
    if (error instanceof Error && error.name === 'DistributedError') {
      process.stderr.write(`${who}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
});
