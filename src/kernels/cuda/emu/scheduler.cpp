// The emulated GPU's execution model. A launch runs its blocks one after another on the calling
// thread; a block's threads are fibers on preallocated stacks (a stack switch of a few
// instructions on x86-64, ucontext elsewhere: swapcontext's signal-mask syscall per switch
// would cost more than most of the kernels' threads do). A fiber runs until it
// returns or reaches a collective: __syncthreads waits for every thread of the block that has
// not returned, a warp collective for every lane its mask names. When no fiber can run, the
// scheduler completes what can be completed (warps first, then the block barrier) and resumes
// the waiting fibers, in an order shuffled with a seeded generator (COCA_EMU_SEED), so that a
// kernel which reads shared memory another thread writes without a barrier in between sees
// unwritten (NaN-filled) data in some runs. Static and dynamic shared memory are NaN-filled
// (0xff bytes) before every block. Misuse (a lane missing from a warp collective, a deadlock, a
// bad launch configuration) aborts with the kernel, block, thread and seed.
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>

#include "coca/kernels/cuda/emu/device.h"
#include "coca/kernels/cuda/emu/launch.h"
#include "emu_state.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define COCA_EMU_ASAN 1
#endif

#if defined(__x86_64__)
// coca_emu_switch(&save_sp, new_sp): saves the callee-saved registers, MXCSR and the x87 control
// word on the current stack, stores its pointer, and resumes the stack at new_sp.
extern "C" void coca_emu_switch(void** save_sp, void* new_sp);
__asm__(R"(
  .text
  .globl coca_emu_switch
  .type coca_emu_switch,@function
coca_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size coca_emu_switch, .-coca_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#define COCA_EMU_FAST_SWITCH 1
#endif

namespace coca::cuda::emu {

ThreadCoords g_coords;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;

enum class FiberState { Ready, Waiting, Done };

struct Context {
#ifdef COCA_EMU_FAST_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

struct Fiber {
  Context ctx;
  unsigned char* stack = nullptr;
  FiberState state = FiberState::Done;
  uint3 tid{};
  // The collective it waits at.
  Collective kind = Collective::SyncThreads;
  const char* what = "";
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int src = 0;
  void* fake_stack = nullptr;
  // Where the finished fiber's last frames (fiber_main's, which never returns) lie: only the
  // stack above this point can still carry AddressSanitizer redzones.
  unsigned char* last_frame = nullptr;
};

struct Scheduler {
  std::mutex mu;  // one launch at a time (shared memory is one static copy)
  Context main_ctx;
#ifndef COCA_EMU_FAST_SWITCH
  ucontext_t blank;
  bool blank_made = false;
#endif
  Fiber fibers[kMaxThreads];
  int nthreads = 0;
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::string kernel;
  unsigned char* dyn = nullptr;
  size_t dyn_bytes = 0;
  std::mt19937_64 rng;
  uint64_t seed = 0;
  bool seeded = false;
  const void* main_bottom = nullptr;
  size_t main_size = 0;
  std::map<std::string, int64_t> launches;
  std::vector<std::pair<const void*, void*>> statics;  // the block's COCA_SHARED variables
};

Scheduler& sched() {
  static auto* s = new Scheduler();
  return *s;
}

// ---- AddressSanitizer fiber annotations ---------------------------------------------------
void asan_start(void** fake, const void* bottom, size_t size) {
#ifdef COCA_EMU_ASAN
  __sanitizer_start_switch_fiber(fake, bottom, size);
#endif
}
void asan_finish(void* fake, const void** bottom, size_t* size) {
#ifdef COCA_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, bottom, size);
#endif
}

std::string coords_text() {
  Scheduler& s = sched();
  char buf[256];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", g_coords.block.x, g_coords.block.y,
                g_coords.block.z, g_coords.thread.x, g_coords.thread.y, g_coords.thread.z);
  return s.kernel + " " + buf;
}

void switch_to(Context& from, Context& to) {
#ifdef COCA_EMU_FAST_SWITCH
  coca_emu_switch(&from.sp, to.sp);
#else
  swapcontext(&from.uc, &to.uc);
#endif
}

// A fiber's first frame: runs the thread, then hands the stack back for good.
void fiber_main() {
  Scheduler& s = sched();
  asan_finish(nullptr, &s.main_bottom, &s.main_size);
  const int idx = s.current;
  (*s.body)();
  s.fibers[idx].state = FiberState::Done;
  s.fibers[idx].last_frame = static_cast<unsigned char*>(__builtin_frame_address(0));
  asan_start(nullptr, s.main_bottom, s.main_size);  // this stack's frames are finished
  Context dead;
  switch_to(dead, s.main_ctx);
  __builtin_unreachable();
}

// Prepares `f` to start in fiber_main on its own stack.
void make_fiber(Scheduler& s, Fiber& f) {
#ifdef COCA_EMU_ASAN
  // The previous fiber's last frame (fiber_main) never returned: its redzones are still marked.
  // Every deeper frame returned and cleared its own, so only the top of the stack is cleared
  // (the whole 256 KiB, 32 KiB of shadow per thread per block, was most of a launch's time).
  if (f.last_frame) {
    const size_t margin = 16 * 1024;  // fiber_main's frame and the switch below it
    unsigned char* from = f.last_frame - std::min<size_t>(margin, static_cast<size_t>(f.last_frame - f.stack));
    ASAN_UNPOISON_MEMORY_REGION(from, static_cast<size_t>(f.stack + kStackBytes - from));
  } else {
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kStackBytes);  // a fresh stack, once
  }
#endif
#ifdef COCA_EMU_FAST_SWITCH
  auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(f.stack + kStackBytes) & ~uintptr_t{15});
  uint64_t* sp = top;
  *--sp = 0;                                          // fiber_main's return address: none
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);    // where coca_emu_switch's ret goes
  for (int r = 0; r < 6; ++r) *--sp = 0;              // rbp rbx r12-r15
  *--sp = uint64_t{0x037f} << 32 | 0x1f80;            // x87 control word, MXCSR defaults
  f.ctx.sp = sp;
#else
  if (!s.blank_made) {
    getcontext(&s.blank);
    s.blank_made = true;
  }
  f.ctx.uc = s.blank;
  f.ctx.uc.uc_stack.ss_sp = f.stack;
  f.ctx.uc.uc_stack.ss_size = kStackBytes;
  f.ctx.uc.uc_link = nullptr;
  makecontext(&f.ctx.uc, &fiber_main, 0);
#endif
}

void resume(int i) {
  Scheduler& s = sched();
  Fiber& f = s.fibers[i];
  g_coords.thread = f.tid;
  s.current = i;
  void* fake = nullptr;
  asan_start(&fake, f.stack, kStackBytes);
  switch_to(s.main_ctx, f.ctx);
  asan_finish(fake, nullptr, nullptr);
  s.current = -1;
}

// Called on a fiber: park it until the scheduler completes its collective.
void park(Collective kind, const char* what) {
  Scheduler& s = sched();
  if (s.current < 0) device_fault(what);
  Fiber& f = s.fibers[s.current];
  f.kind = kind;
  f.what = what;
  f.state = FiberState::Waiting;
  asan_start(&f.fake_stack, s.main_bottom, s.main_size);
  switch_to(f.ctx, s.main_ctx);
  asan_finish(f.fake_stack, &s.main_bottom, &s.main_size);
}

unsigned char* new_stack() {
  const size_t page = 4096;
  void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "[cuda-emu] cannot map a fiber stack\n");
    std::abort();
  }
  mprotect(p, page, PROT_NONE);  // guard page: a fiber stack overflow faults
  return static_cast<unsigned char*>(p) + page;
}

[[noreturn]] void launch_fault(const LaunchInfo& info, const std::string& what) {
  std::fprintf(stderr, "[cuda-emu] launch of %s: %s\n", sched().kernel.c_str(), what.c_str());
  std::abort();
}

bool is_warp_kind(Collective k) { return k != Collective::SyncThreads; }

// Completes every warp whose named lanes all wait at the same warp collective. Returns whether
// any fiber became ready.
bool complete_warps(Scheduler& s) {
  bool progress = false;
  for (int w0 = 0; w0 < s.nthreads; w0 += 32) {
    const int lanes = std::min(32, s.nthreads - w0);
    int first = -1;
    for (int l = 0; l < lanes; ++l) {
      const Fiber& f = s.fibers[w0 + l];
      if (f.state == FiberState::Waiting && is_warp_kind(f.kind)) {
        first = l;
        break;
      }
    }
    if (first < 0) continue;
    const Fiber& lead = s.fibers[w0 + first];
    const unsigned mask = lead.mask;
    bool complete = true;
    for (int l = 0; l < 32; ++l) {
      if (!(mask >> l & 1u)) continue;
      if (l >= lanes) {
        g_coords.thread = lead.tid;
        device_fault(("lane " + std::to_string(l) + " named in the mask of " + lead.what +
                      " does not exist (the block's last warp is partial)")
                         .c_str());
      }
      const Fiber& f = s.fibers[w0 + l];
      if (f.state == FiberState::Done) {
        g_coords.thread = lead.tid;
        device_fault(("lane " + std::to_string(l) + " returned while lanes of its warp wait at " + lead.what).c_str());
      }
      if (f.state != FiberState::Waiting || !is_warp_kind(f.kind)) {
        complete = false;
        continue;
      }
      if (f.kind != lead.kind || f.mask != mask) {
        g_coords.thread = f.tid;
        device_fault((std::string("lanes of one warp meet at different collectives: ") + f.what + " and " + lead.what)
                         .c_str());
      }
    }
    if (!complete) continue;
    uint64_t ballot = 0;
    for (int l = 0; l < lanes; ++l)
      if ((mask >> l & 1u) && s.fibers[w0 + l].value) ballot |= uint64_t{1} << l;
    for (int l = 0; l < lanes; ++l) {
      if (!(mask >> l & 1u)) continue;
      Fiber& f = s.fibers[w0 + l];
      if (f.kind == Collective::Shuffle) {
        if (f.src < 0 || f.src >= 32 || !(mask >> f.src & 1u)) {
          g_coords.thread = f.tid;
          device_fault((std::string(f.what) + " reads lane " + std::to_string(f.src) + ", which is not in the mask")
                           .c_str());
        }
        f.result = s.fibers[w0 + f.src].value;
      } else {
        f.result = ballot;
      }
      f.state = FiberState::Ready;
      progress = true;
    }
  }
  return progress;
}

[[noreturn]] void deadlock(Scheduler& s) {
  std::string waits;
  int shown = 0;
  for (int i = 0; i < s.nthreads && shown < 8; ++i) {
    const Fiber& f = s.fibers[i];
    if (f.state != FiberState::Waiting) continue;
    waits += " thread (" + std::to_string(f.tid.x) + "," + std::to_string(f.tid.y) + "," + std::to_string(f.tid.z) +
             ") at " + f.what + ";";
    ++shown;
  }
  std::fprintf(stderr,
               "[cuda-emu] deadlock in %s block (%u,%u,%u): threads wait at collectives that cannot complete:%s "
               "(seed %llu)\n",
               s.kernel.c_str(), g_coords.block.x, g_coords.block.y, g_coords.block.z, waits.c_str(),
               static_cast<unsigned long long>(s.seed));
  std::abort();
}

void run_block(Scheduler& s) {
  // Fresh shared memory: NaN in every float type, -1 in every integer.
  if (s.dyn_bytes) std::memset(s.dyn, 0xff, s.dyn_bytes);
  const dim3 bd = g_coords.block_dim;
  for (int i = 0; i < s.nthreads; ++i) {
    Fiber& f = s.fibers[i];
    if (!f.stack) f.stack = new_stack();
    f.tid = uint3{static_cast<unsigned>(i) % bd.x, static_cast<unsigned>(i) / bd.x % bd.y,
                  static_cast<unsigned>(i) / (bd.x * bd.y)};
    f.state = FiberState::Ready;
    make_fiber(s, f);
  }
  std::vector<int> order;
  order.reserve(s.nthreads);
  for (;;) {
    order.clear();
    for (int i = 0; i < s.nthreads; ++i)
      if (s.fibers[i].state == FiberState::Ready) order.push_back(i);
    if (!order.empty()) {
      std::shuffle(order.begin(), order.end(), s.rng);
      for (int i : order) resume(i);
      continue;
    }
    bool all_done = true, all_at_barrier = true;
    for (int i = 0; i < s.nthreads; ++i) {
      const Fiber& f = s.fibers[i];
      if (f.state == FiberState::Done) continue;
      all_done = false;
      if (f.kind != Collective::SyncThreads) all_at_barrier = false;
    }
    if (all_done) {
      for (auto& [key, mem] : s.statics) std::free(mem);
      s.statics.clear();
      return;
    }
    if (complete_warps(s)) continue;
    if (!all_at_barrier) deadlock(s);
    for (int i = 0; i < s.nthreads; ++i)
      if (s.fibers[i].state == FiberState::Waiting) s.fibers[i].state = FiberState::Ready;
  }
}

// "const char* coca::cuda::emu::kernel_tag() [with auto Kernel = coca::cuda::{anonymous}::f<float>]"
std::string kernel_name(const char* pretty) {
  std::string p = pretty ? pretty : "?";
  const size_t at = p.find("Kernel = ");
  if (at == std::string::npos) return p;
  std::string n = p.substr(at + 9);
  if (!n.empty() && n.back() == ']') n.pop_back();
  if (!n.empty() && n[0] == '&') n.erase(0, 1);
  for (const std::string drop : {"coca::cuda::detail::", "coca::cuda::", "{anonymous}::"}) {
    for (size_t k; (k = n.find(drop)) != std::string::npos;) n.erase(k, drop.size());
  }
  return n;
}

void write_launch_log() {
  Scheduler& s = sched();
  const char* path = std::getenv("COCA_EMU_LAUNCH_LOG");
  if (!path || s.launches.empty()) return;
  FILE* f = std::fopen(path, "a");
  if (!f) return;
  for (auto& [name, n] : s.launches) std::fprintf(f, "%lld\t%s\n", static_cast<long long>(n), name.c_str());
  std::fclose(f);
}

#ifdef COCA_EMU_ASAN
void on_asan_death() {
  Scheduler& s = sched();
  if (s.current >= 0)
    std::fprintf(stderr, "[cuda-emu] the access above was made by %s (seed %llu)\n", coords_text().c_str(),
                 static_cast<unsigned long long>(s.seed));
}
#endif

}  // namespace

void sync_threads() { park(Collective::SyncThreads, "__syncthreads"); }

uint64_t warp_collective(Collective kind, unsigned mask, uint64_t value, int src_lane, const char* what) {
  Scheduler& s = sched();
  if (s.current < 0) device_fault(what);
  Fiber& f = s.fibers[s.current];
  if (!(mask >> lane_id() & 1u))
    device_fault((std::string(what) + ": the calling lane is not in the mask").c_str());
  f.mask = mask;
  f.value = value;
  f.src = src_lane;
  park(kind, what);
  return s.fibers[s.current].result;
}

void* dynamic_shared() { return sched().dyn; }

void* block_shared(const void* key, size_t bytes) {
  Scheduler& s = sched();
  for (auto& [k, mem] : s.statics)
    if (k == key) return mem;
  void* mem = std::malloc(bytes ? bytes : 1);
  std::memset(mem, 0xff, bytes);
  s.statics.emplace_back(key, mem);
  return mem;
}

void device_fault(const char* what) {
  Scheduler& s = sched();
  std::fprintf(stderr, "[cuda-emu] %s: %s (seed %llu; COCA_EMU_SEED=%llu repeats the thread order)\n",
               coords_text().c_str(), what, static_cast<unsigned long long>(s.seed),
               static_cast<unsigned long long>(s.seed));
  std::abort();
}

void run_kernel(const LaunchInfo& info, const std::function<void()>& body) {
  Scheduler& s = sched();
  std::lock_guard<std::mutex> lock(s.mu);
  s.kernel = kernel_name(info.pretty);
  if (!s.seeded) {
    const char* e = std::getenv("COCA_EMU_SEED");
    s.seed = e ? std::strtoull(e, nullptr, 10) : std::random_device{}();
    s.rng.seed(s.seed);
    s.seeded = true;
    std::fprintf(stderr, "[cuda-emu] thread order seed %llu (COCA_EMU_SEED=%llu repeats it)\n",
                 static_cast<unsigned long long>(s.seed), static_cast<unsigned long long>(s.seed));
    std::atexit(write_launch_log);
#ifdef COCA_EMU_ASAN
    __asan_set_death_callback(on_asan_death);
#endif
  }
  const dim3 g = info.grid, b = info.block;
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  if (threads == 0 || threads > kMaxThreads || b.z > 64)
    launch_fault(info, "block (" + std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) +
                           ") is not a valid CUDA block (at most 1024 threads, z <= 64)");
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 || g.x > 0x7fffffffu)
    launch_fault(info, "grid (" + std::to_string(g.x) + "," + std::to_string(g.y) + "," + std::to_string(g.z) +
                           ") is not a valid CUDA grid");
  const size_t smem_limit = max_dynamic_smem(info.fn);
  if (info.smem > smem_limit)
    launch_fault(info, std::to_string(info.smem) + " bytes of dynamic shared memory, over the kernel's limit of " +
                           std::to_string(smem_limit) + " (cudaFuncSetAttribute raises it up to 227 KiB)");
  before_launch(s.kernel, info);
  s.launches[s.kernel]++;
  s.nthreads = static_cast<int>(threads);
  s.body = &body;
  s.dyn_bytes = info.smem;
  s.dyn = static_cast<unsigned char*>(std::malloc(info.smem ? info.smem : 1));
  g_coords.block_dim = b;
  g_coords.grid_dim = g;
  for (unsigned z = 0; z < g.z; ++z)
    for (unsigned y = 0; y < g.y; ++y)
      for (unsigned x = 0; x < g.x; ++x) {
        g_coords.block = uint3{x, y, z};
        run_block(s);
      }
  std::free(s.dyn);
  s.dyn = nullptr;
  s.body = nullptr;
}

std::map<std::string, int64_t> launch_counts() {
  Scheduler& s = sched();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.launches;
}

}  // namespace coca::cuda::emu
