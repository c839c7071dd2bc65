// The CUDA emulation's own checks (COCA_CUDA=EMU builds only, label cuda-emu): that the bugs it
// exists to find are found. Kernels here are compiled like the .cu files of the emulated build.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "../../src/kernels/cuda/launch.cuh"

namespace {

using coca::cuda::launch;

// out[block] = sum of the block's thread ids, through shared memory (with or without a barrier).
template <bool Barrier>
void block_sum_kernel(float* out) {
  COCA_SHARED(float, part, 64);
  part[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (Barrier) __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (int i = 0; i < 64; ++i) s += part[i];
    out[blockIdx.x] = s;
  }
}

void lane_returns_kernel(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

void divergent_collectives_kernel(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 0);
  }
}

void overrun_kernel(float* out, int n) { out[threadIdx.x + n] = 1.0f; }

void warp_sum_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

std::vector<float> run_block_sum(bool barrier) {
  float* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float) * 8), cudaSuccess);
  if (barrier) launch<block_sum_kernel<true>>(dim3(8), dim3(64), 0, nullptr, d);
  else launch<block_sum_kernel<false>>(dim3(8), dim3(64), 0, nullptr, d);
  std::vector<float> h(8);
  EXPECT_EQ(cudaMemcpy(h.data(), d, sizeof(float) * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  return h;
}

class CudaEmu : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

}  // namespace

TEST_F(CudaEmu, BarrierMakesSharedWritesVisible) {
  for (float v : run_block_sum(true)) EXPECT_EQ(v, 2016.0f);
}

TEST_F(CudaEmu, MissingBarrierReadsUnwrittenSharedMemory) {
  // Thread 0 runs before some writer in almost every shuffled order: NaN (the fill) in its sum.
  int nan_blocks = 0;
  for (float v : run_block_sum(false)) nan_blocks += std::isnan(v);
  EXPECT_GT(nan_blocks, 0);
}

TEST_F(CudaEmu, WarpShuffleExchangesLanes) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float) * 64), cudaSuccess);
  launch<warp_sum_kernel>(dim3(1), dim3(64), 0, nullptr, d);
  std::vector<float> h(64);
  ASSERT_EQ(cudaMemcpy(h.data(), d, sizeof(float) * 64, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(h[0], 496.0f);                  // 0 + ... + 31
  EXPECT_EQ(h[63], 496.0f + 32 * 32);       // 32 + ... + 63
  cudaFree(d);
}

TEST_F(CudaEmu, LaneThatReturnedBeforeAShuffleIsReported) {
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float) * 32);
        launch<lane_returns_kernel>(dim3(1), dim3(32), 0, nullptr, d);
      },
      "lane_returns_kernel block \\(0,0,0\\).*lane 5 returned while lanes of its warp wait at __shfl_xor_sync");
}

TEST_F(CudaEmu, DivergentCollectivesAreReported) {
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float) * 32);
        launch<divergent_collectives_kernel>(dim3(1), dim3(32), 0, nullptr, d);
      },
      "deadlock in divergent_collectives_kernel|different collectives");
}

TEST_F(CudaEmu, OutOfBoundsWriteNamesKernelBlockAndThread) {
  EXPECT_DEATH(
      {
        float* d = nullptr;
        cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float) * 32);
        launch<overrun_kernel>(dim3(1), dim3(32), 0, nullptr, d, 1);
      },
      "heap-buffer-overflow(.|\n)*made by overrun_kernel block \\(0,0,0\\) thread \\(31,0,0\\)");
}

TEST_F(CudaEmu, FreshDeviceMemoryIsNaN) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(float) * 4), cudaSuccess);
  float h[4];
  ASSERT_EQ(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : h) EXPECT_TRUE(std::isnan(v));
  cudaFree(d);
}

TEST_F(CudaEmu, CopyOnAnotherStreamNeedsAnEvent) {
  cudaStream_t a, b;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64), cudaSuccess);
  std::vector<char> h(64);
  // Ordered by an event: fine.
  cudaEvent_t e;
  ASSERT_EQ(cudaEventCreate(&e), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(d, 0, 64, a), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(e, a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, e, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), d, 64, cudaMemcpyDeviceToHost, b), cudaSuccess);
  // Not ordered: the memset on a could overwrite d while the copy on b still reads it.
  EXPECT_DEATH(cudaMemsetAsync(d, 1, 64, a),
               "stream race: 'cudaMemsetAsync' on stream [0-9]+ writes device memory that 'cudaMemcpyAsync' on "
               "stream [0-9]+ reads");
  // Not ordered: the copy on b could run before the memset on a.
  void* d2 = nullptr;
  ASSERT_EQ(cudaMalloc(&d2, 64), cudaSuccess);
  EXPECT_DEATH(
      {
        cudaMemsetAsync(d2, 1, 64, a);
        cudaMemcpyAsync(h.data(), d2, 64, cudaMemcpyDeviceToHost, b);
      },
      "stream race: 'cudaMemcpyAsync' on stream [0-9]+ uses device memory that 'cudaMemsetAsync' on stream [0-9]+ "
      "wrote");
}

TEST_F(CudaEmu, CublasRefusesALeadingDimensionBelowTheRows) {
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  float* m = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&m), sizeof(float) * 64), cudaSuccess);
  const float one = 1, zero = 0;
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, m, CUDA_R_32F, 3, m, CUDA_R_32F, 4, &zero, m + 32,
                         CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, m, CUDA_R_16F, 4, m, CUDA_R_16F, 4, &zero, m + 32,
                         CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
}
