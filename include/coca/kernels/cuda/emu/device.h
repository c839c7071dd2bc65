#pragma once
// The device side of the CUDA emulation (COCA_CUDA=EMU): what a .cu file sees when the host
// compiler builds it. Kernels are plain functions; launch.cuh runs them through
// coca::cuda::emu::run_kernel, which executes the blocks of a grid one after another and the
// threads of a block as fibers. threadIdx & co. read the running fiber's coordinates;
// __syncthreads and the warp collectives suspend the fiber until every thread (lane) they wait
// for has arrived, so a kernel that relies on a barrier it does not have computes garbage here
// as it would on a GPU (thread order between barriers is shuffled; see scheduler.cpp).
// Emulated: static shared memory (COCA_SHARED) and dynamic shared memory (COCA_DYNAMIC_SHARED),
// one NaN-filled copy per block, __shfl_sync/_xor/_up/_down, __ballot/__any/__all_sync,
// __syncwarp, atomicAdd/Min/Max/Exch/CAS, bf16 via cuda_bf16.h's host code, device math.
// Not emulated, refused at compile time: inline PTX (asm), WMMA (mma.h), cooperative groups.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <math.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace coca::cuda::emu {

// Coordinates of the thread (fiber) running now on this OS thread.
struct ThreadCoords {
  uint3 thread{}, block{};
  dim3 block_dim{1, 1, 1}, grid_dim{1, 1, 1};
};
// A plain global: launches are serialised (scheduler.cpp), and only fibers read it.
extern ThreadCoords g_coords;

enum class Collective : int { SyncThreads, SyncWarp, Shuffle, Ballot };

// Block barrier (every thread of the block that has not returned).
void sync_threads();
// Warp collective: this lane offers `value` and reads lane `src_lane`'s offer (Shuffle), or the
// ballot of every lane's `value != 0` (Ballot); `mask` must name every lane that calls it.
uint64_t warp_collective(Collective kind, unsigned mask, uint64_t value, int src_lane, const char* what);
// The block's dynamic shared memory (the launch's smem bytes, NaN-filled at block start).
void* dynamic_shared();
// The block's copy of the static shared variable declared at `key` (NaN-filled, exact size).
void* block_shared(const void* key, size_t bytes);
// Reports a kernel-side misuse (kernel, block, thread, seed) and aborts.
[[noreturn]] void device_fault(const char* what);

inline int lane_id() {
  const uint3 t = g_coords.thread;
  const dim3 b = g_coords.block_dim;
  return static_cast<int>((t.x + b.x * (t.y + b.y * t.z)) % 32);
}

template <typename T> uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffle of a type over 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T> T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

// Source lane of a shuffle within its width-sized segment (CUDA's rules: out of the segment
// reads the lane's own value).
inline int segment_lane(int lane, int target, int width) {
  const int base = lane - lane % width;
  return (target < base || target >= base + width) ? lane : target;
}

}  // namespace coca::cuda::emu

// ---- execution-space keywords, built-in variables ----------------------------------------
#undef __shared__
// Shared memory is declared with COCA_SHARED / COCA_DYNAMIC_SHARED (launch.cuh), which the
// emulator backs with one exact-size, NaN-filled allocation per block (bounds-checked by ASan).
// A plain __shared__ variable would be one static copy: refused.
#define __shared__ \
  static_assert(false, "cuda-emu: declare shared memory with COCA_SHARED(type, name, count) (launch.cuh)");
#define threadIdx (::coca::cuda::emu::g_coords.thread)
#define blockIdx (::coca::cuda::emu::g_coords.block)
#define blockDim (::coca::cuda::emu::g_coords.block_dim)
#define gridDim (::coca::cuda::emu::g_coords.grid_dim)
#define warpSize 32
#define __launch_bounds__(...)

// COCA_SHARED(double, part, 32) for `__shared__ double part[32]`: the block's copy, keyed by the
// declaration (its own static), allocated when the block first reaches it.
#define COCA_SHARED(type, name, count)                 \
  static const char coca_emu_shared_key_##name = 0; \
  type* name = static_cast<type*>(::coca::cuda::emu::block_shared(&coca_emu_shared_key_##name, sizeof(type) * (count)))
// COCA_DYNAMIC_SHARED(unsigned char, smem, 16) for
// `extern __shared__ __align__(16) unsigned char smem[]`.
#define COCA_DYNAMIC_SHARED(type, name, align) \
  type* name = static_cast<type*>(::coca::cuda::emu::dynamic_shared())

// What the emulation cannot express fails to compile here, with a reason.
#define asm(...) static_assert(false, "cuda-emu: inline PTX (asm) cannot run in the emulated build")
#define __CUDA_EMU_NO_COOPERATIVE_GROUPS__ 1

// cuda_runtime.h's kernel-pointer overload exists for nvcc only.
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// ---- synchronisation and warp collectives -------------------------------------------------
inline void __syncthreads() { ::coca::cuda::emu::sync_threads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::coca::cuda::emu::warp_collective(::coca::cuda::emu::Collective::SyncWarp, mask, 0, 0, "__syncwarp");
}
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  namespace e = ::coca::cuda::emu;
  const int lane = e::lane_id();
  const int s = lane - lane % width + ((src % width) + width) % width;
  return e::from_bits<T>(e::warp_collective(e::Collective::Shuffle, mask, e::to_bits(v), s, "__shfl_sync"));
}
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  namespace e = ::coca::cuda::emu;
  const int lane = e::lane_id();
  const int s = e::segment_lane(lane, lane ^ lane_mask, width);
  return e::from_bits<T>(e::warp_collective(e::Collective::Shuffle, mask, e::to_bits(v), s, "__shfl_xor_sync"));
}
template <typename T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  namespace e = ::coca::cuda::emu;
  const int lane = e::lane_id();
  const int s = e::segment_lane(lane, lane + static_cast<int>(delta), width);
  return e::from_bits<T>(e::warp_collective(e::Collective::Shuffle, mask, e::to_bits(v), s, "__shfl_down_sync"));
}
template <typename T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  namespace e = ::coca::cuda::emu;
  const int lane = e::lane_id();
  const int s = e::segment_lane(lane, lane - static_cast<int>(delta), width);
  return e::from_bits<T>(e::warp_collective(e::Collective::Shuffle, mask, e::to_bits(v), s, "__shfl_up_sync"));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  namespace e = ::coca::cuda::emu;
  return static_cast<unsigned>(e::warp_collective(e::Collective::Ballot, mask, pred != 0, 0, "__ballot_sync"));
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

// ---- atomics: fibers switch only at collectives, so a read-modify-write is indivisible -------
template <typename T> T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* p, __nv_bfloat16 v) {
  const __nv_bfloat16 old = *p;
  *p = __float2bfloat16(__bfloat162float(old) + __bfloat162float(v));
  return old;
}
template <typename T> T atomicMin(T* p, T v) {
  const T old = *p;
  if (v < old) *p = v;
  return old;
}
template <typename T> T atomicMax(T* p, T v) {
  const T old = *p;
  if (v > old) *p = v;
  return old;
}
template <typename T> T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T> T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

// ---- device math that the host library lacks ----------------------------------------------
template <typename T> inline T min(T a, T b) { return b < a ? b : a; }
template <typename T> inline T max(T a, T b) { return a < b ? b : a; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
