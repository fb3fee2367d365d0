// Deterministic tensor lifetimes. Node runs N-API finalizers (and FinalizationRegistry
// callbacks) only from the event loop, so a synchronous training loop would never free a tensor
// through the garbage collector: every tensor is owned by the innermost tidy() scope that saw it
// created, or disposed explicitly. A FinalizationRegistry remains as a safety net for tensors
// that live outside every scope (created outside one, returned from the outermost tidy(), or
// kept) and are dropped without dispose(); scoped tensors skip it, which keeps its
// register/unregister cost out of the ops of a training step.
import { native } from './native';

/** What tidy() and dispose() need of a tensor; the Tensor class implements it. */
export interface Disposable {
  readonly isDisposed: boolean;
  dispose(): void;
  /** @internal set by keep(): survives every enclosing tidy() until disposed explicitly. */
  kept: boolean;
  /** @internal whether the safety net watches it */
  guarded: boolean;
  /** @internal the addon's handle */
  readonly handle: number;
}

const scopes: Disposable[][] = [];

const safetyNet = new FinalizationRegistry<number>((handle) => native.dispose(handle));

function guard(tensor: Disposable): void {
  if (tensor.guarded) return;
  safetyNet.register(tensor, tensor.handle, tensor);
  tensor.guarded = true;
}

// A tensor created inside a scope was not reported to V8 as external memory; once it leaves the
// last scope only the safety net frees it if it is dropped, and V8 collects (so the safety net
// runs) only if it knows how much memory the tensor holds.
function leaveScopes(tensor: Disposable): void {
  guard(tensor);
  native.reportTensorMemory(tensor.handle);
}

/** @internal Called by every new tensor. */
export function track(tensor: Disposable): void {
  if (scopes.length > 0) scopes[scopes.length - 1].push(tensor);
  else guard(tensor);
}

/** @internal Called by Tensor.dispose(). */
export function untrack(tensor: Disposable): void {
  if (tensor.guarded) safetyNet.unregister(tensor);
}

function collect(value: unknown, into: Set<Disposable>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (typeof (value as Disposable).dispose === 'function' && 'kept' in (value as object)) {
    into.add(value as Disposable);
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) collect(item, into, seen);
  } else if (value instanceof Map) {
    for (const item of value.values()) collect(item, into, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const item of Object.values(value)) collect(item, into, seen);
  }
}

function closeScope(): void {
  scopes.pop();
  if (scopes.length === 0) native.setMemoryReporting(true);
}

/**
 * Runs fn and disposes every tensor created inside it, except the tensors it returns (in an
 * array, plain object or Map, at any depth) and those marked with keep(). Returned tensors move
 * to the enclosing scope. Scopes nest; an exception disposes the scope's tensors and propagates.
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError('tidy(fn) expects a function');
  const scope: Disposable[] = [];
  scopes.push(scope);
  // Tensors of a scope are freed deterministically: the addon does not report them to V8 as
  // external memory, which would make V8 garbage-collect over and over for nothing.
  if (scopes.length === 1) native.setMemoryReporting(false);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    closeScope();
    for (const tensor of scope) if (!tensor.kept) tensor.dispose();
    throw error;
  }
  closeScope();
  if (result instanceof Promise) {
    for (const tensor of scope) if (!tensor.kept) tensor.dispose();
    throw new TypeError('tidy(fn) cannot track an async function: tensors would outlive the scope; await outside tidy()');
  }
  const returned = new Set<Disposable>();
  collect(result, returned, new Set());
  const parent = scopes.length > 0 ? scopes[scopes.length - 1] : null;
  for (const tensor of scope) {
    if (tensor.kept || tensor.isDisposed) continue;
    if (returned.has(tensor)) {
      if (parent) parent.push(tensor);
      else leaveScopes(tensor);
    } else {
      tensor.dispose();
    }
  }
  return result;
}

/** Exempts a tensor from every enclosing tidy(): it lives until dispose() is called on it. */
export function keep<T extends Disposable>(tensor: T): T {
  tensor.kept = true;
  leaveScopes(tensor);
  return tensor;
}

/** Disposes every tensor found in value (a tensor, or arrays, plain objects and Maps of them). */
export function dispose(value: unknown): void {
  const found = new Set<Disposable>();
  collect(value, found, new Set());
  for (const tensor of found) tensor.dispose();
}

/** Number of tensors alive in the addon: the leak check of tests and long runs. */
export function liveTensorCount(): number {
  return native.liveTensorCount();
}
