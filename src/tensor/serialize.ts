// torch.save / torch.load for flat dicts of named tensors (the pytorch_model.bin format).
// io/atomic is a leaf module (fs, path, crypto only): importing it adds no cycle.
import { replaceFileAtomicSync } from '../io/atomic';
import { native } from './native';
import { Tensor } from './tensor';
import { readTorchSave } from './torch-load';

/**
 * Writes tensors as a torch.save zip that torch.load(path, weights_only=True) accepts, through
 * the project's one atomic-write helper (unique temporary name, fsync, rename, fsync directory).
 */
export function saveTensors(file: string, tensors: Map<string, Tensor> | Record<string, Tensor>): void {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  replaceFileAtomicSync(file, (temporary) => {
    native.saveTensors(temporary, entries.map(([name]) => name), entries.map(([, tensor]) => tensor.handle));
  });
}

/**
 * Reads a torch.save file holding a dict or OrderedDict of tensors (nested dicts flattened with
 * '.'), as fresh contiguous CPU tensors.
 */
export function loadTensors(file: string): Map<string, Tensor> {
  return readTorchSave(file);
}
