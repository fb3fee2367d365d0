// Module entry: the handle tables, tensor creation from and to JS memory, tensor metadata,
// autograd, and process-wide runtime settings (seeds, threads, autocast, CUDA queries).
// Every ATen op itself goes through the generic dispatcher call in ops.cc.
#include "handles.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace camemberta {

namespace {

constexpr int64_t kReportStep = 1 << 20;

void reportMemory(Napi::Env env, AddonState& state, int64_t delta) {
  state.unreportedBytes += delta;
  if (state.unreportedBytes >= kReportStep || state.unreportedBytes <= -kReportStep) {
    Napi::MemoryManagement::AdjustExternalMemory(env, state.unreportedBytes);
    state.unreportedBytes = 0;
  }
}

int64_t tensorBytes(const at::Tensor& tensor) {
  return tensor.defined() ? static_cast<int64_t>(tensor.numel()) * static_cast<int64_t>(tensor.element_size()) : 0;
}

// The handle number of a JS value, or -1 when it is not a non-negative integer below 2^53.
int64_t handleNumber(const Napi::Value& value) {
  if (!value.IsNumber()) return -1;
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number < 9007199254740992.0) || number != std::floor(number)) return -1;
  return static_cast<int64_t>(number);
}

std::string handleText(const Napi::Value& value) {
  if (!value.IsNumber()) return "(not a number)";
  double number = value.As<Napi::Number>().DoubleValue();
  int64_t integer = handleNumber(value);
  return integer >= 0 ? std::to_string(integer) : std::to_string(number);
}

}  // namespace

AddonState& stateOf(Napi::Env env) {
  AddonState* state = env.GetInstanceData<AddonState>();
  if (state == nullptr) throw Napi::Error::New(env, "camemberta: the addon is not initialised in this thread");
  return *state;
}

void throwType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

Napi::Value convertCurrentException(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;  // node-addon-api's callback wrapper throws it into JavaScript
  } catch (const c10::Error& error) {
    throw Napi::Error::New(env, error.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw Napi::RangeError::New(env, "camemberta: out of memory (std::bad_alloc)");
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, error.what());
  } catch (...) {
    throw Napi::Error::New(env, "camemberta: unknown native exception");
  }
}

int32_t storeTensorSlot(AddonState& state, at::Tensor tensor) {
  int64_t bytes = state.reportNewTensors ? tensorBytes(tensor) : 0;
  if (state.liveTensors >= state.maxLiveTensors) {
    TORCH_CHECK(false, "camemberta: ", state.liveTensors, " live tensors, the most this process allows (",
                "CAMEMBERTA_MAX_LIVE_TENSORS or 2^24): tensors are leaking? see liveTensorCount()");
  }
  uint32_t index;
  if (!state.freeTensorSlots.empty()) {
    index = state.freeTensorSlots.back();
    state.freeTensorSlots.pop_back();
  } else {
    TORCH_CHECK(state.tensorSlots.size() <= static_cast<size_t>(kSlotMask), "camemberta: the tensor handle table is full");
    index = static_cast<uint32_t>(state.tensorSlots.size());
    state.tensorSlots.emplace_back();
  }
  TensorSlot& slot = state.tensorSlots[index];
  slot.tensor = std::move(tensor);
  slot.reportedBytes = bytes;
  state.liveTensors++;
  return static_cast<int32_t>(index);
}

double storeTensor(Napi::Env env, AddonState& state, at::Tensor tensor) {
  int32_t index = storeTensorSlot(state, std::move(tensor));
  const TensorSlot& slot = state.tensorSlots[index];
  if (slot.reportedBytes != 0) reportMemory(env, state, slot.reportedBytes);
  return static_cast<double>((static_cast<int64_t>(slot.generation) << kSlotBits) | index);
}

TensorSlot* liveSlot(AddonState& state, const Napi::Value& value) {
  int64_t handle = handleNumber(value);
  if (handle < 0) return nullptr;
  size_t index = static_cast<size_t>(handle & kSlotMask);
  if (index >= state.tensorSlots.size()) return nullptr;
  TensorSlot& slot = state.tensorSlots[index];
  if (slot.generation != static_cast<uint64_t>(handle >> kSlotBits) || !slot.tensor.defined()) return nullptr;
  return &slot;
}

const at::Tensor& tensorAt(Napi::Env env, AddonState& state, const Napi::Value& value) {
  TensorSlot* slot = liveSlot(state, value);
  if (slot == nullptr) {
    if (!value.IsNumber()) throwType(env, "expected a tensor");
    throw Napi::Error::New(env, "tensor handle " + handleText(value) + " is disposed or invalid");
  }
  return slot->tensor;
}

void releaseTensor(Napi::Env env, AddonState& state, int64_t handle) {
  size_t index = static_cast<size_t>(handle & kSlotMask);
  if (handle < 0 || index >= state.tensorSlots.size()) return;
  TensorSlot& slot = state.tensorSlots[index];
  if (slot.generation != static_cast<uint64_t>(handle >> kSlotBits) || !slot.tensor.defined()) return;
  if (slot.reportedBytes != 0) reportMemory(env, state, -slot.reportedBytes);
  slot.tensor = at::Tensor();
  slot.reportedBytes = 0;
  state.liveTensors--;
  if (slot.generation < kMaxGeneration) {
    slot.generation++;
    state.freeTensorSlots.push_back(static_cast<uint32_t>(index));
  }
}

Napi::Value tensorHandleValue(Napi::Env env, AddonState& state, at::Tensor tensor) {
  if (!tensor.defined()) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, storeTensor(env, state, std::move(tensor)));
}

PendingHandles::~PendingHandles() {
  for (int64_t handle : handles_) releaseTensor(env_, state_, handle);
}

Napi::Value PendingHandles::store(at::Tensor tensor) {
  if (!tensor.defined()) return Napi::Number::New(env_, -1);
  double handle = storeTensor(env_, state_, std::move(tensor));
  handles_.push_back(static_cast<int64_t>(handle));
  return Napi::Number::New(env_, handle);
}

at::Generator& generatorAt(Napi::Env env, AddonState& state, const Napi::Value& value) {
  if (!value.IsNumber()) throwType(env, "expected a Generator");
  int64_t handle = handleNumber(value);
  if (handle < 0 || static_cast<size_t>(handle) >= state.generatorSlots.size() || !state.generatorSlots[handle].defined()) {
    throw Napi::Error::New(env, "generator handle " + handleText(value) + " is disposed or invalid");
  }
  return state.generatorSlots[handle];
}

namespace {

// ---- lifetimes -------------------------------------------------------------------------

// dispose(handle): disposing twice, or a stale handle, is harmless (generations keep it from
// freeing a newer tensor in the same slot).
Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  int64_t handle = handleNumber(info[0]);
  if (handle < 0 && !info[0].IsNumber()) throwType(env, "dispose expects a tensor handle");
  releaseTensor(env, state, handle);
  return env.Undefined();
}

// setMemoryReporting(enabled): tidy() turns reporting off while any scope is open.
Napi::Value SetMemoryReporting(const Napi::CallbackInfo& info) {
  stateOf(info.Env()).reportNewTensors = info[0].ToBoolean();
  return info.Env().Undefined();
}

// reportTensorMemory(handle): the tensor left the last tidy() scope (returned from the outermost
// one, or kept): from now on only the garbage collector's safety net may free it if it is
// dropped, so V8 must know its size.
Napi::Value ReportTensorMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  TensorSlot* slot = liveSlot(state, info[0]);
  if (slot != nullptr && slot->reportedBytes == 0) {
    slot->reportedBytes = tensorBytes(slot->tensor);
    reportMemory(env, state, slot->reportedBytes);
  }
  return env.Undefined();
}

Napi::Value LiveTensorCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(stateOf(info.Env()).liveTensors));
}

// ---- creation from and to JS memory ----------------------------------------------------

at::ScalarType dtypeArg(Napi::Env env, const Napi::Value& value) {
  if (!value.IsNumber()) throwType(env, "expected a dtype code");
  double code = value.As<Napi::Number>().DoubleValue();
  if (!(code >= 0 && code < static_cast<double>(at::ScalarType::NumOptions)) || code != std::floor(code)) {
    throw Napi::RangeError::New(env, "invalid dtype code " + std::to_string(code));
  }
  auto dtype = static_cast<at::ScalarType>(static_cast<int>(code));
  if (dtype == at::ScalarType::Undefined) throw Napi::RangeError::New(env, "invalid dtype code " + std::to_string(code));
  return dtype;
}

std::vector<int64_t> shapeArg(Napi::Env env, const Napi::Value& value) {
  if (!value.IsArray()) throwType(env, "expected a shape array");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    if (!item.IsNumber()) throwType(env, "shape entries must be numbers");
    double size = item.As<Napi::Number>().DoubleValue();
    if (!(size >= 0 && size < 9007199254740992.0) || size != std::floor(size)) {
      throw Napi::RangeError::New(env, "shape entries must be non-negative integers, got " + std::to_string(size));
    }
    shape[i] = static_cast<int64_t>(size);
  }
  return shape;
}

// fromBuffer(bytes: ArrayBufferView, dtype, shape, device) -> handle (a copy of the bytes)
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  char* data;
  size_t byteLength;
  if (info[0].IsTypedArray()) {
    auto view = info[0].As<Napi::TypedArray>();
    data = static_cast<char*>(view.ArrayBuffer().Data()) + view.ByteOffset();
    byteLength = view.ByteLength();
  } else if (info[0].IsDataView()) {
    auto view = info[0].As<Napi::DataView>();
    data = static_cast<char*>(view.ArrayBuffer().Data()) + view.ByteOffset();
    byteLength = view.ByteLength();
  } else {
    throwType(env, "fromBuffer expects a TypedArray, DataView or Buffer");
  }
  at::ScalarType dtype = dtypeArg(env, info[1]);
  std::vector<int64_t> shape = shapeArg(env, info[2]);
  uint64_t expected = c10::elementSize(dtype);
  for (int64_t size : shape) {
    if (size != 0 && expected > UINT64_MAX / static_cast<uint64_t>(size)) {
      throw Napi::RangeError::New(env, "fromBuffer: the shape's byte size overflows");
    }
    expected *= static_cast<uint64_t>(size);
  }
  if (expected != byteLength) {
    throw Napi::RangeError::New(env, "fromBuffer: " + std::to_string(byteLength) + " bytes given, shape needs " +
                                         std::to_string(expected));
  }
  std::string device = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "cpu";
  at::Device target(device);  // parsed first: a bad device string must not cost a copy
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (byteLength > 0) std::memcpy(tensor.data_ptr(), data, byteLength);
  if (!target.is_cpu()) tensor = tensor.to(target);
  return Napi::Number::New(env, storeTensor(env, state, std::move(tensor)));
}

// toBuffer(handle) -> ArrayBuffer holding a contiguous CPU copy of the elements
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor tensor = tensorAt(env, stateOf(env), info[0]).detach().to(at::kCPU).contiguous();
  size_t bytes = static_cast<size_t>(tensor.numel()) * tensor.element_size();
  auto out = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(out.Data(), tensor.data_ptr(), bytes);
  return out;
}

// ---- metadata -------------------------------------------------------------------------

Napi::Value intArray(Napi::Env env, c10::IntArrayRef values) {
  auto out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(values[i])));
  return out;
}

Napi::Value Shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return intArray(env, tensorAt(env, stateOf(env), info[0]).sizes());
}

Napi::Value Strides(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return intArray(env, tensorAt(env, stateOf(env), info[0]).strides());
}

Napi::Value Dtype(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Number::New(env, static_cast<int>(tensorAt(env, stateOf(env), info[0]).scalar_type()));
}

Napi::Value Device(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::String::New(env, tensorAt(env, stateOf(env), info[0]).device().str());
}

Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Scalar value = tensorAt(env, stateOf(env), info[0]).item();
  if (value.isBoolean()) return Napi::Boolean::New(env, value.toBool());
  return Napi::Number::New(env, value.toDouble());
}

Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Boolean::New(env, tensorAt(env, stateOf(env), info[0]).is_contiguous());
}

// ---- autograd -------------------------------------------------------------------------

Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Boolean::New(env, tensorAt(env, stateOf(env), info[0]).requires_grad());
}

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor tensor = tensorAt(env, stateOf(env), info[0]);
  tensor.set_requires_grad(info[1].ToBoolean());
  return env.Undefined();
}

Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Boolean::New(env, tensorAt(env, stateOf(env), info[0]).is_leaf());
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  return tensorHandleValue(env, state, tensorAt(env, state, info[0]).grad());
}

std::string describeTensor(const at::Tensor& tensor) {
  std::ostringstream text;
  text << tensor.sizes() << " " << c10::toString(tensor.scalar_type()) << " on " << tensor.device();
  return text.str();
}

// setGrad(handle, gradHandle | -1): -1 sets the gradient to None (zeroGrad with setToNone).
// Checked as PyTorch's `tensor.grad = g` setter checks it: a gradient of another shape, dtype or
// device would be read out of bounds or misread by the optimizer kernels.
Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  at::Tensor tensor = tensorAt(env, state, info[0]);
  if (info[1].IsNumber() && info[1].As<Napi::Number>().DoubleValue() == -1) {
    tensor.mutable_grad() = at::Tensor();
    return env.Undefined();
  }
  const at::Tensor& grad = tensorAt(env, state, info[1]);
  if (grad.is_same(tensor)) throw Napi::Error::New(env, "can't assign a tensor as its own grad");
  std::string both = " (grad: " + describeTensor(grad) + "; tensor: " + describeTensor(tensor) + ")";
  if (grad.scalar_type() != tensor.scalar_type() || grad.layout() != tensor.layout()) {
    throwType(env, "assigned grad has data of a different type" + both);
  }
  if (grad.device() != tensor.device()) throw Napi::Error::New(env, "assigned grad has data located on a different device" + both);
  if (grad.sizes() != tensor.sizes()) throw Napi::Error::New(env, "assigned grad has data of a different size" + both);
  tensor.mutable_grad() = grad;
  return env.Undefined();
}

std::vector<at::Tensor> tensorList(Napi::Env env, AddonState& state, const Napi::Value& value, bool allowUndefined) {
  std::vector<at::Tensor> tensors;
  if (value.IsNull() || value.IsUndefined()) return tensors;
  if (!value.IsArray()) throwType(env, "expected an array of tensors");
  auto array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    if (allowUndefined && (item.IsNull() || item.IsUndefined())) {
      tensors.emplace_back();
    } else {
      tensors.push_back(tensorAt(env, state, item));
    }
  }
  return tensors;
}

// backward(outputs[], grads[] | null, retainGraph, createGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  auto outputs = tensorList(env, state, info[0], false);
  auto grads = tensorList(env, state, info[1], true);
  bool retainGraph = info[2].ToBoolean();
  bool createGraph = info[3].ToBoolean();
  torch::autograd::backward(outputs, grads, retainGraph, createGraph);
  return env.Undefined();
}

// grad(outputs[], inputs[], gradOutputs[] | null, retainGraph, createGraph, allowUnused) -> handles (-1 unused)
Napi::Value AutogradGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  auto outputs = tensorList(env, state, info[0], false);
  auto inputs = tensorList(env, state, info[1], false);
  auto gradOutputs = tensorList(env, state, info[2], true);
  bool retainGraph = info[3].ToBoolean();
  bool createGraph = info[4].ToBoolean();
  bool allowUnused = info[5].ToBoolean();
  auto grads = torch::autograd::grad(outputs, inputs, gradOutputs, retainGraph, createGraph, allowUnused);
  PendingHandles pending(env, state);
  auto out = Napi::Array::New(env, grads.size());
  for (size_t i = 0; i < grads.size(); i++) out.Set(static_cast<uint32_t>(i), pending.store(grads[i]));
  pending.commit();
  return out;
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  c10::GradMode::set_enabled(info[0].ToBoolean());
  return info.Env().Undefined();
}

// ---- random numbers -------------------------------------------------------------------

uint64_t seedArg(Napi::Env env, const Napi::Value& value) {
  if (value.IsBigInt()) {
    bool lossless;
    uint64_t seed = value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(env, "a seed is an integer in [0, 2^64)");
    return seed;
  }
  if (!value.IsNumber()) throwType(env, "a seed is a number or bigint");
  double seed = value.As<Napi::Number>().DoubleValue();
  if (!(seed >= 0 && seed < 18446744073709551616.0) || seed != std::floor(seed)) throwType(env, "a seed is a non-negative integer");
  return static_cast<uint64_t>(seed);
}

int cudaDeviceCount() {
  const auto& hooks = at::detail::getCUDAHooks();
  return hooks.hasCUDA() ? hooks.deviceCount() : 0;
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed = seedArg(env, info[0]);
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seed);
  }
  for (int device = 0; device < cudaDeviceCount(); device++) {
    auto generator = at::detail::getCUDAHooks().getDefaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seed);
  }
  return env.Undefined();
}

// newGenerator(device: string, seed) -> generator handle
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  if (!info[0].IsString()) throwType(env, "newGenerator expects a device string");
  at::Device device(info[0].As<Napi::String>().Utf8Value());
  uint64_t seed = seedArg(env, info[1]);
  at::Generator generator = device.is_cuda() ? at::detail::getCUDAHooks().getNewGenerator(device.index())
                                             : at::make_generator<at::CPUGeneratorImpl>();
  generator.set_current_seed(seed);
  state.generatorSlots.push_back(std::move(generator));
  return Napi::Number::New(env, static_cast<double>(state.generatorSlots.size() - 1));
}

Napi::Value GeneratorSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& generator = generatorAt(env, stateOf(env), info[0]);
  if (info.Length() > 1) {
    uint64_t seed = seedArg(env, info[1]);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seed);
    return env.Undefined();
  }
  return Napi::BigInt::New(env, static_cast<uint64_t>(generator.current_seed()));
}

// generatorState(handle) -> uint8 tensor handle; generatorState(handle, stateHandle) restores it.
// The default CPU generator is handle -1.
Napi::Value GeneratorState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  bool isDefault = info[0].IsNumber() && info[0].As<Napi::Number>().DoubleValue() == -1;
  at::Generator generator = isDefault ? at::detail::getDefaultCPUGenerator() : generatorAt(env, state, info[0]);
  if (info.Length() > 1) {
    const at::Tensor& saved = tensorAt(env, state, info[1]);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(saved);
    return env.Undefined();
  }
  at::Tensor saved;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    saved = generator.get_state();
  }
  return tensorHandleValue(env, state, std::move(saved));
}

Napi::Value DisposeGenerator(const Napi::CallbackInfo& info) {
  AddonState& state = stateOf(info.Env());
  int64_t handle = handleNumber(info[0]);
  if (handle >= 0 && static_cast<size_t>(handle) < state.generatorSlots.size()) state.generatorSlots[handle] = at::Generator();
  return info.Env().Undefined();
}

// ---- threads, CUDA, autocast ----------------------------------------------------------

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double threads = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  // The upper bound keeps a typo (or 1e9) from asking OpenMP for millions of threads.
  if (!(threads >= 1 && threads <= 4096) || threads != std::floor(threads)) {
    throw Napi::RangeError::New(env, "setNumThreads expects an integer count in [1, 4096]");
  }
  at::set_num_threads(static_cast<int>(threads));
  return env.Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cudaDeviceCount());
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int index = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  int count = cudaDeviceCount();
  for (int device = 0; device < count; device++) {
    if (index < 0 || index == device) at::detail::getCUDAHooks().deviceSynchronize(device);
  }
  return env.Undefined();
}

at::DeviceType deviceTypeArg(Napi::Env env, const Napi::Value& value) {
  if (!value.IsString()) throwType(env, "autocast device must be 'cpu' or 'cuda'");
  std::string name = value.As<Napi::String>();
  if (name == "cpu") return at::kCPU;
  if (name == "cuda") return at::kCUDA;
  throwType(env, "autocast device must be 'cpu' or 'cuda', got '" + name + "'");
}

// autocastState(device) -> [enabled, dtype code]
Napi::Value AutocastState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType type = deviceTypeArg(env, info[0]);
  auto out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Boolean::New(env, at::autocast::is_autocast_enabled(type)));
  out.Set(1u, Napi::Number::New(env, static_cast<int>(at::autocast::get_autocast_dtype(type))));
  return out;
}

at::ScalarType autocastDtypeArg(Napi::Env env, const Napi::Value& value) {
  at::ScalarType dtype = dtypeArg(env, value);
  if (!at::isFloatingType(dtype)) {
    throwType(env, std::string("autocast dtype must be a floating type, got ") + c10::toString(dtype));
  }
  return dtype;
}

// autocastEnter(device, enabled, dtype): nesting is counted so the cast cache is cleared
// when the outermost region exits, as torch.autocast does. Arguments are checked before any
// state changes, so a failed call leaves autocast as it was.
Napi::Value AutocastEnter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType type = deviceTypeArg(env, info[0]);
  at::ScalarType dtype = autocastDtypeArg(env, info[2]);
  at::autocast::set_autocast_enabled(type, info[1].ToBoolean());
  at::autocast::set_autocast_dtype(type, dtype);
  at::autocast::increment_nesting();
  return env.Undefined();
}

Napi::Value AutocastExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType type = deviceTypeArg(env, info[0]);
  at::ScalarType dtype = autocastDtypeArg(env, info[2]);
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type, info[1].ToBoolean());
  at::autocast::set_autocast_dtype(type, dtype);
  return env.Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* state = new AddonState();
  env.SetInstanceData(state);  // deleted, with every tensor it still holds, when this environment ends
  if (const char* maxLive = std::getenv("CAMEMBERTA_MAX_LIVE_TENSORS")) {
    state->maxLiveTensors = static_cast<int64_t>(std::min<uint64_t>(parseCount("CAMEMBERTA_MAX_LIVE_TENSORS", maxLive, 1), kSlotMask + 1));
  }
  auto epoch = Napi::ArrayBuffer::New(env, sizeof(uint32_t));
  state->metadataEpoch = static_cast<uint32_t*>(epoch.Data());
  *state->metadataEpoch = 0;
  state->metadataEpochBuffer = Napi::Persistent(epoch);
  exports.Set("metadataEpoch", Napi::Uint32Array::New(env, 1, epoch, 0));

  exportFunction<Dispose>(env, exports, "dispose");
  exportFunction<LiveTensorCount>(env, exports, "liveTensorCount");
  exportFunction<SetMemoryReporting>(env, exports, "setMemoryReporting");
  exportFunction<ReportTensorMemory>(env, exports, "reportTensorMemory");
  exportFunction<FromBuffer>(env, exports, "fromBuffer");
  exportFunction<ToBuffer>(env, exports, "toBuffer");
  exportFunction<Shape>(env, exports, "shape");
  exportFunction<Strides>(env, exports, "strides");
  exportFunction<Dtype>(env, exports, "dtype");
  exportFunction<Device>(env, exports, "device");
  exportFunction<Item>(env, exports, "item");
  exportFunction<IsContiguous>(env, exports, "isContiguous");
  exportFunction<RequiresGrad>(env, exports, "requiresGrad");
  exportFunction<SetRequiresGrad>(env, exports, "setRequiresGrad");
  exportFunction<IsLeaf>(env, exports, "isLeaf");
  exportFunction<Grad>(env, exports, "grad");
  exportFunction<SetGrad>(env, exports, "setGrad");
  exportFunction<Backward>(env, exports, "backward");
  exportFunction<AutogradGrad>(env, exports, "autogradGrad");
  exportFunction<IsGradEnabled>(env, exports, "isGradEnabled");
  exportFunction<SetGradEnabled>(env, exports, "setGradEnabled");
  exportFunction<ManualSeed>(env, exports, "manualSeed");
  exportFunction<NewGenerator>(env, exports, "newGenerator");
  exportFunction<GeneratorSeed>(env, exports, "generatorSeed");
  exportFunction<GeneratorState>(env, exports, "generatorState");
  exportFunction<DisposeGenerator>(env, exports, "disposeGenerator");
  exportFunction<SetNumThreads>(env, exports, "setNumThreads");
  exportFunction<GetNumThreads>(env, exports, "getNumThreads");
  exportFunction<DeviceCount>(env, exports, "deviceCount");
  exportFunction<Synchronize>(env, exports, "synchronize");
  exportFunction<AutocastState>(env, exports, "autocastState");
  exportFunction<AutocastEnter>(env, exports, "autocastEnter");
  exportFunction<AutocastExit>(env, exports, "autocastExit");
#ifdef CAMEMBERTA_CUDA
  exports.Set("builtWithCuda", Napi::Boolean::New(env, true));
#else
  exports.Set("builtWithCuda", Napi::Boolean::New(env, false));
#endif
  exports.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  registerOps(env, exports);
  registerSerialization(env, exports);
  registerAllocator(env, exports);
  registerMkl(env, exports);
  registerDist(env, exports);
  registerProfiler(env, exports);
  return exports;
}

}  // namespace camemberta

// Init itself runs under the same conversion as every export: a failure (an invalid allocator
// setting, say) makes require() throw an Error naming it instead of aborting the process.
static Napi::Object InitCamemberta(Napi::Env env, Napi::Object exports) {
  try {
    return camemberta::Init(env, exports);
  } catch (...) {
    camemberta::convertCurrentException(env);
    return exports;
  }
}

NODE_API_MODULE(camemberta, InitCamemberta)
