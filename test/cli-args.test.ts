// The command-line convention every script shares (src/cli/args.ts): strict flags, truthful --help
// exiting 0, --version, and every usage error or failure as one line "name: message", exit code 2.
// Parsing is checked in process; a few spawned runs check the exit codes and what reaches stderr.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import {
  createCli, describeFailure, integerOption, numberOption, stringOption, listOption, choiceOption, flagOption,
} from '../src/cli/args';
import { repoRoot } from './helpers/python';

function probeCli(argv: string[]) {
  return createCli('probe.js', 'a probe of the shared CLI convention', { argv })
    .option('threads', integerOption('--threads', 'worker threads', { min: 1 }, { defaultDescription: 'all cores' }))
    .option('steps', integerOption('--steps', 'steps', { min: 1, max: 1000 }, { default: 10 }))
    .option('lr', numberOption('--lr', 'learning rate', { min: 0 }, { default: 0.5 }))
    .option('output', stringOption('output directory', { demandOption: true }))
    .option('input', listOption('inputs', { default: ['a.txt'] }))
    .option('mode', choiceOption('--mode', 'what to do', ['fast', 'slow'], { default: 'fast' }))
    .option('quiet', flagOption('say nothing', { default: false }));
}

async function parse(...argv: string[]) {
  const args = await probeCli(argv).parseAsync();
  return { threads: args.threads, steps: args.steps, lr: args.lr, output: args.output, input: args.input, mode: args.mode, quiet: args.quiet };
}

async function failure(...argv: string[]): Promise<string> {
  try {
    await probeCli(argv).parseAsync();
  } catch (error) {
    return describeFailure(error);
  }
  throw new Error(`${argv.join(' ')} parsed without an error`);
}

test('parsed flags: defaults, coerced numbers, lists, choices', async () => {
  assert.equal(await parse('--output', 'out', '--threads', '4', '--lr', '1e-3', '--input', 'x', 'y', '--mode', 'slow', '--quiet'),
    { threads: 4, steps: 10, lr: 1e-3, output: 'out', input: ['x', 'y'], mode: 'slow', quiet: true });
  assert.equal(await parse('--output', 'out'), { threads: undefined, steps: 10, lr: 0.5, output: 'out', input: ['a.txt'], mode: 'fast', quiet: false });
});

test('number and choice options: named messages with the value given', async () => {
  assert.is(await failure('--output', 'o', '--threads', '0'), '--threads must be an integer >= 1, got "0"');
  assert.is(await failure('--output', 'o', '--threads', 'many'), '--threads must be an integer >= 1, got "many"');
  assert.is(await failure('--output', 'o', '--threads', '1.5'), '--threads must be an integer >= 1, got "1.5"');
  assert.is(await failure('--output', 'o', '--threads='), '--threads must be an integer >= 1, got ""');
  assert.is(await failure('--output', 'o', '--steps', '5000'), '--steps must be an integer in [1, 1000], got "5000"');
  assert.is(await failure('--output', 'o', '--steps', '1', '--steps', '2'), '--steps given 2 times; give it once');
  assert.is(await failure('--output', 'o', '--lr', 'NaN'), '--lr must be a number >= 0, got "NaN"');
  assert.is(await failure('--output', 'o', '--mode', 'medium'), '--mode must be one of fast, slow, got "medium"');
});

test('usage errors: unknown flags, missing options and values', async () => {
  assert.is(await failure('--output', 'o', '--bogus'), 'Unknown argument: bogus');
  assert.is(await failure('--output', 'o', 'stray'), 'Unknown argument: stray');
  assert.is(await failure(), 'missing required option --output');
  assert.is(await failure('--output'), '--output needs a value');
  assert.is(await failure('--output', 'o', '--threads'), '--threads needs a value');
  assert.is(describeFailure(new Error('first line\n  second line\n')), 'first line | second line');
});

test('--help lists every flag with its default', async () => {
  const help = await probeCli([]).getHelp();
  for (const [flag, detail] of [
    ['--threads', '[integer >= 1] [default: all cores]'], ['--steps', '[integer in [1, 1000]] [default: 10]'], ['--lr', '[default: 0.5]'],
    ['--output', '[string] [required]'], ['--input', '[default: ["a.txt"]]'], ['--mode', '[fast | slow] [string] [default: "fast"]'],
    ['--quiet', '[boolean] [default: false]'], ['--version', ''], ['--help', ''],
  ]) {
    const line = help.split('\n').find((l) => new RegExp(`(^|, )${flag} `).test(l.trim()));
    assert.ok(line, `${flag} listed in:\n${help}`);
    assert.ok(line!.replace(/\s+/g, ' ').includes(detail), `${flag}: ${line}`);
  }
});

test('spawned: help and version exit 0 on stdout; errors are one line on stderr with exit 2', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-cli-'));
  try {
    const probeFile = path.join(tmp, 'probe.js');
    fs.writeFileSync(probeFile, `
const { createCli, runCli, integerOption } = require(${JSON.stringify(path.join(repoRoot, 'build', 'ts', 'src', 'cli', 'args.js'))});
const cli = createCli('probe.js', 'a probe').option('threads', integerOption('--threads', 'threads', { min: 1 }, { default: 1 }));
void runCli(cli, async (args) => { if (args.threads === 13) throw new Error('unlucky\\nthreads'); process.stdout.write('ran'); });
`);
    const run = (...args: string[]) => spawnSync(process.execPath, [probeFile, ...args], { encoding: 'utf8' });
    const help = run('--help');
    assert.is(help.status, 0, help.stderr);
    assert.match(help.stdout, /--threads\s+threads \[integer >= 1\]\s+\[default: 1\]/);
    const version = run('--version');
    assert.is(version.status, 0);
    assert.is(version.stdout.trim(), JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version);
    for (const [args, line] of [[['--threads', 'x'], '--threads must be an integer >= 1, got "x"'], [['--threads', '13'], 'unlucky | threads']]) {
      const result = run(...args);
      assert.is(result.status, 2, result.stderr);
      assert.is(result.stderr, `probe.js: ${line}\n`);
      assert.is(result.stdout, '');
    }
    assert.is(run().stdout, 'ran');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('the package CLIs follow it: --help exits 0, an unknown flag is one line with exit 2', () => {
  for (const [script, name] of [['prepare.js', 'prepare.js'], ['tokenizer.js', 'tokenizer.js']]) {
    const file = path.join(repoRoot, 'build', 'ts', 'src', script);
    const help = spawnSync(process.execPath, [file, '--help'], { encoding: 'utf8' });
    assert.is(help.status, 0, `${script}: ${help.stderr}`);
    assert.match(help.stdout, '--version');
    const unknown = spawnSync(process.execPath, [file, 'train', '--bogus-flag'], { encoding: 'utf8' });
    assert.is(unknown.status, 2, `${script}: ${unknown.stderr}`);
    assert.match(unknown.stderr, new RegExp(`^${name.replace('.', '\\.')}: [^\\n]+\\n$`));
  }
});

test.run();
