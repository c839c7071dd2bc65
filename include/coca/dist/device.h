#pragma once
// Where a process computes, and at what matmul precision: the --device and --precision options
// of coca-train and coca-eval, resolved identically for every rank.
#include <string>

#include "coca/tensor/tensor.h"

namespace coca::dist {

// "cpu", "cuda" or "auto" (cuda when this build has the CUDA backend and this host a GPU for
// `local_rank`, else cpu). For cuda, makes GPU `local_rank` this process's device (one GPU per
// rank on a host). Throws one line naming the option when the request cannot be met.
Device select_device(const std::string& requested, int local_rank, int local_size);

// "fp32", "tf32", "amp_bf16" or "auto" (amp_bf16 on cuda, fp32 on cpu), checked against the
// device (the CPU runs fp32 only) and applied to the CUDA matmuls. Returns the resolved name.
std::string apply_precision(Device device, const std::string& requested);

const char* device_name(Device d);  // "cpu" or "cuda"

}  // namespace coca::dist
