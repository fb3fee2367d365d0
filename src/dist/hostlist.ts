// SLURM's compressed host lists and task layouts, as `scontrol show hostnames` reads them:
//   "gpu[01-04,07],login2"  -> gpu01 gpu02 gpu03 gpu04 gpu07 login2   (a range keeps the width of its lower bound)
//   "rack[1-2]-n[1-2]"      -> rack1-n1 rack1-n2 rack2-n1 rack2-n2    (several brackets: their product)
//   "4(x2),3"               -> [4, 4, 3]                              (SLURM_TASKS_PER_NODE)
// Written here rather than taken from npm: the npm packages for this are unmaintained one-offs, and
// the grammar is a few lines.

/** A malformed host list or tasks-per-node value; the message quotes it. */
export class HostlistError extends Error {
  override name = 'HostlistError';
}

/** A literal, or the numbers of a bracket: ranges [from, to] each padded to the width of its lower bound. */
type Piece = string | Array<{ from: number; to: number; width: number }>;

/** Splits at the commas outside brackets. */
function topLevelItems(list: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i += 1) {
    const c = list[i];
    if (c === '[') {
      if (depth > 0) throw new HostlistError(`host list "${list}": nested "[" at character ${i + 1}`);
      depth = 1;
    } else if (c === ']') {
      if (depth === 0) throw new HostlistError(`host list "${list}": "]" without "[" at character ${i + 1}`);
      depth = 0;
    } else if (c === ',' && depth === 0) {
      items.push(list.slice(start, i));
      start = i + 1;
    }
  }
  if (depth > 0) throw new HostlistError(`host list "${list}": "[" is never closed`);
  items.push(list.slice(start));
  return items.map((item) => item.trim());
}

function parseRanges(list: string, body: string): Piece {
  return body.split(',').map((part) => {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!match) throw new HostlistError(`host list "${list}": "${part}" in [${body}] is not a number or a range a-b`);
    const [, low, high] = match;
    const from = Number(low);
    const to = high === undefined ? from : Number(high);
    if (to < from) throw new HostlistError(`host list "${list}": range ${part} runs backwards`);
    return { from, to, width: low.length };
  });
}

function pieces(list: string, item: string): Piece[] {
  const result: Piece[] = [];
  const pattern = /\[([^\]]*)\]/g;
  let last = 0;
  for (const match of item.matchAll(pattern)) {
    if (match.index! > last) result.push(item.slice(last, match.index));
    result.push(parseRanges(list, match[1]));
    last = match.index! + match[0].length;
  }
  if (last < item.length) result.push(item.slice(last));
  return result;
}

function* product(parts: Piece[], index = 0, prefix = ''): Generator<string> {
  if (index === parts.length) {
    yield prefix;
    return;
  }
  const part = parts[index];
  if (typeof part === 'string') {
    yield* product(parts, index + 1, prefix + part);
  } else {
    for (const { from, to, width } of part) {
      for (let n = from; n <= to; n += 1) yield* product(parts, index + 1, prefix + String(n).padStart(width, '0'));
    }
  }
}

/** The host names of a SLURM host list, in order, lazily (a list may name thousands). */
export function* hostsOf(list: string): Generator<string> {
  if (list.trim() === '') throw new HostlistError('host list is empty');
  for (const item of topLevelItems(list)) {
    if (item === '') throw new HostlistError(`host list "${list}": empty entry`);
    yield* product(pieces(list, item));
  }
}

/** Every host of a SLURM host list; more than `limit` is an error (a mistyped range). */
export function expandHostlist(list: string, limit = 100_000): string[] {
  const hosts: string[] = [];
  for (const host of hostsOf(list)) {
    if (hosts.length === limit) throw new HostlistError(`host list "${list}" names more than ${limit} hosts`);
    hosts.push(host);
  }
  return hosts;
}

/** The first host of a SLURM host list (where SLURM's block distribution puts rank 0). */
export function firstHost(list: string): string {
  return hostsOf(list).next().value as string;
}

/** SLURM_TASKS_PER_NODE / SLURM_STEP_TASKS_PER_NODE ("4(x2),3") as one count per node. */
export function expandTasksPerNode(value: string): number[] {
  const counts: number[] = [];
  for (const part of value.split(',')) {
    const match = /^\s*(\d+)(?:\(x(\d+)\))?\s*$/.exec(part);
    if (!match || Number(match[1]) < 1 || (match[2] !== undefined && Number(match[2]) < 1)) {
      throw new HostlistError(`tasks per node "${value}": "${part}" is not N or N(xM) with N, M >= 1`);
    }
    const repeat = match[2] === undefined ? 1 : Number(match[2]);
    if (counts.length + repeat > 1_000_000) throw new HostlistError(`tasks per node "${value}" describes more than a million nodes`);
    for (let i = 0; i < repeat; i += 1) counts.push(Number(match[1]));
  }
  return counts;
}
