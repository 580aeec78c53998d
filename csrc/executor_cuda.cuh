// The two launch primitives of ops_impl.h on a GPU: kernels on the current CUDA stream.
//   parallel_for(n, f)                          f(i) for every i in [0, n), one thread each (grid-stride)
//   block_reduce<V>(blocks, partial, fin)       per block: every thread adds its share into V floats
//                                               (partial(block, tid, acc)), the block sums them in a fixed
//                                               tree order, thread 0 calls fin(block, sums). V is a
//                                               compile-time count, so acc[V] lives in registers.
// executor_host.h is the same contract as plain loops (the host emulation used by the tests).
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>

#include "common.cuh"

namespace interir {

template <typename F>
__global__ void __launch_bounds__(kThreads) parallel_for_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <typename F>
void parallel_for(int64_t n, F f) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>(ceil_div(n, kThreads), int64_t(1) << 20);
  parallel_for_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(n, f);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <int Values, typename P, typename Fin>
__global__ void __launch_bounds__(kThreads) block_reduce_kernel(P partial, Fin finish) {
  __shared__ float scratch[kThreads];
  __shared__ float sums[Values];
  float acc[Values];
#pragma unroll
  for (int v = 0; v < Values; ++v) acc[v] = 0.f;
  const int64_t block = blockIdx.x;
  partial(block, static_cast<int>(threadIdx.x), acc);
#pragma unroll
  for (int v = 0; v < Values; ++v) {
    const float total = block_sum(acc[v], scratch);
    if (threadIdx.x == 0) sums[v] = total;
  }
  if (threadIdx.x == 0) finish(block, sums);
}

template <int Values, typename P, typename Fin>
void block_reduce(int64_t blocks, P partial, Fin finish) {
  static_assert(Values >= 1 && Values <= kMaxTaps, "block_reduce: 1 to kMaxTaps values");
  if (blocks <= 0) return;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "interir._C: too many blocks (", blocks, ")");
  block_reduce_kernel<Values><<<static_cast<unsigned>(blocks), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      partial, finish);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace interir
