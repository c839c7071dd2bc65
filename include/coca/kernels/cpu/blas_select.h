#pragma once
// OpenBLAS built with DYNAMIC_ARCH picks its kernels from the CPU model number. On a model
// newer than the library (Debian 12's OpenBLAS 0.3.21 on Intel family 6 model 207, for one)
// it falls back to its generic Prescott (SSE3) kernels: a coca_tiny training step runs 3.5x
// slower than with the AVX-512 kernels the CPU can run.
#include <string>

namespace coca::cpu {

// Call first thing in main, before any thread or MPI starts. When OpenBLAS chose a generic
// core although the CPU has AVX2+FMA (or AVX-512 F/BW/DQ/VL), and OPENBLAS_CORETYPE is not
// set, re-executes the program with OPENBLAS_CORETYPE=Haswell (or SkylakeX): the same
// process (pid, environment, arguments) with the right kernels. Otherwise returns at once.
void select_blas_kernels(char** argv);

// The decision: the core to ask OpenBLAS for when it chose `chosen` by itself on a CPU with
// these features, or nullptr to keep its choice.
const char* better_blas_core(const char* chosen, bool avx512_f_bw_dq_vl, bool avx2_fma);

// The kernels OpenBLAS uses ("SkylakeX", "Haswell", ...), for the run's banner.
std::string blas_core_name();

}  // namespace coca::cpu
