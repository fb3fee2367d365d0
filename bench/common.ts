// Shared by the benchmarks: the reference Python (same resolution as the tests) and medians.
export { pythonExecutable } from '../test/helpers/python';

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
