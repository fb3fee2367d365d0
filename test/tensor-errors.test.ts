// Error paths: libtorch errors become JS Errors with libtorch's message; wrong argument types are
// TypeErrors; disposed tensors say so. None of them may crash the process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { zeros, ones, tensor, tidy, liveTensorCount, aten, callOp, crossEntropy, cat } from '../src';

function throwsWith(fn: () => unknown, kind: ErrorConstructor, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, kind);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected ${kind.name} matching ${pattern}`);
}

test('shape mismatches carry libtorch messages', () => tidy(() => {
  throwsWith(() => zeros([2, 3]).matmul(zeros([2, 3])), Error, /cannot be multiplied \(2x3 and 2x3\)/);
  throwsWith(() => zeros([2, 3]).add(zeros([4])), Error, /size of tensor a \(3\) must match the size of tensor b \(4\)/);
  throwsWith(() => zeros([6]).view(4), Error, /shape '\[4\]' is invalid for input of size 6/);
  throwsWith(() => cat([zeros([2, 3]), zeros([2, 4])], 0), Error, /Sizes of tensors must match/);
}));

test('dtype and index errors', () => tidy(() => {
  throwsWith(() => crossEntropy(zeros([2, 3]), zeros([2])), Error, /expected scalar type Long|Float/);
  throwsWith(() => zeros([3]).gather(0, tensor([5], { dtype: 'int64' })), Error, /out of bounds|index 5/);
  throwsWith(() => zeros([3]).size(3), RangeError, /out of range/);
}));

test('disposed tensors are a clear error', () => {
  const t = ones([2]);
  t.dispose();
  throwsWith(() => t.add(1), Error, /disposed/);
  throwsWith(() => t.shape, Error, /disposed/);
  assert.ok(t.isDisposed);
});

test('wrong argument types are TypeErrors naming the op and argument', () => tidy(() => {
  const add = aten('add.Tensor');
  throwsWith(() => callOp(add, zeros([1]).handle, 'x'), TypeError, /add\.Tensor\(\): argument 'other' \(Tensor\) expects a Tensor/);
  throwsWith(() => callOp(aten('view'), zeros([4]).handle, [1.5]), TypeError, /expects an integer/);
  throwsWith(() => callOp(aten('softmax.int'), zeros([4]).handle), TypeError, /argument 'dim'.*is required/);
  throwsWith(() => aten('no_such_op').id, Error, /no ATen operator aten::no_such_op/);
  throwsWith(() => zeros([2], { dtype: 'float33' as 'float32' }), TypeError, /unknown dtype 'float33'/);
  throwsWith(() => tensor(new Float32Array(4), { shape: [3] }), RangeError, /16 bytes given, shape needs 12/);
}));

test('errors leave no tensors behind', () => {
  const before = liveTensorCount();
  for (let i = 0; i < 100; i++) {
    try {
      tidy(() => zeros([2, 3]).matmul(zeros([4, 5])));
    } catch {
      // expected
    }
  }
  assert.is(liveTensorCount(), before);
});

test.run();
