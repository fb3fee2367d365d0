// Layering of the data side: corpus <- tokenizer <- data. The tokenizer trainer and prepare used to
// import each other's packages (tokenizer/train read corpora through data/, data/prepare loads the
// tokenizer); the corpus reader now lives in its own package.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as path from 'path';
import { repoRoot } from './helpers/python';

const src = path.join(repoRoot, 'src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** src/<package>/...: the package; a file directly in src/ is a package of its own. */
function packageOf(file: string): string {
  const relative = path.relative(src, file).split(path.sep);
  return relative.length === 1 ? relative[0].replace(/\.ts$/, '') : relative[0];
}

/** Package -> the packages it imports from (static imports, type imports and re-exports alike). */
function packageGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of sources(src)) {
    const from = packageOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    const text = fs.readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g)) {
      const target = path.resolve(path.dirname(file), match[1]);
      const candidates = [`${target}.ts`, path.join(target, 'index.ts')];
      const resolved = candidates.find((candidate) => fs.existsSync(candidate));
      if (!resolved) continue;
      const to = packageOf(resolved);
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/** Whether `to` is reachable from `from`. */
function reaches(graph: Map<string, Set<string>>, from: string, to: string): boolean {
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const node = stack.pop()!;
    for (const next of graph.get(node) ?? []) {
      if (next === to) return true;
      if (!seen.has(next)) {
        seen.add(next);
        stack.push(next);
      }
    }
  }
  return false;
}

test('no import cycle through the corpus, tokenizer or data packages', () => {
  const graph = packageGraph();
  assert.ok(graph.get('data')?.has('tokenizer'), 'data imports the tokenizer (the graph is read)');
  for (const name of ['corpus', 'tokenizer', 'data']) {
    assert.ok(graph.has(name), `${name} package found`);
    const cycle = [...(graph.get(name) ?? [])].filter((other) => reaches(graph, other, name));
    assert.equal(cycle, [], `${name} imports ${cycle.join(', ')}, which import ${name} back`);
  }
  assert.not.ok(graph.get('corpus')?.size, `corpus imports ${[...(graph.get('corpus') ?? [])].join(', ')}`);
});

test.run();
