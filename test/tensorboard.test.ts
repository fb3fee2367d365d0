// TensorBoard event files: what TensorBoardWriter writes must be what TensorBoard's own Python
// reader (EventAccumulator, tensorboard 2.21) loads back, and its CRCs must be ones that reader
// verifies.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EVENT_FILE_PREFIX, EVENT_FILE_VERSION, TensorBoardWriter, maskedCrc32c, tfRecord } from '../src/io/tensorboard';
import { MetricsLog } from '../src/pretrain/metrics-log';
import { pythonScript, runPython } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-tensorboard-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

interface Scalar { tag: string; step: number; value: number | string }

interface Records { records: number; file_version: string | null; error: string | null }

/** Runs reader commands (each an argument list) in one Python process: importing tensorboard costs a second. */
function reader(...commands: string[][]): any[] {
  const args = commands.flatMap((command, i) => (i === 0 ? command : ['--then', ...command]));
  const lines = runPython([pythonScript('tensorboard_reader.py'), ...args]).stdout.trim().split('\n');
  assert.is(lines.length, commands.length, 'one JSON line per reader command');
  return lines.map((line) => JSON.parse(line));
}
const scalarsOf = (result: { scalars: Scalar[] }): Scalar[] => result.scalars;

/** As the reader prints it: float32-rounded, with NaN and the infinities as strings. */
function expectedValue(value: number): number | string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  return Math.fround(value);
}

function sortScalars(scalars: Scalar[]): Scalar[] {
  return [...scalars].sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : a.step - b.step));
}

// Steps past 2^31 and 2^32 need int64's full varint; values cover float32 rounding (12345.678,
// 0.1), tiny and huge magnitudes, zero (written explicitly: simple_value has presence) and non-finite.
const BIG_STEP = 2 ** 31 + 7;
const HUGE_STEP = 2 ** 40 + 3;
const writes: Array<[number, Record<string, number>]> = [
  [0, { 'train/loss': 10.5, 'train/lr': 0, 'train/grad_norm': 1e-8 }],
  [1, { 'train/loss': 12345.678, 'train/lr': 1e-4, 'train/grad_norm': -3.5 }],
  [2, { 'train/loss': 0.1, 'train/lr': 2.5e-4, 'train/grad_norm': 3.4e38 }],
  [3, { 'train/loss': Number.NaN, 'train/lr': Infinity }],
  [BIG_STEP, { 'train/loss': 2.25, 'eval/accuracy': 0.875 }],
  [HUGE_STEP, { 'train/loss': 1.0000001, 'eval/accuracy': -Infinity }],
];

function writeRun(dir: string, events: Array<[number, Record<string, number>]>, purgeAfterStep?: number): string {
  const writer = new TensorBoardWriter(dir, { purgeAfterStep });
  for (const [step, scalars] of events) writer.addScalars(step, scalars);
  writer.flush();
  writer.close();
  return writer.file;
}

test('the framing: masked CRC32C of the known vector, length and checksums where TFRecord puts them', () => {
  // CRC32C("123456789") = 0xe3069283 (the standard check value); masked by TFRecord's rule.
  const crc = 0xe3069283;
  assert.is(maskedCrc32c(Buffer.from('123456789')), ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0);
  const data = Buffer.from('hello');
  const record = tfRecord(data);
  assert.is(record.byteLength, 8 + 4 + 5 + 4);
  assert.is(record.readBigUInt64LE(0), 5n);
  assert.is(record.readUInt32LE(8), maskedCrc32c(record.subarray(0, 8)));
  assert.is(record.subarray(12, 17).toString(), 'hello');
  assert.is(record.readUInt32LE(17), maskedCrc32c(data));
});

test('EventAccumulator reads back every tag, step and float32 value written', () => {
  const dir = path.join(tmp, 'run');
  const file = writeRun(dir, writes);
  const name = path.basename(file);
  assert.ok(name.startsWith(`${EVENT_FILE_PREFIX}`), name);
  const [seconds, ...rest] = name.slice(EVENT_FILE_PREFIX.length).split('.');
  assert.ok(Math.abs(Number(seconds) - Date.now() / 1000) < 60, `unix seconds in ${name}`);
  assert.is(rest.slice(-2)[0], String(process.pid));
  assert.is(rest.slice(0, -2).join('.'), os.hostname());

  const [scalars, records] = reader(['scalars', dir], ['records', file]);
  const expected = sortScalars(writes.flatMap(([step, values]) => Object.entries(values).map(([tag, value]) => ({ tag, step, value: expectedValue(value) }))));
  assert.equal(sortScalars(scalarsOf(scalars)), expected);
  assert.equal(records, { records: 1 + writes.length, file_version: EVENT_FILE_VERSION, error: null });
});

test('a corrupted byte fails the CRC check: the reader stops at that record', () => {
  const dir = path.join(tmp, 'corrupt');
  const file = writeRun(dir, writes.slice(0, 3));
  const bytes = fs.readFileSync(file);
  fs.rmSync(file);
  // Walk the records by their lengths to the third one (step 1) and flip a bit in the last byte
  // of its data: that byte is the float of a simple_value, so without the CRC the record would
  // still parse, just with a different number.
  let offset = 0;
  for (let record = 0; record < 2; record += 1) offset += 8 + 4 + Number(bytes.readBigUInt64LE(offset)) + 4;
  const dataLength = Number(bytes.readBigUInt64LE(offset));
  const badData = Buffer.from(bytes);
  badData[offset + 12 + dataLength - 1] ^= 0x01;
  const badDataFile = path.join(dir, path.basename(file));
  fs.writeFileSync(badDataFile, badData);
  // A corrupted length is caught by the header CRC.
  const badLength = Buffer.from(bytes);
  badLength[offset] ^= 0x01;
  const badLengthFile = path.join(tmp, 'corrupt-length', path.basename(file));
  fs.mkdirSync(path.dirname(badLengthFile));
  fs.writeFileSync(badLengthFile, badLength);

  const [dataRecords, scalars, lengthRecords] = reader(['records', badDataFile], ['scalars', dir], ['records', badLengthFile]) as [Records, { scalars: Scalar[] }, Records];
  assert.is(dataRecords.records, 2);
  assert.match(dataRecords.error ?? '', /event crc32/);
  // EventAccumulator keeps what came before and nothing from the corrupted record on.
  assert.equal([...new Set(scalarsOf(scalars).map((s) => s.step))], [0]);
  assert.is(lengthRecords.records, 2);
  assert.match(lengthRecords.error ?? '', /header crc32/);
});

test('a resumed run writes a new file; with purgeAfterStep TensorBoard shows the redone steps, not the abandoned ones', () => {
  const abandoned = [0, 1, 2, 3, 4].map((step): [number, Record<string, number>] => [step, { loss: 10 + step }]);
  const redone = [3, 4, 5].map((step): [number, Record<string, number>] => [step, { loss: 20 + step }]);
  // The checkpoint was at step 2: the resumed run redoes 3 and 4 with other values.
  const dir = path.join(tmp, 'resumed');
  const first = writeRun(dir, abandoned);
  const second = writeRun(dir, redone, 2);
  assert.is.not(first, second);
  assert.equal(fs.readdirSync(dir).sort(), [path.basename(first), path.basename(second)].sort());
  // Without it, both values of the redone steps stay: the START record is what TensorBoard acts on.
  const unpurged = path.join(tmp, 'resumed-unpurged');
  writeRun(unpurged, abandoned);
  writeRun(unpurged, redone);
  const [purgedScalars, secondRecords, unpurgedScalars] = reader(['scalars', dir], ['records', second], ['scalars', unpurged]);
  assert.equal(scalarsOf(purgedScalars).map((s) => [s.step, s.value]), [[0, 10], [1, 11], [2, 12], [3, 23], [4, 24], [5, 25]]);
  assert.is(secondRecords.records, 1 + 1 + redone.length);
  assert.equal(scalarsOf(unpurgedScalars).map((s) => s.step), [0, 1, 2, 3, 4, 3, 4, 5]);
});

test('--compare: TensorBoard holds every scalar of log.jsonl, and a differing value is reported', () => {
  const dir = path.join(tmp, 'compare');
  const logFile = path.join(dir, 'log.jsonl');
  const log = new MetricsLog(logFile);
  const writer = new TensorBoardWriter(path.join(dir, 'tb'));
  for (let step = 1; step <= 5; step += 1) {
    const scalars = { loss: 7 / step, lr: step * 1e-5 };
    log.append({ step, ...scalars, phase: 'warmup', nothing: null });
    // The last step writes a different loss to TensorBoard than to the log.
    writer.addScalars(step, step === 5 ? { ...scalars, loss: 99 } : scalars);
  }
  writer.addScalars(6, { loss: 1 });   // TensorBoard-only: counted, not an error
  log.close();
  writer.close();
  const [result] = reader(['--compare', logFile, path.join(dir, 'tb')]);
  assert.is(result.compared, 10);
  assert.is(result.tensorboard_only, 1);
  assert.equal(result.mismatches, [{ tag: 'loss', step: 5, log: 7 / 5, tensorboard: 99 }]);
});

test('bad input names what is wrong', () => {
  const writer = new TensorBoardWriter(path.join(tmp, 'errors'));
  assert.throws(() => writer.addScalars(-1, { loss: 1 }), /step must be a non-negative integer, got -1/);
  assert.throws(() => writer.addScalars(1.5, { loss: 1 }), /step must be a non-negative integer/);
  assert.throws(() => writer.addScalars(1, { loss: '1' as unknown as number }), /value of 'loss' must be a number/);
  writer.close();
  assert.throws(() => writer.addScalars(2, { loss: 1 }), /is closed/);
  const blocker = path.join(tmp, 'a-file');
  fs.writeFileSync(blocker, '');
  assert.throws(() => new TensorBoardWriter(path.join(blocker, 'tb')), /cannot create the log directory .*a-file/);
});

test.run();
