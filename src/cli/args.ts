// Shared command-line plumbing: commander programs whose usage errors and failures end with a
// one-line message on stderr and exit code 2 (no stack trace), and number parsers for options.
import { Command, CommanderError, InvalidArgumentError } from 'commander';

export const USAGE_EXIT_CODE = 2;

export function createProgram(name: string, description: string): Command {
  const program = new Command(name);
  program.description(description).showHelpAfterError('(run with --help for usage)');
  program.exitOverride();
  return program;
}

export function parseInteger(label: string, min = Number.MIN_SAFE_INTEGER) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min) throw new InvalidArgumentError(`${label} must be an integer >= ${min}`);
    return parsed;
  };
}

export function parseNumber(label: string, min: number, max = Number.POSITIVE_INFINITY) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`${label} must be a number in [${min}, ${max}]`);
    return parsed;
  };
}

/** Parses argv and runs the chosen action; any error becomes "name: message" on stderr and exit 2. */
export async function runProgram(program: Command, argv = process.argv): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version "errors" are normal exits; commander has already printed usage errors.
      process.exit(error.exitCode === 0 ? 0 : USAGE_EXIT_CODE);
    }
    process.stderr.write(`${program.name()}: ${(error as Error).message}\n`);
    process.exit(USAGE_EXIT_CODE);
  }
}
