// Distributed runtime services (c10d): the TCPStore rendezvous, ProcessGroupGloo (and
// ProcessGroupNCCL on CUDA builds that found nccl.h), collectives that settle JavaScript
// promises, a health monitor that names the ranks behind a failed collective, and libtorch's
// own DDP Reducer for bucketed gradient averaging that overlaps backward.
//
// Threads: collectives run on the backend's threads (Gloo's worker pool, NCCL's streams); their
// futures complete there and hand the result to the JS thread through one thread-safe function
// per group, so no JavaScript call waits on the network. The rendezvous and store calls, which
// block inside TCPStore, run on libuv's pool (AsyncWorker). Each group also runs one monitor
// thread with its own store connection: it publishes this rank's heartbeat and the last
// collective it issued, and reads everyone else's, so that a failure can be explained without
// any further network round trip (the peer may be the one that is gone).
//
// The design (which collective, when, on which tensors) lives in src/dist/*.ts.
#include "handles.h"

#ifdef CAMEMBERTA_GLOO
#define USE_C10D_GLOO 1
#ifdef CAMEMBERTA_NCCL
#define USE_C10D_NCCL 1
#endif

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef CAMEMBERTA_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <cerrno>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#endif

namespace camemberta {

#ifdef CAMEMBERTA_GLOO
namespace {

using Clock = std::chrono::steady_clock;
using Milliseconds = std::chrono::milliseconds;

std::string errorText(const std::exception& error) {
  if (auto* c10error = dynamic_cast<const c10::Error*>(&error)) return c10error->what_without_backtrace();
  return error.what();
}

std::string exceptionText(const std::exception_ptr& pointer) {
  try {
    std::rethrow_exception(pointer);
  } catch (const std::exception& error) {
    return errorText(error);
  } catch (...) {
    return "unknown error";
  }
}

std::string joinRanks(const std::vector<int>& ranks) {
  std::string text;
  for (size_t i = 0; i < ranks.size(); i++) text += (i ? ", " : "") + std::to_string(ranks[i]);
  return text;
}

double millisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// What the monitor knows about the other ranks when a collective fails.
struct Diagnosis {
  std::vector<int> notJoined;      // alive, but had not issued this collective
  std::vector<int> unresponsive;   // no heartbeat for several ticks: dead, stopped or cut off
  bool storeDown = false;          // the store itself stopped answering (its host is gone)
  std::string text;
};

// Publishes this rank's heartbeat and progress, and keeps a snapshot of everyone's.
class Monitor : public std::enable_shared_from_this<Monitor> {
 public:
  Monitor(c10::intrusive_ptr<c10d::Store> store, int rank, int size, Milliseconds tick)
      : store_(std::move(store)), rank_(rank), size_(size), tick_(tick),
        beats_(size, -1), lastBeatChange_(size, Clock::now()), peerSeq_(size, 0), peerName_(size, "init") {
    for (int r = 0; r < size; r++) keys_.push_back("alive/" + std::to_string(r));
    for (int r = 0; r < size; r++) keys_.push_back("progress/" + std::to_string(r));
    lastPollOk_ = Clock::now();
  }

  void start() {
    auto self = shared_from_this();
    // Detached: stopping must not wait for a store call that hangs on a stopped host; the thread
    // holds its own reference and leaves at its next wake-up.
    std::thread([self] { self->loop(); }).detach();
  }

  void stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
  }

  void noteIssued(uint64_t seq, const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (seq > issuedSeq_) {
      issuedSeq_ = seq;
      issuedName_ = name;
      dirty_ = true;
    }
  }

  // How long without a heartbeat before a rank counts as unresponsive.
  Milliseconds staleAfter() const { return tick_ * 3 + Milliseconds(200); }
  Milliseconds tick() const { return tick_; }

  Diagnosis diagnose(uint64_t seq, const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    Diagnosis result;
    auto now = Clock::now();
    auto stale = staleAfter();
    std::ostringstream text;
    auto sincePoll = std::chrono::duration_cast<Milliseconds>(now - lastPollOk_);
    if (sincePoll > stale) {
      result.storeDown = true;
      text << "the store (hosted by rank 0, or by the launcher's agent) has not answered for " << sincePoll.count()
           << " ms" << (storeError_.empty() ? "" : " (" + storeError_ + ")")
           << ": its host is probably dead or stopped";
      result.text = text.str();
      return result;
    }
    std::vector<std::string> parts;
    for (int r = 0; r < size_; r++) {
      if (r == rank_) continue;
      auto silent = std::chrono::duration_cast<Milliseconds>(now - lastBeatChange_[r]);
      if (silent > stale) {
        result.unresponsive.push_back(r);
        parts.push_back("rank " + std::to_string(r) + " has sent no heartbeat for " + std::to_string(silent.count()) +
                        " ms (dead, stopped or cut off)");
      } else if (peerSeq_[r] < seq) {
        result.notJoined.push_back(r);
        parts.push_back("rank " + std::to_string(r) + " is alive but has not joined it (its last collective is #" +
                        std::to_string(peerSeq_[r]) + " " + peerName_[r] + ")");
      } else if (peerSeq_[r] == seq && peerName_[r] != name) {
        parts.push_back("rank " + std::to_string(r) + " issued a different collective as #" + std::to_string(seq) +
                        " (" + peerName_[r] + "): the ranks' programs diverged");
      }
    }
    for (size_t i = 0; i < parts.size(); i++) text << (i ? "; " : "") << parts[i];
    if (parts.empty()) text << "every rank is alive and had issued it";
    result.text = text.str();
    return result;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      bool publish = dirty_;
      std::string progress = std::to_string(issuedSeq_) + " " + issuedName_;
      dirty_ = false;
      lock.unlock();
      std::vector<std::vector<uint8_t>> values;
      std::string failure;
      try {
        if (publish) store_->set("progress/" + std::to_string(rank_), progress);
        store_->add("alive/" + std::to_string(rank_), 1);
        values = store_->multiGet(keys_);
      } catch (const std::exception& error) {
        failure = errorText(error);
      }
      lock.lock();
      if (failure.empty() && values.size() == keys_.size()) {
        auto now = Clock::now();
        lastPollOk_ = now;
        storeError_.clear();
        for (int r = 0; r < size_; r++) {
          int64_t beat = std::atoll(std::string(values[r].begin(), values[r].end()).c_str());
          if (beat != beats_[r]) {
            beats_[r] = beat;
            lastBeatChange_[r] = now;
          }
          std::string entry(values[size_ + r].begin(), values[size_ + r].end());
          auto space = entry.find(' ');
          peerSeq_[r] = std::strtoull(entry.c_str(), nullptr, 10);
          peerName_[r] = space == std::string::npos ? "" : entry.substr(space + 1);
        }
      } else {
        if (publish) dirty_ = true;
        storeError_ = failure.substr(0, 300);
      }
      wake_.wait_for(lock, tick_, [this] { return stopping_; });
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  const int rank_;
  const int size_;
  const Milliseconds tick_;
  std::vector<std::string> keys_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  uint64_t issuedSeq_ = 0;
  std::string issuedName_ = "init";
  bool dirty_ = true;
  std::vector<int64_t> beats_;
  std::vector<Clock::time_point> lastBeatChange_;
  std::vector<uint64_t> peerSeq_;
  std::vector<std::string> peerName_;
  Clock::time_point lastPollOk_;
  std::string storeError_;
};

struct Group;

// What a finished collective hands to the JS thread.
struct Completion {
  std::shared_ptr<Group> group;
  uint64_t id;
  std::string error;  // the explained failure; empty on success
  Diagnosis diagnosis;
};

// A collective waiting for its promise to settle (JS thread only).
struct PendingCollective {
  Napi::Promise::Deferred deferred;
  std::string name;
  uint64_t seq;
  Clock::time_point started;
  std::vector<at::Tensor> divideAfter;  // avg on backends without a native AVG
  // Several tensors travel as one flat buffer (c10d treats a list as per-device replicas):
  // the result is copied back into them here, on the JS thread.
  at::Tensor flat;
  std::vector<at::Tensor> members;
};

struct Group : std::enable_shared_from_this<Group> {
  int rank = 0;
  int size = 1;
  std::string backend;
  std::string groupName;
  std::string endpoint;
  Milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> userStore;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  c10::intrusive_ptr<c10d::Backend> gloo;
  std::shared_ptr<Monitor> monitor;
  std::atomic<uint64_t> seq{0};
  bool destroyed = false;
  // JS thread only:
  Napi::ThreadSafeFunction tsfn;
  uint64_t nextId = 1;
  std::unordered_map<uint64_t, PendingCollective> pending;

  ~Group() {
    // The last reference may go on a backend thread: Release is thread-safe, and callbacks that
    // arrive after destroy() still find a live function to post to.
    if (tsfn) tsfn.Release();
  }

  uint64_t issue(const std::string& name) {
    uint64_t n = ++seq;
    monitor->noteIssued(n, name);
    return n;
  }

  std::string describe(const std::string& name, uint64_t n) const {
    return name + " (collective #" + std::to_string(n) + " of group '" + groupName + "', rank " +
           std::to_string(rank) + " of " + std::to_string(size) + ")";
  }

  // Called on a backend thread. A failure that came before the timeout (a closed connection)
  // waits until a dead peer's heartbeat has gone stale, so that the explanation can name it; the
  // error still arrives within the timeout.
  std::string failureMessage(const std::string& name, uint64_t n, Clock::time_point started, const std::string& cause,
                             Diagnosis* out = nullptr) const {
    auto now = Clock::now();
    auto timeoutAt = started + timeout;
    if (now + monitor->tick() < timeoutAt) std::this_thread::sleep_until(std::min(now + monitor->staleAfter(), timeoutAt));
    Diagnosis diagnosis = monitor->diagnose(n, name);
    std::ostringstream text;
    text << "camemberta.dist: " << describe(name, n) << " failed after " << static_cast<int64_t>(millisSince(started))
         << " ms (timeout " << timeout.count() << " ms): " << diagnosis.text << ". Cause: " << cause;
    if (out) *out = diagnosis;
    return text.str();
  }
};

std::shared_ptr<Group>& groupOf(Napi::Env env, const Napi::Value& value) {
  if (!value.IsExternal()) throwType(env, "expected a process group");
  auto& group = *value.As<Napi::External<std::shared_ptr<Group>>>().Data();
  if (!group || group->destroyed) throw Napi::Error::New(env, "camemberta.dist: the process group was destroyed");
  return group;
}

Napi::Error distributedError(Napi::Env env, const std::string& message, const std::string& code,
                             const Diagnosis* diagnosis = nullptr, const std::string& collective = "") {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  if (!collective.empty()) error.Set("collective", Napi::String::New(env, collective));
  if (diagnosis) {
    auto list = [&](const std::vector<int>& ranks) {
      auto array = Napi::Array::New(env, ranks.size());
      for (size_t i = 0; i < ranks.size(); i++) array.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ranks[i]));
      return array;
    };
    error.Set("notJoinedRanks", list(diagnosis->notJoined));
    error.Set("unresponsiveRanks", list(diagnosis->unresponsive));
    error.Set("storeDown", Napi::Boolean::New(env, diagnosis->storeDown));
  }
  return error;
}

void shutdown(Napi::Env env, Group& group, bool rejectPending);

// ---- rendezvous -------------------------------------------------------------------------

struct InitOptions {
  int rank = 0;
  int size = 1;
  std::string host;
  int port = 29500;
  bool agentStore = false;
  Milliseconds timeout{30000};
  std::string backend = "gloo";
  std::string groupName = "default";
};

// Whether something accepts TCP connections at host:port, waiting at most `wait` for an answer
// (a host that drops packets would otherwise hold a blocking connect for minutes).
bool accepting(const std::string& host, int port, Milliseconds wait) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return false;
  bool ok = false;
  for (addrinfo* a = found; a != nullptr && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd waiting{fd, POLLOUT, 0};
      int error = 0;
      socklen_t length = sizeof(error);
      ok = poll(&waiting, 1, static_cast<int>(wait.count())) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return ok;
}

bool isLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

class InitWorker : public Napi::AsyncWorker {
 public:
  InitWorker(Napi::Env env, InitOptions options)
      : Napi::AsyncWorker(env, "camemberta.dist.init"), options_(std::move(options)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      run();
    } catch (const std::exception& error) {
      if (code_.empty()) code_ = "ERR_DIST_INIT";
      if (message_.empty()) message_ = "camemberta.dist: rendezvous failed on rank " + std::to_string(options_.rank) + ": " + errorText(error);
      SetError(message_);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    auto holder = new std::shared_ptr<Group>(group_);
    auto external = Napi::External<std::shared_ptr<Group>>::New(env, holder, [](Napi::Env env, std::shared_ptr<Group>* held) {
      if (*held && !(*held)->destroyed) shutdown(env, **held, false);
      delete held;
    });
    group_->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                 "camemberta.dist.collective", 0, 1);
    // Referenced only while a collective is pending: an idle group does not keep Node alive.
    group_->tsfn.Unref(env);
    deferred_.Resolve(external);
  }

  void OnError(const Napi::Error&) override {
    deferred_.Reject(distributedError(Env(), message_, code_).Value());
  }

 private:
  [[noreturn]] void fail(const std::string& code, const std::string& message) {
    code_ = code;
    message_ = "camemberta.dist: " + message;
    throw std::runtime_error(message_);
  }

  void run() {
    const auto& o = options_;
    std::string endpoint = o.host + ":" + std::to_string(o.port);
    bool server = o.rank == 0 && !o.agentStore;
    c10d::TCPStoreOptions storeOptions;
    storeOptions.port = static_cast<uint16_t>(o.port);
    storeOptions.isServer = server;
    storeOptions.waitWorkers = false;
    storeOptions.timeout = o.timeout;
    // libtorch's libuv collides with the one inside Node (see LIBTORCH-NOTES.md).
    storeOptions.useLibUV = false;
    c10::intrusive_ptr<c10d::TCPStore> tcp;
    if (!server) {
      // TCPStore's client sleeps a random back-off after a refused connection, which can carry
      // it seconds past its timeout: wait for the port here, on the caller's deadline.
      auto deadline = Clock::now() + o.timeout;
      while (!accepting(o.host, o.port, std::clamp<Milliseconds>(std::chrono::duration_cast<Milliseconds>(deadline - Clock::now()),
                                                                 Milliseconds(1), Milliseconds(1000)))) {
        if (Clock::now() >= deadline) {
          fail("ERR_DIST_UNREACHABLE", "rank " + std::to_string(o.rank) + " could not reach the store at " + endpoint + " within " +
               std::to_string(o.timeout.count()) + " ms (is rank 0" + (o.agentStore ? ", or the launcher's agent," : "") +
               " running there? are MASTER_ADDR and MASTER_PORT right?)");
        }
        std::this_thread::sleep_for(Milliseconds(50));
      }
    }
    try {
      tcp = c10::make_intrusive<c10d::TCPStore>(o.host, storeOptions);
    } catch (const std::exception& error) {
      std::string cause = errorText(error);
      if (server && (cause.find("EADDRINUSE") != std::string::npos || cause.find("ddress already in use") != std::string::npos)) {
        fail("EADDRINUSE", "rank 0 cannot host the store on " + endpoint + ": the port is already in use (another job, or a "
             "stale process from an earlier run; pick another MASTER_PORT). Cause: " + firstLine(cause));
      }
      if (server) fail("ERR_DIST_STORE", "rank 0 cannot host the store on " + endpoint + ": " + firstLine(cause));
      fail("ERR_DIST_UNREACHABLE", "rank " + std::to_string(o.rank) + " could not reach the store at " + endpoint + " within " +
           std::to_string(o.timeout.count()) + " ms (is rank 0" + (o.agentStore ? ", or the launcher's agent," : "") +
           " running there? are MASTER_ADDR and MASTER_PORT right?). Cause: " + firstLine(cause));
    }
    auto root = c10::make_intrusive<c10d::PrefixStore>("camemberta/" + o.groupName + "/", tcp);
    join(*root, endpoint);

    auto group = std::make_shared<Group>();
    group->rank = o.rank;
    group->size = o.size;
    group->backend = o.backend;
    group->groupName = o.groupName;
    group->endpoint = endpoint;
    group->timeout = o.timeout;
    group->userStore = c10::make_intrusive<c10d::PrefixStore>("user/", root);

    auto glooOptions = c10d::ProcessGroupGloo::Options::create(o.timeout);
    if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) {
      glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (isLoopback(o.host)) {
      glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    try {
      group->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("gloo/", root), o.rank, o.size, glooOptions);
    } catch (const std::exception& error) {
      fail("ERR_DIST_CONNECT", "rank " + std::to_string(o.rank) + " could not connect Gloo to every other rank within " +
           std::to_string(o.timeout.count()) + " ms: " + firstLine(errorText(error)));
    }
    group->pg = c10::make_intrusive<c10d::ProcessGroup>(root, o.rank, o.size);
    group->pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, group->gloo);
    if (o.backend == "nccl") {
#ifdef CAMEMBERTA_NCCL
      auto ncclOptions = c10d::ProcessGroupNCCL::Options::create();
      ncclOptions->timeout = o.timeout;
      c10::intrusive_ptr<c10d::Backend> nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("nccl/", root), o.rank, o.size, ncclOptions);
      group->pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
      group->pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#else
      fail("ERR_DIST_BACKEND", "backend 'nccl' is not in this build (it needs a CUDA libtorch and nccl.h at build time)");
#endif
    } else {
      group->pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    }

    auto tick = std::clamp<Milliseconds>(o.timeout / 8, Milliseconds(50), Milliseconds(1000));
    auto monitorStore = tcp->clone();
    monitorStore->setTimeout(o.timeout);
    group->monitor = std::make_shared<Monitor>(
        c10::make_intrusive<c10d::PrefixStore>("camemberta/" + o.groupName + "/", monitorStore), o.rank, o.size, tick);
    group->monitor->start();
    group_ = group;
  }

  static std::string firstLine(const std::string& text) {
    auto end = text.find('\n');
    return end == std::string::npos ? text : text.substr(0, end);
  }

  // Every rank claims its number and checks that the others agree on the world size, then waits
  // for all of them: a missing rank, a duplicate one, or a different WORLD_SIZE is named here
  // rather than showing up later as a hung collective.
  void join(c10d::Store& store, const std::string& endpoint) {
    const auto& o = options_;
    std::string mine = std::to_string(o.size) + "@" + std::to_string(o.rank);
    std::string world = store.compareSet("world", "", mine);
    std::string theirSize = world.substr(0, world.find('@'));
    if (theirSize != std::to_string(o.size)) {
      fail("ERR_DIST_WORLD_SIZE", "world size mismatch: rank " + std::to_string(o.rank) + " was started with world size " +
           std::to_string(o.size) + ", rank " + world.substr(world.find('@') + 1) + " with " + theirSize);
    }
    std::string rankKey = "rank/" + std::to_string(o.rank);
    if (store.add(rankKey, 1) > 1) {
      fail("ERR_DIST_DUPLICATE_RANK", "rank " + std::to_string(o.rank) + " joined twice on " + endpoint +
           " (two processes were given the same RANK, or an earlier run with the same store is still alive)");
    }
    store.add("alive/" + std::to_string(o.rank), 1);
    store.set("progress/" + std::to_string(o.rank), std::string("0 init"));
    std::string member = std::to_string(o.rank) + ",";
    store.append("members", std::vector<uint8_t>(member.begin(), member.end()));
    int64_t joined = store.add("joined", 1);
    if (joined > o.size) {
      fail("ERR_DIST_WORLD_SIZE", std::to_string(joined) + " processes joined a group of world size " + std::to_string(o.size));
    }
    if (joined == o.size) store.set("ready", std::string("1"));
    // Polled rather than one long wait, so that the list of who joined is known even when the
    // store's host gives up (and exits) a moment before this rank does.
    auto deadline = Clock::now() + o.timeout;
    std::string members = std::to_string(o.rank) + ",";
    while (true) {
      try {
        if (store.check({"ready"})) return;
        members = store.get_to_str("members");
      } catch (const std::exception&) {
        break;  // the store is gone: report what was known
      }
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::min<Clock::duration>(Milliseconds(100), deadline - Clock::now()));
    }
    std::vector<int> present;
    std::vector<bool> seen(o.size, false);
    for (size_t start = 0; start < members.size();) {
      size_t comma = members.find(',', start);
      if (comma == std::string::npos) break;
      int r = std::atoi(members.substr(start, comma - start).c_str());
      if (r >= 0 && r < o.size && !seen[r]) seen[r] = true;
      start = comma + 1;
    }
    std::vector<int> missing;
    for (int r = 0; r < o.size; r++) (seen[r] ? present : missing).push_back(r);
    fail("ERR_DIST_JOIN_TIMEOUT", "world size is " + std::to_string(o.size) + " but only " + std::to_string(present.size()) +
         " process(es) joined on " + endpoint + " within " + std::to_string(o.timeout.count()) + " ms (joined: rank " +
         joinRanks(present) + "; missing: rank " + joinRanks(missing) + ")");
  }

  InitOptions options_;
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Group> group_;
  std::string code_;
  std::string message_;
};

int intOption(Napi::Env env, const Napi::Object& object, const char* key, int fallback) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined()) return fallback;
  if (!value.IsNumber()) throwType(env, std::string("option ") + key + " must be a number");
  return value.As<Napi::Number>().Int32Value();
}

// distInit({rank, worldSize, host, port, agentStore, timeoutMs, backend, groupName}) -> Promise<group>
Napi::Value DistInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throwType(env, "distInit expects an options object");
  auto object = info[0].As<Napi::Object>();
  InitOptions options;
  options.rank = intOption(env, object, "rank", 0);
  options.size = intOption(env, object, "worldSize", 1);
  options.port = intOption(env, object, "port", 29500);
  options.timeout = Milliseconds(intOption(env, object, "timeoutMs", 30000));
  options.host = object.Get("host").ToString().Utf8Value();
  options.agentStore = object.Get("agentStore").ToBoolean();
  options.backend = object.Get("backend").IsString() ? object.Get("backend").ToString().Utf8Value() : "gloo";
  options.groupName = object.Get("groupName").IsString() ? object.Get("groupName").ToString().Utf8Value() : "default";
  auto* worker = new InitWorker(env, options);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value DistInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& group = groupOf(env, info[0]);
  auto out = Napi::Object::New(env);
  out.Set("rank", group->rank);
  out.Set("worldSize", group->size);
  out.Set("backend", group->backend);
  out.Set("seq", Napi::Number::New(env, static_cast<double>(group->seq.load())));
  out.Set("pending", Napi::Number::New(env, static_cast<double>(group->pending.size())));
#ifdef CAMEMBERTA_NCCL
  out.Set("ncclBuilt", true);
#else
  out.Set("ncclBuilt", false);
#endif
  return out;
}

// ---- collectives --------------------------------------------------------------------------

void settle(Napi::Env env, Completion* completion) {
  std::unique_ptr<Completion> owned(completion);
  auto& group = *completion->group;
  auto found = group.pending.find(completion->id);
  if (found == group.pending.end()) return;
  PendingCollective pending = std::move(found->second);
  group.pending.erase(found);
  if (group.pending.empty()) group.tsfn.Unref(env);
  if (!completion->error.empty()) {
    pending.deferred.Reject(distributedError(env, completion->error, "ERR_DIST_COLLECTIVE", &completion->diagnosis, pending.name).Value());
    return;
  }
  try {
    // Parameters (leaves that require grad) are written in place, outside autograd as in PyTorch.
    at::NoGradGuard noGrad;
    for (auto& tensor : pending.divideAfter) tensor.div_(group.size);
    int64_t offset = 0;
    for (auto& member : pending.members) {
      member.copy_(pending.flat.narrow(0, offset, member.numel()).view(member.sizes()));
      offset += member.numel();
    }
  } catch (const std::exception& error) {
    pending.deferred.Reject(Napi::Error::New(env, errorText(error)).Value());
    return;
  }
  pending.deferred.Resolve(env.Undefined());
}

// Launches `launch` (which returns the Work) and ties its future to a promise.
template <typename Launch>
Napi::Value runCollective(Napi::Env env, std::shared_ptr<Group>& group, const std::string& name,
                          std::vector<at::Tensor> divideAfter, Launch launch, at::Tensor flat = {},
                          std::vector<at::Tensor> members = {}) {
  auto deferred = Napi::Promise::Deferred::New(env);
  uint64_t n = group->issue(name);
  auto started = Clock::now();
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = launch();
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, "camemberta.dist: " + group->describe(name, n) + ": " + errorText(error));
  }
  c10::intrusive_ptr<c10::ivalue::Future> future;
  try {
    future = work->getFuture();
  } catch (const std::exception&) {
    // Some backend works have no future (Gloo's reduce_scatter): a side thread waits instead.
  }
  uint64_t id = group->nextId++;
  if (group->pending.empty()) group->tsfn.Ref(env);
  group->pending.emplace(id, PendingCollective{deferred, name, n, started, std::move(divideAfter), flat, std::move(members)});
  std::shared_ptr<Group> shared = group;
  Napi::ThreadSafeFunction tsfn = group->tsfn;
  auto post = [shared, id, tsfn, name, n, started](std::string error) mutable {
    auto* completion = new Completion{shared, id, "", {}};
    if (!error.empty()) completion->error = shared->failureMessage(name, n, started, error, &completion->diagnosis);
    napi_status status = tsfn.BlockingCall(completion, [](Napi::Env env, Napi::Function, Completion* data) { settle(env, data); });
    if (status != napi_ok) delete completion;
  };
  if (future) {
    future->addCallback([post](c10::ivalue::Future& done) mutable {
      post(done.hasError() ? exceptionText(done.exception_ptr()) : "");
    });
  } else {
    std::thread([work, post]() mutable {
      std::string error;
      try {
        work->wait();
      } catch (const std::exception& failure) {
        error = errorText(failure);
      }
      post(error);
    }).detach();
  }
  return deferred.Promise();
}

std::vector<at::Tensor> collectiveTensors(Napi::Env env, AddonState& state, const Napi::Value& value, const std::string& what,
                                          bool requireContiguous = true) {
  if (!value.IsArray()) throwType(env, what + " expects an array of tensors");
  auto array = value.As<Napi::Array>();
  std::vector<at::Tensor> tensors;
  for (uint32_t i = 0; i < array.Length(); i++) {
    const at::Tensor& tensor = tensorAt(env, state, array.Get(i));
    if (requireContiguous && !tensor.is_contiguous()) {
      throw Napi::Error::New(env, "camemberta.dist: " + what + ": tensor " + std::to_string(i) + " is not contiguous (call .contiguous() first)");
    }
    if (!tensors.empty() && (tensor.device() != tensors[0].device() || tensor.scalar_type() != tensors[0].scalar_type())) {
      throw Napi::Error::New(env, "camemberta.dist: " + what + ": one call takes tensors of one dtype on one device "
                             "(src/dist groups them)");
    }
    tensors.push_back(tensor);
  }
  return tensors;
}

struct ReduceChoice {
  c10d::ReduceOp op;
  bool divide;
};

ReduceChoice reduceOp(Napi::Env env, const Napi::Value& value, const Group& group, const std::vector<at::Tensor>& tensors,
                      const std::string& what) {
  std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "sum";
  if (name == "sum") return {c10d::ReduceOp::SUM, false};
  if (name == "max") return {c10d::ReduceOp::MAX, false};
  if (name == "min") return {c10d::ReduceOp::MIN, false};
  if (name == "avg") {
    for (const auto& tensor : tensors) {
      if (!at::isFloatingType(tensor.scalar_type())) {
        throw Napi::TypeError::New(env, "camemberta.dist: " + what + " op 'avg' needs floating tensors, got " +
                                        std::string(c10::toString(tensor.scalar_type())));
      }
    }
    // Gloo has no AVG: sum, then divide when the result arrives.
    bool native = group.backend == "nccl" && !tensors.empty() && tensors[0].is_cuda();
    return native ? ReduceChoice{c10d::ReduceOp::AVG, false} : ReduceChoice{c10d::ReduceOp::SUM, true};
  }
  throw Napi::TypeError::New(env, "camemberta.dist: " + what + " op must be 'sum', 'avg', 'max' or 'min', got '" + name + "'");
}

// One flat contiguous buffer for a list (or a lone non-contiguous tensor), else the tensor.
struct Coalesced {
  at::Tensor buffer;
  std::vector<at::Tensor> members;  // empty when buffer is the caller's own tensor
};

Coalesced coalesce(const std::vector<at::Tensor>& tensors) {
  at::NoGradGuard noGrad;
  if (tensors.size() == 1 && tensors[0].is_contiguous()) return {tensors[0], {}};
  std::vector<at::Tensor> flat;
  for (const auto& tensor : tensors) flat.push_back(tensor.reshape({-1}));
  return {at::cat(flat), tensors};
}

// distAllReduce(group, tensors[], op)
Napi::Value DistAllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& group = groupOf(env, info[0]);
  auto tensors = collectiveTensors(env, stateOf(env), info[1], "allReduce", false);
  if (tensors.empty()) throw Napi::Error::New(env, "camemberta.dist: allReduce needs at least one tensor");
  auto choice = reduceOp(env, info[2], *group, tensors, "allReduce");
  c10d::AllreduceOptions options;
  options.reduceOp = choice.op;
  auto pg = group->pg;
  Coalesced coalesced = coalesce(tensors);
  std::vector<at::Tensor> buffer{coalesced.buffer};
  return runCollective(env, group, "allReduce", choice.divide ? buffer : std::vector<at::Tensor>{},
                       [pg, buffer, options]() mutable { return pg->allreduce(buffer, options); },
                       coalesced.members.empty() ? at::Tensor() : coalesced.buffer, coalesced.members);
}

// distBroadcast(group, tensors[], root)
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& group = groupOf(env, info[0]);
  auto tensors = collectiveTensors(env, stateOf(env), info[1], "broadcast", false);
  if (tensors.empty()) throw Napi::Error::New(env, "camemberta.dist: broadcast needs at least one tensor");
  int root = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
  if (root < 0 || root >= group->size) {
    throw Napi::RangeError::New(env, "camemberta.dist: broadcast root " + std::to_string(root) + " is not a rank of a group of " + std::to_string(group->size));
  }
  c10d::BroadcastOptions options;
  options.rootRank = root;
  auto pg = group->pg;
  Coalesced coalesced = coalesce(tensors);
  std::vector<at::Tensor> buffer{coalesced.buffer};
  return runCollective(env, group, "broadcast", {}, [pg, buffer, options]() mutable { return pg->broadcast(buffer, options); },
                       coalesced.members.empty() ? at::Tensor() : coalesced.buffer, coalesced.members);
}

void checkSameShape(Napi::Env env, const std::string& what, const std::vector<at::Tensor>& list, const at::Tensor& reference) {
  for (size_t i = 0; i < list.size(); i++) {
    if (list[i].sizes() != reference.sizes() || list[i].scalar_type() != reference.scalar_type()) {
      std::ostringstream text;
      text << "camemberta.dist: " << what << ": tensor " << i << " is " << list[i].sizes() << " " << c10::toString(list[i].scalar_type())
           << ", expected " << reference.sizes() << " " << c10::toString(reference.scalar_type());
      throw Napi::Error::New(env, text.str());
    }
  }
}

// distAllGather(group, outputs[], input)
Napi::Value DistAllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  auto& group = groupOf(env, info[0]);
  auto outputs = collectiveTensors(env, state, info[1], "allGather");
  at::Tensor input = tensorAt(env, state, info[2]);
  if (static_cast<int>(outputs.size()) != group->size) {
    throw Napi::Error::New(env, "camemberta.dist: allGather needs one output per rank (" + std::to_string(group->size) + "), got " + std::to_string(outputs.size()));
  }
  checkSameShape(env, "allGather output", outputs, input);
  auto pg = group->pg;
  return runCollective(env, group, "allGather", {}, [pg, outputs, input]() mutable {
    std::vector<std::vector<at::Tensor>> out{outputs};
    std::vector<at::Tensor> in{input};
    return pg->allgather(out, in);
  });
}

// distReduceScatter(group, output, inputs[], op)
Napi::Value DistReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  auto& group = groupOf(env, info[0]);
  at::Tensor output = tensorAt(env, state, info[1]);
  auto inputs = collectiveTensors(env, state, info[2], "reduceScatter");
  if (static_cast<int>(inputs.size()) != group->size) {
    throw Napi::Error::New(env, "camemberta.dist: reduceScatter needs one input per rank (" + std::to_string(group->size) + "), got " + std::to_string(inputs.size()));
  }
  checkSameShape(env, "reduceScatter input", inputs, output);
  auto choice = reduceOp(env, info[3], *group, {output}, "reduceScatter");
  c10d::ReduceScatterOptions options;
  options.reduceOp = choice.op;
  auto pg = group->pg;
  return runCollective(env, group, "reduceScatter", choice.divide ? std::vector<at::Tensor>{output} : std::vector<at::Tensor>{},
                       [pg, output, inputs, options]() mutable {
                         std::vector<at::Tensor> out{output};
                         std::vector<std::vector<at::Tensor>> in{inputs};
                         return pg->reduce_scatter(out, in, options);
                       });
}

// distBarrier(group)
Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& group = groupOf(env, info[0]);
  // On Gloo whatever the default backend: a barrier synchronises processes, not CUDA streams.
  auto gloo = group->gloo;
  return runCollective(env, group, "barrier", {}, [gloo]() {
    c10d::BarrierOptions options;
    return gloo->barrier(options);
  });
}

// ---- the store ----------------------------------------------------------------------------

class StoreWorker : public Napi::AsyncWorker {
 public:
  enum Kind { Set, Get, Add };
  StoreWorker(Napi::Env env, std::shared_ptr<Group> group, Kind kind, std::string key, std::string value, int64_t amount)
      : Napi::AsyncWorker(env, "camemberta.dist.store"), group_(std::move(group)), kind_(kind), key_(std::move(key)),
        value_(std::move(value)), amount_(amount), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      if (kind_ == Set) group_->userStore->set(key_, value_);
      if (kind_ == Get) value_ = group_->userStore->get_to_str(key_);
      if (kind_ == Add) amount_ = group_->userStore->add(key_, amount_);
    } catch (const std::exception& error) {
      const char* verb = kind_ == Set ? "set" : kind_ == Get ? "get" : "add";
      SetError("camemberta.dist: store." + std::string(verb) + "('" + key_ + "') on " + group_->endpoint + " failed (timeout " +
               std::to_string(group_->timeout.count()) + " ms): " + errorText(error));
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (kind_ == Get) deferred_.Resolve(Napi::String::New(env, value_));
    else if (kind_ == Add) deferred_.Resolve(Napi::Number::New(env, static_cast<double>(amount_)));
    else deferred_.Resolve(env.Undefined());
  }
  void OnError(const Napi::Error& error) override {
    deferred_.Reject(distributedError(Env(), error.Message(), "ERR_DIST_STORE").Value());
  }

 private:
  std::shared_ptr<Group> group_;
  Kind kind_;
  std::string key_;
  std::string value_;
  int64_t amount_;
  Napi::Promise::Deferred deferred_;
};

// distStore(group, 'set'|'get'|'add', key, value | amount)
Napi::Value DistStore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& group = groupOf(env, info[0]);
  std::string kind = info[1].ToString().Utf8Value();
  if (!info[2].IsString()) throwType(env, "store keys are strings");
  std::string key = info[2].As<Napi::String>().Utf8Value();
  StoreWorker* worker;
  if (kind == "set") {
    if (!info[3].IsString()) throwType(env, "store.set values are strings");
    worker = new StoreWorker(env, group, StoreWorker::Set, key, info[3].As<Napi::String>().Utf8Value(), 0);
  } else if (kind == "get") {
    worker = new StoreWorker(env, group, StoreWorker::Get, key, "", 0);
  } else if (kind == "add") {
    if (!info[3].IsNumber()) throwType(env, "store.add takes an integer");
    worker = new StoreWorker(env, group, StoreWorker::Add, key, "", info[3].As<Napi::Number>().Int64Value());
  } else {
    throwType(env, "unknown store operation " + kind);
  }
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// Stops the monitor, settles what is pending, and lets go of the backend without waiting for
// the network: a backend whose work is stuck is released on a side thread.
void shutdown(Napi::Env env, Group& group, bool rejectPending) {
  group.destroyed = true;
  group.monitor->stop();
  if (rejectPending) {
    for (auto& [id, pending] : group.pending) {
      pending.deferred.Reject(distributedError(env, "camemberta.dist: " + group.describe(pending.name, pending.seq) +
                                                    " was pending when the process group was destroyed", "ERR_DIST_DESTROYED").Value());
    }
  }
  bool hadPending = !group.pending.empty();
  if (hadPending) group.tsfn.Unref(env);
  group.pending.clear();
  auto pg = std::move(group.pg);
  auto gloo = std::move(group.gloo);
  group.userStore.reset();
  if (hadPending) {
    std::thread([pg = std::move(pg), gloo = std::move(gloo)]() mutable {
      pg.reset();
      gloo.reset();
    }).detach();
  }
}

// distDestroy(group): idempotent; pending collectives reject.
Napi::Value DistDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) throwType(env, "expected a process group");
  auto& group = *info[0].As<Napi::External<std::shared_ptr<Group>>>().Data();
  if (group && !group->destroyed) shutdown(env, *group, true);
  return env.Undefined();
}

// ---- the DDP reducer ----------------------------------------------------------------------

struct DdpState;

// Runs after a parameter's gradient was accumulated, before the Reducer's own hook (it is
// registered first): counts the gradients still to come so that a bucket's launch can tell
// whether backward was still computing.
struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::shared_ptr<DdpState> state, size_t index) : state(std::move(state)), index(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override;
  std::shared_ptr<DdpState> state;
  size_t index;
};

struct DdpState {
  std::shared_ptr<Group> group;
  std::vector<at::Tensor> params;
  std::vector<std::string> names;
  std::vector<std::vector<size_t>> buckets;
  std::atomic<bool> expecting{false};
  std::mutex mutex;  // guards the fields below (hooks run on autograd threads)
  std::vector<bool> ready;
  size_t readyCount = 0;
  size_t launched = 0;
  size_t launchedDuringBackward = 0;
  std::optional<Clock::time_point> lastGradReady;
  std::optional<Clock::time_point> lastReduced;
  std::string failure;
  int64_t steps = 0;
};

torch::autograd::variable_list ReadyHook::operator()(const torch::autograd::variable_list& outputs,
                                                     const torch::autograd::variable_list&) {
  if (!state->expecting.load()) return outputs;
  std::lock_guard<std::mutex> lock(state->mutex);
  if (!state->ready[index]) {
    state->ready[index] = true;
    if (++state->readyCount == state->params.size()) state->lastGradReady = Clock::now();
  }
  return outputs;
}

// The Reducer's communication: average (divide, then sum) one flattened bucket, as PyTorch's
// built-in ALLREDUCE hook does, with the launch counted and a failure explained.
class CountingAllReduceHook : public c10d::CommHookInterface {
 public:
  explicit CountingAllReduceHook(std::shared_ptr<DdpState> state) : state_(std::move(state)) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    auto& group = *state_->group;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->launched++;
      if (state_->readyCount < state_->params.size()) state_->launchedDuringBackward++;
    }
    std::vector<at::Tensor> tensors = {bucket.getBufferRef()};
    tensors[0].div_(group.size);
    std::string name = "allReduce(DDP bucket " + std::to_string(bucket.getIndex()) + ")";
    uint64_t n = group.issue(name);
    auto started = Clock::now();
    auto work = group.pg->allreduce(tensors);
    auto future = work->getFuture();
    std::shared_ptr<DdpState> state = state_;
    return future->then(
        [state, name, n, started](c10::ivalue::Future& done) -> c10::IValue {
          {
            std::lock_guard<std::mutex> lock(state->mutex);
            state->lastReduced = Clock::now();
          }
          if (done.hasError()) {
            std::string message = state->group->failureMessage(name, n, started, exceptionText(done.exception_ptr()));
            {
              std::lock_guard<std::mutex> lock(state->mutex);
              if (state->failure.empty()) state->failure = message;
            }
            throw std::runtime_error(message);
          }
          return done.value();
        },
        future->elementType());
  }

  at::Tensor parseHookResult(const c10::IValue& result) override { return c10d::detail::parseCppCommHookResult(result); }

 private:
  std::shared_ptr<DdpState> state_;
};

struct Ddp {
  std::shared_ptr<DdpState> state;
  std::unique_ptr<c10d::Reducer> reducer;
  std::vector<std::pair<c10::intrusive_ptr<torch::autograd::Node>, uintptr_t>> hooks;
  bool findUnused = false;
  bool prepared = false;
  bool broken = false;

  ~Ddp() {
    reducer.reset();
    for (auto& [accumulator, key] : hooks) accumulator->del_post_hook(key);
  }
};

Ddp& ddpOf(Napi::Env env, const Napi::Value& value) {
  if (!value.IsExternal()) throwType(env, "expected a gradient reducer");
  auto* ddp = value.As<Napi::External<Ddp>>().Data();
  if (ddp->reducer == nullptr) throw Napi::Error::New(env, "camemberta.dist: the gradient reducer was destroyed");
  return *ddp;
}

// Buckets as DDP forms them: parameters in reverse order (gradients arrive roughly last layer
// first), a bucket closed when the next parameter would take it over the cap (the first bucket
// capped at 1 MiB so communication starts early), a new bucket whenever dtype or device change.
std::vector<std::vector<size_t>> assignBuckets(const std::vector<at::Tensor>& params, int64_t capBytes) {
  std::vector<std::vector<size_t>> buckets;
  int64_t filled = 0;
  for (size_t k = params.size(); k-- > 0;) {
    const auto& p = params[k];
    int64_t bytes = static_cast<int64_t>(p.numel()) * static_cast<int64_t>(p.element_size());
    int64_t cap = buckets.size() == 1 ? std::min<int64_t>(capBytes, c10d::kDefaultFirstBucketBytes) : capBytes;
    bool compatible = !buckets.empty() && params[buckets.back().front()].scalar_type() == p.scalar_type() &&
                      params[buckets.back().front()].device() == p.device();
    if (buckets.empty() || !compatible || (filled > 0 && filled + bytes > cap)) {
      buckets.emplace_back();
      filled = 0;
    }
    buckets.back().push_back(k);
    filled += bytes;
  }
  return buckets;
}

// The Reducer's constructor gained arguments over libtorch versions (the GPU machine's 2.11,
// this project's 2.13): take the longest form this libtorch has. Every form gets
// gradient_as_bucket_view=false, no sparse gradients, the default first-bucket cap, and neither
// skipped unused all-reduces nor the Python reducer.
// A template so that the forms this libtorch lacks are never instantiated.
template <typename Reducer = c10d::Reducer>
std::unique_ptr<Reducer> makeReducer(const std::vector<at::Tensor>& params, const std::vector<std::vector<size_t>>& buckets,
                                           const c10::intrusive_ptr<c10d::ProcessGroup>& pg, int64_t capBytes, bool findUnused,
                                           const std::unordered_map<size_t, std::string>& names) {
  using Params = std::vector<at::Tensor>;
  using Buckets = std::vector<std::vector<size_t>>;
  using Pg = c10::intrusive_ptr<c10d::ProcessGroup>;
  using Sparse = std::vector<bool>;
  using Names = std::unordered_map<size_t, std::string>;
  Sparse sparse(params.size(), false);
  int64_t firstCap = c10d::kDefaultFirstBucketBytes;
  if constexpr (std::is_constructible_v<Reducer, Params, Buckets, Pg, Sparse, int64_t, bool, bool, Names, int64_t, bool, bool,
                                        std::vector<int64_t>>) {
    return std::make_unique<Reducer>(params, buckets, pg, sparse, capBytes, findUnused, false, names, firstCap, false, false,
                                           std::vector<int64_t>{});
  } else if constexpr (std::is_constructible_v<Reducer, Params, Buckets, Pg, Sparse, int64_t, bool, bool, Names, int64_t, bool, bool>) {
    return std::make_unique<Reducer>(params, buckets, pg, sparse, capBytes, findUnused, false, names, firstCap, false, false);
  } else if constexpr (std::is_constructible_v<Reducer, Params, Buckets, Pg, Sparse, int64_t, bool, bool, Names, int64_t, bool>) {
    return std::make_unique<Reducer>(params, buckets, pg, sparse, capBytes, findUnused, false, names, firstCap, false);
  } else if constexpr (std::is_constructible_v<Reducer, Params, Buckets, Pg, Sparse, int64_t, bool, bool, Names, int64_t>) {
    return std::make_unique<Reducer>(params, buckets, pg, sparse, capBytes, findUnused, false, names, firstCap);
  } else {
    // Older: per-bucket size limits as the third argument.
    std::vector<size_t> limits(buckets.size(), static_cast<size_t>(capBytes));
    return std::make_unique<Reducer>(params, buckets, limits, pg, sparse, capBytes, findUnused, false, names, firstCap);
  }
}

// reducerNew(group, params[], names[], bucketCapBytes, findUnusedParameters) -> reducer
Napi::Value ReducerNew(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& addon = stateOf(env);
  auto& group = groupOf(env, info[0]);
  if (!info[1].IsArray()) throwType(env, "reducerNew expects an array of parameters");
  auto list = info[1].As<Napi::Array>();
  auto names = info[2].IsArray() ? info[2].As<Napi::Array>() : Napi::Array::New(env);
  double capBytes = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 25.0 * 1024 * 1024;
  bool findUnused = info[4].ToBoolean();
  if (!(capBytes >= 1)) throw Napi::RangeError::New(env, "camemberta.dist: the bucket cap must be positive");
  auto state = std::make_shared<DdpState>();
  state->group = group;
  for (uint32_t i = 0; i < list.Length(); i++) {
    const at::Tensor& param = tensorAt(env, addon, list.Get(i));
    std::string name = i < names.Length() && names.Get(i).IsString() ? names.Get(i).As<Napi::String>().Utf8Value()
                                                                   : "parameter " + std::to_string(i);
    if (!param.requires_grad() || !param.is_leaf()) {
      throw Napi::Error::New(env, "camemberta.dist: " + name + " is not a leaf tensor that requires grad");
    }
    if (param.is_sparse()) throw Napi::Error::New(env, "camemberta.dist: " + name + " is sparse (not supported)");
    bool duplicate = std::any_of(state->params.begin(), state->params.end(),
                                 [&](const at::Tensor& p) { return p.unsafeGetTensorImpl() == param.unsafeGetTensorImpl(); });
    if (duplicate) throw Napi::Error::New(env, "camemberta.dist: " + name + " is listed twice (shared weights go in once)");
    state->params.push_back(param);
    state->names.push_back(name);
  }
  if (state->params.empty()) throw Napi::Error::New(env, "camemberta.dist: a gradient reducer needs at least one parameter");
  state->ready.assign(state->params.size(), false);
  state->buckets = assignBuckets(state->params, static_cast<int64_t>(capBytes));

  auto ddp = std::make_unique<Ddp>();
  ddp->state = state;
  ddp->findUnused = findUnused;
  for (size_t i = 0; i < state->params.size(); i++) {
    auto accumulator = torch::autograd::impl::grad_accumulator(state->params[i]);
    uintptr_t key = accumulator->add_post_hook(std::make_unique<ReadyHook>(state, i));
    ddp->hooks.emplace_back(accumulator, key);
  }
  std::unordered_map<size_t, std::string> paramNames;
  for (size_t i = 0; i < state->names.size(); i++) paramNames[i] = state->names[i];
  ddp->reducer = makeReducer(state->params, state->buckets, group->pg, static_cast<int64_t>(capBytes), findUnused, paramNames);
  ddp->reducer->register_comm_hook(std::make_unique<CountingAllReduceHook>(state));
  auto* raw = ddp.release();
  return Napi::External<Ddp>::New(env, raw, [](Napi::Env, Ddp* held) { delete held; });
}

Napi::Value ReducerBuckets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ddp& ddp = ddpOf(env, info[0]);
  auto out = Napi::Array::New(env, ddp.state->buckets.size());
  for (size_t b = 0; b < ddp.state->buckets.size(); b++) {
    auto bucket = Napi::Array::New(env, ddp.state->buckets[b].size());
    for (size_t i = 0; i < ddp.state->buckets[b].size(); i++) {
      bucket.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(ddp.state->buckets[b][i])));
    }
    out.Set(static_cast<uint32_t>(b), bucket);
  }
  return out;
}

// reducerPrepare(reducer, outputs[]): outputs are needed (and only used) with
// findUnusedParameters, to find the parameters this backward will not reach.
Napi::Value ReducerPrepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& addon = stateOf(env);
  Ddp& ddp = ddpOf(env, info[0]);
  if (ddp.broken) throw Napi::Error::New(env, "camemberta.dist: the gradient reducer failed earlier and cannot be used again");
  if (ddp.prepared) {
    throw Napi::Error::New(env, "camemberta.dist: prepareForBackward() called twice without finish() in between");
  }
  std::vector<at::Tensor> outputs;
  if (info[1].IsArray()) {
    auto list = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) outputs.push_back(tensorAt(env, addon, list.Get(i)));
  }
  if (ddp.findUnused && outputs.empty()) {
    throw Napi::Error::New(env, "camemberta.dist: with findUnusedParameters, prepareForBackward(outputs) needs the tensors "
                                "backward starts from (the loss)");
  }
  auto& state = *ddp.state;
  std::vector<bool> unreachable(state.params.size(), false);
  if (ddp.findUnused) {
    // The same search as the Reducer's: parameters whose gradient accumulator the graph does not reach.
    std::unordered_set<torch::autograd::Node*> seen;
    std::vector<torch::autograd::Node*> queue;
    for (const auto& output : outputs) {
      if (auto fn = output.grad_fn()) queue.push_back(fn.get());
    }
    while (!queue.empty()) {
      auto* fn = queue.back();
      queue.pop_back();
      for (const auto& edge : fn->next_edges()) {
        if (auto* next = edge.function.get(); next && seen.insert(next).second) queue.push_back(next);
      }
    }
    for (size_t i = 0; i < state.params.size(); i++) unreachable[i] = seen.count(ddp.hooks[i].first.get()) == 0;
  }
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    state.ready = unreachable;
    state.readyCount = std::count(unreachable.begin(), unreachable.end(), true);
    state.launched = 0;
    state.launchedDuringBackward = 0;
    state.lastGradReady.reset();
    state.lastReduced.reset();
  }
  state.expecting = true;
  ddp.reducer->prepare_for_backward(outputs);
  ddp.prepared = true;
  return env.Undefined();
}

// reducerFinish(reducer) -> stats; the Reducer already waited for its buckets and wrote the
// averaged gradients at the end of backward (its finalize runs as an autograd engine callback).
Napi::Value ReducerFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Ddp& ddp = ddpOf(env, info[0]);
  if (!ddp.prepared) throw Napi::Error::New(env, "camemberta.dist: finish() without prepareForBackward() before the backward");
  auto& state = *ddp.state;
  state.expecting = false;
  ddp.prepared = false;
  std::lock_guard<std::mutex> lock(state.mutex);
  if (!state.failure.empty()) {
    ddp.broken = true;
    throw distributedError(env, state.failure, "ERR_DIST_COLLECTIVE");
  }
  if (state.readyCount < state.params.size()) {
    ddp.broken = true;
    std::vector<std::string> missing;
    for (size_t i = 0; i < state.params.size(); i++) if (!state.ready[i]) missing.push_back(state.names[i]);
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 10; i++) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 10) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw distributedError(env, "camemberta.dist: " + std::to_string(missing.size()) + " parameter(s) got no gradient in the "
                           "synchronized backward (" + list + "): every parameter given to GradientReducer must take part in "
                           "the loss on every rank (leave unused ones out of the list); the other ranks now wait for "
                           "buckets this rank never sends, and fail at their timeout", "ERR_DIST_UNUSED_PARAMETER");
  }
  if (state.launched != state.buckets.size()) {
    ddp.broken = true;
    throw distributedError(env, "camemberta.dist: backward launched " + std::to_string(state.launched) + " of " +
                           std::to_string(state.buckets.size()) + " gradient buckets (was backward run after prepareForBackward()?)",
                           "ERR_DIST_REDUCER");
  }
  state.steps++;
  double waitMs = 0;
  if (state.lastGradReady && state.lastReduced && *state.lastReduced > *state.lastGradReady) {
    waitMs = std::chrono::duration<double, std::milli>(*state.lastReduced - *state.lastGradReady).count();
  }
  auto out = Napi::Object::New(env);
  out.Set("buckets", Napi::Number::New(env, static_cast<double>(state.buckets.size())));
  out.Set("bucketsLaunchedDuringBackward", Napi::Number::New(env, static_cast<double>(state.launchedDuringBackward)));
  out.Set("waitMs", Napi::Number::New(env, waitMs));
  out.Set("synchronizedSteps", Napi::Number::New(env, static_cast<double>(state.steps)));
  return out;
}

Napi::Value ReducerDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) throwType(env, "expected a gradient reducer");
  auto* ddp = info[0].As<Napi::External<Ddp>>().Data();
  ddp->state->expecting = false;
  ddp->reducer.reset();
  for (auto& [accumulator, key] : ddp->hooks) accumulator->del_post_hook(key);
  ddp->hooks.clear();
  return env.Undefined();
}

}  // namespace

void registerDist(Napi::Env env, Napi::Object exports) {
  exportFunction<DistInit>(env, exports, "distInit");
  exportFunction<DistInfo>(env, exports, "distInfo");
  exportFunction<DistAllReduce>(env, exports, "distAllReduce");
  exportFunction<DistBroadcast>(env, exports, "distBroadcast");
  exportFunction<DistAllGather>(env, exports, "distAllGather");
  exportFunction<DistReduceScatter>(env, exports, "distReduceScatter");
  exportFunction<DistBarrier>(env, exports, "distBarrier");
  exportFunction<DistStore>(env, exports, "distStore");
  exportFunction<DistDestroy>(env, exports, "distDestroy");
  exportFunction<ReducerNew>(env, exports, "reducerNew");
  exportFunction<ReducerBuckets>(env, exports, "reducerBuckets");
  exportFunction<ReducerPrepare>(env, exports, "reducerPrepare");
  exportFunction<ReducerFinish>(env, exports, "reducerFinish");
  exportFunction<ReducerDestroy>(env, exports, "reducerDestroy");
  exports.Set("distBuilt", Napi::Boolean::New(env, true));
}

#else

void registerDist(Napi::Env env, Napi::Object exports) {
  // Built without gloo's headers: src/dist/ reports how to get them.
  exports.Set("distBuilt", Napi::Boolean::New(env, false));
}

#endif

}  // namespace camemberta
