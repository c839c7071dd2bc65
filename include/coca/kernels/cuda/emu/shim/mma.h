// cuda-emu: WMMA fragments (mma.h) are not emulated; a kernel that uses them cannot run in the
// emulated build (COCA_CUDA=EMU). Emulate them in include/coca/kernels/cuda/emu/ first.
#error "cuda-emu: WMMA (mma.h) is not emulated"
