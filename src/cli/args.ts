// Shared command-line plumbing on yargs, one convention for every script: unknown flags are errors
// (strict), --help lists every flag with its default and exits 0, --version prints the package
// version, and usage errors and failures end as ONE line "name: message" on stderr with exit code 2
// (no stack trace).
//
//   const cli = createCli('train.js', 'pretrain CamemBERTa')
//     .option('threads', integerOption('--threads', 'intra-op CPU threads', { min: 1 }, { default: 1 }))
//     .option('output', stringOption('where checkpoints go', { demandOption: true }));
//   void runCli(cli, async (args) => { ... args.threads ... });
import * as fs from 'fs';
import * as path from 'path';
import yargs, { Argv, Options } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { packageRoot } from '../package-root';

export const USAGE_EXIT_CODE = 2;

/** A problem with what the user gave (flags, files, their content): reported as one line, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

function packageVersion(): string {
  return JSON.parse(fs.readFileSync(path.join(packageRoot(__dirname), 'package.json'), 'utf8')).version;
}

export interface CliOptions {
  /** The usage line, `$0` standing for the script name (default `$0 [options]`). */
  usage?: string;
  /** The arguments to parse (default: process.argv without node and the script). */
  argv?: readonly string[];
}

/**
 * A strict yargs parser named `scriptName` (the name error lines start with). Add options, or
 * `.command(...)`s, then hand it to runCli.
 */
export function createCli(scriptName: string, description: string, options: CliOptions = {}): Argv {
  const cli = yargs([...(options.argv ?? hideBin(process.argv))])
    .scriptName(scriptName)
    .usage(`${options.usage ?? '$0 [options]'}\n\n${description}`)
    .strict()
    .help()
    .alias('help', 'h')
    .version(packageVersion())
    // Failures are thrown to runCli, which prints the one line, instead of yargs printing usage.
    .fail(false)
    .parserConfiguration({ 'duplicate-arguments-array': true });
  return cli.wrap(Math.min(110, cli.terminalWidth()));
}

// yargs names options without their dashes in its own messages; ours always name the flag.
const YARGS_MESSAGES: Array<[RegExp, (names: string[]) => string]> = [
  [/^Missing required arguments?: (.+)$/, (names) => `missing required option${names.length > 1 ? 's' : ''} ${names.map((n) => `--${n}`).join(', ')}`],
  [/^Not enough arguments following: (.+)$/, (names) => `--${names[0]} needs a value`],
];

/** The one line (without the script name) that runCli prints for `error`. */
export function describeFailure(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  for (const [pattern, rewrite] of YARGS_MESSAGES) {
    const match = pattern.exec(message);
    if (match) {
      message = rewrite(match[1].split(', '));
      break;
    }
  }
  // One line, whatever the error carried (a child process's stderr, a multi-line yargs message).
  return message.trim().replace(/\s*\n\s*/g, ' | ');
}

/** Reports `error` as "scriptName: message" on stderr and exits with USAGE_EXIT_CODE. */
export function exitWithError(scriptName: string, error: unknown): never {
  process.stderr.write(`${scriptName}: ${describeFailure(error)}\n`);
  process.exit(USAGE_EXIT_CODE);
}

/** The flags runCli hands to `main`, typed from the options declared on the parser. */
export type ParsedArgs<T> = Awaited<ReturnType<Argv<T>['parseAsync']>>;

/**
 * Parses the command line and runs `main` with the parsed flags (or only the handlers of
 * `.command(...)`s when `main` is omitted). --help and --version print and exit 0; every usage
 * error and every failure of `main` becomes one line on stderr and exit code 2.
 */
export async function runCli<T>(cli: Argv<T>, main?: (args: ParsedArgs<T>) => unknown): Promise<void> {
  const scriptName = (cli as unknown as { $0: string }).$0;
  try {
    // yargs throws some usage errors synchronously and rejects for others: await covers both.
    const args = await cli.parseAsync();
    if (main) await main(args as ParsedArgs<T>);
  } catch (error) {
    exitWithError(scriptName, error);
  }
}

function singleValue(flag: string, value: unknown): unknown {
  if (Array.isArray(value)) throw new UsageError(`${flag} given ${value.length} times; give it once`);
  return value;
}

interface Range {
  min?: number;
  max?: number;
}

function rangeText(what: string, { min, max }: Range): string {
  if (min !== undefined && max !== undefined) return `${what} in [${min}, ${max}]`;
  if (min !== undefined) return `${what} >= ${min}`;
  if (max !== undefined) return `${what} <= ${max}`;
  return what;
}

/** A coerce function: the flag's value as an integer in range, or a UsageError naming the flag. */
export function integer(flag: string, range: Range = {}): (value: unknown) => number {
  return (raw) => {
    const value = singleValue(flag, raw);
    // The option has no yargs type, so a bad value reaches us as the user typed it.
    const parsed = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    if (!Number.isSafeInteger(parsed) || (range.min !== undefined && parsed < range.min) || (range.max !== undefined && parsed > range.max)) {
      throw new UsageError(`${flag} must be ${rangeText('an integer', range)}, got ${JSON.stringify(String(value))}`);
    }
    return parsed;
  };
}

/** A coerce function: the flag's value as a finite number in range, or a UsageError naming the flag. */
export function number(flag: string, range: Range = {}): (value: unknown) => number {
  return (raw) => {
    const value = singleValue(flag, raw);
    const parsed = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    if (!Number.isFinite(parsed) || (range.min !== undefined && parsed < range.min) || (range.max !== undefined && parsed > range.max)) {
      throw new UsageError(`${flag} must be ${rangeText('a number', range)}, got ${JSON.stringify(String(value))}`);
    }
    return parsed;
  };
}

/** A coerce function: the flag's value, which must be one of `choices`. */
export function oneOf<T extends string>(flag: string, choices: readonly T[]): (value: unknown) => T {
  return (raw) => {
    const value = singleValue(flag, raw);
    if (typeof value !== 'string' || !choices.includes(value as T)) {
      throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(String(value))}`);
    }
    return value as T;
  };
}

/** Further yargs settings of an option (default, demandOption, defaultDescription, alias, ...). */
type Extra = Omit<Options, 'coerce' | 'type' | 'describe' | 'array'>;

// Integer and number options carry no yargs type: with type 'number' yargs turns "many" into NaN
// and "" into 0 before the coerce function sees them. The accepted range goes into the help text.
export function integerOption<E extends Extra = {}>(flag: string, describe: string, range: Range = {}, extra?: E) {
  return { describe: `${describe} [${rangeText('integer', range)}]`, requiresArg: true as const, coerce: integer(flag, range), ...(extra as E) };
}

export function numberOption<E extends Extra = {}>(flag: string, describe: string, range: Range = {}, extra?: E) {
  return { describe: `${describe} [${rangeText('number', range)}]`, requiresArg: true as const, coerce: number(flag, range), ...(extra as E) };
}

export function stringOption<E extends Extra = {}>(describe: string, extra?: E) {
  return { type: 'string' as const, describe, requiresArg: true as const, ...(extra as E) };
}

/** One or more values after the flag (`--input a b c`), or the flag repeated. */
export function listOption<E extends Extra = {}>(describe: string, extra?: E) {
  return { type: 'string' as const, array: true as const, describe, requiresArg: true as const, ...(extra as E) };
}

export function choiceOption<T extends string, E extends Extra = {}>(flag: string, describe: string, choices: readonly T[], extra?: E) {
  return { type: 'string' as const, describe: `${describe} [${choices.join(' | ')}]`, requiresArg: true as const, coerce: oneOf(flag, choices), ...(extra as E) };
}

export function flagOption<E extends Extra = {}>(describe: string, extra?: E) {
  return { type: 'boolean' as const, describe, ...(extra as E) };
}
