// cuda-emu: cooperative groups are not emulated (COCA_CUDA=EMU).
#error "cuda-emu: cooperative_groups.h is not emulated"
