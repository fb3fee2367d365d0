// launch.js with a stand-in rank (test/helpers/launch-child.ts): the environment of each rank, the
// "[rank N] " prefixes, a failing rank stopping the others, restarts, signals, and usage errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { repoRoot } from './helpers/python';
import { cpuThreadsPerRank } from '../src/dist/env';
import { PrefixedLines } from '../src/launch';

const LAUNCH = path.join(repoRoot, 'build', 'ts', 'src', 'launch.js');
const CHILD = path.join(repoRoot, 'build', 'ts', 'test', 'helpers', 'launch-child.js');
const INHERITED = /^(RANK|LOCAL_RANK|WORLD_SIZE|LOCAL_WORLD_SIZE|GROUP_RANK|GROUP_WORLD_SIZE|ROLE_RANK|MASTER_ADDR|MASTER_PORT|TORCHELASTIC_.*|SLURM_.*|OAR_.*|OMP_NUM_THREADS|CAMEMBERTA_.*)$/;

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !INHERITED.test(name)));
  return { ...env, ...extra };
}

interface Outcome { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function launchSync(args: string[], env: NodeJS.ProcessEnv = {}): Outcome {
  const result = spawnSync(process.execPath, [LAUNCH, ...args], { encoding: 'utf8', env: cleanEnv(env), timeout: 60_000 });
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

function launch(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [LAUNCH, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => { stdout += chunk; });
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  // A safety net for a hung launcher, so the file fails instead of hanging CI: not a timing check.
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const done = new Promise<Outcome>((resolve) => child.on('close', (code, signal) => {
    clearTimeout(guard);
    resolve({ code, signal, stdout, stderr });
  }));
  return { child, done, output: () => stdout + stderr };
}

async function waitFor(what: string, ready: () => boolean): Promise<void> {
  for (const started = Date.now(); !ready(); ) {
    if (Date.now() - started > 30_000) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'launch-test-'));
  tempDirs.push(dir);
  return dir;
}

function noted(dir: string, name: string, rank: number, restart = 0): string | null {
  const file = path.join(dir, `${name}-${rank}-${restart}`);
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie nobody reaps yet (PID 1 of a container may not) is dead all the same.
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

interface EnvLine { variables: Record<string, string | null>; resolved: Record<string, unknown> }

function envByRank(stdout: string): Map<number, EnvLine> {
  const found = new Map<number, EnvLine>();
  for (const match of stdout.matchAll(/^\[rank (\d+)\] ENV (.*)$/gm)) found.set(Number(match[1]), JSON.parse(match[2]));
  return found;
}

test('2 ranks on one node: torchrun\'s variables, a CPU share each, and resolveDistributedEnv reads them back', () => {
  const result = launchSync(['--nproc-per-node', '2', '--master-port', '29931', CHILD, '--print-env']);
  assert.is(result.code, 0, result.stderr);
  const envs = envByRank(result.stdout);
  assert.equal([...envs.keys()].sort(), [0, 1]);
  const threads = String(cpuThreadsPerRank(2));
  for (const rank of [0, 1]) {
    const { variables, resolved } = envs.get(rank)!;
    assert.equal(variables, {
      RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '0', GROUP_WORLD_SIZE: '1',
      ROLE_RANK: String(rank), ROLE_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29931',
      TORCHELASTIC_RESTART_COUNT: '0', TORCHELASTIC_MAX_RESTARTS: '0', TORCHELASTIC_RUN_ID: 'none', TORCHELASTIC_USE_AGENT_STORE: 'False',
      TORCH_NCCL_ASYNC_ERROR_HANDLING: '1', OMP_NUM_THREADS: threads, CAMEMBERTA_THREADS: threads, CAMEMBERTA_LAUNCHER: 'flags',
    });
    assert.equal(resolved, {
      rank, worldSize: 2, localRank: rank, localWorldSize: 2, groupRank: 0, masterAddr: '127.0.0.1', masterPort: 29931,
      useAgentStore: false, restartCount: 0, cpuThreads: Number(threads), source: 'launcher',
    });
  }
});

test('threads the user set are kept (CAMEMBERTA_THREADS, OMP_NUM_THREADS)', () => {
  const result = launchSync(['--nproc-per-node', '2', CHILD, '--print-env'], { CAMEMBERTA_THREADS: '3', OMP_NUM_THREADS: '5' });
  assert.is(result.code, 0, result.stderr);
  const { variables, resolved } = envByRank(result.stdout).get(1)!;
  assert.is(variables.CAMEMBERTA_THREADS, '3');
  assert.is(variables.OMP_NUM_THREADS, '5');
  assert.is(resolved.cpuThreads, 3);
});

test('node 1 of 2 (simulated, nothing connects): global ranks 2 and 3 of 4', () => {
  const result = launchSync(['--nnodes', '2', '--node-rank', '1', '--nproc-per-node', '2', '--master-addr', '10.1.2.3', '--master-port', '29400',
    '--max-restarts', '3', '--run-id', 'job7', CHILD, '--print-env']);
  assert.is(result.code, 0, result.stderr);
  const envs = envByRank(result.stdout);
  assert.equal([...envs.keys()].sort(), [2, 3]);
  for (const [rank, { variables }] of envs) {
    assert.is(variables.RANK, String(rank));
    assert.is(variables.LOCAL_RANK, String(rank - 2));
    assert.is(variables.WORLD_SIZE, '4');
    assert.is(variables.LOCAL_WORLD_SIZE, '2');
    assert.is(variables.GROUP_RANK, '1');
    assert.is(variables.GROUP_WORLD_SIZE, '2');
    assert.is(variables.MASTER_ADDR, '10.1.2.3');
    assert.is(variables.MASTER_PORT, '29400');
    assert.is(variables.TORCHELASTIC_MAX_RESTARTS, '3');
    assert.is(variables.TORCHELASTIC_RUN_ID, 'job7');
  }
  assert.match(result.stderr, 'node 1 of 2: ranks 2-3 of 4, master 10.1.2.3:29400');
});

test('under OAR: node count, this node\'s rank and the master come from OAR_NODEFILE', () => {
  const dir = tempDir();
  const nodefile = path.join(dir, 'nodefile');
  const me = os.hostname();
  // One line per core; this host listed by its full name while hostname() may be the short one.
  fs.writeFileSync(nodefile, ['first-node.example.org', 'first-node.example.org', `${me.split('.')[0]}.cluster.example.org`, `${me.split('.')[0]}.cluster.example.org`, ''].join('\n'));
  const result = launchSync(['--nproc-per-node', '2', CHILD, '--print-env'], { OAR_NODEFILE: nodefile, OAR_JOB_ID: '4321' });
  assert.is(result.code, 0, result.stderr);
  const envs = envByRank(result.stdout);
  assert.equal([...envs.keys()].sort(), [2, 3]);
  const { variables, resolved } = envs.get(3)!;
  assert.is(variables.WORLD_SIZE, '4');
  assert.is(variables.GROUP_RANK, '1');
  assert.is(variables.MASTER_ADDR, 'first-node.example.org');
  assert.is(variables.MASTER_PORT, String(15000 + 4321));
  assert.is(variables.TORCHELASTIC_RUN_ID, '4321');
  assert.is(resolved.source, 'oar');
  assert.match(result.stderr, '(from OAR)');
});

test('inside an srun step with one task per node: the layout comes from SLURM', () => {
  const slurm = {
    SLURM_STEP_ID: '0', SLURM_PROCID: '1', SLURM_NODEID: '1', SLURM_STEP_NUM_NODES: '2', SLURM_STEP_NUM_TASKS: '2',
    SLURM_STEP_NODELIST: 'gpu[07-08]', SLURM_JOB_ID: '98765',
  };
  const result = launchSync(['--nproc-per-node', '2', CHILD, '--print-env'], slurm);
  assert.is(result.code, 0, result.stderr);
  const { variables } = envByRank(result.stdout).get(2)!;
  assert.is(variables.WORLD_SIZE, '4');
  assert.is(variables.MASTER_ADDR, 'gpu07');
  assert.is(variables.MASTER_PORT, String(15000 + 8765));
  const many = launchSync(['--nproc-per-node', '2', CHILD], { ...slurm, SLURM_STEP_NUM_TASKS: '8' });
  assert.is(many.code, 2);
  assert.match(many.stderr, 'one task per node');
});

test('PrefixedLines: lines split across chunks come out whole, several in a chunk one by one, UTF-8 intact', () => {
  const written: string[] = [];
  const lines = new PrefixedLines(Buffer.from('[rank 3] '), (chunk) => written.push(chunk.toString('utf8')));
  const text = Buffer.from('é1\nab');
  lines.push(text.subarray(0, 1)); // half of the é
  lines.push(text.subarray(1));
  lines.push(Buffer.from('c\nd\n\ne'));
  assert.equal(written, ['[rank 3] é1\n', '[rank 3] abc\n', '[rank 3] d\n', '[rank 3] \n']);
  lines.end();
  lines.end();
  assert.equal(written.slice(4), ['[rank 3] e\n']);
});

test('every line is prefixed with its rank, on the stream it was written to; a last partial line is completed', () => {
  const result = launchSync(['--nproc-per-node', '2', CHILD, '--lines', '3', '--partial', 'no newline']);
  assert.is(result.code, 0, result.stderr);
  for (const rank of [0, 1]) {
    const out = result.stdout.split('\n').filter((line) => line.startsWith(`[rank ${rank}] `));
    assert.equal(out, [0, 1, 2].map((i) => `[rank ${rank}] line ${i}`).concat(`[rank ${rank}] no newline`));
    const err = result.stderr.split('\n').filter((line) => line.startsWith(`[rank ${rank}] `));
    assert.equal(err, [0, 1, 2].map((i) => `[rank ${rank}] err ${i}`));
  }
  assert.ok(result.stdout.endsWith('\n'));
});

test('a failing rank stops the others (SIGTERM) and the launcher exits with its code, naming it', () => {
  const dir = tempDir();
  const result = launchSync(['--nproc-per-node', '3', CHILD, '--dir', dir, '--wait', '--exit', '1=3']);
  assert.is(result.code, 3, result.stderr);
  assert.match(result.stderr, /rank 1 \(local rank 1, pid \d+\) exited with code 3; stopping the other 2 rank\(s\)/);
  assert.match(result.stderr, 'no restarts allowed');
  assert.ok(noted(dir, 'SIGTERM', 0), 'rank 0 got SIGTERM');
  assert.ok(noted(dir, 'SIGTERM', 2), 'rank 2 got SIGTERM');
});

test('a stopped rank (SIGSTOP) is continued so that it sees the SIGTERM when another fails', async () => {
  const dir = tempDir();
  const run = launch(['--nproc-per-node', '2', '--grace-period', '600', CHILD, '--dir', dir, '--wait']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  process.kill(Number(noted(dir, 'ready', 0)), 'SIGSTOP');
  process.kill(Number(noted(dir, 'ready', 1)), 'SIGKILL');
  const result = await run.done;
  assert.is(result.code, 137, result.stderr);
  assert.ok(noted(dir, 'SIGTERM', 0), 'the stopped rank handled SIGTERM');
  assert.not.match(result.stderr, 'still running', 'rank 0 stopped by itself, not by the SIGKILL after the grace period');
});

test('a rank that ignores SIGTERM is killed after --grace-period', () => {
  const dir = tempDir();
  const result = launchSync(['--nproc-per-node', '2', '--grace-period', '0.5', CHILD, '--dir', dir, '--wait', '--ignore-sigterm', '--exit', '1=4']);
  assert.is(result.code, 4, result.stderr);
  assert.match(result.stderr, 'rank(s) 0 still running 0.5 s after SIGTERM: SIGKILL');
  const pid = Number(noted(dir, 'ready', 0));
  assert.not.ok(isAlive(pid), `rank 0 (pid ${pid}) is gone`);
});

test('SIGKILL of one rank mid-run: the other is stopped and the launcher exits 137', async () => {
  const dir = tempDir();
  const run = launch(['--nproc-per-node', '2', CHILD, '--dir', dir, '--wait']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  process.kill(Number(noted(dir, 'ready', 1)), 'SIGKILL');
  const result = await run.done;
  assert.is(result.code, 137, result.stderr);
  assert.match(result.stderr, 'rank 1 (local rank 1');
  assert.match(result.stderr, 'was killed by SIGKILL');
  assert.ok(noted(dir, 'SIGTERM', 0), 'rank 0 was told to stop');
});

test('--max-restarts: all ranks start again with TORCHELASTIC_RESTART_COUNT + 1, and the run completes', async () => {
  const dir = tempDir();
  // Both ranks run until a restart; in the first attempt rank 1 is killed as in the acceptance test.
  const run = launch(['--nproc-per-node', '2', '--max-restarts', '1', CHILD, '--dir', dir, '--print-env', '--wait', '--until-restart', '1']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  process.kill(Number(noted(dir, 'ready', 1)), 'SIGKILL');
  const result = await run.done;
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stderr, 'restart 1 of 1 (TORCHELASTIC_RESTART_COUNT=1)');
  for (const rank of [0, 1]) assert.ok(noted(dir, 'ready', rank, 1), `rank ${rank} started again`);
  const counts = [...result.stdout.matchAll(/^\[rank 0\] ENV (.*)$/gm)].map((m) => JSON.parse(m[1]).variables.TORCHELASTIC_RESTART_COUNT);
  assert.equal(counts, ['0', '1']);
});

test('--max-restarts: a rank that fails on its first attempt only ends in success', () => {
  const dir = tempDir();
  const result = launchSync(['--standalone', '--nproc-per-node', '2', '--max-restarts', '2', CHILD, '--dir', dir, '--print-env', '--exit', '1=5', '--until-restart', '1']);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stderr, 'rank 1 (local rank 1');
  assert.match(result.stderr, 'restart 1 of 2');
  assert.not.match(result.stderr, 'restart 2 of 2');
  const ports = [...result.stdout.matchAll(/^\[rank 0\] ENV (.*)$/gm)].map((m) => Number(JSON.parse(m[1]).variables.MASTER_PORT));
  assert.is(ports.length, 2);
  for (const port of ports) assert.ok(port > 0 && port < 65536 && port !== 29500, `standalone port ${port}`);
});

test('--max-restarts used up: the last failure\'s code', () => {
  const result = launchSync(['--nproc-per-node', '2', '--max-restarts', '1', CHILD, '--exit', '0=6', '--wait']);
  assert.is(result.code, 6, result.stderr);
  assert.is([...result.stderr.matchAll(/rank 0 \(local rank 0, pid \d+\) exited with code 6/g)].length, 2);
  assert.match(result.stderr, 'all 1 restart(s) used');
});

test('SIGINT is passed to every rank once; the launcher waits for them and exits 130', async () => {
  const dir = tempDir();
  const run = launch(['--nproc-per-node', '2', '--max-restarts', '3', CHILD, '--dir', dir, '--wait']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  run.child.kill('SIGINT');
  const result = await run.done;
  assert.is(result.code, 130, result.stderr);
  for (const rank of [0, 1]) assert.ok(noted(dir, 'SIGINT', rank), `rank ${rank} got SIGINT`);
  assert.not.match(result.stderr, 'restart 1');
});

test('a second SIGINT kills ranks that do not stop', async () => {
  const dir = tempDir();
  const run = launch(['--nproc-per-node', '2', CHILD, '--dir', dir, '--wait', '--ignore-sigint']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  run.child.kill('SIGINT');
  await waitFor('both ranks to note SIGINT', () => Boolean(noted(dir, 'SIGINT', 0) && noted(dir, 'SIGINT', 1)));
  run.child.kill('SIGINT');
  const result = await run.done;
  assert.is(result.code, 130, result.stderr);
  assert.match(result.stderr, 'SIGINT again: killing the ranks');
  for (const rank of [0, 1]) assert.not.ok(isAlive(Number(noted(dir, 'ready', rank))), `rank ${rank} is gone`);
});

test('SIGTERM to the launcher: passed on, exit 143', async () => {
  const dir = tempDir();
  const run = launch(['--nproc-per-node', '2', CHILD, '--dir', dir, '--wait']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  run.child.kill('SIGTERM');
  const result = await run.done;
  assert.is(result.code, 143, result.stderr);
  for (const rank of [0, 1]) assert.ok(noted(dir, 'SIGTERM', rank), `rank ${rank} got SIGTERM`);
});

const hasPdeathsig = spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') ?? false;

test('a launcher killed with SIGKILL leaves no rank behind (setpriv --pdeathsig)', async () => {
  if (!hasPdeathsig) {
    console.log('  (skipped: no setpriv with --pdeathsig here)');
    return;
  }
  const dir = tempDir();
  const run = launch(['--nproc-per-node', '2', CHILD, '--dir', dir, '--wait']);
  await waitFor('both ranks to start', () => Boolean(noted(dir, 'ready', 0) && noted(dir, 'ready', 1)));
  run.child.kill('SIGKILL');
  await run.done;
  const pids = [0, 1].map((rank) => Number(noted(dir, 'ready', rank)));
  await waitFor(`ranks ${pids.join(', ')} to end`, () => pids.every((pid) => !isAlive(pid)));
});

test('--redirects 3 --log-dir: output in LOG_DIR/attempt_0/<rank>/, not on the console; --tee 1 copies stdout', () => {
  const dir = tempDir();
  const redirected = launchSync(['--nproc-per-node', '2', '--redirects', '3', '--log-dir', path.join(dir, 'a'), CHILD, '--lines', '2']);
  assert.is(redirected.code, 0, redirected.stderr);
  assert.not.match(redirected.stdout, '[rank');
  assert.not.match(redirected.stderr, '[rank');
  assert.is(fs.readFileSync(path.join(dir, 'a', 'attempt_0', '1', 'stdout.log'), 'utf8'), '[rank 1] line 0\n[rank 1] line 1\n');
  assert.is(fs.readFileSync(path.join(dir, 'a', 'attempt_0', '0', 'stderr.log'), 'utf8'), '[rank 0] err 0\n[rank 0] err 1\n');
  const teed = launchSync(['--nproc-per-node', '1', '--tee', '1', '--log-dir', path.join(dir, 'b'), CHILD, '--lines', '1']);
  assert.is(teed.code, 0, teed.stderr);
  assert.match(teed.stdout, '[rank 0] line 0');
  assert.match(teed.stderr, '[rank 0] err 0');
  assert.is(fs.readFileSync(path.join(dir, 'b', 'attempt_0', '0', 'stdout.log'), 'utf8'), '[rank 0] line 0\n');
  assert.not.ok(fs.existsSync(path.join(dir, 'b', 'attempt_0', '0', 'stderr.log')));
});

test('SCRIPT ARGS are passed untouched, flags included; -- separates them too; a command on PATH runs', () => {
  const result = launchSync([CHILD, '--print-env', '--nproc-per-node', '7', '42']);
  assert.is(result.code, 0, result.stderr);
  assert.equal((envByRank(result.stdout).get(0)! as unknown as { args: string[] }).args, ['--print-env', '--nproc-per-node', '7', '42']);
  const separated = launchSync(['--nproc-per-node', '1', '--', 'sh', '-c', 'echo "$RANK/$WORLD_SIZE"']);
  assert.is(separated.code, 0, separated.stderr);
  assert.is(separated.stdout, '[rank 0] 0/1\n');
});

const usageCases: Array<[string[], string]> = [
  [['--nproc-per-node', '0', CHILD], '--nproc-per-node must be an integer >= 1, gpu, cpu or auto, got "0"'],
  [['--nproc-per-node', 'many', CHILD], '--nproc-per-node must be an integer >= 1, gpu, cpu or auto, got "many"'],
  [['--nnodes', '2', '--node-rank', '2', CHILD], '--node-rank 2 must be below --nnodes 2'],
  [['--nnodes', '1:4', CHILD], 'elastic node counts (MIN:MAX) are not supported'],
  [['--master-port', '70000', CHILD], '--master-port must be an integer in [1, 65535], got "70000"'],
  [['--max-restarts', '-1', CHILD], '--max-restarts must be an integer >= 0'],
  [['--standalone', '--nnodes', '2', CHILD], '--standalone runs one node at a free port on 127.0.0.1: drop --nnodes'],
  [['--bogus', CHILD], 'Unknown argument: bogus'],
  [['--redirects', '1', CHILD], '--redirects needs --log-dir'],
  [[], 'no SCRIPT to run'],
  [['does/not/exist.js'], 'SCRIPT does/not/exist.js does not exist'],
  [['no-such-command-here'], 'SCRIPT no-such-command-here: no such command on PATH'],
];

test('bad flags: one line naming the problem, exit 2, no rank started', () => {
  for (const [args, message] of usageCases) {
    const result = launchSync(args);
    assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.ok(result.stderr.includes(message), `${args.join(' ')}: ${result.stderr}`);
    assert.is(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.is(result.stdout, '');
  }
});

test('under OAR, a host missing from OAR_NODEFILE is an error naming it', () => {
  const dir = tempDir();
  const nodefile = path.join(dir, 'nodefile');
  fs.writeFileSync(nodefile, 'elsewhere-1\nelsewhere-2\n');
  const result = launchSync([CHILD], { OAR_NODEFILE: nodefile });
  assert.is(result.code, 2);
  assert.match(result.stderr, `this host (${os.hostname()}) is not among the hosts of OAR_NODEFILE (elsewhere-1, elsewhere-2); give --node-rank`);
  const given = launchSync(['--nnodes', '2', '--node-rank', '1', CHILD, '--print-env'], { OAR_NODEFILE: nodefile });
  assert.is(given.code, 0, given.stderr);
  assert.is(envByRank(given.stdout).get(1)!.variables.CAMEMBERTA_LAUNCHER, 'flags');
});

test.after(() => { for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true }); });

test.run();
