// HF's ACT2FN for the activation names config-json.ts accepts.
import { Tensor } from '../tensor';
import { Activation } from './config-json';

export function activation(name: Activation): (x: Tensor) => Tensor {
  switch (name) {
    case 'gelu': return (x) => x.gelu('none'); // exact erf form
    case 'gelu_new':
    case 'gelu_pytorch_tanh': return (x) => x.gelu('tanh');
    case 'relu': return (x) => x.relu();
    case 'tanh': return (x) => x.tanh();
    case 'sigmoid': return (x) => x.sigmoid();
    case 'silu':
    case 'swish': return (x) => x.mul(x.sigmoid());
    default: throw new Error(`unsupported activation ${JSON.stringify(name)}`);
  }
}

/** The most negative finite value of a float dtype: what masked attention scores are filled with. */
export function lowestValue(dtype: string): number {
  switch (dtype) {
    case 'float32': return -3.4028234663852886e38;
    case 'float64': return -Number.MAX_VALUE;
    case 'bfloat16': return -3.3895313892515355e38;
    case 'float16': return -65504;
    default: throw new Error(`no lowest value for non-float dtype ${dtype}`);
  }
}
