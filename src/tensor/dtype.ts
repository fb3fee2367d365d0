// Element types, with the codes libtorch's at::ScalarType uses (they cross the boundary as ints).

export type FloatDType = 'float32' | 'float16' | 'bfloat16' | 'float64';
export type IntDType = 'int64' | 'int32' | 'int16' | 'int8' | 'uint8';
export type DType = FloatDType | IntDType | 'bool';
/** The dtypes an index argument (embedding ids, gather indices, class targets) accepts. */
export type IndexDType = 'int64' | 'int32';

const codes: Record<DType, number> = {
  uint8: 0,
  int8: 1,
  int16: 2,
  int32: 3,
  int64: 4,
  float16: 5,
  float32: 6,
  float64: 7,
  bool: 11,
  bfloat16: 15,
};

const names = new Map<number, DType>(Object.entries(codes).map(([name, code]) => [code, name as DType]));

export function dtypeCode(dtype: DType): number {
  const code = codes[dtype];
  if (code === undefined) throw new TypeError(`unknown dtype '${String(dtype)}' (known: ${Object.keys(codes).join(', ')})`);
  return code;
}

export function dtypeFromCode(code: number): DType {
  const name = names.get(code);
  if (name === undefined) throw new TypeError(`libtorch returned a tensor of an unsupported scalar type (code ${code})`);
  return name;
}

export function isFloatingDType(dtype: DType): dtype is FloatDType {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16' || dtype === 'float64';
}

export function itemSize(dtype: DType): number {
  switch (dtype) {
    case 'float64':
    case 'int64':
      return 8;
    case 'float32':
    case 'int32':
      return 4;
    case 'float16':
    case 'bfloat16':
    case 'int16':
      return 2;
    default:
      return 1;
  }
}

/** The JavaScript array type holding a dtype's elements; half types come back as raw 16-bit words. */
export type TypedArrayFor<D extends DType> =
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  0 extends (1 & D) ? any : // a tensor of statically unknown dtype
  D extends 'float32' ? Float32Array :
  D extends 'float64' ? Float64Array :
  D extends 'int64' ? BigInt64Array :
  D extends 'int32' ? Int32Array :
  D extends 'int16' ? Int16Array :
  D extends 'int8' ? Int8Array :
  D extends 'float16' | 'bfloat16' ? Uint16Array :
  Uint8Array;

export type AnyTypedArray =
  Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint16Array | Uint8Array;

export function typedArrayFromBuffer(dtype: DType, buffer: ArrayBuffer): AnyTypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(buffer);
    case 'float64': return new Float64Array(buffer);
    case 'int64': return new BigInt64Array(buffer);
    case 'int32': return new Int32Array(buffer);
    case 'int16': return new Int16Array(buffer);
    case 'int8': return new Int8Array(buffer);
    case 'float16':
    case 'bfloat16': return new Uint16Array(buffer);
    default: return new Uint8Array(buffer);
  }
}

/** The dtype a typed array holds when it is turned into a tensor without an explicit dtype. */
export function dtypeOfTypedArray(array: ArrayBufferView): DType {
  if (array instanceof Float32Array) return 'float32';
  if (array instanceof Float64Array) return 'float64';
  if (array instanceof BigInt64Array) return 'int64';
  if (array instanceof Int32Array) return 'int32';
  if (array instanceof Int16Array) return 'int16';
  if (array instanceof Int8Array) return 'int8';
  if (array instanceof Uint8Array || array instanceof Uint8ClampedArray) return 'uint8';
  throw new TypeError(`no tensor dtype for ${array.constructor.name}; pass { dtype } explicitly`);
}
