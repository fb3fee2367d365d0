// The handle tables: JavaScript holds tensors and generators as numbers that index these tables,
// so a tensor crossing the boundary costs no JS object wrap and no finalizer. Lifetimes are
// decided in TypeScript (tidy, dispose); see src/tensor/lifetime.ts.
//
// Every table lives in one AddonState per Node-API environment (the main thread and each worker
// thread that loads the addon), attached with SetInstanceData: threads never share a table, a
// worker's tensors are freed when the worker ends, and no lock is needed on the per-op path.
// Only the JS thread of an environment touches its state; code that libtorch may run on its own
// threads (autograd engine threads, the CPU allocator's deleter) never does.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace camemberta {

// A tensor handle is generation * 2^kSlotBits + slot index. Disposing a handle bumps its slot's
// generation, so a stale number never names the newer tensor that reuses the slot; a slot whose
// generation would overflow is retired instead of reused. Handles stay below 2^53 (exact doubles).
constexpr int kSlotBits = 24;
constexpr int64_t kSlotMask = (int64_t{1} << kSlotBits) - 1;
constexpr uint32_t kMaxGeneration = (uint32_t{1} << 29) - 1;

struct TensorSlot {
  at::Tensor tensor;
  // Bytes reported to V8 as external memory for this tensor (0 while it lives in a tidy scope).
  int64_t reportedBytes = 0;
  uint32_t generation = 0;
};

struct OpEntry {
  c10::OperatorHandle handle;
  std::string name;
  // Every return is an input written in place (add_, _foreach_mul_): JS returns `this`.
  bool returnsWrittenInput;
  // The op may change the sizes, strides or dtype of a tensor it writes (resize_, squeeze_, t_,
  // an out= argument): running it bumps the metadata epoch so cached shapes in JS are refreshed.
  bool changesMetadata;
};

struct AddonState {
  std::vector<TensorSlot> tensorSlots;
  // CAMEMBERTA_MAX_LIVE_TENSORS, at most 2^kSlotBits: a program that leaks handles fails with an
  // error naming liveTensorCount() instead of exhausting memory.
  int64_t maxLiveTensors = kSlotMask + 1;
  std::vector<uint32_t> freeTensorSlots;
  int64_t liveTensors = 0;
  // External memory is reported to V8 in 1 MiB steps: one adjust call per op would cost more
  // than the op on small tensors.
  int64_t unreportedBytes = 0;
  // Off while a tidy() scope is open: scoped tensors are freed deterministically, and reporting
  // them made V8 run a full GC every few milliseconds of a training step. A scoped tensor's bytes
  // are reported when it leaves the last scope (reportTensorMemory).
  bool reportNewTensors = true;
  std::vector<at::Generator> generatorSlots;
  std::vector<OpEntry> ops;
  // One counter JS reads without a call (a Uint32Array over this memory): bumped by every op that
  // may change a tensor's metadata in place.
  uint32_t* metadataEpoch = nullptr;
  Napi::Reference<Napi::ArrayBuffer> metadataEpochBuffer;
};

AddonState& stateOf(Napi::Env env);

int32_t storeTensorSlot(AddonState& state, at::Tensor tensor);
double storeTensor(Napi::Env env, AddonState& state, at::Tensor tensor);
const at::Tensor& tensorAt(Napi::Env env, AddonState& state, const Napi::Value& handle);
// The tensor of a live handle, or nullptr.
TensorSlot* liveSlot(AddonState& state, const Napi::Value& value);
void releaseTensor(Napi::Env env, AddonState& state, int64_t handle);

// A tensor handle as a JS number, or -1 for an undefined tensor (no grad, say).
Napi::Value tensorHandleValue(Napi::Env env, AddonState& state, at::Tensor tensor);

// Handles stored while building one return value: released again if a later step throws, so a
// failed conversion never leaves tensors in the table that JavaScript cannot name.
class PendingHandles {
 public:
  PendingHandles(Napi::Env env, AddonState& state) : env_(env), state_(state) {}
  PendingHandles(const PendingHandles&) = delete;
  PendingHandles& operator=(const PendingHandles&) = delete;
  ~PendingHandles();
  Napi::Value store(at::Tensor tensor);
  void commit() { handles_.clear(); }

 private:
  Napi::Env env_;
  AddonState& state_;
  std::vector<int64_t> handles_;
};

at::Generator& generatorAt(Napi::Env env, AddonState& state, const Napi::Value& handle);

// An environment variable holding a count; throws an error naming the variable when it is not one.
uint64_t parseCount(const char* variable, const char* text, uint64_t minimum);

[[noreturn]] void throwType(Napi::Env env, const std::string& message);

// Every exported function goes through guarded<>: any C++ exception (c10::Error, std::bad_alloc,
// std::out_of_range...) becomes a JavaScript Error instead of reaching std::terminate.
Napi::Value convertCurrentException(Napi::Env env);

template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return Fn(info);
  } catch (...) {
    return convertCurrentException(info.Env());
  }
}

template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
void exportFunction(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, guarded<Fn>, name));
}

void registerOps(Napi::Env env, Napi::Object exports);
void registerSerialization(Napi::Env env, Napi::Object exports);
void registerAllocator(Napi::Env env, Napi::Object exports);
void registerMkl(Napi::Env env, Napi::Object exports);
void registerDist(Napi::Env env, Napi::Object exports);
void registerProfiler(Napi::Env env, Napi::Object exports);

}  // namespace camemberta
