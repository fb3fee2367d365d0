// Free functions of the tensor API: factories (torch.zeros ...), torch.nn.functional ops,
// multi-tensor (_foreach_) and AMP kernels, autograd and runtime settings.
import { native, CpuAllocatorStats, MklCpuDispatch } from './native';
import { aten, callOp, Reduction, ReductionName } from './ops';
import { DType, FloatDType, IndexDType, dtypeCode, dtypeOfTypedArray, itemSize } from './dtype';
import { Device, Generator, Tensor, wrap, optionalDtype } from './tensor';

export interface FactoryOptions<D extends DType = DType> {
  dtype?: D;
  device?: Device | string;
  requiresGrad?: boolean;
}

const op = {
  zeros: aten('zeros'), ones: aten('ones'), full: aten('full'), empty: aten('empty.memory_format'),
  arange: aten('arange.start_step'), linspace: aten('linspace'),
  rand: aten('rand.generator'), randn: aten('randn.generator'), randint: aten('randint.low_generator'),
  bernoulli: aten('bernoulli'), bernoulliP: aten('bernoulli.p'),
  zerosLike: aten('zeros_like'), onesLike: aten('ones_like'), fullLike: aten('full_like'),
  emptyLike: aten('empty_like'), randLike: aten('rand_like'), randnLike: aten('randn_like'), geScalarOut: aten('ge.Scalar_out'),
  randomFrom_: aten('random_.from'), searchsorted: aten('searchsorted.Tensor'),
  cat: aten('cat'), stack: aten('stack'), einsum: aten('einsum'),
  where: aten('where.self'), whereScalarOther: aten('where.ScalarOther'), whereScalarSelf: aten('where.ScalarSelf'),
  whereScalars: aten('where.Scalar'),
  linear: aten('linear'), layerNorm: aten('layer_norm'), dropout: aten('dropout'), nativeDropout: aten('native_dropout'),
  embedding: aten('embedding'), conv1d: aten('conv1d'),
  crossEntropy: aten('cross_entropy_loss'), bceWithLogits: aten('binary_cross_entropy_with_logits'),
  sdpa: aten('scaled_dot_product_attention'),
  foreachAddScalar_: aten('_foreach_add_.Scalar'), foreachAddList_: aten('_foreach_add_.List'),
  foreachMulScalar_: aten('_foreach_mul_.Scalar'), foreachMulList_: aten('_foreach_mul_.List'),
  foreachMulTensor_: aten('_foreach_mul_.Tensor'),
  foreachDivScalar_: aten('_foreach_div_.Scalar'), foreachDivList_: aten('_foreach_div_.List'),
  foreachAddcmul_: aten('_foreach_addcmul_.Scalar'), foreachAddcdiv_: aten('_foreach_addcdiv_.Scalar'),
  foreachLerp_: aten('_foreach_lerp_.Scalar'), foreachSqrt: aten('_foreach_sqrt'), foreachSqrt_: aten('_foreach_sqrt_'),
  foreachNorm: aten('_foreach_norm.Scalar'), foreachZero_: aten('_foreach_zero_'), foreachCopy_: aten('_foreach_copy_'),
  foreachAddScalarList_: aten('_foreach_add_.ScalarList'), foreachMulScalarList_: aten('_foreach_mul_.ScalarList'),
  ampUnscale_: aten('_amp_foreach_non_finite_check_and_unscale_'), ampUpdateScale_: aten('_amp_update_scale_'),
};

function handles(tensors: readonly Tensor[]): number[] {
  return tensors.map((t) => t.handle);
}

function finish<D extends DType>(tensor: Tensor<D>, options: FactoryOptions<DType>): Tensor<D> {
  if (options.requiresGrad) tensor.requiresGrad = true;
  return tensor;
}

function checkDevice(device: string | undefined): string | null {
  if (device === undefined) return null;
  if (device.startsWith('cuda') && !native.builtWithCuda) {
    throw new Error(`camemberta was built without CUDA: device '${device}' is unavailable. ` +
      'Rebuild against a CUDA libtorch (see README, "CPU and CUDA builds").');
  }
  return device;
}

// Factories: float32 unless a dtype is given (as torch.get_default_dtype()).

export function zeros<D extends DType = 'float32'>(shape: readonly number[], options: FactoryOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.zeros, shape, optionalDtype(options.dtype), null, checkDevice(options.device), null)), options);
}

export function ones<D extends DType = 'float32'>(shape: readonly number[], options: FactoryOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.ones, shape, optionalDtype(options.dtype), null, checkDevice(options.device), null)), options);
}

export function full<D extends DType = 'float32'>(shape: readonly number[], value: number, options: FactoryOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.full, shape, value, dtypeCode(options.dtype ?? 'float32'), null, checkDevice(options.device), null)), options);
}

/** Uninitialised memory: fill it before reading. */
export function empty<D extends DType = 'float32'>(shape: readonly number[], options: FactoryOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.empty, shape, optionalDtype(options.dtype), null, checkDevice(options.device), null, null)), options);
}

/** [start, end) by step; integer arguments give int64 as in PyTorch unless a dtype is given. */
export function arange<D extends DType = 'int64'>(start: number, end?: number, step = 1, options: FactoryOptions<D> = {}): Tensor<D> {
  const [from, to] = end === undefined ? [0, start] : [start, end];
  const integral = Number.isInteger(from) && Number.isInteger(to) && Number.isInteger(step);
  const dtype = options.dtype ?? (integral ? 'int64' : 'float32');
  return finish(wrap(callOp(op.arange, from, to, step, dtypeCode(dtype), null, checkDevice(options.device), null)), options);
}

export function linspace<D extends DType = 'float32'>(start: number, end: number, steps: number, options: FactoryOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.linspace, start, end, steps, optionalDtype(options.dtype), null, checkDevice(options.device), null)), options);
}

export interface RandomOptions<D extends DType = DType> extends FactoryOptions<D> {
  generator?: Generator;
}

/** Uniform on [0, 1). */
export function rand<D extends FloatDType = 'float32'>(shape: readonly number[], options: RandomOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.rand, shape, options.generator?.handle ?? null, optionalDtype(options.dtype), null,
    checkDevice(options.device), null)), options);
}

/** Standard normal. */
export function randn<D extends FloatDType = 'float32'>(shape: readonly number[], options: RandomOptions<D> = {}): Tensor<D> {
  return finish(wrap(callOp(op.randn, shape, options.generator?.handle ?? null, optionalDtype(options.dtype), null,
    checkDevice(options.device), null)), options);
}

/** Integers uniform on [low, high), int64 by default. */
export function randint<D extends DType = 'int64'>(low: number, high: number, shape: readonly number[], options: RandomOptions<D> = {}): Tensor<D> {
  return wrap(callOp(op.randint, low, high, shape, options.generator?.handle ?? null, dtypeCode(options.dtype ?? 'int64'), null,
    checkDevice(options.device), null));
}

/** Draws 0/1 with the probabilities in `probabilities` (or a fixed p). */
export function bernoulli<D extends DType>(probabilities: Tensor<D>, p?: number, generator?: Generator): Tensor<D> {
  return wrap(p === undefined ? callOp(op.bernoulli, probabilities.handle, generator?.handle ?? null)
    : callOp(op.bernoulliP, probabilities.handle, p, generator?.handle ?? null));
}

export function zerosLike<D extends DType>(like: Tensor<D>, options: FactoryOptions = {}): Tensor<D> {
  return wrap(callOp(op.zerosLike, like.handle, optionalDtype(options.dtype), null, checkDevice(options.device), null, null));
}

export function onesLike<D extends DType>(like: Tensor<D>, options: FactoryOptions = {}): Tensor<D> {
  return wrap(callOp(op.onesLike, like.handle, optionalDtype(options.dtype), null, checkDevice(options.device), null, null));
}

export function fullLike<D extends DType>(like: Tensor<D>, value: number, options: FactoryOptions = {}): Tensor<D> {
  return wrap(callOp(op.fullLike, like.handle, value, optionalDtype(options.dtype), null, checkDevice(options.device), null, null));
}

export function emptyLike<D extends DType>(like: Tensor<D>, options: FactoryOptions = {}): Tensor<D> {
  return wrap(callOp(op.emptyLike, like.handle, optionalDtype(options.dtype), null, checkDevice(options.device), null, null));
}

export function randLike<D extends DType>(like: Tensor<D>, options: FactoryOptions = {}): Tensor<D> {
  return wrap(callOp(op.randLike, like.handle, optionalDtype(options.dtype), null, checkDevice(options.device), null, null));
}

export function randnLike<D extends DType>(like: Tensor<D>, options: FactoryOptions = {}): Tensor<D> {
  return wrap(callOp(op.randnLike, like.handle, optionalDtype(options.dtype), null, checkDevice(options.device), null, null));
}

/** A tensor holding a copy of raw little-endian element bytes (any dtype, half types included). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function fromBytes<D extends DType = any>(bytes: ArrayBufferView, dtype: D, shape: readonly number[],
  options: { device?: Device | string } = {}): Tensor<D> {
  return wrap(native.fromBuffer(bytes, dtypeCode(dtype), [...shape], checkDevice(options.device) ?? undefined));
}

type NestedNumbers = number | boolean | bigint | NestedNumbers[];

function flattenNested(data: NestedNumbers, shape: number[], depth: number, out: (number | boolean | bigint)[]): void {
  if (Array.isArray(data)) {
    if (shape.length === depth) shape.push(data.length);
    else if (shape[depth] !== data.length) {
      throw new TypeError(`tensor(): ragged nested array (length ${data.length} where ${shape[depth]} was expected at depth ${depth})`);
    }
    for (const item of data) flattenNested(item, shape, depth + 1, out);
    return;
  }
  if (depth !== shape.length) throw new TypeError('tensor(): ragged nested array (a number where an array was expected)');
  out.push(data);
}

/** Bytes of `values` (numbers, booleans or bigints) as the elements of dtype. */
function encode(values: readonly (number | boolean | bigint)[], dtype: DType): ArrayBufferView {
  const numbers = () => values.map((v) => Number(v));
  switch (dtype) {
    case 'float32': return Float32Array.from(numbers());
    case 'float64': return Float64Array.from(numbers());
    case 'int64': return BigInt64Array.from(values.map((v) => BigInt(typeof v === 'bigint' ? v : Math.trunc(Number(v)))));
    case 'int32': return Int32Array.from(numbers());
    case 'int16': return Int16Array.from(numbers());
    case 'int8': return Int8Array.from(numbers());
    case 'uint8':
    case 'bool': return Uint8Array.from(numbers().map((v) => (dtype === 'bool' ? (v ? 1 : 0) : v)));
    default: return Float32Array.from(numbers());
  }
}

/**
 * A tensor from nested arrays or a typed array. Numbers default to float32 (JavaScript cannot
 * tell 1 from 1.0), booleans to bool, bigints to int64; typed arrays keep their element type.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function tensor<D extends DType = any>(data: NestedNumbers | ArrayBufferView, options: FactoryOptions<D> & { shape?: readonly number[] } = {}): Tensor<D> {
  let dtype: DType;
  let bytes: ArrayBufferView;
  let shape: number[];
  if (ArrayBuffer.isView(data) && data instanceof Uint16Array && (options.dtype === 'float16' || options.dtype === 'bfloat16')) {
    // raw 16-bit words, as toTypedArray() returns them for half types
    return finish(fromBytes(data, options.dtype, options.shape ?? [data.length], { device: options.device }), options);
  }
  if (ArrayBuffer.isView(data)) {
    const natural = dtypeOfTypedArray(data);
    dtype = options.dtype ?? natural;
    const length = data.byteLength / itemSize(natural);
    shape = options.shape ? [...options.shape] : [length];
    if (dtype === natural || (natural === 'uint8' && dtype === 'bool')) {
      bytes = data;
    } else {
      const created = tensor(data, { shape }) as Tensor;
      try {
        return finish(created.to(dtype) as Tensor<D>, options);
      } finally {
        created.dispose();
      }
    }
  } else {
    const values: (number | boolean | bigint)[] = [];
    shape = [];
    flattenNested(data, shape, 0, values);
    const first = values[0];
    dtype = options.dtype ?? (typeof first === 'boolean' ? 'bool' : typeof first === 'bigint' ? 'int64' : 'float32');
    if (dtype === 'float16' || dtype === 'bfloat16') {
      const created = tensor(Float32Array.from(values.map(Number)), { shape }) as Tensor;
      try {
        return finish(created.to(dtype) as Tensor<D>, options);
      } finally {
        created.dispose();
      }
    }
    bytes = encode(values, dtype);
    if (options.shape) shape = [...options.shape];
  }
  const handle = native.fromBuffer(bytes, dtypeCode(dtype), shape, checkDevice(options.device) ?? undefined);
  return finish(wrap(handle), options);
}

export function cat<D extends DType>(tensors: readonly Tensor<D>[], dim = 0): Tensor<D> {
  return wrap(callOp(op.cat, handles(tensors), dim));
}

export function stack<D extends DType>(tensors: readonly Tensor<D>[], dim = 0): Tensor<D> {
  return wrap(callOp(op.stack, handles(tensors), dim));
}

export function einsum(equation: string, ...tensors: Tensor[]): Tensor {
  return wrap(callOp(op.einsum, equation, handles(tensors), null));
}

/** condition ? a : b, elementwise with broadcasting. */
export function where<D extends DType>(condition: Tensor<'bool'>, a: Tensor<D> | number, b: Tensor<D> | number): Tensor<D> {
  if (typeof a === 'number' && typeof b === 'number') return wrap(callOp(op.whereScalars, condition.handle, a, b));
  if (typeof a === 'number') return wrap(callOp(op.whereScalarSelf, condition.handle, a, (b as Tensor).handle));
  if (typeof b === 'number') return wrap(callOp(op.whereScalarOther, condition.handle, a.handle, b));
  return wrap(callOp(op.where, condition.handle, a.handle, b.handle));
}

// ---- torch.nn.functional ------------------------------------------------------------------

/** x W^T + b */
export function linear<D extends DType>(input: Tensor<D>, weight: Tensor, bias?: Tensor | null): Tensor<D> {
  return wrap(callOp(op.linear, input.handle, weight.handle, bias ? bias.handle : null));
}

export function layerNorm<D extends DType>(input: Tensor<D>, normalizedShape: readonly number[], weight?: Tensor | null,
  bias?: Tensor | null, eps = 1e-5): Tensor<D> {
  return wrap(callOp(op.layerNorm, input.handle, normalizedShape, weight ? weight.handle : null, bias ? bias.handle : null, eps, true));
}

/** How dropout draws its mask on CPU: see dropout(). */
export type CpuDropout = 'bits' | 'aten';

let cpuDropoutChoice: CpuDropout | null = null;

/** CAMEMBERTA_CPU_DROPOUT: 'bits' (the default) or 'aten'; read once. */
export function cpuDropout(): CpuDropout {
  if (cpuDropoutChoice === null) {
    const value = process.env.CAMEMBERTA_CPU_DROPOUT ?? '';
    if (value !== '' && value !== 'bits' && value !== 'aten') {
      throw new Error(`CAMEMBERTA_CPU_DROPOUT='${value}' (expected 'bits' or 'aten')`);
    }
    cpuDropoutChoice = value === 'aten' ? 'aten' : 'bits';
  }
  return cpuDropoutChoice;
}

const INT32_MIN = -(2 ** 31);
// random_(from = int64 min, to = none) draws the full 64-bit range.
const INT64_MIN = -(BigInt(2) ** BigInt(63));

/**
 * The drop threshold on 32 random bits read as a signed int32: an element is dropped when its
 * bits are below it, which happens with probability round(p * 2^32) / 2^32.
 */
export function dropoutThreshold(p: number): number {
  return Math.round(p * 2 ** 32) + INT32_MIN;
}

/**
 * Inverted dropout: zeroes with probability p and scales the rest by 1/(1-p) when training.
 *
 * On CPU the mask comes by default from 32 random bits per element, two per int64 of
 * `random_(-2^63)` (the generator's full 64-bit draws, viewed as int32): an element is kept when
 * its bits are at least dropoutThreshold(p), so it is dropped with probability p to within 2^-33
 * (finer than a float32 uniform's 2^-24 grid). aten's dropout draws a float per element through
 * `bernoulli_`, measured 2.3x slower here, and even `rand_like` costs 1.6x the integer draws.
 * The kept values are input * (1 / (1 - p)) computed as aten computes them (a mask of the
 * input's dtype divided by 1 - p). CAMEMBERTA_CPU_DROPOUT=aten keeps aten's dropout; CUDA always
 * runs aten's (fused) kernel.
 */
export function dropout<D extends DType>(input: Tensor<D>, p: number, training: boolean): Tensor<D> {
  if (!training || p === 0) return wrap(callOp(op.dropout, input.handle, 0, false));
  if (p === 1 || cpuDropout() === 'aten' || input.device !== 'cpu') return wrap(callOp(op.dropout, input.handle, p, true));
  const n = input.numel();
  const words = empty([Math.ceil(n / 2)], { dtype: 'int64' });
  callOp(op.randomFrom_, words.handle, INT64_MIN, null, null);
  const bits = words.view('int32');
  const elementBits = bits.narrow(0, 0, n);
  const shaped = elementBits.view(...input.shape);
  // The comparison writes 1 / 0 straight into a mask of the input's dtype: no bool tensor between.
  const mask = emptyLike(input);
  callOp(op.geScalarOut, shaped.handle, dropoutThreshold(p), mask.handle);
  for (const t of [shaped, elementBits, bits, words]) t.dispose();
  mask.div_(1 - p);
  const output = input.mul(mask);
  mask.dispose();
  return output;
}

/**
 * For each value of `values` [.., M], its insertion index in the sorted rows of `sortedSequence`
 * [.., K] (the same leading dims): the first k with sorted[k] >= value, or with `right` the first
 * with sorted[k] > value (torch.searchsorted).
 */
export function searchsorted(sortedSequence: Tensor, values: Tensor, options: { right?: boolean } = {}): Tensor<'int64'> {
  return wrap(callOp(op.searchsorted, sortedSequence.handle, values.handle, false, options.right ?? false, null, null));
}

export function embedding(weight: Tensor, indices: Tensor<IndexDType>, paddingIdx = -1): Tensor {
  return wrap(callOp(op.embedding, weight.handle, indices.handle, paddingIdx, false, false));
}

export function conv1d<D extends DType>(input: Tensor<D>, weight: Tensor, bias?: Tensor | null,
  options: { stride?: number; padding?: number; dilation?: number; groups?: number } = {}): Tensor<D> {
  return wrap(callOp(op.conv1d, input.handle, weight.handle, bias ? bias.handle : null, options.stride ?? 1,
    options.padding ?? 0, options.dilation ?? 1, options.groups ?? 1));
}

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  reduction?: ReductionName;
  labelSmoothing?: number;
  weight?: Tensor;
}

/** Cross-entropy of logits [N, C] (or [N, C, ...]) against class indices. */
export function crossEntropy(logits: Tensor, target: Tensor<IndexDType>, options: CrossEntropyOptions = {}): Tensor {
  return wrap(callOp(op.crossEntropy, logits.handle, target.handle, options.weight?.handle ?? null,
    Reduction[options.reduction ?? 'mean'], options.ignoreIndex ?? -100, options.labelSmoothing ?? 0));
}

export function binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor,
  options: { weight?: Tensor; posWeight?: Tensor; reduction?: ReductionName } = {}): Tensor {
  return wrap(callOp(op.bceWithLogits, logits.handle, target.handle, options.weight?.handle ?? null,
    options.posWeight?.handle ?? null, Reduction[options.reduction ?? 'mean']));
}

/** softmax(Q K^T * scale + mask) V, with an additive float mask (or a bool mask: true keeps). */
export function scaledDotProductAttention<D extends DType>(query: Tensor<D>, key: Tensor, value: Tensor,
  options: { mask?: Tensor | null; dropoutP?: number; isCausal?: boolean; scale?: number } = {}): Tensor<D> {
  return wrap(callOp(op.sdpa, query.handle, key.handle, value.handle, options.mask ? options.mask.handle : null,
    options.dropoutP ?? 0, options.isCausal ?? false, options.scale ?? null, false));
}

export function oneHot(indices: Tensor<IndexDType>, numClasses = -1): Tensor<'int64'> {
  return indices.oneHot(numClasses);
}

export function softmax(input: Tensor, dim: number, dtype?: DType): Tensor {
  return input.softmax(dim, dtype);
}

export function logSoftmax(input: Tensor, dim: number, dtype?: DType): Tensor {
  return input.logSoftmax(dim, dtype);
}

export function gelu<D extends DType>(input: Tensor<D>, approximate: 'none' | 'tanh' = 'none'): Tensor<D> {
  return input.gelu(approximate);
}

// ---- multi-tensor kernels (torch._foreach_*), one dispatcher call for a whole list ---------

export const foreach = {
  /** tensors[i] += other (a number, or other[i]) * alpha */
  add_(tensors: readonly Tensor[], other: number | readonly Tensor[] | readonly number[], alpha = 1): void {
    if (typeof other === 'number') callOp(op.foreachAddScalar_, handles(tensors), other);
    else if (typeof other[0] === 'number') callOp(op.foreachAddScalarList_, handles(tensors), other as number[]);
    else callOp(op.foreachAddList_, handles(tensors), handles(other as Tensor[]), alpha);
  },
  /** tensors[i] *= other (a number, one scalar tensor, a list of numbers, or other[i]) */
  mul_(tensors: readonly Tensor[], other: number | Tensor | readonly Tensor[] | readonly number[]): void {
    if (typeof other === 'number') callOp(op.foreachMulScalar_, handles(tensors), other);
    else if (other instanceof Tensor) callOp(op.foreachMulTensor_, handles(tensors), other.handle);
    else if (typeof other[0] === 'number') callOp(op.foreachMulScalarList_, handles(tensors), other as number[]);
    else callOp(op.foreachMulList_, handles(tensors), handles(other as Tensor[]));
  },
  div_(tensors: readonly Tensor[], other: number | readonly Tensor[]): void {
    if (typeof other === 'number') callOp(op.foreachDivScalar_, handles(tensors), other);
    else callOp(op.foreachDivList_, handles(tensors), handles(other));
  },
  /** tensors[i] += value * a[i] * b[i] */
  addcmul_(tensors: readonly Tensor[], a: readonly Tensor[], b: readonly Tensor[], value = 1): void {
    callOp(op.foreachAddcmul_, handles(tensors), handles(a), handles(b), value);
  },
  /** tensors[i] += value * a[i] / b[i] */
  addcdiv_(tensors: readonly Tensor[], a: readonly Tensor[], b: readonly Tensor[], value = 1): void {
    callOp(op.foreachAddcdiv_, handles(tensors), handles(a), handles(b), value);
  },
  /** tensors[i] += weight * (ends[i] - tensors[i]) */
  lerp_(tensors: readonly Tensor[], ends: readonly Tensor[], weight: number): void {
    callOp(op.foreachLerp_, handles(tensors), handles(ends), weight);
  },
  sqrt(tensors: readonly Tensor[]): Tensor[] {
    return (callOp(op.foreachSqrt, handles(tensors)) as number[]).map((h) => wrap(h));
  },
  sqrt_(tensors: readonly Tensor[]): void {
    callOp(op.foreachSqrt_, handles(tensors));
  },
  /** The p-norm of each tensor, as a list of scalar tensors. */
  norm(tensors: readonly Tensor[], p = 2, dtype?: DType): Tensor[] {
    return (callOp(op.foreachNorm, handles(tensors), p, optionalDtype(dtype)) as number[]).map((h) => wrap(h));
  },
  zero_(tensors: readonly Tensor[]): void {
    callOp(op.foreachZero_, handles(tensors));
  },
  copy_(tensors: readonly Tensor[], sources: readonly Tensor[]): void {
    callOp(op.foreachCopy_, handles(tensors), handles(sources), false);
  },
};

// ---- AMP kernels the dynamic loss scaler needs --------------------------------------------

/** grads[i] *= invScale; foundInf becomes 1 if any gradient holds an inf or NaN. */
export function ampForeachNonFiniteCheckAndUnscale_(grads: readonly Tensor[], foundInf: Tensor, invScale: Tensor): void {
  callOp(op.ampUnscale_, handles(grads), foundInf.handle, invScale.handle);
}

/** Updates the loss scale in place: back off on overflow, grow after growthInterval clean steps. */
export function ampUpdateScale_(scale: Tensor, growthTracker: Tensor, foundInf: Tensor,
  growthFactor: number, backoffFactor: number, growthInterval: number): void {
  callOp(op.ampUpdateScale_, scale.handle, growthTracker.handle, foundInf.handle, growthFactor, backoffFactor, growthInterval);
}

// ---- autograd -----------------------------------------------------------------------------

/** Gradients of outputs with respect to inputs, without touching .grad (torch.autograd.grad). */
export function grad(outputs: Tensor | readonly Tensor[], inputs: readonly Tensor[],
  options: { gradOutputs?: readonly (Tensor | null)[]; retainGraph?: boolean; createGraph?: boolean; allowUnused?: boolean } = {}): (Tensor | null)[] {
  const outs = outputs instanceof Tensor ? [outputs] : outputs;
  const result = native.autogradGrad(handles(outs), handles(inputs),
    options.gradOutputs ? options.gradOutputs.map((t) => (t ? t.handle : null)) : null,
    options.retainGraph ?? false, options.createGraph ?? false, options.allowUnused ?? false);
  return result.map((h) => (h < 0 ? null : wrap(h)));
}

/** Backward through several outputs at once (torch.autograd.backward). */
export function backward(outputs: readonly Tensor[], gradOutputs?: readonly (Tensor | null)[], options: { retainGraph?: boolean } = {}): void {
  native.backward(handles(outputs), gradOutputs ? gradOutputs.map((t) => (t ? t.handle : null)) : null, options.retainGraph ?? false, false);
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = native.isGradEnabled();
  native.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

/** Runs fn without recording autograd history (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with autograd recording on, inside a noGrad region too (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

// ---- autocast -----------------------------------------------------------------------------

export interface AutocastOptions {
  device: 'cpu' | 'cuda';
  /** bfloat16 (CPU and CUDA) or float16 (CUDA). */
  dtype?: 'bfloat16' | 'float16';
  enabled?: boolean;
}

/** Runs fn with mixed precision (torch.autocast); the previous state comes back on exit or exception. */
export function autocast<T>(options: AutocastOptions, fn: () => T): T {
  const device = options.device;
  const dtype = options.dtype ?? (device === 'cpu' ? 'bfloat16' : 'float16');
  if (device === 'cuda' && !native.builtWithCuda) {
    throw new Error("autocast({ device: 'cuda' }): camemberta was built without CUDA");
  }
  if (device === 'cpu' && dtype === 'float16') {
    throw new Error("autocast on CPU supports bfloat16 only; use dtype: 'bfloat16'");
  }
  const [wasEnabled, previousDtype] = native.autocastState(device);
  native.autocastEnter(device, options.enabled ?? true, dtypeCode(dtype));
  try {
    return fn();
  } finally {
    native.autocastExit(device, wasEnabled, previousDtype);
  }
}

// ---- runtime ------------------------------------------------------------------------------

/** Seeds the default generators of the CPU and of every CUDA device. */
export function manualSeed(seed: number | bigint): void {
  native.manualSeed(seed);
}

/** libtorch's intra-op thread count (process-wide); at most 4096, so that a typo cannot ask OpenMP for millions. */
export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > 4096) {
    throw new RangeError(`setNumThreads expects a positive integer count (at most 4096), got ${String(threads)}`);
  }
  native.setNumThreads(threads);
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

/** Whether a CUDA device can be used now (a CUDA build and at least one GPU). */
export function cudaAvailable(): boolean {
  return native.builtWithCuda && native.deviceCount() > 0;
}

export function deviceCount(): number {
  return native.deviceCount();
}

/** Waits for all queued work on the CUDA device (all devices when none is given). */
export function synchronize(device?: number): void {
  if (!native.builtWithCuda) throw new Error('synchronize(): camemberta was built without CUDA');
  native.synchronize(device);
}

/**
 * The caching CPU allocator's counters (blocks of 256 KiB and more are reused instead of going
 * back to the system), or null when CAMEMBERTA_CPU_ALLOCATOR=system turned it off.
 */
export function cpuAllocatorStats(): CpuAllocatorStats | null {
  return native.cpuAllocatorStats();
}

/** Returns the CPU allocator's cached free blocks to the system (e.g. between training phases). */
export function emptyCpuCache(): void {
  native.emptyCpuCache();
}

/**
 * Which code path Intel MKL (fp32 matmul on CPU) takes and why: by default the fast AVX2 / AVX-512
 * paths wherever the CPU has the features, also on AMD; CAMEMBERTA_MKL_CPU=vendor keeps MKL's own
 * rule (fast paths on Intel CPUs only). See native/mkl.cc.
 */
export function mklCpuDispatch(): MklCpuDispatch {
  return native.mklCpuDispatch();
}

export const builtWithCuda: boolean = native.builtWithCuda;
export const torchVersion: string = native.torchVersion;
