// Exports a trained model as directories transformers loads with from_pretrained, each with the
// tokenizer files AutoTokenizer reads:
//   ELECTRA: export/discriminator/ (AutoModel: DebertaV2Model; word embeddings = E_G + E_delta under
//            GDES, E_G under ES) with the RTD head beside it in rtd_head.safetensors, and
//            export/generator/ (AutoModelForMaskedLM: DebertaV2ForMaskedLM).
//   MLM:     export/model/ (AutoModelForMaskedLM).
// The whole export directory is staged and renamed into place: a crash never leaves half of it.
import * as path from 'path';
import { Tensor, tidy } from '../tensor';
import { Module, Parameter } from '../nn';
import { PreTrainedModule } from '../models/pretrained-module';
import { savePretrained, writeSafetensors, toSafetensorsEntry, replaceDirectoryAtomicSync } from '../io';
import type { LoadedTokenizer } from '../tokenizer/index';
import { ElectraModel } from './electra';
import type { ModelConfigs } from './models';

export const RTD_HEAD_FILE = 'rtd_head.safetensors';

/** Runs fn while the discriminator's word-embedding table is `table`, then puts E_G back. */
function withDiscriminatorEmbeddings<T>(model: ElectraModel, table: Tensor, fn: () => T): T {
  const embeddings = model.discriminator.deberta.embeddings.word_embeddings;
  const original = embeddings.weight;
  const replacement = new Parameter(table, false);
  embeddings.weight = replacement;
  try {
    return fn();
  } finally {
    embeddings.weight = original;
    replacement.dispose();
  }
}

export function exportRun(model: Module, configs: ModelConfigs, tokenizer: LoadedTokenizer, exportDir: string,
  options: { pytorchBin?: boolean } = {}): void {
  const format = options.pytorchBin ? 'both' : 'safetensors';
  const maxLength = configs.main.max_position_embeddings;
  replaceDirectoryAtomicSync(exportDir, (staging) => {
    const save = (m: PreTrainedModule, name: string) => {
      const dir = path.join(staging, name);
      savePretrained(m, dir, { format });
      tokenizer.saveForTransformers(dir, maxLength);
      return dir;
    };
    if (model instanceof ElectraModel) {
      const dir = withDiscriminatorEmbeddings(model, model.discriminatorEmbeddingTable(), () => save(model.discriminator.deberta, 'discriminator'));
      tidy(() => {
        const head = model.discriminator.discriminator_predictions;
        const entries = new Map([
          ['discriminator_predictions.dense.weight', head.dense.weight],
          ['discriminator_predictions.dense.bias', head.dense.bias!],
          ['discriminator_predictions.dense_prediction.weight', head.dense_prediction.weight],
          ['discriminator_predictions.dense_prediction.bias', head.dense_prediction.bias!],
        ].map(([key, t]) => [key as string, toSafetensorsEntry((t as Tensor).detach().cpu(), key as string)] as const));
        writeSafetensors(path.join(dir, RTD_HEAD_FILE), entries, { format: 'pt' });
      });
      save(model.generator, 'generator');
    } else {
      save(model as PreTrainedModule, 'model');
    }
  });
}
