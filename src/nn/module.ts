// Module and Parameter: the small part of torch.nn the models need.
//
// A module's parameters and submodules are its own attributes: a property holding a Parameter,
// a Module, or an array of Modules (PyTorch's ModuleList) is registered by being assigned, in
// assignment order, and its dotted path is the attribute path. Models name their attributes
// as HuggingFace does (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self`),
// so a state dict's keys are checkpoint keys with no renaming table. Attributes holding null
// (an optional layer that a config leaves out) are simply absent.
//
// Tensor lifetimes: parameters are kept (they survive every tidy()) and live until dispose().
// The same Parameter object may sit at several paths (tied weights): it is one parameter,
// listed once by parameters(), reachable by any of its paths in a state dict.
import { Tensor, aten, callOp, noGrad, keep, DType, Device } from '../tensor';

const detachOp = aten('detach');

/**
 * A kept, trainable tensor owned by a module. `new Parameter(t)` takes ownership of t: t is
 * disposed and the Parameter is a leaf on the same storage.
 */
export class Parameter<D extends DType = 'float32'> extends Tensor<D> {
  constructor(data: Tensor<D>, requiresGrad = true) {
    super(noGrad(() => callOp(detachOp, data.handle) as number));
    data.dispose();
    keep(this);
    if (requiresGrad) this.requiresGrad = true;
  }
}

export interface LoadStateDictResult {
  /** Parameter paths with no entry in the dict (the first path of a tied parameter). */
  missing: string[];
  /** Dict keys that name no parameter of the module. */
  unexpected: string[];
  /** Keys present on both sides with different shapes. */
  mismatched: { key: string; expected: number[]; got: number[] }[];
}

export interface LoadStateDictOptions {
  /** Throw (before copying anything) when any key is missing, unexpected or mismatched. Default true. */
  strict?: boolean;
}

export class StateDictError extends Error {
  constructor(readonly result: LoadStateDictResult, source?: string) {
    super(`${source ? `${source}: ` : ''}state dict does not fit the model:\n${describeResult(result)}`);
    this.name = 'StateDictError';
  }
}

export function describeResult(result: LoadStateDictResult): string {
  const lines: string[] = [];
  if (result.missing.length) lines.push(`  missing keys (${result.missing.length}): ${result.missing.join(', ')}`);
  if (result.unexpected.length) lines.push(`  unexpected keys (${result.unexpected.length}): ${result.unexpected.join(', ')}`);
  for (const { key, expected, got } of result.mismatched) {
    lines.push(`  shape mismatch: ${key}: model has [${expected.join(', ')}], dict has [${got.join(', ')}]`);
  }
  return lines.join('\n');
}

export abstract class Module {
  /** Dropout and similar layers act only while training (train() / eval()). */
  training = true;

  /** Direct submodules by attribute name; arrays of modules appear as `name.0`, `name.1`, ... */
  namedChildren(): [string, Module][] {
    const children: [string, Module][] = [];
    for (const [name, value] of Object.entries(this)) {
      if (value instanceof Module) {
        children.push([name, value]);
      } else if (Array.isArray(value) && value.length > 0 && value.every((item) => item instanceof Module)) {
        value.forEach((item: Module, i) => children.push([`${name}.${i}`, item]));
      }
    }
    return children;
  }

  /** This module's own parameters (not its children's) by attribute name. */
  namedOwnParameters(): [string, Parameter<DType>][] {
    return Object.entries(this).filter((entry): entry is [string, Parameter<DType>] => entry[1] instanceof Parameter);
  }

  /** Every module of the tree, depth first, with its path ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  /** Every path of every parameter, tied ones included (one entry per path). */
  namedParameterPaths(): [string, Parameter<DType>][] {
    const out: [string, Parameter<DType>][] = [];
    for (const [path, module] of this.namedModules()) {
      for (const [name, parameter] of module.namedOwnParameters()) out.push([path ? `${path}.${name}` : name, parameter]);
    }
    return out;
  }

  /** Each distinct parameter once, under its first path (torch's named_parameters()). */
  namedParameters(): [string, Parameter<DType>][] {
    const seen = new Set<Parameter<DType>>();
    return this.namedParameterPaths().filter(([, parameter]) => !seen.has(parameter) && seen.add(parameter) !== undefined);
  }

  parameters(): Parameter<DType>[] {
    return this.namedParameters().map(([, parameter]) => parameter);
  }

  /** Number of distinct scalar parameters. */
  numParameters(): number {
    return this.parameters().reduce((n, parameter) => n + parameter.numel(), 0);
  }

  /**
   * Path -> parameter for every path (tied parameters under each of theirs), as torch's
   * state_dict(). The tensors are the module's own: read or copy them, never dispose them.
   */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameterPaths());
  }

  /**
   * Copies tensors from `dict` into the parameters (converting dtype and device as needed).
   * A tied parameter is satisfied by any one of its paths. Returns what did not fit; with
   * strict (the default) any misfit throws a StateDictError naming every key, and nothing is
   * copied.
   */
  loadStateDict(dict: Map<string, Tensor> | Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const pathsOf = new Map<Parameter<DType>, string[]>();
    for (const [path, parameter] of this.namedParameterPaths()) {
      const paths = pathsOf.get(parameter);
      if (paths) paths.push(path);
      else pathsOf.set(parameter, [path]);
    }
    const result: LoadStateDictResult = { missing: [], unexpected: [], mismatched: [] };
    const known = new Set<string>();
    const copies: [Parameter<DType>, Tensor][] = [];
    for (const [parameter, paths] of pathsOf) {
      for (const path of paths) known.add(path);
      const key = paths.find((path) => entries.has(path));
      if (key === undefined) {
        result.missing.push(paths[0]);
        continue;
      }
      const source = entries.get(key)!;
      const expected = parameter.shape;
      const got = source.shape;
      if (expected.length !== got.length || expected.some((size, i) => size !== got[i])) {
        result.mismatched.push({ key, expected, got });
        continue;
      }
      copies.push([parameter, source]);
    }
    for (const key of entries.keys()) if (!known.has(key)) result.unexpected.push(key);
    const fits = result.missing.length === 0 && result.unexpected.length === 0 && result.mismatched.length === 0;
    if ((options.strict ?? true) && !fits) throw new StateDictError(result);
    noGrad(() => {
      for (const [parameter, source] of copies) parameter.copy_(source);
    });
    return result;
  }

  /** Sets training mode on this module and every submodule; returns this. */
  train(mode = true): this {
    for (const [, module] of this.namedModules()) module.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Moves or converts every parameter (a device like 'cuda' or a dtype like 'bfloat16').
   * Parameters are replaced by new Parameter objects (ties preserved); optimizers built on the
   * old ones must be rebuilt, as in PyTorch when the dtype changes.
   */
  to(target: Device | DType): this {
    const replacement = new Map<Parameter<DType>, Parameter<DType>>();
    noGrad(() => {
      for (const parameter of this.parameters()) {
        const requiresGrad = parameter.requiresGrad;
        replacement.set(parameter, new Parameter(parameter.to(target) as Tensor<DType>, requiresGrad));
      }
    });
    for (const [, module] of this.namedModules()) {
      for (const [name, parameter] of module.namedOwnParameters()) {
        (module as unknown as Record<string, unknown>)[name] = replacement.get(parameter);
      }
    }
    for (const old of replacement.keys()) old.dispose();
    return this;
  }

  /** Zeroes (drops) every parameter's gradient. */
  zeroGrad(): void {
    for (const parameter of this.parameters()) parameter.grad = null;
  }

  /** Frees every parameter; the module is unusable afterwards. */
  dispose(): void {
    for (const parameter of this.parameters()) parameter.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
