import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { gzipSync } from 'zlib';
import { CorpusDocument, CorpusError, emptyCorpusStats, listCorpusFiles, readCorpus } from '../src/corpus/read';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-corpus-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, content: string | Buffer): string {
  const file = path.join(tmp, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
}

async function read(files: string[], options = {}) {
  const stats = emptyCorpusStats();
  const warnings: string[] = [];
  const documents: CorpusDocument[] = [];
  for await (const document of readCorpus(files, stats, { onWarning: (m) => warnings.push(m), ...options })) documents.push(document);
  return { stats, warnings, documents };
}

test('blank lines separate documents; one document per line on request; .gz and .jsonl are read', async () => {
  const text = write('a/plain.txt', 'Premier paragraphe.\r\nSecond paragraphe.\n\n\n  \nAutre document.\n');
  const gz = write('a/b/packed.txt.gz', gzipSync(Buffer.from('Un.\n\nDeux.\n')));
  const jsonl = write('a/c.jsonl', '{"text": "Ligne un.\\nLigne deux."}\n{"text": "   "}\n{"text": "Trois."}\n');
  write('a/ignored.csv', 'not,a,corpus\n');
  const files = listCorpusFiles([path.join(tmp, 'a')]);
  assert.equal(files.map((f) => path.relative(tmp, f)), ['a/b/packed.txt.gz', 'a/c.jsonl', 'a/plain.txt']);
  const { documents, stats } = await read(files);
  assert.equal(documents.map((d) => d.lines), [['Un.'], ['Deux.'], ['Ligne un.', 'Ligne deux.'], ['Trois.'], ['Premier paragraphe.', 'Second paragraphe.'], ['Autre document.']]);
  assert.equal(documents.map((d) => d.index), [0, 1, 2, 3, 4, 5]);
  assert.is(stats.emptyDocuments, 1); // the blank jsonl record
  const perLine = await read([text], { docsPerLine: true });
  assert.equal(perLine.documents.map((d) => d.lines), [['Premier paragraphe.'], ['Second paragraphe.'], ['Autre document.']]);
  assert.is(perLine.stats.emptyDocuments, 3);
  assert.ok(fs.existsSync(gz) && fs.existsSync(jsonl));
});

test('invalid UTF-8 is replaced and counted with a warning naming the file; a literal U+FFFD is not counted', async () => {
  const bad = write('bad.txt', Buffer.concat([Buffer.from('Caf'), Buffer.from([0xe9]), Buffer.from(' cr'), Buffer.from([0xff, 0xfe]), Buffer.from('me \ufffd.\n')]));
  const { documents, stats, warnings } = await read([bad]);
  assert.is(documents[0].lines[0], 'Caf\ufffd cr\ufffd\ufffdme \ufffd.');
  assert.is(stats.invalidUtf8Replacements, 3);
  assert.is(stats.filesWithInvalidUtf8, 1);
  assert.is(warnings.length, 1);
  assert.ok(warnings[0].includes(bad) && warnings[0].includes('3 invalid UTF-8'));
});

test('empty files and whitespace-only files are skipped and counted', async () => {
  const empty = write('empty.txt', '');
  const blank = write('blank.txt', '\n  \n\t\n');
  const full = write('full.txt', 'Texte.\n');
  const { documents, stats } = await read([empty, blank, full]);
  assert.is(documents.length, 1);
  assert.is(stats.emptyFiles, 2);
  assert.is(stats.files, 3);
});

test('a binary file and an unreadable path are errors naming the path', async () => {
  const binary = write('image.txt', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00]));
  try {
    await read([binary]);
    assert.unreachable('binary file accepted');
  } catch (error) {
    assert.instance(error, CorpusError);
    assert.match((error as Error).message, new RegExp(`${binary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} looks binary \\(NUL byte at offset 8\\)`));
  }
  assert.throws(() => listCorpusFiles([path.join(tmp, 'missing-dir')]), /cannot read input .*missing-dir: no such file or directory/);
  const locked = write('locked/secret.txt', 'x\n');
  fs.chmodSync(locked, 0o000);
  let readable = true;
  try {
    fs.readFileSync(locked);
  } catch {
    readable = false;
  }
  if (!readable) {
    // (root reads any file: the check needs an ordinary user)
    try {
      await read([locked]);
      assert.unreachable('unreadable file accepted');
    } catch (error) {
      assert.match((error as Error).message, /cannot read .*secret\.txt: EACCES/);
    }
  }
  const bad = write('bad.jsonl', '{"text": "ok"}\n{"text": \n');
  try {
    await read([bad]);
    assert.unreachable('bad JSON accepted');
  } catch (error) {
    assert.match((error as Error).message, /bad\.jsonl:2: not valid JSON/);
  }
});

test('an over-long line is split at spaces into several lines, counted, nothing dropped', async () => {
  const words = Array.from({ length: 3000 }, (_, i) => `mot${i}`);
  const long = words.join(' ');
  const noSpace = 'x'.repeat(2500);
  const file = write('long.txt', `${long}\n${noSpace}\nfin.\n`);
  const { documents, stats, warnings } = await read([file], { maxLineChars: 1000 });
  const lines = documents[0].lines;
  assert.ok(lines.every((line) => line.length <= 1000));
  assert.is(lines.join(' ').split(/\s+/).filter((w) => w.startsWith('mot')).length, 3000);
  assert.is(lines.filter((line) => line.startsWith('x')).join(''), noSpace);
  assert.is(lines[lines.length - 1], 'fin.');
  assert.is(stats.longLineSplits, lines.length - 2 - 1);
  assert.ok(warnings.some((w) => w.includes(file) && w.includes('longer than 1000')));
});

test.run();
