#pragma once
// State the emulated runtime, cuBLAS, NCCL and the kernel scheduler share (COCA_CUDA=EMU only).
//
// Stream ordering. Work runs eagerly, when it is enqueued, but its place in CUDA's ordering is
// tracked with vector clocks: every stream counts the operations enqueued on it; its clock holds,
// for every stream, the last operation known to have completed before its next one (its own
// earlier work, an event it waited for, what the host had synchronised with when it enqueued).
// Every device allocation remembers its last writer and its readers since (stream, tick,
// operation). An operation that reads or writes an allocation whose last writer (or, for a
// write, a reader) ran on another stream that its own clock has not seen is a race that the
// GPU could lose: it aborts naming both operations and streams.
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace coca::cuda::emu {

struct LaunchInfo;

struct Span {
  const void* p;
  size_t bytes;  // 0: unknown extent (a kernel's pointer argument): ordering only, no bounds check
};

// Orders and checks one operation on `stream` that reads `reads` and writes `writes` (device
// memory only; host pointers are ignored). `op` names it in reports.
void enqueue(cudaStream_t stream, const std::string& op, const std::vector<Span>& reads,
             const std::vector<Span>& writes);
// The host waits for everything enqueued so far on `stream` (cudaStreamSynchronize).
void host_waits_for(cudaStream_t stream);
// Called by run_kernel before the grid runs: the launch's ordering check.
void before_launch(const std::string& kernel, const LaunchInfo& info);
// Largest dynamic shared memory the kernel may be launched with (48 KiB unless raised).
size_t max_dynamic_smem(const void* fn);
// Whether [p, p + bytes) lies inside one device allocation (bytes may be 0).
bool is_device(const void* p);
// Aborts with a report (the emulator's answer to a bug a GPU would let through silently).
[[noreturn]] void host_fault(const std::string& what);
// Launches per kernel instantiation so far in this process.
std::map<std::string, int64_t> launch_counts();

}  // namespace coca::cuda::emu
