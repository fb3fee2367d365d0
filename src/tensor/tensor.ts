// The Tensor class: PyTorch's method names in camelCase, in-place variants ending in `_`.
// Each method is one dispatcher call (see ops.ts); nothing here computes on the JS side.
import { native } from './native';
import { aten, Op } from './ops';
import { DType, IndexDType, dtypeCode, dtypeFromCode, typedArrayFromBuffer, TypedArrayFor, isFloatingDType } from './dtype';
import { track, untrack } from './lifetime';

export type Shape = readonly number[];
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type ScalarOrTensor = number | Tensor;

// A handle that has been disposed reads as this; the addon rejects it too, but the JS message
// names the real cause.
const DISPOSED = -2;

const metadataEpoch = native.metadataEpoch;

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  return typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
}

const op = {
  add: aten('add.Tensor'), addScalar: aten('add.Scalar'),
  add_: aten('add_.Tensor'), addScalar_: aten('add_.Scalar'),
  sub: aten('sub.Tensor'), subScalar: aten('sub.Scalar'),
  sub_: aten('sub_.Tensor'), subScalar_: aten('sub_.Scalar'),
  rsub: aten('rsub.Scalar'),
  mul: aten('mul.Tensor'), mulScalar: aten('mul.Scalar'),
  mul_: aten('mul_.Tensor'), mulScalar_: aten('mul_.Scalar'),
  div: aten('div.Tensor'), divScalar: aten('div.Scalar'), divMode: aten('div.Tensor_mode'),
  div_: aten('div_.Tensor'), divScalar_: aten('div_.Scalar'),
  remainder: aten('remainder.Scalar'),
  powScalar: aten('pow.Tensor_Scalar'), powTensor: aten('pow.Tensor_Tensor'), pow_: aten('pow_.Scalar'),
  neg: aten('neg'), sqrt: aten('sqrt'), rsqrt: aten('rsqrt'), exp: aten('exp'), log: aten('log'),
  log1p: aten('log1p'), tanh: aten('tanh'), sigmoid: aten('sigmoid'), relu: aten('relu'), gelu: aten('gelu'),
  abs: aten('abs'), sign: aten('sign'), floor: aten('floor'), ceil: aten('ceil'), round: aten('round'),
  reciprocal: aten('reciprocal'), square: aten('square'), erf: aten('erf'), erfinv_: aten('erfinv_'),
  sin: aten('sin'), cos: aten('cos'), sqrt_: aten('sqrt_'), neg_: aten('neg_'), exp_: aten('exp_'), log_: aten('log_'),
  clamp: aten('clamp'), clamp_: aten('clamp_'), clampTensor: aten('clamp.Tensor'),
  maximum: aten('maximum'), minimum: aten('minimum'),
  eq: aten('eq.Tensor'), eqScalar: aten('eq.Scalar'), ne: aten('ne.Tensor'), neScalar: aten('ne.Scalar'),
  lt: aten('lt.Tensor'), ltScalar: aten('lt.Scalar'), le: aten('le.Tensor'), leScalar: aten('le.Scalar'),
  gt: aten('gt.Tensor'), gtScalar: aten('gt.Scalar'), ge: aten('ge.Tensor'), geScalar: aten('ge.Scalar'),
  logicalAnd: aten('logical_and'), logicalOr: aten('logical_or'), logicalNot: aten('logical_not'),
  logicalXor: aten('logical_xor'), isfinite: aten('isfinite'), isnan: aten('isnan'),
  all: aten('all'), any: aten('any'), allDim: aten('all.dim'), anyDim: aten('any.dim'),
  sum: aten('sum'), sumDim: aten('sum.dim_IntList'), mean: aten('mean'), meanDim: aten('mean.dim'),
  max: aten('max'), maxDim: aten('max.dim'), min: aten('min'), minDim: aten('min.dim'),
  amax: aten('amax'), amin: aten('amin'), argmax: aten('argmax'), argmin: aten('argmin'),
  vectorNorm: aten('linalg_vector_norm'), logsumexp: aten('logsumexp'), prod: aten('prod'),
  varDim: aten('var.correction'), stdDim: aten('std.correction'), cumsum: aten('cumsum'), cumsum_: aten('cumsum_'),
  matmul: aten('matmul'), mm: aten('mm'), bmm: aten('bmm'),
  softmax: aten('softmax.int'), logSoftmax: aten('log_softmax.int'),
  view: aten('view'), viewDtype: aten('view.dtype'), reshape: aten('reshape'), transpose: aten('transpose.int'), permute: aten('permute'),
  contiguous: aten('contiguous'), expand: aten('expand'), expandAs: aten('expand_as'),
  unsqueeze: aten('unsqueeze'), squeeze: aten('squeeze'), squeezeDim: aten('squeeze.dim'),
  flatten: aten('flatten.using_ints'), narrow: aten('narrow'), select: aten('select.int'),
  slice: aten('slice.Tensor'), repeat: aten('repeat'), t: aten('t'), clone: aten('clone'),
  squeeze_: aten('squeeze_'), squeezeDim_: aten('squeeze_.dim'), unsqueeze_: aten('unsqueeze_'),
  transpose_: aten('transpose_'), t_: aten('t_'), resize_: aten('resize_'),
  detach: aten('detach'), detach_: aten('detach_'), diagonal: aten('diagonal'), asStrided: aten('as_strided'), storageOffset: aten('sym_storage_offset'),
  tril: aten('tril'), triu: aten('triu'), flip: aten('flip'), roll: aten('roll'),
  split: aten('split.Tensor'), splitSizes: aten('split_with_sizes'), chunk: aten('chunk'), unbind: aten('unbind.int'),
  gather: aten('gather'), scatter: aten('scatter.src'), scatterValue: aten('scatter.value'),
  scatter_: aten('scatter_.src'), scatterValue_: aten('scatter_.value'), scatterAdd: aten('scatter_add'),
  scatterAdd_: aten('scatter_add_'),
  indexSelect: aten('index_select'), index: aten('index.Tensor'), indexPut_: aten('index_put_'),
  maskedFill: aten('masked_fill.Scalar'), maskedFillTensor: aten('masked_fill.Tensor'),
  maskedFill_: aten('masked_fill_.Scalar'), maskedSelect: aten('masked_select'),
  where: aten('where.self'), whereScalarOther: aten('where.ScalarOther'),
  whereScalarSelf: aten('where.ScalarSelf'), whereScalars: aten('where.Scalar'),
  topk: aten('topk'), sort: aten('sort'), argsort: aten('argsort'), nonzero: aten('nonzero'),
  toDtypeLayout: aten('to.dtype_layout'),
  zero_: aten('zero_'), fill_: aten('fill_.Scalar'), copy_: aten('copy_'),
  normal_: aten('normal_'), uniform_: aten('uniform_'), bernoulli_: aten('bernoulli_.float'),
  exponential_: aten('exponential_'),
  addcmul_: aten('addcmul_'), addcdiv_: aten('addcdiv_'), lerp_: aten('lerp_.Scalar'), addmm: aten('addmm'),
  multinomial: aten('multinomial'), oneHot: aten('one_hot'), full: aten('full'),
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function call(o: Op, ...args: unknown[]): any {
  return native.callOp(o.id, ...args);
}

/** A tensor returned by an op: wraps a handle. */
export function wrap<D extends DType = any>(handle: number): Tensor<D> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Tensor<D>(handle);
}

function wrapList(handles: number[]): Tensor[] {
  return handles.map((h) => new Tensor(h));
}

/** A dtype code or null for "keep"; used by ops with an optional dtype argument. */
export function optionalDtype(dtype: DType | undefined): number | null {
  return dtype === undefined ? null : dtypeCode(dtype);
}

function checkDevice(device: string): void {
  if (device.startsWith('cuda') && !native.builtWithCuda) {
    throw new Error(`camemberta was built without CUDA: device '${device}' is unavailable. ` +
      'Rebuild against a CUDA libtorch (see README, "CPU and CUDA builds").');
  }
}

export interface ToOptions {
  dtype?: DType;
  device?: Device | string;
  nonBlocking?: boolean;
  copy?: boolean;
}

export interface BackwardOptions {
  retainGraph?: boolean;
  createGraph?: boolean;
}

/**
 * A handle on a libtorch tensor. `D` is the element type when it is known statically (results of
 * comparisons are Tensor<'bool'>, of argmax Tensor<'int64'>); a plain `Tensor` accepts any.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export class Tensor<D extends DType = any> {
  private handleValue: number;
  private shapeCache: number[] | null = null;
  private dtypeCache: D | null = null;
  // native.metadataEpoch when the caches were filled: ops that may change a tensor's metadata in
  // place (resize_, squeeze_, t_, out= arguments, through any API) bump it.
  private cacheEpoch = 0;
  /** @internal see keep() */
  kept = false;
  /** @internal see lifetime.ts */
  guarded = false;

  /** @internal Tensors come from ops and factories, never from `new`. */
  constructor(handle: number) {
    if (typeof handle !== 'number' || handle < 0) throw new TypeError(`invalid tensor handle ${String(handle)}`);
    this.handleValue = handle;
    track(this);
  }

  /** @internal The addon's handle; throws on a disposed tensor. */
  get handle(): number {
    if (this.handleValue < 0) throw new Error('this tensor was disposed; keep() it or return it from tidy() to use it later');
    return this.handleValue;
  }

  get isDisposed(): boolean {
    return this.handleValue < 0;
  }

  /** Frees the tensor's memory now (views keep the storage alive until they are freed too). */
  dispose(): void {
    if (this.handleValue < 0) return;
    native.dispose(this.handleValue);
    untrack(this);
    this.handleValue = DISPOSED;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- metadata -----------------------------------------------------------------------

  private refreshCaches(): void {
    if (this.cacheEpoch !== metadataEpoch[0]) {
      this.shapeCache = null;
      this.dtypeCache = null;
      this.cacheEpoch = metadataEpoch[0];
    }
  }

  get shape(): number[] {
    this.refreshCaches();
    if (this.shapeCache === null) this.shapeCache = native.shape(this.handle);
    return this.shapeCache.slice();
  }

  /** The size of one dimension (negative counts from the end), or the whole shape. */
  size(): number[];
  size(dim: number): number;
  size(dim?: number): number | number[] {
    const shape = this.shape;
    if (dim === undefined) return shape;
    const index = dim < 0 ? dim + shape.length : dim;
    if (index < 0 || index >= shape.length) throw new RangeError(`dimension ${dim} out of range for a ${shape.length}-d tensor`);
    return shape[index];
  }

  get ndim(): number {
    return this.shape.length;
  }

  dim(): number {
    return this.ndim;
  }

  numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get dtype(): D {
    this.refreshCaches();
    if (this.dtypeCache === null) this.dtypeCache = dtypeFromCode(native.dtype(this.handle)) as D;
    return this.dtypeCache;
  }

  get device(): string {
    return native.device(this.handle);
  }

  stride(): number[] {
    return native.strides(this.handle);
  }

  isContiguous(): boolean {
    return native.isContiguous(this.handle);
  }

  /** The offset of the first element in the storage, in elements. */
  storageOffset(): number {
    return call(op.storageOffset, this.handle) as number;
  }

  isFloatingPoint(): boolean {
    return isFloatingDType(this.dtype);
  }

  // ---- data out -----------------------------------------------------------------------

  /** The value of a one-element tensor. */
  item(): number {
    const value = native.item(this.handle);
    return typeof value === 'boolean' ? Number(value) : value;
  }

  /** A copy of the elements in row-major order (half types as raw 16-bit words). */
  toTypedArray(): TypedArrayFor<D> {
    return typedArrayFromBuffer(this.dtype, native.toBuffer(this.handle)) as TypedArrayFor<D>;
  }

  /** Nested arrays of numbers (int64 as numbers; exact up to 2^53). */
  toArray(): unknown {
    const shape = this.shape;
    const source = this.dtype === 'float16' || this.dtype === 'bfloat16'
      ? this.to({ dtype: 'float32' }).toTypedArrayAndDispose() : this.toTypedArray();
    const flat = Array.from(source as ArrayLike<number | bigint>, (v) => Number(v));
    if (shape.length === 0) return flat[0];
    const build = (dim: number, offset: number): unknown[] => {
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: shape[dim] }, (_, i) =>
        dim === shape.length - 1 ? flat[offset + i] : build(dim + 1, offset + i * stride));
    };
    return build(0, 0);
  }

  private toTypedArrayAndDispose(): ArrayLike<number> {
    const out = this.toTypedArray() as ArrayLike<number>;
    this.dispose();
    return out;
  }

  toString(): string {
    if (this.isDisposed) return 'Tensor(disposed)';
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- autograd -----------------------------------------------------------------------

  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle);
  }

  set requiresGrad(value: boolean) {
    native.setRequiresGrad(this.handle, value);
  }

  requiresGrad_(value = true): this {
    native.setRequiresGrad(this.handle, value);
    return this;
  }

  get isLeaf(): boolean {
    return native.isLeaf(this.handle);
  }

  /** The accumulated gradient (a new handle on it each read; dispose or tidy it), or null. */
  get grad(): Tensor<D> | null {
    const handle = native.grad(this.handle);
    return handle < 0 ? null : new Tensor<D>(handle);
  }

  /** Checked as in PyTorch: the gradient must match this tensor's shape, dtype and device. */
  set grad(value: Tensor | null) {
    if (value !== null && !(value instanceof Tensor)) {
      throw new TypeError(`assigned grad expected to be a Tensor or null, got ${describeValue(value)}`);
    }
    native.setGrad(this.handle, value === null ? -1 : value.handle);
  }

  backward(gradient?: Tensor, options: BackwardOptions = {}): void {
    native.backward([this.handle], gradient ? [gradient.handle] : null, options.retainGraph ?? false, options.createGraph ?? false);
  }

  detach(): Tensor<D> {
    return wrap(call(op.detach, this.handle));
  }

  detach_(): this {
    call(op.detach_, this.handle);
    return this;
  }

  // ---- conversion ---------------------------------------------------------------------

  to<T extends DType = D>(target: T | Device | ToOptions): Tensor<T> {
    const options: ToOptions = typeof target === 'string'
      ? (target === 'cpu' || target.startsWith('cuda') ? { device: target } : { dtype: target as DType })
      : target;
    if (options.device) checkDevice(options.device);
    return wrap(call(op.toDtypeLayout, this.handle, optionalDtype(options.dtype), null, options.device ?? null, null,
      options.nonBlocking ?? false, options.copy ?? false, null));
  }

  float(): Tensor<'float32'> { return this.to('float32'); }
  double(): Tensor<'float64'> { return this.to('float64'); }
  half(): Tensor<'float16'> { return this.to('float16'); }
  bfloat16(): Tensor<'bfloat16'> { return this.to('bfloat16'); }
  long(): Tensor<'int64'> { return this.to('int64'); }
  int(): Tensor<'int32'> { return this.to('int32'); }
  bool(): Tensor<'bool'> { return this.to('bool'); }
  cpu(): Tensor<D> { return this.to<D>({ device: 'cpu' }); }
  cuda(index = 0): Tensor<D> { return this.to<D>({ device: `cuda:${index}` }); }

  clone(): Tensor<D> {
    return wrap(call(op.clone, this.handle, null));
  }

  // ---- arithmetic ---------------------------------------------------------------------

  add(other: ScalarOrTensor, alpha = 1): Tensor<D> {
    return wrap(typeof other === 'number' ? call(op.addScalar, this.handle, other, alpha) : call(op.add, this.handle, other.handle, alpha));
  }

  sub(other: ScalarOrTensor, alpha = 1): Tensor<D> {
    return wrap(typeof other === 'number' ? call(op.subScalar, this.handle, other, alpha) : call(op.sub, this.handle, other.handle, alpha));
  }

  /** other - this (PyTorch's rsub). */
  rsub(other: number): Tensor<D> {
    return wrap(call(op.rsub, this.handle, other, 1));
  }

  mul(other: ScalarOrTensor): Tensor<D> {
    return wrap(typeof other === 'number' ? call(op.mulScalar, this.handle, other) : call(op.mul, this.handle, other.handle));
  }

  div(other: ScalarOrTensor, roundingMode?: 'trunc' | 'floor'): Tensor {
    if (roundingMode !== undefined) {
      const divisor = typeof other === 'number' ? scalarLike(this, other) : other;
      try {
        return wrap(call(op.divMode, this.handle, divisor.handle, roundingMode));
      } finally {
        if (divisor !== other) divisor.dispose();
      }
    }
    return wrap(typeof other === 'number' ? call(op.divScalar, this.handle, other) : call(op.div, this.handle, other.handle));
  }

  remainder(other: number): Tensor<D> {
    return wrap(call(op.remainder, this.handle, other));
  }

  pow(exponent: ScalarOrTensor): Tensor<D> {
    return wrap(typeof exponent === 'number' ? call(op.powScalar, this.handle, exponent) : call(op.powTensor, this.handle, exponent.handle));
  }

  neg(): Tensor<D> { return wrap(call(op.neg, this.handle)); }
  sqrt(): Tensor<D> { return wrap(call(op.sqrt, this.handle)); }
  rsqrt(): Tensor<D> { return wrap(call(op.rsqrt, this.handle)); }
  exp(): Tensor<D> { return wrap(call(op.exp, this.handle)); }
  log(): Tensor<D> { return wrap(call(op.log, this.handle)); }
  log1p(): Tensor<D> { return wrap(call(op.log1p, this.handle)); }
  tanh(): Tensor<D> { return wrap(call(op.tanh, this.handle)); }
  sigmoid(): Tensor<D> { return wrap(call(op.sigmoid, this.handle)); }
  relu(): Tensor<D> { return wrap(call(op.relu, this.handle)); }
  /** GELU; 'none' is the exact erf form DeBERTa uses. */
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor<D> { return wrap(call(op.gelu, this.handle, approximate)); }
  abs(): Tensor<D> { return wrap(call(op.abs, this.handle)); }
  sign(): Tensor<D> { return wrap(call(op.sign, this.handle)); }
  floor(): Tensor<D> { return wrap(call(op.floor, this.handle)); }
  ceil(): Tensor<D> { return wrap(call(op.ceil, this.handle)); }
  round(): Tensor<D> { return wrap(call(op.round, this.handle)); }
  reciprocal(): Tensor<D> { return wrap(call(op.reciprocal, this.handle)); }
  square(): Tensor<D> { return wrap(call(op.square, this.handle)); }
  erf(): Tensor<D> { return wrap(call(op.erf, this.handle)); }
  sin(): Tensor<D> { return wrap(call(op.sin, this.handle)); }
  cos(): Tensor<D> { return wrap(call(op.cos, this.handle)); }

  clamp(min?: number | null, max?: number | null): Tensor<D> {
    return wrap(call(op.clamp, this.handle, min ?? null, max ?? null));
  }

  maximum(other: Tensor): Tensor<D> { return wrap(call(op.maximum, this.handle, other.handle)); }
  minimum(other: Tensor): Tensor<D> { return wrap(call(op.minimum, this.handle, other.handle)); }

  // ---- in place (return this) ---------------------------------------------------------

  add_(other: ScalarOrTensor, alpha = 1): this {
    if (typeof other === 'number') call(op.addScalar_, this.handle, other, alpha);
    else call(op.add_, this.handle, other.handle, alpha);
    return this;
  }

  sub_(other: ScalarOrTensor, alpha = 1): this {
    if (typeof other === 'number') call(op.subScalar_, this.handle, other, alpha);
    else call(op.sub_, this.handle, other.handle, alpha);
    return this;
  }

  mul_(other: ScalarOrTensor): this {
    if (typeof other === 'number') call(op.mulScalar_, this.handle, other);
    else call(op.mul_, this.handle, other.handle);
    return this;
  }

  div_(other: ScalarOrTensor): this {
    if (typeof other === 'number') call(op.divScalar_, this.handle, other);
    else call(op.div_, this.handle, other.handle);
    return this;
  }

  pow_(exponent: number): this { call(op.pow_, this.handle, exponent); return this; }
  sqrt_(): this { call(op.sqrt_, this.handle); return this; }
  neg_(): this { call(op.neg_, this.handle); return this; }
  exp_(): this { call(op.exp_, this.handle); return this; }
  log_(): this { call(op.log_, this.handle); return this; }
  erfinv_(): this { call(op.erfinv_, this.handle); return this; }
  clamp_(min?: number | null, max?: number | null): this { call(op.clamp_, this.handle, min ?? null, max ?? null); return this; }
  zero_(): this { call(op.zero_, this.handle); return this; }
  fill_(value: number): this { call(op.fill_, this.handle, value); return this; }
  copy_(source: Tensor, nonBlocking = false): this { call(op.copy_, this.handle, source.handle, nonBlocking); return this; }

  normal_(mean = 0, std = 1, generator?: Generator): this {
    call(op.normal_, this.handle, mean, std, generator?.handle ?? null);
    return this;
  }

  uniform_(from = 0, to = 1, generator?: Generator): this {
    call(op.uniform_, this.handle, from, to, generator?.handle ?? null);
    return this;
  }

  bernoulli_(p = 0.5, generator?: Generator): this {
    call(op.bernoulli_, this.handle, p, generator?.handle ?? null);
    return this;
  }

  exponential_(lambda = 1, generator?: Generator): this {
    call(op.exponential_, this.handle, lambda, generator?.handle ?? null);
    return this;
  }

  /** this += value * tensor1 * tensor2 */
  addcmul_(tensor1: Tensor, tensor2: Tensor, value = 1): this {
    call(op.addcmul_, this.handle, tensor1.handle, tensor2.handle, value);
    return this;
  }

  /** this += value * tensor1 / tensor2 */
  addcdiv_(tensor1: Tensor, tensor2: Tensor, value = 1): this {
    call(op.addcdiv_, this.handle, tensor1.handle, tensor2.handle, value);
    return this;
  }

  /** this += weight * (end - this) */
  lerp_(end: Tensor, weight: number): this {
    call(op.lerp_, this.handle, end.handle, weight);
    return this;
  }

  maskedFill_(mask: Tensor<'bool'>, value: number): this {
    call(op.maskedFill_, this.handle, mask.handle, value);
    return this;
  }

  scatter_(dim: number, index: Tensor<IndexDType>, source: ScalarOrTensor): this {
    if (typeof source === 'number') call(op.scatterValue_, this.handle, dim, index.handle, source);
    else call(op.scatter_, this.handle, dim, index.handle, source.handle);
    return this;
  }

  scatterAdd_(dim: number, index: Tensor<IndexDType>, source: Tensor): this {
    call(op.scatterAdd_, this.handle, dim, index.handle, source.handle);
    return this;
  }

  /** this[indices] = values (accumulate adds instead, duplicates included). */
  indexPut_(indices: (Tensor | null)[], values: Tensor, accumulate = false): this {
    call(op.indexPut_, this.handle, indices.map((t) => (t === null ? null : t.handle)), values.handle, accumulate);
    return this;
  }

  // ---- comparisons and logic ----------------------------------------------------------

  eq(other: ScalarOrTensor): Tensor<'bool'> { return compare(this, other, op.eq, op.eqScalar); }
  ne(other: ScalarOrTensor): Tensor<'bool'> { return compare(this, other, op.ne, op.neScalar); }
  lt(other: ScalarOrTensor): Tensor<'bool'> { return compare(this, other, op.lt, op.ltScalar); }
  le(other: ScalarOrTensor): Tensor<'bool'> { return compare(this, other, op.le, op.leScalar); }
  gt(other: ScalarOrTensor): Tensor<'bool'> { return compare(this, other, op.gt, op.gtScalar); }
  ge(other: ScalarOrTensor): Tensor<'bool'> { return compare(this, other, op.ge, op.geScalar); }
  logicalAnd(other: Tensor): Tensor<'bool'> { return wrap(call(op.logicalAnd, this.handle, other.handle)); }
  logicalOr(other: Tensor): Tensor<'bool'> { return wrap(call(op.logicalOr, this.handle, other.handle)); }
  logicalXor(other: Tensor): Tensor<'bool'> { return wrap(call(op.logicalXor, this.handle, other.handle)); }
  logicalNot(): Tensor<'bool'> { return wrap(call(op.logicalNot, this.handle)); }
  isfinite(): Tensor<'bool'> { return wrap(call(op.isfinite, this.handle)); }
  isnan(): Tensor<'bool'> { return wrap(call(op.isnan, this.handle)); }

  all(dim?: number, keepdim = false): Tensor<'bool'> {
    return wrap(dim === undefined ? call(op.all, this.handle) : call(op.allDim, this.handle, dim, keepdim));
  }

  any(dim?: number, keepdim = false): Tensor<'bool'> {
    return wrap(dim === undefined ? call(op.any, this.handle) : call(op.anyDim, this.handle, dim, keepdim));
  }

  // ---- reductions ---------------------------------------------------------------------

  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return wrap(dim === undefined ? call(op.sum, this.handle, optionalDtype(dtype))
      : call(op.sumDim, this.handle, dim, keepdim, optionalDtype(dtype)));
  }

  mean(dim?: number | number[], keepdim = false, dtype?: DType): Tensor<D> {
    return wrap(dim === undefined ? call(op.mean, this.handle, optionalDtype(dtype))
      : call(op.meanDim, this.handle, dim, keepdim, optionalDtype(dtype)));
  }

  /** Variance with Bessel's correction by default (correction 1), as torch.var. */
  var(dim: number | number[], keepdim = false, correction = 1): Tensor<D> {
    return wrap(call(op.varDim, this.handle, dim, correction, keepdim));
  }

  std(dim: number | number[], keepdim = false, correction = 1): Tensor<D> {
    return wrap(call(op.stdDim, this.handle, dim, correction, keepdim));
  }

  prod(dtype?: DType): Tensor { return wrap(call(op.prod, this.handle, optionalDtype(dtype))); }

  /** max() of all elements, or { values, indices } along dim. */
  max(): Tensor<D>;
  max(dim: number, keepdim?: boolean): { values: Tensor<D>; indices: Tensor<'int64'> };
  max(dim?: number, keepdim = false): Tensor<D> | { values: Tensor<D>; indices: Tensor<'int64'> } {
    if (dim === undefined) return wrap(call(op.max, this.handle));
    const [values, indices] = call(op.maxDim, this.handle, dim, keepdim) as number[];
    return { values: wrap(values), indices: wrap(indices) };
  }

  min(): Tensor<D>;
  min(dim: number, keepdim?: boolean): { values: Tensor<D>; indices: Tensor<'int64'> };
  min(dim?: number, keepdim = false): Tensor<D> | { values: Tensor<D>; indices: Tensor<'int64'> } {
    if (dim === undefined) return wrap(call(op.min, this.handle));
    const [values, indices] = call(op.minDim, this.handle, dim, keepdim) as number[];
    return { values: wrap(values), indices: wrap(indices) };
  }

  amax(dim: number | number[] = [], keepdim = false): Tensor<D> { return wrap(call(op.amax, this.handle, dim, keepdim)); }
  amin(dim: number | number[] = [], keepdim = false): Tensor<D> { return wrap(call(op.amin, this.handle, dim, keepdim)); }
  argmax(dim?: number, keepdim = false): Tensor<'int64'> { return wrap(call(op.argmax, this.handle, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor<'int64'> { return wrap(call(op.argmin, this.handle, dim ?? null, keepdim)); }

  /** The vector p-norm over dims (all elements by default), as torch.linalg.vector_norm. */
  norm(p = 2, dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return wrap(call(op.vectorNorm, this.handle, p, dim ?? null, keepdim, optionalDtype(dtype)));
  }

  logsumexp(dim: number | number[], keepdim = false): Tensor<D> { return wrap(call(op.logsumexp, this.handle, dim, keepdim)); }
  cumsum(dim: number, dtype?: DType): Tensor { return wrap(call(op.cumsum, this.handle, dim, optionalDtype(dtype))); }
  cumsum_(dim: number): this { call(op.cumsum_, this.handle, dim, null); return this; }

  softmax(dim: number, dtype?: DType): Tensor { return wrap(call(op.softmax, this.handle, dim, optionalDtype(dtype))); }
  logSoftmax(dim: number, dtype?: DType): Tensor { return wrap(call(op.logSoftmax, this.handle, dim, optionalDtype(dtype))); }

  // ---- linear algebra -----------------------------------------------------------------

  matmul(other: Tensor): Tensor<D> { return wrap(call(op.matmul, this.handle, other.handle)); }
  mm(other: Tensor): Tensor<D> { return wrap(call(op.mm, this.handle, other.handle)); }
  bmm(other: Tensor): Tensor<D> { return wrap(call(op.bmm, this.handle, other.handle)); }

  // ---- shape --------------------------------------------------------------------------

  /** A view with another shape, or (given a dtype of the same width) the same bytes as that dtype. */
  view(...shape: number[]): Tensor<D>;
  view<T extends DType>(dtype: T): Tensor<T>;
  view(...args: (number | DType)[]): Tensor {
    if (typeof args[0] === 'string') return wrap(call(op.viewDtype, this.handle, dtypeCode(args[0])));
    return wrap(call(op.view, this.handle, args));
  }
  reshape(...shape: number[]): Tensor<D> { return wrap(call(op.reshape, this.handle, shape)); }
  viewAs(other: Tensor): Tensor<D> { return this.view(...other.shape); }
  transpose(dim0: number, dim1: number): Tensor<D> { return wrap(call(op.transpose, this.handle, dim0, dim1)); }
  permute(...dims: number[]): Tensor<D> { return wrap(call(op.permute, this.handle, dims)); }
  t(): Tensor<D> { return wrap(call(op.t, this.handle)); }
  contiguous(): Tensor<D> { return wrap(call(op.contiguous, this.handle, 0)); }
  expand(...shape: number[]): Tensor<D> { return wrap(call(op.expand, this.handle, shape, false)); }
  expandAs(other: Tensor): Tensor<D> { return wrap(call(op.expandAs, this.handle, other.handle)); }
  unsqueeze(dim: number): Tensor<D> { return wrap(call(op.unsqueeze, this.handle, dim)); }
  squeeze(dim?: number): Tensor<D> {
    return wrap(dim === undefined ? call(op.squeeze, this.handle) : call(op.squeezeDim, this.handle, dim));
  }
  flatten(startDim = 0, endDim = -1): Tensor<D> { return wrap(call(op.flatten, this.handle, startDim, endDim)); }
  narrow(dim: number, start: number, length: number): Tensor<D> { return wrap(call(op.narrow, this.handle, dim, start, length)); }
  select(dim: number, index: number): Tensor<D> { return wrap(call(op.select, this.handle, dim, index)); }
  /** this[start:end:step] along dim, as Python slicing (null for open ends). */
  slice(dim: number, start: number | null = null, end: number | null = null, step = 1): Tensor<D> {
    return wrap(call(op.slice, this.handle, dim, start, end, step));
  }
  diagonal(offset = 0, dim1 = 0, dim2 = 1): Tensor<D> { return wrap(call(op.diagonal, this.handle, offset, dim1, dim2)); }
  asStrided(size: number[], stride: number[], storageOffset?: number): Tensor<D> {
    return wrap(call(op.asStrided, this.handle, size, stride, storageOffset ?? null));
  }
  /** In place: these change this tensor's own shape (and the shape it reports). */
  squeeze_(dim?: number): this {
    if (dim === undefined) call(op.squeeze_, this.handle);
    else call(op.squeezeDim_, this.handle, dim);
    return this;
  }
  unsqueeze_(dim: number): this { call(op.unsqueeze_, this.handle, dim); return this; }
  transpose_(dim0: number, dim1: number): this { call(op.transpose_, this.handle, dim0, dim1); return this; }
  t_(): this { call(op.t_, this.handle); return this; }
  /** Resizes the storage as needed; new elements are uninitialised. */
  resize_(...shape: number[]): this { call(op.resize_, this.handle, shape, null); return this; }
  repeat(...repeats: number[]): Tensor<D> { return wrap(call(op.repeat, this.handle, repeats)); }
  tril(diagonal = 0): Tensor<D> { return wrap(call(op.tril, this.handle, diagonal)); }
  triu(diagonal = 0): Tensor<D> { return wrap(call(op.triu, this.handle, diagonal)); }
  flip(...dims: number[]): Tensor<D> { return wrap(call(op.flip, this.handle, dims)); }
  roll(shifts: number | number[], dims: number | number[]): Tensor<D> { return wrap(call(op.roll, this.handle, shifts, dims)); }

  /** Pieces of splitSize along dim (the last may be smaller), or pieces of the given sizes. */
  split(splitSize: number | number[], dim = 0): Tensor<D>[] {
    return wrapList(typeof splitSize === 'number' ? call(op.split, this.handle, splitSize, dim)
      : call(op.splitSizes, this.handle, splitSize, dim)) as Tensor<D>[];
  }

  chunk(chunks: number, dim = 0): Tensor<D>[] { return wrapList(call(op.chunk, this.handle, chunks, dim)) as Tensor<D>[]; }
  unbind(dim = 0): Tensor<D>[] { return wrapList(call(op.unbind, this.handle, dim)) as Tensor<D>[]; }

  // ---- indexing -----------------------------------------------------------------------

  gather(dim: number, index: Tensor<IndexDType>): Tensor<D> { return wrap(call(op.gather, this.handle, dim, index.handle, false)); }

  scatter(dim: number, index: Tensor<IndexDType>, source: ScalarOrTensor): Tensor<D> {
    return wrap(typeof source === 'number' ? call(op.scatterValue, this.handle, dim, index.handle, source)
      : call(op.scatter, this.handle, dim, index.handle, source.handle));
  }

  scatterAdd(dim: number, index: Tensor<IndexDType>, source: Tensor): Tensor<D> {
    return wrap(call(op.scatterAdd, this.handle, dim, index.handle, source.handle));
  }

  indexSelect(dim: number, index: Tensor<IndexDType>): Tensor<D> { return wrap(call(op.indexSelect, this.handle, dim, index.handle)); }

  /** Advanced indexing, this[i0, i1, ...] with index tensors (null keeps a dimension whole). */
  index(indices: (Tensor | null)[]): Tensor<D> {
    return wrap(call(op.index, this.handle, indices.map((t) => (t === null ? null : t.handle))));
  }

  maskedFill(mask: Tensor<'bool'>, value: ScalarOrTensor): Tensor<D> {
    return wrap(typeof value === 'number' ? call(op.maskedFill, this.handle, mask.handle, value)
      : call(op.maskedFillTensor, this.handle, mask.handle, value.handle));
  }

  maskedSelect(mask: Tensor<'bool'>): Tensor<D> { return wrap(call(op.maskedSelect, this.handle, mask.handle)); }

  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor<D>; indices: Tensor<'int64'> } {
    const [values, indices] = call(op.topk, this.handle, k, dim, largest, sorted) as number[];
    return { values: wrap(values), indices: wrap(indices) };
  }

  sort(dim = -1, descending = false): { values: Tensor<D>; indices: Tensor<'int64'> } {
    const [values, indices] = call(op.sort, this.handle, dim, descending) as number[];
    return { values: wrap(values), indices: wrap(indices) };
  }

  argsort(dim = -1, descending = false): Tensor<'int64'> { return wrap(call(op.argsort, this.handle, dim, descending)); }
  nonzero(): Tensor<'int64'> { return wrap(call(op.nonzero, this.handle)); }

  multinomial(numSamples: number, replacement = false, generator?: Generator): Tensor<'int64'> {
    return wrap(call(op.multinomial, this.handle, numSamples, replacement, generator?.handle ?? null));
  }

  oneHot(numClasses = -1): Tensor<'int64'> { return wrap(call(op.oneHot, this.handle, numClasses)); }
}

function compare(self: Tensor, other: ScalarOrTensor, tensorOp: Op, scalarOp: Op): Tensor<'bool'> {
  return wrap(typeof other === 'number' ? call(scalarOp, self.handle, other) : call(tensorOp, self.handle, other.handle));
}

function scalarLike(like: Tensor, value: number): Tensor {
  return wrap(call(op.full, [], value, dtypeCode(like.dtype), null, like.device, null));
}

/** A random number generator with its own state, for reproducible streams independent of the global seed. */
export class Generator {
  private handleValue: number;
  readonly device: string;

  constructor(options: { seed?: number | bigint; device?: Device | string } = {}) {
    this.device = options.device ?? 'cpu';
    checkDevice(this.device);
    this.handleValue = native.newGenerator(this.device, options.seed ?? 67280421310721n);
  }

  /** @internal */
  get handle(): number {
    if (this.handleValue < 0) throw new Error('this Generator was disposed');
    return this.handleValue;
  }

  manualSeed(seed: number | bigint): this {
    native.generatorSeed(this.handle, seed);
    return this;
  }

  initialSeed(): bigint {
    return native.generatorSeed(this.handle) as bigint;
  }

  /** The generator's full state as a uint8 tensor (for checkpoints). */
  getState(): Tensor<'uint8'> {
    return wrap(native.generatorState(this.handle) as number);
  }

  setState(state: Tensor<'uint8'>): this {
    native.generatorState(this.handle, state.handle);
    return this;
  }

  dispose(): void {
    if (this.handleValue >= 0) native.disposeGenerator(this.handleValue);
    this.handleValue = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
