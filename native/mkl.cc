// MKL's CPU dispatch. libtorch links Intel MKL statically (the sgemm behind fp32 matmul and
// linear on CPU), and MKL picks its fast code paths only where `mkl_serv_intel_cpu_true()` says
// the CPU is an Intel one: on an AMD CPU with AVX2 or AVX-512 it runs its generic SSE2 path.
// libtorch_cpu.so exports that function and calls it through its PLT, so the definition below,
// in an object that comes before libtorch_cpu.so in its lookup scope (this addon, which loads it),
// is the one MKL calls. It answers 1 where the CPU has the features MKL's fast paths need (AVX2
// and FMA with the OS saving the YMM state), whatever the vendor; MKL still checks the features
// itself before taking a path.
//
// CAMEMBERTA_MKL_CPU=vendor restores MKL's own rule (1 on GenuineIntel only); "features" is the
// default. mklCpuDispatch() reports the mode, what cpuid said, the answer, how many times MKL
// asked, and MKL's code path (mkl_serv_cpu_detect(): 0 is the generic path), so that a user can
// see it took effect.
#include "handles.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace camemberta {

namespace {

struct CpuFeatures {
  std::string vendor;
  bool avx2 = false;    // AVX2 + FMA + OS-saved YMM state
  bool avx512 = false;  // AVX-512F + OS-saved ZMM state
};

CpuFeatures detectCpu() {
  CpuFeatures cpu;
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return cpu;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  cpu.vendor = vendor;
  unsigned maxLeaf = eax;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return cpu;
  bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28);
  if (!osxsave || !avx || maxLeaf < 7) return cpu;
  unsigned xcrLow = 0, xcrHigh = 0;
  __asm__ volatile("xgetbv" : "=a"(xcrLow), "=d"(xcrHigh) : "c"(0));
  bool ymm = (xcrLow & 0x6) == 0x6, zmm = (xcrLow & 0xe6) == 0xe6;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  cpu.avx2 = ymm && fma && (ebx & (1u << 5));
  cpu.avx512 = cpu.avx2 && zmm && (ebx & (1u << 16));
#endif
  return cpu;
}

enum class Mode { Features, Vendor, Invalid };

Mode parseMode() {
  const char* text = std::getenv("CAMEMBERTA_MKL_CPU");
  if (text == nullptr || text[0] == '\0' || std::strcmp(text, "features") == 0) return Mode::Features;
  if (std::strcmp(text, "vendor") == 0) return Mode::Vendor;
  return Mode::Invalid;
}

struct Dispatch {
  CpuFeatures cpu;
  Mode mode;
  int answer;
};

// Decided once; MKL may ask from any thread, before or after the addon's Init (which rejects an
// invalid setting; here an invalid one falls back to MKL's own rule).
const Dispatch& dispatch() {
  static const Dispatch decided = [] {
    Dispatch d{detectCpu(), parseMode(), 0};
    bool intel = d.cpu.vendor == "GenuineIntel";
    d.answer = (intel || (d.mode == Mode::Features && d.cpu.avx2)) ? 1 : 0;
    return d;
  }();
  return decided;
}

std::atomic<uint64_t> queries{0};

// mklCpuDispatch() -> { mode, vendor, avx2, avx512, intelCpuTrue, queries, mklCodePath }.
// queries: MKL's calls of our mkl_serv_intel_cpu_true() so far (more than 0: MKL calls ours; it
// asks when libtorch starts MKL, before any matmul); mklCodePath is null where libtorch has no MKL.
Napi::Value MklCpuDispatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Dispatch& d = dispatch();
  Napi::Object result = Napi::Object::New(env);
  result.Set("mode", d.mode == Mode::Vendor ? "vendor" : "features");
  result.Set("vendor", d.cpu.vendor);
  result.Set("avx2", d.cpu.avx2);
  result.Set("avx512", d.cpu.avx512);
  result.Set("intelCpuTrue", d.answer);
  // Read before mkl_serv_cpu_detect() below asks us itself.
  result.Set("queries", static_cast<double>(queries.load()));
  // RTLD_DEFAULT from here searches this addon's scope, which holds libtorch_cpu.so.
  auto detect = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "mkl_serv_cpu_detect"));
  if (detect != nullptr) {
    result.Set("mklCodePath", detect());
  } else {
    result.Set("mklCodePath", env.Null());
  }
  return result;
}

}  // namespace

void registerMkl(Napi::Env env, Napi::Object exports) {
  if (parseMode() == Mode::Invalid) {
    throw std::invalid_argument(std::string("camemberta: CAMEMBERTA_MKL_CPU='") + std::getenv("CAMEMBERTA_MKL_CPU") +
                                "' (expected 'features' or 'vendor')");
  }
  exportFunction<MklCpuDispatch>(env, exports, "mklCpuDispatch");
}

}  // namespace camemberta

// The definition MKL calls instead of its own (see the top of this file).
extern "C" __attribute__((visibility("default"))) int mkl_serv_intel_cpu_true() {
  camemberta::queries.fetch_add(1, std::memory_order_relaxed);
  return camemberta::dispatch().answer;
}
