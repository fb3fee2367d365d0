// What every model class shares so that savePretrained / fromPretrained can handle it without
// knowing the architecture: its HF class name, config, base-model prefix and tied keys.
import { Module, initWeights } from '../nn';
import { Generator } from '../tensor';
import { DebertaV2Config } from './deberta/config';
import { RobertaConfig } from './roberta/config';

export type ModelConfig = DebertaV2Config | RobertaConfig;

export abstract class PreTrainedModule<C extends ModelConfig = ModelConfig> extends Module {
  /** HF's class name, written to config.json "architectures". */
  abstract readonly architecture: string;
  /** The attribute holding the base model in head models ('deberta', 'roberta'); HF's base_model_prefix. */
  abstract readonly baseModelPrefix: string;
  /**
   * State-dict paths that alias another parameter (the MLM decoder tied to the word embeddings):
   * not written to checkpoints, as HF omits them.
   */
  readonly tiedWeightKeys: readonly string[] = [];

  constructor(readonly config: C) {
    super();
  }

  /** Frees the parameters and anything cached per sequence length. */
  override dispose(): void {
    for (const [, module] of this.namedModules()) {
      if (module !== this && typeof (module as { releaseCaches?: () => void }).releaseCaches === 'function') {
        (module as unknown as { releaseCaches: () => void }).releaseCaches();
      }
    }
    super.dispose();
  }
}

export interface ModelInitOptions {
  /** Random stream of the initial weights; the global generator when omitted. */
  generator?: Generator;
  /**
   * 'normal': HF's _init_weights (N(0, initializer_range)); 'truncated': the same truncated at
   * 2 std (TF TruncatedNormal, as CamemBERTa's TF code); 'none': leave zeros (weights will be loaded).
   */
  init?: 'normal' | 'truncated' | 'none';
}

/** HF's _init_weights over the whole model, with std initializer_range. */
export function initializeModel(model: Module, config: { initializer_range: number }, options: ModelInitOptions): void {
  const mode = options.init ?? 'normal';
  if (mode !== 'none') initWeights(model, { std: config.initializer_range, truncated: mode === 'truncated', generator: options.generator });
}
