export * from './safetensors';
export { writeFileAtomicSync, writeFileAtomicSyncFrom, replaceFileAtomicSync, replaceDirectoryAtomicSync, updateDirectoryAtomicSync } from './atomic';
export {
  savePretrained, loadPretrained, fromPretrained, readConfig, writeConfig, readCheckpoint, checkpointTensors, configToJson,
  toSafetensorsEntry, toSafetensorsSource, fromSafetensorsEntry, CONFIG_NAME, SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME,
} from './pretrained';
export type { SaveFormat, LoadingInfo, FromPretrainedOptions } from './pretrained';
