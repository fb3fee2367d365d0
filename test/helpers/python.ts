// Runs the reference Python (torch, transformers, safetensors) from tests. Which interpreter:
// $PYTHON if set, else the project's <repo>/.venv/bin/python3 (made by scripts/setup.sh), else
// python3 on PATH. Failures throw with the command, exit status and the tail of stderr, so a
// broken Python set-up reads as such rather than as a numerical mismatch.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';

/** The repository root: the nearest ancestor of this file holding package.json. */
export const repoRoot: string = (() => {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${__dirname}`);
  }
})();

export function pythonExecutable(): string {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = path.join(repoRoot, '.venv', 'bin', 'python3');
  return fs.existsSync(venv) ? venv : 'python3';
}

/** A script under test/python/, by file name. */
export function pythonScript(name: string): string {
  return path.join(repoRoot, 'test', 'python', name);
}

export interface RunPythonOptions {
  /** Text for the script's stdin. */
  input?: string;
  /** Milliseconds before the process is killed (default 120 s). */
  timeoutMs?: number;
  cwd?: string;
  /** Variables added to the environment. */
  env?: Record<string, string>;
}

export function runPython(args: string[], options: RunPythonOptions = {}): { stdout: string; stderr: string } {
  const python = pythonExecutable();
  const result = spawnSync(python, args, {
    cwd: options.cwd ?? repoRoot,
    input: options.input,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 120_000,
    maxBuffer: 256 * 1024 * 1024,
    // Deterministic, quiet, and confined to the CPU cores CI has.
    env: { ...process.env, PYTHONHASHSEED: '0', TRANSFORMERS_VERBOSITY: 'error', TOKENIZERS_PARALLELISM: 'false', ...options.env },
  });
  const command = `${python} ${args.join(' ')}`;
  if (result.error) {
    const code = (result.error as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? ' (no such interpreter: run scripts/setup.sh or set $PYTHON)' : '';
    throw new Error(`runPython: cannot run ${command}: ${result.error.message}${hint}`);
  }
  if (result.status !== 0) {
    const tail = (result.stderr || '').trim().split('\n').slice(-25).join('\n');
    const why = result.signal ? `killed by ${result.signal}` : `exit status ${result.status}`;
    throw new Error(`runPython: ${command} failed (${why}):\n${tail}`);
  }
  return { stdout: result.stdout, stderr: result.stderr };
}
