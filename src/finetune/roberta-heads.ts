// The RoBERTa task heads transformers has and src/models does not: token classification and
// sequence classification (RobertaClassificationHead), with HF's attribute names so that the
// directories we save load in AutoModelForTokenClassification / AutoModelForSequenceClassification.
import { Tensor } from '../tensor';
import { Linear, Dropout, Module } from '../nn';
import { PreTrainedModule, ModelInitOptions, initializeModel } from '../models/pretrained-module';
import { RobertaConfig } from '../models/roberta/config';
import { RobertaModel, RobertaInputs } from '../models/roberta/modeling';
import { numLabels } from '../models/config-json';

export class RobertaForTokenClassification extends PreTrainedModule<RobertaConfig> {
  readonly architecture = 'RobertaForTokenClassification';
  readonly baseModelPrefix = 'roberta';
  roberta: RobertaModel;
  dropout: Dropout;
  classifier: Linear;
  readonly numLabels: number;

  constructor(config: RobertaConfig, options: ModelInitOptions = {}) {
    super(config);
    this.numLabels = numLabels(config.extra);
    // HF builds RobertaModel(config, add_pooling_layer=False) under every task head.
    this.roberta = new RobertaModel(config, { addPoolingLayer: false, initialize: false });
    this.dropout = new Dropout(config.classifier_dropout ?? config.hidden_dropout_prob);
    this.classifier = new Linear(config.hidden_size, this.numLabels);
    initializeModel(this, config, options);
  }

  forward(inputs: RobertaInputs): { lastHiddenState: Tensor; logits: Tensor } {
    const { lastHiddenState } = this.roberta.forward(inputs);
    return { lastHiddenState, logits: this.classifier.forward(this.dropout.forward(lastHiddenState)) };
  }
}

/** HF's RobertaClassificationHead: the <s> state, dropout, dense, tanh, dropout, out_proj. */
export class RobertaClassificationHead extends Module {
  dense: Linear;
  dropout: Dropout;
  out_proj: Linear;

  constructor(config: RobertaConfig, labels: number) {
    super();
    this.dense = new Linear(config.hidden_size, config.hidden_size);
    this.dropout = new Dropout(config.classifier_dropout ?? config.hidden_dropout_prob);
    this.out_proj = new Linear(config.hidden_size, labels);
  }

  forward(hidden: Tensor): Tensor {
    const first = this.dropout.forward(hidden.select(1, 0));
    return this.out_proj.forward(this.dropout.forward(this.dense.forward(first).tanh()));
  }
}

export class RobertaForSequenceClassification extends PreTrainedModule<RobertaConfig> {
  readonly architecture = 'RobertaForSequenceClassification';
  readonly baseModelPrefix = 'roberta';
  roberta: RobertaModel;
  classifier: RobertaClassificationHead;
  readonly numLabels: number;

  constructor(config: RobertaConfig, options: ModelInitOptions = {}) {
    super(config);
    this.numLabels = numLabels(config.extra);
    this.roberta = new RobertaModel(config, { addPoolingLayer: false, initialize: false });
    this.classifier = new RobertaClassificationHead(config, this.numLabels);
    initializeModel(this, config, options);
  }

  forward(inputs: RobertaInputs): { lastHiddenState: Tensor; logits: Tensor } {
    const { lastHiddenState } = this.roberta.forward(inputs);
    return { lastHiddenState, logits: this.classifier.forward(lastHiddenState) };
  }
}
