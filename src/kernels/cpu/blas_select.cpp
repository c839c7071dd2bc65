#include "coca/kernels/cpu/blas_select.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" char* openblas_get_corename(void);

namespace coca::cpu {

namespace {

// Cores OpenBLAS falls back to for a CPU it does not know; none of them uses AVX2 or FMA.
bool is_generic_core(const char* name) {
  for (const char* weak : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Sandybridge", "Unknown"})
    if (std::strcmp(name, weak) == 0) return true;
  return false;
}

}  // namespace

const char* better_blas_core(const char* chosen, bool avx512_f_bw_dq_vl, bool avx2_fma) {
  if (!chosen || !is_generic_core(chosen)) return nullptr;
  if (avx512_f_bw_dq_vl) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return nullptr;
}

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

void select_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("COCA_BLAS_REEXEC")) return;  // chosen, or done once
  const char* name = openblas_get_corename();
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* better = better_blas_core(name, avx512, avx2);
  if (!better) return;
  setenv("OPENBLAS_CORETYPE", better, 1);
  setenv("COCA_BLAS_REEXEC", name, 1);  // what OpenBLAS chose by itself; also stops a second exec
  execv("/proc/self/exe", argv);
  // Still here: the exec failed; carry on with the slow kernels rather than fail.
  std::fprintf(stderr, "coca: warning: OpenBLAS uses its generic %s kernels on this CPU and re-executing with "
               "OPENBLAS_CORETYPE=%s failed; set it yourself for %s speed\n", name, better, better);
}

}  // namespace coca::cpu
