// The whole op surface in one generic call, as tfjs-node's ExecuteOp does: TypeScript looks an
// ATen operator up once by schema name (findOp), then calls it with positional arguments that are
// converted by the operator's own schema and run through libtorch's dispatcher (so autograd,
// autocast and every backend apply). Adding an op is a line of TypeScript, never C++.
#include "handles.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <unordered_set>

namespace camemberta {

namespace {

std::string describe(const OpEntry& op, const c10::Argument& argument) {
  return op.name + "(): argument '" + argument.name() + "' (" + argument.type()->str() + ")";
}

bool isNullish(const Napi::Value& value) { return value.IsNull() || value.IsUndefined(); }

int64_t integerArg(Napi::Env env, const Napi::Value& value, const OpEntry& op, const c10::Argument& argument) {
  if (value.IsNumber()) {
    double number = value.As<Napi::Number>().DoubleValue();
    // Range first: converting a double outside int64 (or NaN) is undefined behaviour.
    if (!(std::abs(number) < 9223372036854775808.0) || number != std::floor(number)) {
      throwType(env, describe(op, argument) + " expects an integer, got " + std::to_string(number));
    }
    return static_cast<int64_t>(number);
  }
  if (value.IsBoolean()) return value.As<Napi::Boolean>().Value() ? 1 : 0;
  if (value.IsBigInt()) {
    bool lossless;
    int64_t integer = value.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throwType(env, describe(op, argument) + " expects an integer within int64");
    return integer;
  }
  throwType(env, describe(op, argument) + " expects an integer");
}

std::vector<int64_t> integerListArg(Napi::Env env, const Napi::Value& value, const OpEntry& op,
                                    const c10::Argument& argument) {
  // int[2] and friends accept one number for every entry, as in Python.
  if (value.IsNumber()) {
    size_t count = argument.N().value_or(1);
    return std::vector<int64_t>(count, integerArg(env, value, op, argument));
  }
  if (!value.IsArray()) throwType(env, describe(op, argument) + " expects an array of integers");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) out[i] = integerArg(env, array.Get(i), op, argument);
  return out;
}

c10::IValue toIValue(Napi::Env env, AddonState& state, const Napi::Value& value, const c10::TypePtr& type, const OpEntry& op,
                     const c10::Argument& argument) {
  switch (type->kind()) {
    case c10::TypeKind::OptionalType:
      if (isNullish(value)) return c10::IValue();
      return toIValue(env, state, value, type->castRaw<c10::OptionalType>()->getElementType(), op, argument);
    case c10::TypeKind::TensorType:
      if (!value.IsNumber()) throwType(env, describe(op, argument) + " expects a Tensor");
      return tensorAt(env, state, value);
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
    case c10::TypeKind::ScalarTypeType:
    case c10::TypeKind::LayoutType:
    case c10::TypeKind::MemoryFormatType:
      return integerArg(env, value, op, argument);
    case c10::TypeKind::FloatType:
      if (!value.IsNumber()) throwType(env, describe(op, argument) + " expects a number");
      return value.As<Napi::Number>().DoubleValue();
    case c10::TypeKind::BoolType:
      if (!value.IsBoolean()) throwType(env, describe(op, argument) + " expects a boolean");
      return value.As<Napi::Boolean>().Value();
    case c10::TypeKind::NumberType: {  // Scalar: integral numbers stay integral, as Python ints do
      if (value.IsBoolean()) return value.As<Napi::Boolean>().Value();
      if (!value.IsNumber()) throwType(env, describe(op, argument) + " expects a number");
      double number = value.As<Napi::Number>().DoubleValue();
      if (std::abs(number) < 9007199254740992.0 && number == std::floor(number)) {
        return at::Scalar(static_cast<int64_t>(number));
      }
      return at::Scalar(number);
    }
    case c10::TypeKind::StringType:
      if (!value.IsString()) throwType(env, describe(op, argument) + " expects a string");
      return value.As<Napi::String>().Utf8Value();
    case c10::TypeKind::DeviceObjType:
      if (!value.IsString()) throwType(env, describe(op, argument) + " expects a device string");
      return c10::Device(value.As<Napi::String>().Utf8Value());
    case c10::TypeKind::GeneratorType:
      return generatorAt(env, state, value);
    case c10::TypeKind::ListType: {
      const c10::TypePtr& element = type->castRaw<c10::ListType>()->getElementType();
      switch (element->kind()) {
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType:
          return integerListArg(env, value, op, argument);
        case c10::TypeKind::FloatType: {
          if (!value.IsArray()) throwType(env, describe(op, argument) + " expects an array of numbers");
          auto array = value.As<Napi::Array>();
          std::vector<double> out(array.Length());
          for (uint32_t i = 0; i < array.Length(); i++) {
            Napi::Value item = array.Get(i);
            if (!item.IsNumber()) throwType(env, describe(op, argument) + " expects an array of numbers");
            out[i] = item.As<Napi::Number>().DoubleValue();
          }
          return out;
        }
        case c10::TypeKind::BoolType: {
          if (!value.IsArray()) throwType(env, describe(op, argument) + " expects an array of booleans");
          auto array = value.As<Napi::Array>();
          c10::List<bool> out;
          for (uint32_t i = 0; i < array.Length(); i++) out.push_back(array.Get(i).ToBoolean());
          return out;
        }
        case c10::TypeKind::TensorType: {
          if (!value.IsArray()) throwType(env, describe(op, argument) + " expects an array of Tensors");
          auto array = value.As<Napi::Array>();
          c10::List<at::Tensor> out;
          out.reserve(array.Length());
          for (uint32_t i = 0; i < array.Length(); i++) out.push_back(tensorAt(env, state, array.Get(i)));
          return out;
        }
        case c10::TypeKind::OptionalType: {  // Tensor?[] (advanced indexing)
          if (!value.IsArray()) throwType(env, describe(op, argument) + " expects an array of Tensors or nulls");
          auto array = value.As<Napi::Array>();
          c10::List<std::optional<at::Tensor>> out;
          for (uint32_t i = 0; i < array.Length(); i++) {
            Napi::Value item = array.Get(i);
            if (isNullish(item)) {
              out.push_back(std::nullopt);
            } else {
              out.push_back(tensorAt(env, state, item));
            }
          }
          return out;
        }
        case c10::TypeKind::NumberType: {
          if (!value.IsArray()) throwType(env, describe(op, argument) + " expects an array of numbers");
          auto array = value.As<Napi::Array>();
          std::vector<at::Scalar> out;
          for (uint32_t i = 0; i < array.Length(); i++) {
            Napi::Value item = array.Get(i);
            if (!item.IsNumber()) throwType(env, describe(op, argument) + " expects an array of numbers");
            out.emplace_back(item.As<Napi::Number>().DoubleValue());
          }
          return out;
        }
        default:
          break;
      }
      break;
    }
    default:
      break;
  }
  throwType(env, describe(op, argument) + ": this argument type is not supported from JavaScript");
}

// Tensors are stored through `pending`, so that a return value failing to convert after them
// releases them again.
Napi::Value fromIValue(Napi::Env env, PendingHandles& pending, c10::IValue value) {
  if (value.isTensor()) return pending.store(std::move(value).toTensor());
  if (value.isNone()) return env.Undefined();
  if (value.isTensorList()) {
    auto list = value.toTensorList();
    auto out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out.Set(static_cast<uint32_t>(i), pending.store(list.get(i)));
    return out;
  }
  if (value.isTuple()) {
    const auto& elements = value.toTupleRef().elements();
    auto out = Napi::Array::New(env, elements.size());
    for (size_t i = 0; i < elements.size(); i++) out.Set(static_cast<uint32_t>(i), fromIValue(env, pending, elements[i]));
    return out;
  }
  if (value.isInt()) return Napi::Number::New(env, static_cast<double>(value.toInt()));
  if (value.isDouble()) return Napi::Number::New(env, value.toDouble());
  if (value.isBool()) return Napi::Boolean::New(env, value.toBool());
  if (value.isIntList()) {
    auto list = value.toIntVector();
    auto out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(list[i])));
    return out;
  }
  if (value.isScalar()) return Napi::Number::New(env, value.toScalar().toDouble());
  if (value.isString()) return Napi::String::New(env, value.toStringRef());
  throw Napi::Error::New(env, std::string("cannot return a value of type ") + value.tagKind() + " to JavaScript");
}

// In-place ops that write a tensor's sizes, strides or dtype rather than (only) its elements;
// out= variants resize their output too. Element-wise in-place ops (add_, _foreach_mul_) are the
// hot path of optimizers and leave cached shapes valid.
bool changesMetadata(const std::string& name, const c10::FunctionSchema& schema) {
  static const std::unordered_set<std::string> metadataOps = {
      "aten::resize_",     "aten::resize_as_", "aten::squeeze_",   "aten::unsqueeze_",  "aten::transpose_",
      "aten::t_",          "aten::as_strided_", "aten::set_",      "aten::swapdims_",   "aten::swapaxes_",
      "aten::_resize_output_", "aten::resize_as_sparse_", "aten::sparse_resize_", "aten::sparse_resize_and_clear_",
      "aten::_coalesced_", "aten::_set_storage_offset_"};
  if (metadataOps.count(name) > 0) return true;
  for (const auto& argument : schema.arguments()) {
    if (argument.alias_info() && argument.alias_info()->isWrite() && argument.name() != "self") return true;
  }
  return false;
}

// findOp("aten::add", "Tensor") -> op id. Throws when the schema does not exist.
Napi::Value FindOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  if (!info[0].IsString()) throwType(env, "findOp expects an operator name");
  std::string name = info[0].As<Napi::String>();
  std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) throw Napi::Error::New(env, "no ATen operator " + name + (overload.empty() ? "" : "." + overload));
  const auto& schema = handle->schema();
  bool returnsWrittenInput = !schema.returns().empty();
  for (const auto& ret : schema.returns()) {
    if (!ret.alias_info() || !ret.alias_info()->isWrite()) returnsWrittenInput = false;
  }
  state.ops.push_back({*handle, name + (overload.empty() ? "" : "." + overload), returnsWrittenInput, changesMetadata(name, schema)});
  return Napi::Number::New(env, static_cast<double>(state.ops.size() - 1));
}

// opSchema(id) -> the schema string, for error messages and the op table's self-check.
const OpEntry& opAt(Napi::Env env, AddonState& state, const Napi::Value& value) {
  double id = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
  if (!(id >= 0 && id < static_cast<double>(state.ops.size())) || id != std::floor(id)) {
    throw Napi::RangeError::New(env, "unknown op id (findOp() returns them)");
  }
  return state.ops[static_cast<size_t>(id)];
}

Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  const auto& op = opAt(info.Env(), stateOf(info.Env()), info[0]);
  std::ostringstream text;
  text << op.handle.schema();
  return Napi::String::New(info.Env(), text.str());
}

// libtorch's resize_ sets the new sizes before it allocates the storage: when the allocation
// fails the tensor is left claiming elements it does not have, and the next op on it reads out of
// bounds (PyTorch 2.13 behaves the same). The sizes, strides and offset of every tensor an op
// writes are put back when a metadata-changing op throws.
void callRestoringMetadataOnFailure(const OpEntry& op, torch::jit::Stack& stack) {
  struct Snapshot {
    c10::intrusive_ptr<c10::TensorImpl> impl;
    std::vector<int64_t> sizes;
    std::vector<int64_t> strides;
    int64_t storageOffset;
  };
  std::vector<Snapshot> snapshots;
  const auto& arguments = op.handle.schema().arguments();
  for (size_t i = 0; i < arguments.size() && i < stack.size(); i++) {
    if (!arguments[i].alias_info() || !arguments[i].alias_info()->isWrite() || !stack[i].isTensor()) continue;
    const at::Tensor& tensor = stack[i].toTensor();
    if (!tensor.defined() || tensor.layout() != at::kStrided || tensor.is_nested()) continue;
    snapshots.push_back({tensor.getIntrusivePtr(), tensor.sizes().vec(), tensor.strides().vec(), tensor.storage_offset()});
  }
  try {
    op.handle.callBoxed(stack);
  } catch (...) {
    for (auto& snapshot : snapshots) {
      try {
        snapshot.impl->set_sizes_and_strides(snapshot.sizes, snapshot.strides, snapshot.storageOffset);
      } catch (...) {
        // A tensor that forbids metadata changes was not changed by the op either.
      }
    }
    throw;
  }
}

// callOp(id, ...args): missing trailing arguments (undefined) take the schema's defaults.
// Returns a tensor handle, an array for several returns, a number or boolean for scalars, and
// undefined when the op returns only inputs it wrote in place.
Napi::Value CallOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  const OpEntry& op = opAt(env, state, info[0]);
  const auto& arguments = op.handle.schema().arguments();
  size_t given = info.Length() - 1;
  if (given > arguments.size()) {
    throwType(env, op.name + "() takes " + std::to_string(arguments.size()) + " arguments, got " + std::to_string(given));
  }
  torch::jit::Stack stack;
  stack.reserve(arguments.size());
  for (size_t i = 0; i < arguments.size(); i++) {
    const auto& argument = arguments[i];
    Napi::Value value = i < given ? info[i + 1] : env.Undefined();
    if (value.IsUndefined()) {
      if (argument.default_value()) {
        stack.push_back(*argument.default_value());
        continue;
      }
      if (argument.real_type()->kind() != c10::TypeKind::OptionalType) {
        throwType(env, describe(op, argument) + " is required");
      }
    }
    stack.push_back(toIValue(env, state, value, argument.real_type(), op, argument));
  }
  if (op.changesMetadata) {
    callRestoringMetadataOnFailure(op, stack);
    // Cached shapes in JS are refreshed after any such op, failed or not.
    (*state.metadataEpoch)++;
  } else {
    op.handle.callBoxed(stack);
  }
  if (op.returnsWrittenInput || stack.empty()) return env.Undefined();
  // The common case, one tensor: nothing can fail after storing it, so no rollback list.
  if (stack.size() == 1 && stack[0].isTensor()) return tensorHandleValue(env, state, std::move(stack[0]).toTensor());
  PendingHandles pending(env, state);
  Napi::Value result;
  if (stack.size() == 1) {
    result = fromIValue(env, pending, std::move(stack[0]));
  } else {
    auto out = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); i++) out.Set(static_cast<uint32_t>(i), fromIValue(env, pending, std::move(stack[i])));
    result = out;
  }
  pending.commit();
  return result;
}

}  // namespace

void registerOps(Napi::Env env, Napi::Object exports) {
  exportFunction<FindOp>(env, exports, "findOp");
  exportFunction<OpSchema>(env, exports, "opSchema");
  exportFunction<CallOp>(env, exports, "callOp");
}

}  // namespace camemberta
