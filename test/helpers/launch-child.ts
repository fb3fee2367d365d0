// A stand-in rank for the launcher tests (node build/ts/test/helpers/launch-child.js [options]):
//   --dir DIR               where it leaves files: ready-<rank>-<restart> (its pid, once started) and
//                           <SIGNAL>-<rank>-<restart> when it receives SIGINT / SIGTERM
//   --print-env             one line "ENV {...}": the launcher's variables and resolveDistributedEnv()
//   --lines N               N lines "line i" on stdout and "err i" on stderr
//   --partial TEXT          TEXT on stdout without a newline, last
//   --exit RANK=CODE        that rank exits with CODE (repeatable), with --dir once every rank is ready
//                           (so the others have their signal handlers when the launcher stops them) ...
//   --until-restart K       ... only while TORCHELASTIC_RESTART_COUNT < K (then it exits 0)
//   --wait                  stay running (until a signal), or with --until-restart K only while the count < K
//   --ignore-sigterm, --ignore-sigint   note the signal in DIR but keep running
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveDistributedEnv } from '../../src/dist/env';

const argv = process.argv.slice(2);
const values = (flag: string): string[] => argv.flatMap((arg, i) => (arg === flag && i + 1 < argv.length ? [argv[i + 1]] : []));
const has = (flag: string): boolean => argv.includes(flag);

const rank = Number(process.env.RANK ?? 0);
const restart = Number(process.env.TORCHELASTIC_RESTART_COUNT ?? 0);
const dir = values('--dir')[0];
const untilRestart = values('--until-restart').length ? Number(values('--until-restart')[0]) : Infinity;
const active = restart < untilRestart;

function note(name: string, content: string): void {
  if (!dir) return;
  // Written then renamed: the test never reads half a file.
  const file = path.join(dir, `${name}-${rank}-${restart}`);
  fs.writeFileSync(`${file}.tmp`, content);
  fs.renameSync(`${file}.tmp`, file);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    note(signal, String(process.pid));
    const ignore = signal === 'SIGTERM' ? has('--ignore-sigterm') : has('--ignore-sigint');
    if (!ignore) process.exit(128 + os.constants.signals[signal]);
  });
}

if (has('--print-env')) {
  const names = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'GROUP_RANK', 'GROUP_WORLD_SIZE', 'ROLE_RANK', 'ROLE_WORLD_SIZE',
    'MASTER_ADDR', 'MASTER_PORT', 'TORCHELASTIC_RESTART_COUNT', 'TORCHELASTIC_MAX_RESTARTS', 'TORCHELASTIC_RUN_ID',
    'TORCHELASTIC_USE_AGENT_STORE', 'TORCH_NCCL_ASYNC_ERROR_HANDLING', 'OMP_NUM_THREADS', 'CAMEMBERTA_THREADS', 'CAMEMBERTA_LAUNCHER'];
  const variables = Object.fromEntries(names.map((name) => [name, process.env[name] ?? null]));
  process.stdout.write(`ENV ${JSON.stringify({ variables, resolved: resolveDistributedEnv(), args: argv })}\n`);
}
const lines = Number(values('--lines')[0] ?? 0);
for (let i = 0; i < lines; i += 1) {
  process.stdout.write(`line ${i}\n`);
  process.stderr.write(`err ${i}\n`);
}
if (values('--partial').length) process.stdout.write(values('--partial')[0]);

note('ready', String(process.pid));

const worldSize = Number(process.env.WORLD_SIZE ?? 1);
const everyoneReady = () => !dir || Array.from({ length: worldSize }, (_, r) => fs.existsSync(path.join(dir, `ready-${r}-${restart}`))).every(Boolean);
const exitSpec = values('--exit').map((spec) => spec.split('=').map(Number)).find(([who]) => who === rank);
if (exitSpec && active) {
  const poll = setInterval(() => {
    if (!everyoneReady()) return;
    clearInterval(poll);
    process.exit(exitSpec[1]);
  }, 10);
} else if (has('--wait') && active) {
  setInterval(() => undefined, 60_000);
}
