// plot.js: curves of two tiny logs (an ELECTRA run and an MLM run) and an experiment's downstream
// scores render to a PNG that decodes at the size of its SVG, with labelled axes and a legend
// naming the runs; tokens seen are the train.js count rebuilt from tokens_per_s x window time.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { spawnSync } from 'child_process';
import { repoRoot } from './helpers/python';
import { figureSpec, loadPlotInputs, renderSvg, svgSize, svgToPng, tokensByStep } from '../src/experiments/plot';
import { ExperimentResults, RESULTS_FILE, RESULTS_KIND } from '../src/experiments/results';

const PLOT = path.join(repoRoot, 'dist', 'plot.js');

function writeLog(dir: string, electra: boolean): void {
  fs.mkdirSync(dir, { recursive: true });
  const lines: object[] = [];
  for (let step = 10; step <= 60; step += 10) {
    // 1000 tokens/s over windows of 2 s: 2000 tokens a window.
    const line: Record<string, number> = { step, loss: 6 - step / 30, lr: 1e-3, tokens_per_s: 1000, elapsed_s: step / 5 };
    if (electra) Object.assign(line, { gen_loss: 6 - step / 25, disc_loss: 0.5 - step / 500 });
    else line.mlm_accuracy = step / 300;
    lines.push(line);
    if (step % 30 === 0) lines.push(electra ? { step, eval_loss: 20, eval_gen_accuracy: step / 200, eval_disc_auc: 0.5 + step / 300 } : { step, eval_loss: 4, eval_mlm_accuracy: step / 250 });
  }
  fs.writeFileSync(path.join(dir, 'log.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

interface Png { width: number; height: number; colorType: number; bitDepth: number; pixels: Buffer }

/** A PNG decoded far enough to prove it whole: signature, chunk CRCs, IHDR, and IDAT inflating to exactly height rows. */
function decodePng(bytes: Buffer): Png {
  assert.equal(bytes.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'PNG signature');
  let offset = 8;
  let header: Omit<Png, 'pixels'> | null = null;
  const idat: Buffer[] = [];
  let ended = false;
  while (offset < bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.subarray(offset + 4, offset + 8).toString('latin1');
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    const crc = bytes.readUInt32BE(offset + 8 + length);
    assert.equal(zlib.crc32(bytes.subarray(offset + 4, offset + 8 + length)), crc, `CRC of the ${type} chunk`);
    if (type === 'IHDR') header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), bitDepth: data[8], colorType: data[9] };
    if (type === 'IDAT') idat.push(data);
    if (type === 'IEND') ended = true;
    offset += 12 + length;
  }
  assert.ok(header && ended, 'IHDR and IEND present');
  const channels = ({ 0: 1, 2: 3, 4: 2, 6: 4 } as Record<number, number>)[header!.colorType];
  assert.ok(channels !== undefined && header!.bitDepth === 8, `8-bit truecolor or grey (colour type ${header!.colorType}, depth ${header!.bitDepth})`);
  const pixels = zlib.inflateSync(Buffer.concat(idat));
  assert.equal(pixels.length, header!.height * (1 + header!.width * channels), 'IDAT holds height rows of filter byte + width pixels');
  return { ...header!, pixels };
}

/** The share of pixels that are not white, after undoing each row's PNG filter. */
function inkedShare({ width, height, pixels }: Png): number {
  const channels = (pixels.length / height - 1) / width;
  const stride = width * channels;
  const rows = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = pixels[y * (stride + 1)];
    const src = pixels.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? rows[y * stride + i - channels] : 0;
      const up = y > 0 ? rows[(y - 1) * stride + i] : 0;
      const upLeft = y > 0 && i >= channels ? rows[(y - 1) * stride + i - channels] : 0;
      let predictor: number;
      if (filter === 0) predictor = 0;
      else if (filter === 1) predictor = left;
      else if (filter === 2) predictor = up;
      else if (filter === 3) predictor = (left + up) >> 1;
      else if (filter === 4) {
        const p = left + up - upLeft;
        const a = Math.abs(p - left), b = Math.abs(p - up), c = Math.abs(p - upLeft);
        predictor = a <= b && a <= c ? left : b <= c ? up : upLeft;
      } else throw new Error(`row ${y}: PNG filter type ${filter}`);
      rows[y * stride + i] = (src[i] + predictor) & 0xff;
    }
  }
  let inked = 0;
  const colour = Math.min(channels, 3);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < colour; c++) if (rows[p * channels + c] < 235) { inked++; break; }
  }
  return inked / (width * height);
}

test('tokensByStep sums tokens_per_s over each window and gives eval lines none of their own', () => {
  const tokens = tokensByStep([
    { step: 10, tokens_per_s: 100, elapsed_s: 2 }, { step: 10, eval_loss: 1 },
    { step: 20, tokens_per_s: 50, elapsed_s: 6 }, { step: 30, tokens: 999, tokens_per_s: 1, elapsed_s: 7 },
  ]);
  assert.equal([...tokens.entries()], [[10, 200], [20, 400], [30, 999]]);
});

test('plot: two runs and an experiment render to a PNG of the SVG size, axes titled, legend naming every arm', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-plot-'));
  try {
    writeLog(path.join(dir, 'pretrain', 'electra-gdes'), true);
    writeLog(path.join(dir, 'pretrain', 'mlm'), false);
    const results: ExperimentResults = {
      kind: RESULTS_KIND, command: 'test', machine: 'test', device: 'cpu',
      budget: { minutes: 1, pretrain_seconds_per_arm: 12, finetune_steps: { upos: 10, parsing: 10 } }, seeds: [1, 2],
      pretraining: [
        { arm: 'electra-gdes', label: 'ELECTRA + GDES', run_dir: 'pretrain/electra-gdes', steps: 60, seconds: 12, tokens: 12000, parameters: 1000, flops: 1e9, final: {} },
        { arm: 'mlm', label: 'MLM', run_dir: 'pretrain/mlm', steps: 60, seconds: 12, tokens: 12000, parameters: 500, flops: 5e8, final: {} },
      ],
      downstream: [1, 2].flatMap((seed) => [
        { arm: 'electra-gdes', label: 'ELECTRA + GDES', task: 'upos' as const, seed, scores: { upos_accuracy: 0.8 + seed / 100 }, seconds: 1 },
        { arm: 'electra-gdes', label: 'ELECTRA + GDES', task: 'parsing' as const, seed, scores: { uas: 0.5, las: 0.4 + seed / 100 }, seconds: 1 },
        { arm: 'random-init', label: 'random init', task: 'upos' as const, seed, scores: { upos_accuracy: 0.6 }, seconds: 1 },
      ]),
      total_seconds: 30,
    };
    fs.writeFileSync(path.join(dir, RESULTS_FILE), JSON.stringify(results));
    const inputs = loadPlotInputs([dir]);
    assert.equal(inputs.runs.map((r) => r.label), ['ELECTRA + GDES', 'MLM']);
    const lastLoss = inputs.runs[0].points.filter((p) => p.panel === 'mlm_loss').pop()!;
    assert.equal([lastLoss.step, lastLoss.tokens], [60, 12000]);
    const svg = await renderSvg(figureSpec(inputs));
    for (const text of ['tokens seen', 'cross-entropy', 'Held-out MLM accuracy', 'Discriminator loss (train)', 'ELECTRA + GDES', 'MLM', 'random init', 'UPOS accuracy (test), 2 seed(s)', 'LAS (test)', 'arm']) {
      assert.ok(svg.includes(`>${text}<`) || svg.includes(text), `the SVG shows "${text}"`);
    }
    const { width, height } = svgSize(svg);
    const png = decodePng(svgToPng(svg, 2));
    assert.equal([png.width, png.height], [Math.round(width * 2), Math.round(height * 2)]);
    assert.ok(png.width > 800 && png.height > 400, `a readable size (${png.width} x ${png.height})`);
    const inked = inkedShare(png);
    assert.ok(inked > 0.01 && inked < 0.5, `lines and text drawn on a white background (${(100 * inked).toFixed(1)}% of pixels not white)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('plot.js: renders a run directory and a log.jsonl with labels; bad inputs exit 2 naming them, nothing written', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-plot-cli-'));
  try {
    writeLog(path.join(dir, 'a'), true);
    writeLog(path.join(dir, 'b'), false);
    const out = path.join(dir, 'curves.png');
    const ok = spawnSync(process.execPath, [PLOT, path.join(dir, 'a'), path.join(dir, 'b', 'log.jsonl'), '--label', 'mine', '--label', 'theirs', '--output', out], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    const png = decodePng(fs.readFileSync(out));
    assert.ok(png.width > 800, `width ${png.width}`);
    const svgOut = path.join(dir, 'curves.svg');
    assert.equal(spawnSync(process.execPath, [PLOT, path.join(dir, 'a'), path.join(dir, 'b'), '--x', 'step', '--output', svgOut]).status, 0);
    const svg = fs.readFileSync(svgOut, 'utf8');
    assert.ok(svg.includes('optimizer step') && svg.includes('>a<') && svg.includes('>b<'), 'step axis, runs named by directory');
    for (const [args, message] of [
      [[path.join(dir, 'missing'), '--output', path.join(dir, 'x.png')], `${path.join(dir, 'missing')} does not exist`],
      [[dir, '--output', path.join(dir, 'x.png')], 'no log.jsonl'],
      [[path.join(dir, 'a'), '--output', path.join(dir, 'x.jpg')], 'must end in .png or .svg'],
      [[path.join(dir, 'a'), path.join(dir, 'a'), '--output', path.join(dir, 'x.png')], 'both named "a"'],
    ] as Array<[string[], string]>) {
      const bad = spawnSync(process.execPath, [PLOT, ...args], { encoding: 'utf8' });
      assert.equal(bad.status, 2, `${args.join(' ')}: ${bad.stderr}`);
      assert.ok(bad.stderr.startsWith('plot.js: ') && bad.stderr.includes(message), bad.stderr);
    }
    assert.not.ok(fs.existsSync(path.join(dir, 'x.png')) || fs.existsSync(path.join(dir, 'x.jpg')), 'nothing written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
