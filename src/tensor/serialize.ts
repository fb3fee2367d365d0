// torch.save / torch.load for flat dicts of named tensors (the pytorch_model.bin format).
import * as fs from 'fs';
import * as path from 'path';
import { native } from './native';
import { Tensor } from './tensor';
import { readTorchSave } from './torch-load';

/**
 * Writes tensors as a torch.save zip that torch.load(path, weights_only=True) accepts.
 * The file appears atomically: it is written under a temporary name, then renamed.
 */
export function saveTensors(file: string, tensors: Map<string, Tensor> | Record<string, Tensor>): void {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    native.saveTensors(temporary, entries.map(([name]) => name), entries.map(([, tensor]) => tensor.handle));
    const descriptor = fs.openSync(temporary, 'r');
    try {
      fs.fsyncSync(descriptor);
    } finally {
      fs.closeSync(descriptor);
    }
    fs.renameSync(temporary, file);
  } catch (error) {
    fs.rmSync(temporary, { force: true });
    throw error;
  }
}

/**
 * Reads a torch.save file holding a dict or OrderedDict of tensors (nested dicts flattened with
 * '.'), as fresh contiguous CPU tensors.
 */
export function loadTensors(file: string): Map<string, Tensor> {
  return readTorchSave(file);
}
