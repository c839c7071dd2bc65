// Sums over a middle axis, row max with argmax, and the float64 sum of squares, on the GPU.
// Every reduction runs in a fixed order (no atomics): results are deterministic.
#include "coca/kernels/cuda/reduce.h"

#include <vector>

#include "common.cuh"

namespace coca::cuda {

namespace {

// inner == 1: one warp per row.
template <typename T>
__global__ void row_sum_kernel(const T* x, T* y, int64_t rows, int64_t red) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (r >= rows) return;
  const T* row = x + r * red;
  T acc = 0;
  for (int64_t c = threadIdx.x; c < red; c += 32) acc += row[c];
  acc = warp_sum(acc);
  if (threadIdx.x == 0) y[r] = acc;
}

// Column sums of [outer, red, inner] over rows [r0, r1) of each chunk: partial[chunk, o, i].
template <typename T>
__global__ void col_sum_kernel(const T* x, T* partial, int64_t outer, int64_t red, int64_t inner,
                               int64_t chunk_rows) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t o = blockIdx.y;
  const int64_t chunk = blockIdx.z;
  if (i >= inner) return;
  const int64_t r0 = chunk * chunk_rows, r1 = min(red, r0 + chunk_rows);
  const T* base = x + o * red * inner + i;
  T acc = 0;
  for (int64_t r = r0; r < r1; ++r) acc += base[r * inner];
  partial[(chunk * outer + o) * inner + i] = acc;
}

template <typename T>
__global__ void sum_chunks_kernel(const T* partial, T* y, int64_t n, int64_t chunks) {
  COCA_KERNEL_LOOP(i, n) {
    T acc = 0;
    for (int64_t c = 0; c < chunks; ++c) acc += partial[c * n + i];
    y[i] = acc;
  }
}

template <typename T>
__global__ void max_last_kernel(const T* x, T* v, int32_t* idx, int64_t rows, int64_t cols) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (r >= rows) return;
  const T* row = x + r * cols;
  T best = row[0];
  int64_t bi = 0;
  for (int64_t c = threadIdx.x; c < cols; c += 32)
    if (row[c] > best || (c < bi && row[c] == best)) best = row[c], bi = c;
  // Lane 0 may hold (row[0], 0) without having seen it as a candidate: ties go to the lower index.
  for (int o = 16; o > 0; o >>= 1) {
    const T ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
  }
  if (threadIdx.x == 0) {
    v[r] = best;
    idx[r] = static_cast<int32_t>(bi);
  }
}

template <typename T>
__global__ void max_backward_kernel(const T* g, const int32_t* idx, T* out, int64_t rows, int64_t cols) {
  COCA_KERNEL_LOOP(r, rows) out[r * cols + idx[r]] = g[r];
}

// The sum of every thread's acc over the block, valid on thread 0: warp sums, then the warps in
// order (fixed, so the result is deterministic).
__device__ __forceinline__ double block_sum(double acc) {
  acc = warp_sum(acc);
  COCA_SHARED(double, warp_part, 32);
  if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = acc;
  __syncthreads();
  double s = 0;
  if (threadIdx.x == 0)
    for (unsigned w = 0; w < blockDim.x / 32; ++w) s += warp_part[w];
  return s;
}

// One block per chunk of one tensor: partial[chunk] = sum of squares of its elements
// [begin, end), in float64.
struct SquaresChunk {
  const void* x;
  int64_t begin, end;
};

template <typename T>
__global__ void sum_squares_chunks_kernel(const SquaresChunk* chunks, double* partial) {
  const SquaresChunk c = chunks[blockIdx.x];
  const T* x = static_cast<const T*>(c.x);
  double acc = 0;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const double v = static_cast<double>(x[i]);
    acc += v * v;
  }
  const double s = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block: out = [sqrt(sum of partial), clipping scale], the partials summed in a fixed order.
__global__ void norm_and_scale_kernel(const double* partial, int64_t n, double max_norm, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  const double s = block_sum(acc);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    out[0] = norm;
    out[1] = max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;  // as clip_grad_norm
  }
}

template <typename T>
__global__ void scale_kernel(T* x, int64_t n, T s) {
  COCA_KERNEL_LOOP(i, n) x[i] *= s;
}

}  // namespace

void sum_middle(const Tensor& in, int64_t outer, int64_t red, int64_t inner, Tensor& out) {
  KernelTimer timer("sum");
  dispatch_float_dev(in.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* x = dptr<T>(in);
    T* y = dptr<T>(out);
    if (inner == 1) {
      const dim3 block(32, 8);
      launch<row_sum_kernel<T>>(blocks_for(outer, 8), block, 0, stream(), x, y, outer, red);
      COCA_CUDA_LAUNCH_CHECK();
      return;
    }
    // Split the reduced axis into chunks when the output alone would not fill the GPU.
    const int64_t outputs = outer * inner;
    int64_t chunks = outputs >= (1 << 16) || red <= 64 ? 1 : std::min<int64_t>((red + 63) / 64, 1024);
    const int64_t chunk_rows = (red + chunks - 1) / chunks;
    chunks = (red + chunk_rows - 1) / chunk_rows;
    COCA_CHECK(outer <= 65535 && chunks <= 65535, "sum (CUDA): outer size ", outer, " too large");
    const dim3 grid(blocks_for(inner, 128), static_cast<unsigned>(outer), static_cast<unsigned>(chunks));
    if (chunks == 1) {
      launch<col_sum_kernel<T>>(grid, 128, 0, stream(), x, y, outer, red, inner, chunk_rows);
      COCA_CUDA_LAUNCH_CHECK();
      return;
    }
    Scratch partial(sizeof(T) * chunks * outputs);
    launch<col_sum_kernel<T>>(grid, 128, 0, stream(), x, partial.as<T>(), outer, red, inner, chunk_rows);
    COCA_CUDA_LAUNCH_CHECK();
    launch<sum_chunks_kernel<T>>(grid_for(outputs), 256, 0, stream(), partial.as<T>(), y, outputs, chunks);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void max_last(const Tensor& in, int64_t rows, int64_t cols, Tensor& values, Tensor& index) {
  KernelTimer timer("max");
  dispatch_float_dev(in.dtype(), "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<max_last_kernel<T>>(blocks_for(rows, 8), dim3(32, 8), 0, stream(), dptr<T>(in), dptr<T>(values),
                                                                          dptr<int32_t>(index), rows, cols);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void max_last_backward(const Tensor& g, const Tensor& index, int64_t rows, int64_t cols, Tensor& out) {
  dispatch_float_dev(out.dtype(), "max_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    COCA_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, sizeof(T) * rows * cols, stream()));
    launch<max_backward_kernel<T>>(grid_for(rows), 256, 0, stream(), dptr<T>(g), dptr<int32_t>(index), dptr<T>(out),
                                                                rows, cols);
    COCA_CUDA_LAUNCH_CHECK();
  });
}

void scale_(Tensor& t, double s) {
  KernelTimer timer("scale_");
  const int64_t n = t.numel();
  if (n == 0) return;
  dispatch_float_dev(t.dtype(), "scale_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch<scale_kernel<T>>(grid_for(n), 256, 0, stream(), dptr<T>(t), n, static_cast<T>(s));
    COCA_CUDA_LAUNCH_CHECK();
  });
}

Tensor grad_norm_and_scale(const std::vector<Tensor>& ts, double max_norm) {
  KernelTimer timer("grad_norm");
  Tensor out = Tensor::empty({2}, DType::f64, Device::CUDA);
  std::vector<SquaresChunk> chunks;
  DType dt = DType::f32;
  for (const Tensor& t : ts) {
    COCA_CHECK(t.is_contiguous() && t.device() == Device::CUDA, "grad_norm_and_scale: ", t.describe(),
               " is not a contiguous CUDA tensor");
    COCA_CHECK(chunks.empty() || t.dtype() == dt, "grad_norm_and_scale: tensors of more than one dtype");
    dt = t.dtype();
    for (int64_t b = 0; b < t.numel(); b += kSquaresChunk)
      chunks.push_back({t.raw_data(), b, std::min<int64_t>(t.numel(), b + kSquaresChunk)});
  }
  COCA_CHECK(chunks.size() <= 0x7fffffffu, "grad_norm_and_scale: ", chunks.size(), " chunks is over a grid's limit");
  Scratch partial(sizeof(double) * std::max<size_t>(chunks.size(), 1));
  if (!chunks.empty()) {
    Scratch table(sizeof(SquaresChunk) * chunks.size());
    memcpy(table.as<void>(), chunks.data(), sizeof(SquaresChunk) * chunks.size(), 0);
    dispatch_float_dev(dt, "grad_norm", [&](auto tag) {
      using T = typename decltype(tag)::type;
      launch<sum_squares_chunks_kernel<T>>(static_cast<unsigned>(chunks.size()), 256, 0, stream(),
                                           table.as<const SquaresChunk>(), partial.as<double>());
      COCA_CUDA_LAUNCH_CHECK();
    });
  }
  launch<norm_and_scale_kernel>(1, 256, 0, stream(), partial.as<const double>(), static_cast<int64_t>(chunks.size()),
                                max_norm, dptr<double>(out));
  COCA_CUDA_LAUNCH_CHECK();
  return out;
}

}  // namespace coca::cuda
