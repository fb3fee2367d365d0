export * from './deberta/modeling';
export * from './deberta/rtd';
export * from './roberta/modeling';
export { PreTrainedModule, initializeModel } from './pretrained-module';
export type { ModelConfig, ModelInitOptions } from './pretrained-module';
export { ARCHITECTURES, BASE_ARCHITECTURE, MODEL_TYPES, createModel, parseModelConfig, modelConfigToJson } from './registry';
export type { ModelType } from './registry';
export { activation, lowestValue } from './activations';
