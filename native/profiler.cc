// The operator profiler behind train.js --profile: libtorch's Kineto-based profiler (the one
// torch.profiler drives), started and stopped on the calling thread, its events handed to
// JavaScript as columns. Mechanical on purpose: nesting, self times and the per-operator table are
// computed in TypeScript (src/pretrain/profile.ts).
//
// The profiler is thread-local (not Kineto's on-demand global mode): it records the ATen ops of
// the JS thread that started it, and of the threads libtorch hands that thread's state to (the
// autograd engine's device threads on CUDA). Other processes and Node environments are unaffected.
#include "handles.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <dlfcn.h>

#include <atomic>
#include <memory>
#include <set>
#include <unordered_map>

namespace camemberta {

namespace {

using torch::autograd::profiler::ActivityType;
using torch::autograd::profiler::ProfilerConfig;
using torch::autograd::profiler::ProfilerState;

std::set<ActivityType> activitiesOf(bool cuda) {
  std::set<ActivityType> activities{ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  return activities;
}

// Kineto prints a line to stderr at each start and stop ("USDT: ... profiler_start") at a severity
// above the ERROR level libtorch leaves it at. Its threshold is an exported variable of
// libtorch_cpu, found at run time (a libtorch without it just keeps the lines); it is raised only
// for the duration of the start and stop calls.
std::atomic_int* kinetoLogThreshold() {
  static std::atomic_int* threshold = [] {
    void* library = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (library == nullptr) return static_cast<std::atomic_int*>(nullptr);
    auto* found = static_cast<std::atomic_int*>(dlsym(library, "_ZN9libkineto6Logger14severityLevel_E"));
    dlclose(library);
    return found;
  }();
  return threshold;
}

class QuietKineto {
 public:
  QuietKineto() : threshold_(kinetoLogThreshold()) {
    if (threshold_ != nullptr) saved_ = threshold_->exchange(kQuiet);
  }
  ~QuietKineto() {
    if (threshold_ != nullptr) threshold_->store(saved_);
  }
  QuietKineto(const QuietKineto&) = delete;
  QuietKineto& operator=(const QuietKineto&) = delete;

 private:
  static constexpr int kQuiet = 6;  // libkineto's LoggerOutputType::ENUM_COUNT: above USDT (5)
  std::atomic_int* threshold_;
  int saved_ = 0;
};

ProfilerConfig configOf() {
  // No shapes, stacks, memory or FLOPs: each costs per-op time and is not part of the table.
  return ProfilerConfig(ProfilerState::KINETO);
}

// profilerStart(cuda: boolean): records CPU ops, and with cuda the device kernels and runtime
// calls (CUPTI). Throws when a profiler is already running on this thread.
Napi::Value ProfilerStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool cuda = info.Length() > 0 && info[0].ToBoolean();
  if (torch::profiler::impl::profilerEnabled()) throw Napi::Error::New(env, "profilerStart: a profiler is already running on this thread");
  auto activities = activitiesOf(cuda);
  torch::autograd::profiler::prepareProfiler(configOf(), activities);
  QuietKineto quiet;
  torch::autograd::profiler::enableProfiler(configOf(), activities);
  return env.Undefined();
}

Napi::Value ProfilerActive(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), torch::profiler::impl::profilerEnabled());
}

// profilerStop(keep: boolean) -> events as columns, or undefined when keep is false or none ran:
//   { names: string[], name: Int32Array (index into names), thread, start, end (ns from the
//     first event), correlation, linked (the correlation id of the CPU op a kernel or runtime call
//     belongs to; 0 for none): Float64Array, device (c10::DeviceType), activity (libkineto's
//     ActivityType), async: Uint8Array }
Napi::Value ProfilerStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool keep = info.Length() == 0 || info[0].ToBoolean();
  if (!torch::profiler::impl::profilerEnabled()) return env.Undefined();
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result;
  {
    QuietKineto quiet;
    result = torch::autograd::profiler::disableProfiler();
  }
  if (!keep || !result) return env.Undefined();

  std::vector<const torch::autograd::profiler::KinetoEvent*> events;
  events.reserve(result->events().size());
  uint64_t origin = UINT64_MAX;
  for (const auto& event : result->events()) {
    if (event.isHiddenEvent()) continue;
    events.push_back(&event);
    origin = std::min(origin, event.startNs());
  }
  size_t count = events.size();
  std::unordered_map<std::string, int32_t> nameIndex;
  auto names = Napi::Array::New(env);
  auto name = Napi::Int32Array::New(env, count);
  auto thread = Napi::Float64Array::New(env, count);
  auto start = Napi::Float64Array::New(env, count);
  auto end = Napi::Float64Array::New(env, count);
  auto correlation = Napi::Float64Array::New(env, count);
  auto linked = Napi::Float64Array::New(env, count);
  auto device = Napi::Int32Array::New(env, count);
  auto activity = Napi::Int32Array::New(env, count);
  auto async = Napi::Uint8Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    const auto& event = *events[i];
    std::string text = event.name();
    auto found = nameIndex.find(text);
    if (found == nameIndex.end()) {
      int32_t index = static_cast<int32_t>(nameIndex.size());
      names.Set(static_cast<uint32_t>(index), Napi::String::New(env, text));
      found = nameIndex.emplace(std::move(text), index).first;
    }
    name[i] = found->second;
    thread[i] = static_cast<double>(event.startThreadId());
    uint64_t begin = event.startNs();
    start[i] = static_cast<double>(begin - origin);
    end[i] = static_cast<double>(std::max(event.endNs(), begin) - origin);
    correlation[i] = static_cast<double>(event.correlationId());
    linked[i] = static_cast<double>(event.linkedCorrelationId());
    device[i] = static_cast<int32_t>(event.deviceType());
    activity[i] = static_cast<int32_t>(event.activityType());
    async[i] = event.isAsync() || event.startThreadId() != event.endThreadId() ? 1 : 0;
  }
  auto out = Napi::Object::New(env);
  out.Set("names", names);
  out.Set("name", name);
  out.Set("thread", thread);
  out.Set("start", start);
  out.Set("end", end);
  out.Set("correlation", correlation);
  out.Set("linked", linked);
  out.Set("device", device);
  out.Set("activity", activity);
  out.Set("async", async);
  return out;
}

}  // namespace

void registerProfiler(Napi::Env env, Napi::Object exports) {
  exportFunction<ProfilerStart>(env, exports, "profilerStart");
  exportFunction<ProfilerStop>(env, exports, "profilerStop");
  exportFunction<ProfilerActive>(env, exports, "profilerActive");
}

}  // namespace camemberta
