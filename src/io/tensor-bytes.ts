// Raw little-endian element bytes -> a CPU tensor of any dtype. Half types go through an int16
// tensor reinterpreted with view(dtype): tensor() does not accept a Uint16Array for them yet.
import { Tensor, DType, tensor, aten, callOp } from '../tensor';
import { wrap } from '../tensor/tensor';
import { dtypeCode } from '../tensor/dtype';

const viewAsDtype = aten('view.dtype');

export function tensorFromBytes(dtype: DType, bytes: Uint8Array, shape: number[]): Tensor {
  // A private, aligned copy: the typed views below need an element-aligned offset.
  const own = new Uint8Array(bytes.byteLength);
  own.set(bytes);
  const buffer = own.buffer;
  switch (dtype) {
    case 'float32': return tensor(new Float32Array(buffer), { shape });
    case 'float64': return tensor(new Float64Array(buffer), { shape });
    case 'int64': return tensor(new BigInt64Array(buffer), { shape });
    case 'int32': return tensor(new Int32Array(buffer), { shape });
    case 'int16': return tensor(new Int16Array(buffer), { shape });
    case 'int8': return tensor(new Int8Array(buffer), { shape });
    case 'uint8': return tensor(own, { shape });
    case 'bool': return tensor(own, { dtype: 'bool', shape });
    case 'float16':
    case 'bfloat16': {
      const words = tensor(new Int16Array(buffer), { shape });
      try {
        return wrap(callOp(viewAsDtype, words.handle, dtypeCode(dtype))).clone();
      } finally {
        words.dispose();
      }
    }
    default: throw new Error(`tensorFromBytes: unsupported dtype ${String(dtype)}`);
  }
}
