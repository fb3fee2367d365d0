import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ConfigError, SIZE_LIMITS } from '../src/models/config-json';
import {
  DebertaV2Config, debertaConfigToJson, debertaDerived, parseDebertaConfig, readDebertaConfig,
} from '../src/models/deberta/config';
import { parseRobertaConfig, robertaConfigToJson, robertaMaxSequenceLength } from '../src/models/roberta/config';
import { writeConfig } from '../src/io';
import {
  MICROSOFT_V3_GENERATOR_RATIOS, camembertaBaseDiscriminator, camembertaBaseGenerator, generatorFromDiscriminator, tinyDebertaConfig,
} from '../src/models/presets';
import { runPython } from './helpers/python';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'camemberta-config-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

// HF's own serialisations: default configs, a V3 config and an old Microsoft-style one with the
// "p2c|c2p" string form (taken through HF so we compare with what HF normalises it to).
const hf = JSON.parse(runPython(['-c', `
import json
from transformers import DebertaV2Config, RobertaConfig
old = {"model_type": "deberta-v2", "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
       "intermediate_size": 3072, "vocab_size": 128100, "relative_attention": True, "position_buckets": 256,
       "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": "P2C|c2p", "layer_norm_eps": 1e-7,
       "max_relative_positions": -1, "position_biased_input": False, "type_vocab_size": 0, "torch_dtype": "float32"}
print(json.dumps({
  "deberta_default": DebertaV2Config().to_dict(),
  "roberta_default": RobertaConfig().to_dict(),
  "deberta_v3": DebertaV2Config(**{k: v for k, v in old.items() if k != "model_type"}, conv_kernel_size=3, conv_act="gelu").to_dict(),
  "old_raw": old,
  "old_hf_pos_att_type": DebertaV2Config.from_dict(old).pos_att_type,
}))
`]).stdout);

/** Every key HF wrote comes back with the same value, except the documented normalisations. */
function assertWritesBack(written: Record<string, unknown>, original: Record<string, unknown>, normalised: Record<string, unknown> = {}) {
  for (const [key, value] of Object.entries(original)) {
    if (key in normalised) assert.equal(written[key], normalised[key], key);
    else assert.equal(written[key], value, `${key} written back unchanged`);
  }
}

test('HF DebertaV2Config().to_dict() round-trips', () => {
  const config = parseDebertaConfig(hf.deberta_default, 'hf-default');
  assert.is(config.hidden_size, 1536);
  assert.equal(config.pos_att_type, []);
  assert.is(config.pooler_hidden_size, 1536);
  assert.is(config.extra.transformers_version, (hf.deberta_default as Record<string, unknown>).transformers_version, 'unknown keys are kept');
  const json = debertaConfigToJson(config);
  // pos_att_type null means "none" to HF; we write the equivalent empty list.
  assertWritesBack(json, hf.deberta_default, { pos_att_type: [] });
  assert.equal(parseDebertaConfig(json, 'again'), config);
});

test('HF RobertaConfig().to_dict() round-trips', () => {
  const config = parseRobertaConfig(hf.roberta_default, 'hf-roberta');
  assert.is(config.pad_token_id, 1);
  assert.is(config.layer_norm_eps, 1e-12);
  assert.is(robertaMaxSequenceLength(config), 510);
  const json = robertaConfigToJson(config);
  assertWritesBack(json, hf.roberta_default);
  assert.equal(parseRobertaConfig(json, 'again'), config);
});

test('a V3 config, and an old one with "P2C|c2p" and torch_dtype, read as HF reads them', () => {
  const v3 = parseDebertaConfig(hf.deberta_v3, 'hf-v3');
  assert.equal(v3.pos_att_type, ['p2c', 'c2p']);
  assert.is(v3.conv_kernel_size, 3);
  assertWritesBack(debertaConfigToJson(v3), hf.deberta_v3);

  const old = parseDebertaConfig(hf.old_raw, 'old');
  assert.equal(old.pos_att_type, hf.old_hf_pos_att_type);
  assert.is(old.dtype, 'float32');
  const written = debertaConfigToJson(old);
  assert.is('torch_dtype' in written, false, 'written under its current name, dtype');
  // Absent keys get the modeling code's getattr defaults, written out explicitly.
  assert.equal([written.conv_kernel_size, written.conv_act, written.embedding_size, written.attention_head_size], [0, 'tanh', 768, 64]);
  const derived = debertaDerived(old);
  assert.equal([derived.maxRelativePositions, derived.attentionSpan, derived.relEmbeddingRows, derived.scaleFactor], [512, 256, 512, 3]);
  assert.equal([derived.relEmbeddingLayerNorm, derived.separatePositionKey, derived.conv, derived.embedProjection], [true, false, false, false]);
});

test('unknown keys are kept and written back', () => {
  const config = parseDebertaConfig({ ...hf.deberta_v3, my_setting: { a: [1, 2] }, id2label: { 0: 'x' } }, 'extra');
  assert.equal(config.extra.my_setting, { a: [1, 2] });
  const json = debertaConfigToJson(config);
  assert.equal(json.my_setting, { a: [1, 2] });
  assert.equal(json.id2label, { 0: 'x' });
});

function problemsOf(parse: () => unknown): { key: string; message: string }[] {
  try {
    parse();
  } catch (error) {
    assert.instance(error, ConfigError);
    return (error as ConfigError).problems;
  }
  assert.unreachable('accepted an invalid config');
  return [];
}

const badDeberta: [string, Record<string, unknown>, string, RegExp][] = [
  ['string size', { hidden_size: '768' }, 'hidden_size', /must be an integer, got "768"/],
  ['fractional layers', { num_hidden_layers: 1.5 }, 'num_hidden_layers', /must be an integer, got 1.5/],
  ['zero vocabulary', { vocab_size: 0 }, 'vocab_size', /must be at least 1, got 0/],
  ['heads not dividing hidden', { hidden_size: 100, num_attention_heads: 12 }, 'num_attention_heads', /not a multiple/],
  ['dropout above 1', { hidden_dropout_prob: 1.5 }, 'hidden_dropout_prob', /must be at most 1/],
  ['zero layer_norm_eps', { layer_norm_eps: 0 }, 'layer_norm_eps', /must be greater than 0/],
  ['unknown activation', { hidden_act: 'gelu_magic' }, 'hidden_act', /activation "gelu_magic" is not supported/],
  ['unknown attention type', { pos_att_type: ['c2p', 'p2p'] }, 'pos_att_type', /must be a list of "c2p"\/"p2c"/],
  ['repeated attention type', { pos_att_type: 'c2p|C2P' }, 'pos_att_type', /lists a type twice/],
  ['non-boolean flag', { relative_attention: 'true' }, 'relative_attention', /must be true or false, got "true"/],
  ['unknown rel-embedding norm', { norm_rel_ebd: 'batch_norm' }, 'norm_rel_ebd', /unknown normalisation "batch_norm"/],
  ['even conv kernel', { conv_kernel_size: 4 }, 'conv_kernel_size', /must be odd/],
  ['pad id outside vocabulary', { vocab_size: 10, pad_token_id: 10 }, 'pad_token_id', /outside the vocabulary/],
  ['negative token id', { bos_token_id: -1 }, 'bos_token_id', /non-negative integer token id/],
  ['DeBERTa V1', { model_type: 'deberta' }, 'model_type', /DeBERTa V1 is a different model/],
  ['architectures not strings', { architectures: [1] }, 'architectures', /list of strings/],
];

for (const [name, patch, key, message] of badDeberta) {
  test(`rejects a DeBERTa config with ${name}, naming "${key}"`, () => {
    const problems = problemsOf(() => parseDebertaConfig({ ...hf.deberta_v3, ...patch }, 'bad.json'));
    const problem = problems.find((p) => p.key === key);
    assert.ok(problem, `no problem reported for ${key}: ${JSON.stringify(problems)}`);
    assert.match(problem!.message, message);
  });
}

test('all problems of a config are reported at once, with the file named', () => {
  const file = path.join(tmp, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ ...hf.deberta_v3, hidden_size: -1, hidden_act: 7, legacy: 'yes' }));
  try {
    readDebertaConfig(file);
    assert.unreachable('accepted');
  } catch (error) {
    const message = (error as Error).message;
    assert.match(message, file);
    for (const key of ['hidden_size', 'hidden_act', 'legacy']) assert.match(message, `"${key}"`);
  }
  fs.writeFileSync(file, '{"hidden_size": ');
  assert.throws(() => readDebertaConfig(file), (e: Error) => e.message.includes(file) && /not valid JSON/.test(e.message));
  assert.throws(() => parseDebertaConfig([1], 'array.json'), /array.json: invalid config:\n {2}"\(root\)": a config must be a JSON object/);
});

test('rejects RoBERTa configs it cannot run, naming the key', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ is_decoder: true }, 'is_decoder'], [{ add_cross_attention: true }, 'add_cross_attention'],
    [{ pad_token_id: null }, 'pad_token_id'], [{ type_vocab_size: 0 }, 'type_vocab_size'],
    [{ max_position_embeddings: 2 }, 'max_position_embeddings'], [{ model_type: 'bert' }, 'model_type'],
  ];
  for (const [patch, key] of cases) {
    const problems = problemsOf(() => parseRobertaConfig({ ...hf.roberta_default, ...patch }, 'roberta.json'));
    assert.ok(problems.some((p) => p.key === key), `${key}: ${JSON.stringify(problems)}`);
  }
});

test('presets: CamemBERTa discriminator and generator sizes (SPEC section 1)', () => {
  const d = camembertaBaseDiscriminator();
  assert.equal([d.vocab_size, d.hidden_size, d.num_hidden_layers, d.num_attention_heads, d.intermediate_size, d.embedding_size], [32008, 768, 12, 12, 3072, 768]);
  const g = camembertaBaseGenerator();
  assert.equal([g.hidden_size, g.num_hidden_layers, g.num_attention_heads, g.intermediate_size, g.embedding_size, g.attention_head_size], [256, 12, 4, 1024, 768, 64]);
  assert.equal(g.architectures, ['DebertaV2ForMaskedLM']);
  assert.is(debertaDerived(g).embedProjection, true);
  const ms = generatorFromDiscriminator(d, MICROSOFT_V3_GENERATOR_RATIOS);
  assert.equal([ms.hidden_size, ms.num_hidden_layers, ms.num_attention_heads, ms.intermediate_size], [768, 6, 12, 3072]);
  // 1024 x 1/3 = 341.3 rounds up to 384, a multiple of the 64-wide heads.
  assert.is(generatorFromDiscriminator({ ...d, hidden_size: 1024, num_attention_heads: 16 }, { hiddenRatio: 1 / 3, layerRatio: 1 }).hidden_size, 384);
  assert.throws(() => generatorFromDiscriminator(d, { hiddenRatio: 0, layerRatio: 1 }), /hiddenRatio must be in \(0, 1\]/);
  assert.is(camembertaBaseDiscriminator({ pad_token_id: 3, hidden_dropout_prob: 0 }).pad_token_id, 3);
});

test('HF builds the model our configs describe: parameter count, shapes and derived settings', () => {
  const configs: Record<string, DebertaV2Config> = {
    discriminator: camembertaBaseDiscriminator(),
    generator: camembertaBaseGenerator(),
    microsoft_generator: generatorFromDiscriminator(camembertaBaseDiscriminator(), MICROSOFT_V3_GENERATOR_RATIOS),
    tiny: tinyDebertaConfig(),
  };
  for (const [name, config] of Object.entries(configs)) {
    fs.mkdirSync(path.join(tmp, name), { recursive: true });
    writeConfig(path.join(tmp, name, 'config.json'), config);
  }
  fs.mkdirSync(path.join(tmp, 'roberta'), { recursive: true });
  writeConfig(path.join(tmp, 'roberta', 'config.json'), parseRobertaConfig(hf.roberta_default, 'roberta'));
  // Meta device: shapes without allocating 111M parameters.
  const report = JSON.parse(runPython(['-c', `
import sys, json, os, torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM
out = {}
for name in sys.argv[2:]:
    config = AutoConfig.from_pretrained(os.path.join(sys.argv[1], name))
    with torch.device('meta'):
        model = AutoModelForMaskedLM.from_config(config) if name in ('generator', 'microsoft_generator') else AutoModel.from_config(config)
    base = model.base_model
    entry = {'class': type(config).__name__, 'num_parameters': sum(p.numel() for p in model.parameters()),
             'shapes': {k: list(v.shape) for k, v in model.state_dict().items()}}
    if hasattr(base, 'encoder') and hasattr(base.encoder, 'rel_embeddings'):
        att = base.encoder.layer[0].attention.self
        entry.update(rel_rows=base.encoder.rel_embeddings.num_embeddings, span=att.pos_ebd_size,
                     max_rel=att.max_relative_positions, buckets=att.position_buckets, pos_att_type=att.pos_att_type,
                     share_att_key=att.share_att_key, head_size=att.attention_head_size, conv=base.encoder.conv is not None,
                     rel_layer_norm='layer_norm' in base.encoder.norm_rel_ebd, legacy=getattr(model, 'legacy', None))
    out[name] = entry
print(json.dumps(out))
`, tmp, ...Object.keys(configs), 'roberta']).stdout);

  assert.is(report.discriminator.num_parameters, 111_804_672, 'SPEC: base CamemBERTa has 111,804,672 parameters');
  assert.equal(report.generator.shapes['deberta.embeddings.embed_proj.weight'], [256, 768]);
  assert.equal(report.generator.shapes['cls.predictions.transform.dense.weight'], [768, 256]);
  assert.equal(report.generator.shapes['cls.predictions.transform.LayerNorm.weight'], [768]);
  assert.equal(report.discriminator.shapes['encoder.conv.conv.weight'], [768, 768, 3]);
  assert.is(report.microsoft_generator.shapes['deberta.encoder.layer.5.output.dense.weight'] !== undefined, true);
  assert.is(report.microsoft_generator.shapes['deberta.encoder.layer.6.output.dense.weight'], undefined);
  assert.is(report.roberta.class, 'RobertaConfig');
  for (const [name, config] of Object.entries(configs)) {
    const ours = debertaDerived(config);
    const theirs = report[name];
    assert.is(theirs.class, 'DebertaV2Config', name);
    assert.equal(
      [theirs.rel_rows, theirs.span, theirs.max_rel, theirs.buckets > 0, theirs.pos_att_type, theirs.share_att_key, theirs.head_size, theirs.conv, theirs.rel_layer_norm],
      [ours.relEmbeddingRows, ours.attentionSpan, ours.maxRelativePositions, ours.bucketed, config.pos_att_type, config.share_att_key, ours.attentionHeadSize, ours.conv, ours.relEmbeddingLayerNorm],
      name,
    );
  }
});

test('size fields out of any sane bound are config errors naming the key, before anything is allocated', () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ vocab_size: 1e12 }, 'vocab_size', /must be at most 4194304, got 1000000000000/],
    [{ hidden_size: 2 ** 30, num_attention_heads: 1 }, 'hidden_size', /must be at most 65536/],
    [{ num_labels: -1 }, 'num_labels', /must be an integer in \[1, 65536\], got -1/],
    [{ num_labels: 1e11 }, 'num_labels', /got 100000000000/],
    [{ position_buckets: 1e9, relative_attention: true }, 'position_buckets', /must be at most 1048576/],
    [{ max_relative_positions: 1e9 }, 'max_relative_positions', /must be at most 1048576/],
    [{ num_hidden_layers: 1e6 }, 'num_hidden_layers', /must be at most 1024/],
    [{ intermediate_size: 1e9 }, 'intermediate_size', /must be at most 262144/],
    [{ max_position_embeddings: 1e8 }, 'max_position_embeddings', /must be at most 1048576/],
    [{ type_vocab_size: 1e7 }, 'type_vocab_size', /must be at most 65536/],
    [{ conv_kernel_size: 100001 }, 'conv_kernel_size', /must be at most 1024/],
    [{ attention_head_size: 1e7 }, 'attention_head_size', /must be at most 65536/],
    // Each within its bound, together an impossible matrix.
    [{ vocab_size: 4_000_000, hidden_size: 65536, num_attention_heads: 1 }, 'vocab_size', /embeddings\.word_embeddings would be 4000000 x 65536/],
    [{ position_buckets: 1 << 20, hidden_size: 65536, num_attention_heads: 1 }, 'position_buckets', /encoder\.rel_embeddings would be 2097152 x 65536/],
  ];
  for (const [fields, key, message] of cases) {
    assert.throws(() => parseDebertaConfig({ model_type: 'deberta-v2', ...fields }, 'bounds.json'), (error: Error) =>
      error instanceof ConfigError && error.message.startsWith('bounds.json') &&
      error.problems.some((problem) => problem.key === key && message.test(problem.message)), `${key}: ${JSON.stringify(fields)}`);
  }
  assert.throws(() => parseRobertaConfig({ vocab_size: 1e12 }, 'roberta.json'), /"vocab_size": must be at most/);
  assert.throws(() => parseRobertaConfig({ num_labels: 0 }, 'roberta.json'), /"num_labels": must be an integer in \[1, 65536\]/);
  // The bounds leave real models alone: CamemBERTa-base, and the largest released sizes.
  assert.is(parseDebertaConfig({ vocab_size: 256_000, hidden_size: 16384, num_attention_heads: 128, intermediate_size: 53248, num_hidden_layers: 126 }).hidden_size, 16384);
  assert.is(parseDebertaConfig({ num_labels: 3 }).extra.num_labels, 3, 'num_labels stays among the extras');
  assert.is(SIZE_LIMITS.vocab_size, 4194304);
});

test.run();
