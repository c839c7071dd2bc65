#include "coca/dist/device.h"

#include "coca/kernels/cuda/runtime.h"
#include "coca/tensor/error.h"

namespace coca::dist {

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

Device select_device(const std::string& requested, int local_rank, int local_size) {
  COCA_CHECK(requested == "auto" || requested == "cpu" || requested == "cuda",
             "--device must be auto, cpu or cuda, got '", requested, "'");
  if (requested == "cpu") return Device::CPU;
  const int gpus = cuda::device_count();
  if (requested == "auto" && (!cuda::built_with_cuda() || gpus == 0 || local_size > gpus)) return Device::CPU;
  COCA_CHECK(cuda::built_with_cuda(),
             "--device cuda: this build has no CUDA backend (configure with -DCOCA_CUDA=ON where CUDA is installed)");
  COCA_CHECK(gpus > 0, "--device cuda: no CUDA device is visible on this host (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  COCA_CHECK(local_rank < gpus, "--device cuda: local rank ", local_rank, " of ", local_size,
             " on this host, which has ", gpus, " visible GPU(s); launch at most one rank per GPU");
  cuda::set_device(local_rank);
  return Device::CUDA;
}

std::string apply_precision(Device device, const std::string& requested) {
  COCA_CHECK(requested == "auto" || requested == "fp32" || requested == "tf32" || requested == "amp_bf16",
             "--precision must be auto, fp32, tf32 or amp_bf16, got '", requested, "'");
  const std::string p = requested != "auto" ? requested : device == Device::CUDA ? "amp_bf16" : "fp32";
  COCA_CHECK(device == Device::CUDA || p == "fp32", "--precision ", p,
             " needs --device cuda; CPU computation runs in fp32");
  if (device == Device::CUDA) {
    cuda::set_matmul_precision(p == "amp_bf16" ? cuda::MatmulPrecision::Bf16
                               : p == "tf32"   ? cuda::MatmulPrecision::Tf32
                                               : cuda::MatmulPrecision::Float32);
  }
  return p;
}

}  // namespace coca::dist
