// The handle table: JavaScript holds tensors and generators as small integers that index
// these tables, so a tensor crossing the boundary costs no JS object wrap and no finalizer.
// Lifetimes are decided in TypeScript (tidy, dispose); see src/tensor/lifetime.ts.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace camemberta {

// Turns any C++ exception into a JavaScript Error carrying libtorch's own message.
#define CAMEMBERTA_TRY try {
#define CAMEMBERTA_CATCH(env)                                                  \
  }                                                                            \
  catch (const Napi::Error&) {                                                 \
    throw;                                                                     \
  }                                                                            \
  catch (const c10::Error& error) {                                            \
    throw Napi::Error::New(env, error.what_without_backtrace());               \
  }                                                                            \
  catch (const std::exception& error) {                                        \
    throw Napi::Error::New(env, error.what());                                 \
  }

int32_t storeTensor(Napi::Env env, at::Tensor tensor);
const at::Tensor& tensorAt(Napi::Env env, const Napi::Value& handle);
at::Tensor takeTensor(Napi::Env env, int32_t handle);

// A tensor handle as a JS number, or -1 for an undefined tensor (no grad, say).
Napi::Value tensorHandleValue(Napi::Env env, at::Tensor tensor);

at::Generator& generatorAt(Napi::Env env, const Napi::Value& handle);

[[noreturn]] void throwType(Napi::Env env, const std::string& message);

void registerOps(Napi::Env env, Napi::Object exports);
void registerSerialization(Napi::Env env, Napi::Object exports);
void registerAllocator(Napi::Env env, Napi::Object exports);

}  // namespace camemberta
