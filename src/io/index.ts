export * from './safetensors';
export { writeFileAtomicSync, writeFileAtomicSyncFrom, replaceDirectoryAtomicSync } from './atomic';
export {
  savePretrained, loadPretrained, fromPretrained, readConfig, readCheckpoint, checkpointTensors, configToJson,
  toSafetensorsEntry, fromSafetensorsEntry, CONFIG_NAME, SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME,
} from './pretrained';
export type { SaveFormat, LoadingInfo, FromPretrainedOptions } from './pretrained';
