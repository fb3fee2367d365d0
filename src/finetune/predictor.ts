// A fine-tuned directory back in memory, and its predictions on a file: CoNLL-U / CoNLL-2003 with
// the predicted column(s) filled in (token classification: the label column it was trained on;
// parsing: HEAD and DEPREL), or JSONL with a "prediction" field (sequence classification).
import * as fs from 'fs';
import * as path from 'path';
import { iterateSafetensors } from '../io/safetensors';
import { fromSafetensorsEntry } from '../io/pretrained';
import { tidy, Tensor } from '../tensor';
import { readCorpus, columnIndex, formatCorpus, DataError, CorpusFormat, Corpus } from './conllu';
import { readTextExamples, TextFormat } from './text-data';
import { encodeWords, encodeText } from './encoding';
import { ModelDirectory, openModelDirectory, createTaskModel, loadWeights, labelsOf, taskMetaOf, layoutOf, MODEL_TYPES_TASK } from './model';
import { BiaffineParserHead } from './biaffine';
import {
  FinetuneTask, TokenClassificationTask, SequenceClassificationTask, DependencyParsingTask, WordsExample, TextTaskExample, ParseExample, Parse,
  PARSER_HEAD_CONFIG, PARSER_HEAD_WEIGHTS, ParserHeadConfig, NO_PREDICTION,
} from './tasks';
import { predictAll, MODEL_SUBDIR } from './trainer';

export interface LoadedFinetuned {
  directory: ModelDirectory;
  task: TokenClassificationTask | SequenceClassificationTask | DependencyParsingTask;
  labelColumn: string;
  maxLength: number;
}

/** The model directory itself, or the model/ inside a fine-tuning output directory. */
export function resolveFinetunedDir(dir: string): string {
  if (!fs.existsSync(path.join(dir, 'config.json')) && fs.existsSync(path.join(dir, MODEL_SUBDIR, 'config.json'))) return path.join(dir, MODEL_SUBDIR);
  return dir;
}

function readParserHead(dir: string): ParserHeadConfig {
  const file = path.join(dir, PARSER_HEAD_CONFIG);
  let json: ParserHeadConfig;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new DataError(file, null, `cannot read: ${(error as Error).message}`);
  }
  if (json.format !== 'camemberta-biaffine-parser' || !Array.isArray(json.relations) || json.relations.length === 0) {
    throw new DataError(file, null, 'not a biaffine parser head description (format, relations)');
  }
  return json;
}

export async function loadFinetuned(dirGiven: string): Promise<LoadedFinetuned> {
  const dir = resolveFinetunedDir(dirGiven);
  const directory = await openModelDirectory(dir);
  const meta = taskMetaOf(directory.config);
  if (fs.existsSync(path.join(dir, PARSER_HEAD_CONFIG))) {
    const headConfig = readParserHead(dir);
    const model = createTaskModel('encoder', directory.config, null, undefined);
    const head = new BiaffineParserHead({
      hiddenSize: directory.config.hidden_size, relations: headConfig.relations.length,
      arcSize: headConfig.arc_size, relSize: headConfig.rel_size, mlpDropout: headConfig.mlp_dropout,
    });
    try {
      loadWeights(model, dir, 'all');
      const weightsFile = path.join(dir, PARSER_HEAD_WEIGHTS);
      if (!fs.existsSync(weightsFile)) throw new DataError(weightsFile, null, 'missing: the parser head weights');
      tidy(() => {
        const tensors = new Map<string, Tensor>();
        for (const [name, entry] of iterateSafetensors(weightsFile)) tensors.set(name, fromSafetensorsEntry(entry, name, weightsFile));
        try {
          head.loadStateDict(tensors);
        } catch (error) {
          throw new DataError(weightsFile, null, (error as Error).message);
        }
      });
    } catch (error) {
      model.dispose();
      head.dispose();
      throw error;
    }
    const task = new DependencyParsingTask(model, head, headConfig.relations, directory.tokenizer, headConfig.max_length ?? 512);
    return { directory, task, labelColumn: 'HEAD', maxLength: task.maxLength };
  }
  const architecture = directory.config.architectures?.[0] ?? '';
  const kind = MODEL_TYPES_TASK[architecture];
  if (!kind) throw new DataError(path.join(dir, 'config.json'), null, `architectures ${JSON.stringify(directory.config.architectures)}: not a fine-tuned model (expected a ...ForTokenClassification or ...ForSequenceClassification, or a ${PARSER_HEAD_CONFIG} beside the encoder)`);
  const labels = labelsOf(directory.config, path.join(dir, 'config.json'));
  const model = createTaskModel(kind, directory.config, labels, undefined, meta.task ? { task: meta.task, label_column: meta.label_column, max_length: meta.max_length ?? 512 } : undefined);
  try {
    loadWeights(model, dir, 'all');
  } catch (error) {
    model.dispose();
    throw error;
  }
  const task = kind === 'token-classification' ? new TokenClassificationTask(model, labels, directory.tokenizer) : new SequenceClassificationTask(model, labels, directory.tokenizer);
  return { directory, task, labelColumn: meta.label_column ?? 'UPOS', maxLength: meta.max_length ?? 512 };
}

export interface PredictOptions {
  input: string;
  format?: CorpusFormat | TextFormat;
  /** Token classification: the column to fill (default: the one the model was trained on). */
  labelColumn?: string;
  batchSize?: number;
  device?: string;
}

/** The input file's text with predictions filled in, and how many examples were predicted. */
export function predictFile(loaded: LoadedFinetuned, options: PredictOptions): { text: string; examples: number; corpus?: Corpus } {
  const device = options.device ?? 'cpu';
  const batchSize = options.batchSize ?? 32;
  const { task, directory, maxLength } = loaded;
  if (task instanceof SequenceClassificationTask) {
    const format = options.format === 'jsonl' || options.format === 'tsv' ? options.format : undefined;
    const records = readTextExamples(options.input, { format, requireLabels: false });
    const layout = layoutOf(directory.config);
    const examples: TextTaskExample[] = records.map((record) => {
      const encoded = encodeText(directory.tokenizer, record.text, record.textPair, maxLength, layout);
      return { encoded, gold: NO_PREDICTION, labelId: 0, source: record, length: encoded.ids.length };
    });
    const predictions = predictAll(task as FinetuneTask<TextTaskExample, string>, examples, batchSize, device, 'float32');
    const text = records.map((record, i) => JSON.stringify({ ...record.record, prediction: predictions[i] })).join('\n');
    return { text: `${text}\n`, examples: examples.length };
  }
  const format = options.format === 'conllu' || options.format === 'conll2003' ? options.format : undefined;
  const corpus = readCorpus(options.input, format);
  const encoded = corpus.sentences.map((sentence) => encodeWords(directory.tokenizer, sentence.words.map((w) => w.form), maxLength));
  if (task instanceof DependencyParsingTask) {
    if (corpus.format !== 'conllu') throw new DataError(options.input, null, 'the parser writes HEAD and DEPREL: give a CoNLL-U file');
    const examples: ParseExample[] = encoded.map((e) => ({ encoded: e, heads: [], relations: [], relationIds: [], length: e.ids.length }));
    const parses = predictAll(task as FinetuneTask<ParseExample, Parse>, examples, batchSize, device, 'float32');
    const head = columnIndex(corpus, 'HEAD');
    const deprel = columnIndex(corpus, 'DEPREL');
    const text = formatCorpus(corpus, (s, w) => new Map([
      [head, parses[s].heads[w] < 0 ? '_' : String(parses[s].heads[w])],
      [deprel, parses[s].relations[w] === NO_PREDICTION ? '_' : parses[s].relations[w]],
    ]));
    return { text, examples: examples.length, corpus };
  }
  const column = columnIndex(corpus, options.labelColumn ?? (corpus.format === 'conllu' ? loaded.labelColumn : 'last'));
  const examples: WordsExample[] = encoded.map((e) => ({ encoded: e, gold: [], labelIds: [], length: e.ids.length }));
  const labels = predictAll(task as FinetuneTask<WordsExample, string[]>, examples, batchSize, device, 'float32');
  const text = formatCorpus(corpus, (s, w) => new Map([[column, labels[s][w] === NO_PREDICTION ? '_' : labels[s][w]]]));
  return { text, examples: examples.length, corpus };
}

export function disposeFinetuned(loaded: LoadedFinetuned): void {
  loaded.task.dispose();
}
