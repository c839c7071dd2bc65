// The CUDA runtime subset the project calls, on the CPU (COCA_CUDA=EMU): device memory is host
// memory (exact-size, 256-byte aligned, filled with 0xff so that a read of memory nothing wrote
// is NaN, or -1 as an index), streams and events order work with vector clocks (emu_state.h),
// and every copy is bounds-checked against its allocation.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "coca/kernels/cuda/emu/launch.h"
#include "emu_state.h"

struct CUstream_st {
  int id;
  std::string name;
};
struct CUevent_st {
  std::vector<uint64_t> clock;
  bool recorded = false;
  bool timing = true;
  std::chrono::steady_clock::time_point at;
};

namespace coca::cuda::emu {

namespace {

using Clock = std::vector<uint64_t>;

struct Access {
  int stream = -1;
  uint64_t tick = 0;
  std::string op;
};

struct Allocation {
  size_t bytes = 0;
  bool written = false;  // anything wrote it since cudaMalloc (else it still holds the NaN fill)
  Access last_write;
  std::map<int, Access> reads;  // per stream, since the last write
};

struct Runtime {
  std::recursive_mutex mu;
  std::vector<Clock> clocks{Clock(1, 0)};  // per stream id; 0 = the legacy default stream
  std::vector<std::string> stream_names{"the legacy default stream"};
  Clock host;
  std::map<uintptr_t, Allocation> allocs;  // by base address
  std::map<const void*, size_t> smem_limits;
  // Freed large blocks that nothing ever wrote (cuBLASLt workspaces): still NaN-filled, so a
  // cudaMalloc of the same size takes one back without filling 32 MiB again.
  std::multimap<size_t, void*> clean;
  size_t clean_bytes = 0;
  cudaError_t last_error = cudaSuccess;
  int device = 0;
};

Runtime& rt() {
  static auto* r = new Runtime();
  return *r;
}

void merge(Clock& into, const Clock& from) {
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (size_t i = 0; i < from.size(); ++i) into[i] = std::max(into[i], from[i]);
}

uint64_t seen(const Clock& c, int stream) { return static_cast<size_t>(stream) < c.size() ? c[stream] : 0; }

int stream_id(cudaStream_t s) { return s ? s->id : 0; }

Allocation* find(const void* p, uintptr_t* base_out = nullptr) {
  Runtime& r = rt();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = r.allocs.upper_bound(a);
  if (it == r.allocs.begin()) return nullptr;
  --it;
  if (a >= it->first + std::max<size_t>(it->second.bytes, 1)) return nullptr;
  if (base_out) *base_out = it->first;
  return &it->second;
}

std::string where(const Access& a) {
  return "'" + a.op + "' on " + rt().stream_names[a.stream];
}

void check_span(const std::string& op, const Span& s, const char* role) {
  if (!s.bytes) return;
  uintptr_t base = 0;
  Allocation* a = find(s.p, &base);
  if (!a) return;
  const uintptr_t p = reinterpret_cast<uintptr_t>(s.p);
  if (p + s.bytes > base + a->bytes)
    host_fault(op + ": " + role + " [" + std::to_string(p - base) + ", " + std::to_string(p - base + s.bytes) +
               ") of a " + std::to_string(a->bytes) + "-byte device allocation runs past its end");
}

}  // namespace

void host_fault(const std::string& what) {
  std::fprintf(stderr, "[cuda-emu] %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

void enqueue(cudaStream_t stream, const std::string& op, const std::vector<Span>& reads,
             const std::vector<Span>& writes) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  const int id = stream_id(stream);
  Clock& c = r.clocks[id];
  merge(c, r.host);  // what the host has waited for is complete before this is enqueued
  const uint64_t tick = ++c[id];
  const std::string me = "'" + op + "' on " + r.stream_names[id];
  for (const Span& s : reads) check_span(op, s, "a read of");
  for (const Span& s : writes) check_span(op, s, "a write to");
  auto check_write_seen = [&](const Allocation& a) {
    const Access& w = a.last_write;
    if (w.stream >= 0 && w.stream != id && seen(c, w.stream) < w.tick)
      host_fault("stream race: " + me + " uses device memory that " + where(w) +
                 " wrote, and nothing (an event wait, a synchronisation) orders it after that write");
  };
  for (const Span& s : reads)
    if (Allocation* a = find(s.p)) check_write_seen(*a);
  for (const Span& s : writes)
    if (Allocation* a = find(s.p)) {
      check_write_seen(*a);
      for (auto& [rs, ra] : a->reads)
        if (rs != id && seen(c, rs) < ra.tick)
          host_fault("stream race: " + me + " writes device memory that " + where(ra) +
                     " reads, and nothing orders the write after that read");
    }
  for (const Span& s : reads)
    if (Allocation* a = find(s.p)) a->reads[id] = Access{id, tick, op};
  for (const Span& s : writes)
    if (Allocation* a = find(s.p)) {
      a->written = true;
      a->reads.clear();
      a->last_write = Access{id, tick, op};
    }
  if (id == 0) merge(r.host, c);  // the legacy stream's copies and memsets are synchronous here
}

void host_waits_for(cudaStream_t stream) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  merge(r.host, r.clocks[stream_id(stream)]);
}

void before_launch(const std::string& kernel, const LaunchInfo& info) {
  std::vector<Span> reads, writes;
  for (size_t i = 0; i < info.pointers.size(); ++i)
    (info.writes[i] ? writes : reads).push_back(Span{info.pointers[i], 0});
  enqueue(info.stream, kernel, reads, writes);
}

size_t max_dynamic_smem(const void* fn) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  auto it = r.smem_limits.find(fn);
  return it == r.smem_limits.end() ? 48 * 1024 : it->second;
}

bool is_device(const void* p) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  return find(p) != nullptr;
}

int emulated_devices() {
  const char* e = std::getenv("COCA_EMU_DEVICES");
  const int n = e ? std::atoi(e) : 4;
  return n < 0 ? 0 : n;
}

}  // namespace coca::cuda::emu

using namespace coca::cuda::emu;

namespace {
cudaError_t fail(cudaError_t e) {
  rt().last_error = e;
  return e;
}
cudaMemcpyKind resolve(cudaMemcpyKind kind, const void* dst, const void* src) {
  if (kind != cudaMemcpyDefault) return kind;
  const bool d = is_device(dst), s = is_device(src);
  return d && s ? cudaMemcpyDeviceToDevice : d ? cudaMemcpyHostToDevice : s ? cudaMemcpyDeviceToHost
                                                                         : cudaMemcpyHostToHost;
}
cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s, const char* op) {
  if (n == 0) return cudaSuccess;
  kind = resolve(kind, dst, src);
  const bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((dd && !is_device(dst)) || (sd && !is_device(src)))
    host_fault(std::string(op) + ": a " + (dd && !is_device(dst) ? "destination" : "source") +
               " that should be device memory is not inside any device allocation");
  std::vector<Span> reads, writes;
  if (sd) reads.push_back({src, n});
  if (dd) writes.push_back({dst, n});
  enqueue(s, op, reads, writes);
  std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t fill(void* p, int value, size_t n, cudaStream_t s, const char* op) {
  if (n == 0) return cudaSuccess;
  if (!is_device(p)) host_fault(std::string(op) + ": the destination is not device memory");
  enqueue(s, op, {}, {Span{p, n}});
  std::memset(p, value, n);
  return cudaSuccess;
}
}  // namespace

// ---- devices -------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count) {
  *count = emulated_devices();
  return *count > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emulated_devices()) return fail(cudaErrorInvalidDevice);
  rt().device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = rt().device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= emulated_devices()) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof prop->name, "cuda-emu %d (CPU emulation)", device);
  prop->totalGlobalMem = size_t{16} << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->multiProcessorCount = 4;
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  for (const auto& c : r.clocks) merge(r.host, c);
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = rt().last_error;
  rt().last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return rt().last_error; }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error (cuda-emu)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (cuda-emu: COCA_EMU_DEVICES=0)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (cuda-emu)";
    case cudaErrorInvalidValue: return "invalid argument (cuda-emu)";
    case cudaErrorMemoryAllocation: return "out of memory (cuda-emu)";
    default: return "error (cuda-emu)";
  }
}
const char* cudaGetErrorName(cudaError_t e) { return cudaGetErrorString(e); }
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  if (value < 0 || value > 227 * 1024) return fail(cudaErrorInvalidValue);
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  r.smem_limits[func] = static_cast<size_t>(value);
  return cudaSuccess;
}

// ---- memory --------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** p, size_t bytes) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  void* mem = nullptr;
  if (auto it = r.clean.find(bytes); it != r.clean.end()) {
    mem = it->second;
    r.clean_bytes -= bytes;
    r.clean.erase(it);
  } else {
    if (posix_memalign(&mem, 256, bytes ? bytes : 1) != 0) return fail(cudaErrorMemoryAllocation);
    std::memset(mem, 0xff, bytes);  // fresh device memory reads as NaN
  }
  Allocation& a = r.allocs[reinterpret_cast<uintptr_t>(mem)];
  a = Allocation{};
  a.bytes = bytes;
  *p = mem;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  auto it = r.allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == r.allocs.end()) return fail(cudaErrorInvalidValue);
  for (const auto& c : r.clocks) merge(r.host, c);  // cudaFree synchronises the device
  const size_t bytes = it->second.bytes;
  const bool clean = !it->second.written && bytes >= (1u << 20) && r.clean_bytes + bytes <= (size_t{512} << 20);
  r.allocs.erase(it);
  if (clean) {
    r.clean.emplace(bytes, p);
    r.clean_bytes += bytes;
  } else {
    std::free(p);
  }
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  return copy(dst, src, n, kind, nullptr, "cudaMemcpy");
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  return copy(dst, src, n, kind, s, "cudaMemcpyAsync");
}
cudaError_t cudaMemset(void* p, int value, size_t n) { return fill(p, value, n, nullptr, "cudaMemset"); }
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t s) {
  return fill(p, value, n, s, "cudaMemsetAsync");
}

// ---- streams and events ------------------------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  const int id = static_cast<int>(r.clocks.size());
  r.clocks.emplace_back(r.host);  // it starts after what the host has seen
  r.clocks.back().resize(id + 1, 0);
  r.stream_names.push_back("stream " + std::to_string(id));
  *s = new CUstream_st{id, r.stream_names.back()};
  if (!(flags & cudaStreamNonBlocking))
    coca::cuda::emu::host_fault("cudaStreamCreateWithFlags: blocking streams (synchronised with the legacy stream) "
                                "are not emulated; create the stream with cudaStreamNonBlocking");
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;  // its clock stays: allocations may still name its operations
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  host_waits_for(s);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  *e = new CUevent_st();
  (*e)->timing = !(flags & cudaEventDisableTiming);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  Clock& c = r.clocks[s ? s->id : 0];
  merge(c, r.host);
  e->clock = c;
  e->recorded = true;
  e->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  merge(r.clocks[s ? s->id : 0], e->clock);
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  merge(r.host, e->clock);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }  // eager: always complete
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a->recorded || !b->recorded || !a->timing || !b->timing) return fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
