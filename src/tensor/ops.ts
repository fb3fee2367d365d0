// ATen operators by schema name, resolved once on first use. An op call is then one N-API call:
// native.callOp(id, ...arguments in schema order).
import { native } from './native';

export class Op {
  private resolvedId = -1;

  constructor(readonly name: string, readonly overload: string) {}

  get id(): number {
    if (this.resolvedId < 0) this.resolvedId = native.findOp(`aten::${this.name}`, this.overload);
    return this.resolvedId;
  }

  /** The ATen schema, e.g. "aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor". */
  get schema(): string {
    return native.opSchema(this.id);
  }
}

/** aten('add.Tensor') names the overload "Tensor" of aten::add; aten('mm') the default overload. */
export function aten(qualifiedName: string): Op {
  const dot = qualifiedName.indexOf('.');
  return dot < 0 ? new Op(qualifiedName, '') : new Op(qualifiedName.slice(0, dot), qualifiedName.slice(dot + 1));
}

/** Calls an op with arguments already in native form (tensor handles, numbers, strings). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function callOp(op: Op, ...args: unknown[]): any {
  return native.callOp(op.id, ...args);
}

/** Reduction codes of ATen's loss functions. */
export const Reduction = { none: 0, mean: 1, sum: 2 } as const;
export type ReductionName = keyof typeof Reduction;
