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

#include <cstring>

namespace camemberta {

namespace {

struct TensorSlot {
  at::Tensor tensor;
  int64_t bytes = 0;
};

std::vector<TensorSlot> tensorSlots;
std::vector<int32_t> freeTensorSlots;
int64_t liveTensors = 0;
// External memory is reported to V8 in 1 MiB steps: one adjust call per op would cost more
// than the op on small tensors. Only tensors created outside tidy() scopes are reported: the
// scopes free theirs deterministically, and reporting them made V8 run a full GC every few
// milliseconds of a training step (it answers external-memory growth with mark-compacts).
int64_t unreportedBytes = 0;
constexpr int64_t kReportStep = 1 << 20;
bool reportNewTensors = true;

std::vector<at::Generator> generatorSlots;

void reportMemory(Napi::Env env, int64_t delta) {
  unreportedBytes += delta;
  if (unreportedBytes >= kReportStep || unreportedBytes <= -kReportStep) {
    Napi::MemoryManagement::AdjustExternalMemory(env, unreportedBytes);
    unreportedBytes = 0;
  }
}

int32_t handleOf(Napi::Env env, const Napi::Value& value) {
  if (!value.IsNumber()) throwType(env, "expected a tensor");
  return value.As<Napi::Number>().Int32Value();
}

}  // namespace

void throwType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

int32_t storeTensor(Napi::Env env, at::Tensor tensor) {
  int64_t bytes = reportNewTensors && tensor.defined() ? static_cast<int64_t>(tensor.numel()) * tensor.element_size() : 0;
  int32_t handle;
  if (!freeTensorSlots.empty()) {
    handle = freeTensorSlots.back();
    freeTensorSlots.pop_back();
    tensorSlots[handle].tensor = std::move(tensor);
    tensorSlots[handle].bytes = bytes;
  } else {
    handle = static_cast<int32_t>(tensorSlots.size());
    tensorSlots.push_back({std::move(tensor), bytes});
  }
  liveTensors++;
  reportMemory(env, bytes);
  return handle;
}

const at::Tensor& tensorAt(Napi::Env env, const Napi::Value& value) {
  int32_t handle = handleOf(env, value);
  if (handle < 0 || static_cast<size_t>(handle) >= tensorSlots.size() || !tensorSlots[handle].tensor.defined()) {
    throw Napi::Error::New(env, "tensor handle " + std::to_string(handle) + " is disposed or invalid");
  }
  return tensorSlots[handle].tensor;
}

Napi::Value tensorHandleValue(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, storeTensor(env, std::move(tensor)));
}

at::Generator& generatorAt(Napi::Env env, const Napi::Value& value) {
  if (!value.IsNumber()) throwType(env, "expected a Generator");
  int32_t handle = value.As<Napi::Number>().Int32Value();
  if (handle < 0 || static_cast<size_t>(handle) >= generatorSlots.size() || !generatorSlots[handle].defined()) {
    throw Napi::Error::New(env, "generator handle " + std::to_string(handle) + " is disposed or invalid");
  }
  return generatorSlots[handle];
}

namespace {

// ---- lifetimes -------------------------------------------------------------------------

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t handle = handleOf(env, info[0]);
  if (handle < 0 || static_cast<size_t>(handle) >= tensorSlots.size() || !tensorSlots[handle].tensor.defined()) {
    return env.Undefined();  // disposing twice is harmless
  }
  reportMemory(env, -tensorSlots[handle].bytes);
  tensorSlots[handle].tensor = at::Tensor();
  tensorSlots[handle].bytes = 0;
  freeTensorSlots.push_back(handle);
  liveTensors--;
  return env.Undefined();
}

// setMemoryReporting(enabled): tidy() turns reporting off while any scope is open.
Napi::Value SetMemoryReporting(const Napi::CallbackInfo& info) {
  reportNewTensors = info[0].ToBoolean();
  return info.Env().Undefined();
}

Napi::Value LiveTensorCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(liveTensors));
}

// ---- creation from and to JS memory ----------------------------------------------------

at::ScalarType dtypeArg(Napi::Env env, const Napi::Value& value) {
  if (!value.IsNumber()) throwType(env, "expected a dtype code");
  return static_cast<at::ScalarType>(value.As<Napi::Number>().Int32Value());
}

std::vector<int64_t> shapeArg(Napi::Env env, const Napi::Value& value) {
  if (!value.IsArray()) throwType(env, "expected a shape array");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    if (!item.IsNumber()) throwType(env, "shape entries must be numbers");
    shape[i] = item.As<Napi::Number>().Int64Value();
  }
  return shape;
}

// fromBuffer(bytes: ArrayBufferView, dtype, shape, device) -> handle (a copy of the bytes)
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  if (!info[0].IsTypedArray() && !info[0].IsDataView() && !info[0].IsBuffer()) {
    throwType(env, "fromBuffer expects a TypedArray or Buffer");
  }
  auto view = info[0].As<Napi::TypedArray>();
  auto buffer = view.ArrayBuffer();
  char* data = static_cast<char*>(buffer.Data()) + view.ByteOffset();
  size_t byteLength = view.ByteLength();
  at::ScalarType dtype = dtypeArg(env, info[1]);
  std::vector<int64_t> shape = shapeArg(env, info[2]);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  size_t expected = static_cast<size_t>(numel) * c10::elementSize(dtype);
  if (expected != byteLength) {
    throw Napi::RangeError::New(env, "fromBuffer: " + std::to_string(byteLength) + " bytes given, shape needs " +
                                         std::to_string(expected));
  }
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (byteLength > 0) std::memcpy(tensor.data_ptr(), data, byteLength);
  if (info.Length() > 3 && info[3].IsString()) {
    std::string device = info[3].As<Napi::String>();
    if (device != "cpu") tensor = tensor.to(at::Device(device));
  }
  return Napi::Number::New(env, storeTensor(env, std::move(tensor)));
  CAMEMBERTA_CATCH(env)
}

// toBuffer(handle) -> ArrayBuffer holding a contiguous CPU copy of the elements
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  at::Tensor tensor = tensorAt(env, info[0]).detach().to(at::kCPU).contiguous();
  size_t bytes = static_cast<size_t>(tensor.numel()) * tensor.element_size();
  auto out = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(out.Data(), tensor.data_ptr(), bytes);
  return out;
  CAMEMBERTA_CATCH(env)
}

// ---- metadata -------------------------------------------------------------------------

Napi::Value Shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& tensor = tensorAt(env, info[0]);
  auto sizes = tensor.sizes();
  auto out = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, sizes[i]));
  return out;
}

Napi::Value Strides(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& tensor = tensorAt(env, info[0]);
  auto strides = tensor.strides();
  auto out = Napi::Array::New(env, strides.size());
  for (size_t i = 0; i < strides.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, strides[i]));
  return out;
}

Napi::Value Dtype(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(tensorAt(info.Env(), info[0]).scalar_type()));
}

Napi::Value Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), tensorAt(info.Env(), info[0]).device().str());
}

Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  at::Scalar value = tensorAt(env, info[0]).item();
  if (value.isBoolean()) return Napi::Boolean::New(env, value.toBool());
  return Napi::Number::New(env, value.toDouble());
  CAMEMBERTA_CATCH(env)
}

Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), tensorAt(info.Env(), info[0]).is_contiguous());
}

// ---- autograd -------------------------------------------------------------------------

Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), tensorAt(info.Env(), info[0]).requires_grad());
}

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  at::Tensor tensor = tensorAt(env, info[0]);
  tensor.set_requires_grad(info[1].ToBoolean());
  return env.Undefined();
  CAMEMBERTA_CATCH(env)
}

Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), tensorAt(info.Env(), info[0]).is_leaf());
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return tensorHandleValue(env, tensorAt(env, info[0]).grad());
}

// setGrad(handle, gradHandle | -1): -1 sets the gradient to None (zeroGrad with setToNone).
Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  at::Tensor tensor = tensorAt(env, info[0]);
  int32_t gradHandle = handleOf(env, info[1]);
  tensor.mutable_grad() = gradHandle < 0 ? at::Tensor() : tensorAt(env, info[1]);
  return env.Undefined();
  CAMEMBERTA_CATCH(env)
}

std::vector<at::Tensor> tensorList(Napi::Env env, const Napi::Value& value, bool allowUndefined) {
  std::vector<at::Tensor> tensors;
  if (value.IsNull() || value.IsUndefined()) return tensors;
  if (!value.IsArray()) throwType(env, "expected an array of tensors");
  auto array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    if (allowUndefined && (item.IsNull() || item.IsUndefined())) {
      tensors.emplace_back();
    } else {
      tensors.push_back(tensorAt(env, item));
    }
  }
  return tensors;
}

// backward(outputs[], grads[] | null, retainGraph, createGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  auto outputs = tensorList(env, info[0], false);
  auto grads = tensorList(env, info[1], true);
  bool retainGraph = info[2].ToBoolean();
  bool createGraph = info[3].ToBoolean();
  torch::autograd::backward(outputs, grads, retainGraph, createGraph);
  return env.Undefined();
  CAMEMBERTA_CATCH(env)
}

// grad(outputs[], inputs[], gradOutputs[] | null, retainGraph, createGraph, allowUnused) -> handles (-1 unused)
Napi::Value AutogradGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  auto outputs = tensorList(env, info[0], false);
  auto inputs = tensorList(env, info[1], false);
  auto gradOutputs = tensorList(env, info[2], true);
  bool retainGraph = info[3].ToBoolean();
  bool createGraph = info[4].ToBoolean();
  bool allowUnused = info[5].ToBoolean();
  auto grads = torch::autograd::grad(outputs, inputs, gradOutputs, retainGraph, createGraph, allowUnused);
  auto out = Napi::Array::New(env, grads.size());
  for (size_t i = 0; i < grads.size(); i++) out.Set(static_cast<uint32_t>(i), tensorHandleValue(env, grads[i]));
  return out;
  CAMEMBERTA_CATCH(env)
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
    return value.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (!value.IsNumber()) throwType(env, "a seed is a number or bigint");
  double seed = value.As<Napi::Number>().DoubleValue();
  if (seed < 0 || seed != static_cast<double>(static_cast<uint64_t>(seed))) throwType(env, "a seed is a non-negative integer");
  return static_cast<uint64_t>(seed);
}

int cudaDeviceCount() {
  const auto& hooks = at::detail::getCUDAHooks();
  return hooks.hasCUDA() ? hooks.deviceCount() : 0;
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
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
  CAMEMBERTA_CATCH(env)
}

// newGenerator(device: string, seed) -> generator handle
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  at::Device device(info[0].As<Napi::String>().Utf8Value());
  at::Generator generator = device.is_cuda() ? at::detail::getCUDAHooks().getNewGenerator(device.index())
                                             : at::make_generator<at::CPUGeneratorImpl>();
  generator.set_current_seed(seedArg(env, info[1]));
  generatorSlots.push_back(std::move(generator));
  return Napi::Number::New(env, static_cast<double>(generatorSlots.size() - 1));
  CAMEMBERTA_CATCH(env)
}

Napi::Value GeneratorSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  auto& generator = generatorAt(env, info[0]);
  if (info.Length() > 1) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seedArg(env, info[1]));
    return env.Undefined();
  }
  return Napi::BigInt::New(env, static_cast<uint64_t>(generator.current_seed()));
  CAMEMBERTA_CATCH(env)
}

// generatorState(handle) -> uint8 tensor handle; generatorState(handle, stateHandle) restores it.
// The default CPU generator is handle -1.
Napi::Value GeneratorState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  int32_t handle = handleOf(env, info[0]);
  at::Generator generator = handle < 0 ? at::detail::getDefaultCPUGenerator() : generatorAt(env, info[0]);
  std::lock_guard<std::mutex> lock(generator.mutex());
  if (info.Length() > 1) {
    generator.set_state(tensorAt(env, info[1]));
    return env.Undefined();
  }
  return tensorHandleValue(env, generator.get_state());
  CAMEMBERTA_CATCH(env)
}

Napi::Value DisposeGenerator(const Napi::CallbackInfo& info) {
  int32_t handle = info[0].As<Napi::Number>().Int32Value();
  if (handle >= 0 && static_cast<size_t>(handle) < generatorSlots.size()) generatorSlots[handle] = at::Generator();
  return info.Env().Undefined();
}

// ---- threads, CUDA, autocast ----------------------------------------------------------

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  int threads = info[0].As<Napi::Number>().Int32Value();
  if (threads < 1) throw Napi::RangeError::New(env, "setNumThreads expects a positive count");
  at::set_num_threads(threads);
  return env.Undefined();
  CAMEMBERTA_CATCH(env)
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cudaDeviceCount());
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  int index = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  int count = cudaDeviceCount();
  for (int device = 0; device < count; device++) {
    if (index < 0 || index == device) at::detail::getCUDAHooks().deviceSynchronize(device);
  }
  return env.Undefined();
  CAMEMBERTA_CATCH(env)
}

at::DeviceType deviceTypeArg(Napi::Env env, const Napi::Value& value) {
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

// autocastEnter(device, enabled, dtype): nesting is counted so the cast cache is cleared
// when the outermost region exits, as torch.autocast does.
Napi::Value AutocastEnter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType type = deviceTypeArg(env, info[0]);
  at::autocast::set_autocast_enabled(type, info[1].ToBoolean());
  at::autocast::set_autocast_dtype(type, dtypeArg(env, info[2]));
  at::autocast::increment_nesting();
  return env.Undefined();
}

Napi::Value AutocastExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType type = deviceTypeArg(env, info[0]);
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type, info[1].ToBoolean());
  at::autocast::set_autocast_dtype(type, dtypeArg(env, info[2]));
  return env.Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto set = [&](const char* name, Napi::Function::Callback fn) { exports.Set(name, Napi::Function::New(env, fn, name)); };
  set("dispose", Dispose);
  set("liveTensorCount", LiveTensorCount);
  set("setMemoryReporting", SetMemoryReporting);
  set("fromBuffer", FromBuffer);
  set("toBuffer", ToBuffer);
  set("shape", Shape);
  set("strides", Strides);
  set("dtype", Dtype);
  set("device", Device);
  set("item", Item);
  set("isContiguous", IsContiguous);
  set("requiresGrad", RequiresGrad);
  set("setRequiresGrad", SetRequiresGrad);
  set("isLeaf", IsLeaf);
  set("grad", Grad);
  set("setGrad", SetGrad);
  set("backward", Backward);
  set("autogradGrad", AutogradGrad);
  set("isGradEnabled", IsGradEnabled);
  set("setGradEnabled", SetGradEnabled);
  set("manualSeed", ManualSeed);
  set("newGenerator", NewGenerator);
  set("generatorSeed", GeneratorSeed);
  set("generatorState", GeneratorState);
  set("disposeGenerator", DisposeGenerator);
  set("setNumThreads", SetNumThreads);
  set("getNumThreads", GetNumThreads);
  set("deviceCount", DeviceCount);
  set("synchronize", Synchronize);
  set("autocastState", AutocastState);
  set("autocastEnter", AutocastEnter);
  set("autocastExit", AutocastExit);
#ifdef CAMEMBERTA_CUDA
  exports.Set("builtWithCuda", Napi::Boolean::New(env, true));
#else
  exports.Set("builtWithCuda", Napi::Boolean::New(env, false));
#endif
  exports.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
  registerOps(env, exports);
  registerSerialization(env, exports);
  registerAllocator(env, exports);
  return exports;
}

}  // namespace camemberta

static Napi::Object InitCamemberta(Napi::Env env, Napi::Object exports) { return camemberta::Init(env, exports); }

NODE_API_MODULE(camemberta, InitCamemberta)
