// The two launch primitives of ops_impl.h on a GPU: kernels on the current CUDA stream.
//   parallel_for(n, f)                          f(i) for every i in [0, n), one thread each (grid-stride)
//   block_reduce<V>(blocks, partial, fin)       per block: every thread adds its share into V floats
//                                               (partial(block, tid, acc)), the block sums them in a fixed
//                                               tree order, thread 0 calls fin(block, sums). V is a
//                                               compile-time count, so acc[V] lives in registers.
//   warp_gemm<T>(shape, load_a, load_b, epi)     the implicit GEMM of mma_gemm.cuh on tensor cores: every
//                                               warp takes tiles in turn (grid-stride), gemm_tile does each.
// executor_host.h is the same contract as plain loops (the host emulation used by the tests).
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>

#include "common.cuh"
#include "mma_gemm.cuh"

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

// The WMMA element type of an operand dtype: __half, __nv_bfloat16, or TF32 for float32 (staged as float).
template <typename T>
struct WmmaOperand;
template <>
struct WmmaOperand<c10::Half> {
  using type = __half;
  using storage = __half;
};
template <>
struct WmmaOperand<c10::BFloat16> {
  using type = __nv_bfloat16;
  using storage = __nv_bfloat16;
};
template <>
struct WmmaOperand<float> {
  using type = nvcuda::wmma::precision::tf32;
  using storage = float;
};

// The warp of gemm_tile on a GPU: this lane's share of the staging, the products as WMMA fragments.
struct DeviceWarp {
  int lane;
  template <typename T>
  struct Accumulator {
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, kFragment, kFragment, MmaStep<T>::k, float>
        c[kWarpFragmentsM][kWarpFragmentsN];
  };
  template <typename F>
  __device__ __forceinline__ void lanes(F&& f) {
    f(lane);
  }
  __device__ __forceinline__ void sync() { __syncwarp(); }
  template <typename T>
  __device__ __forceinline__ void zero(Accumulator<T>& acc) {
#pragma unroll
    for (int i = 0; i < kWarpFragmentsM; ++i)
#pragma unroll
      for (int j = 0; j < kWarpFragmentsN; ++j) nvcuda::wmma::fill_fragment(acc.c[i][j], 0.f);
  }
  template <typename T>
  __device__ __forceinline__ void multiply(Accumulator<T>& acc, const WarpStage<T>& st) {
    namespace wmma = nvcuda::wmma;
    using Stage = WarpStage<T>;
    using E = typename WmmaOperand<T>::type;
    using S = typename WmmaOperand<T>::storage;
    constexpr int kK = MmaStep<T>::k;
    wmma::fragment<wmma::matrix_a, kFragment, kFragment, kK, E, wmma::row_major> a[kWarpFragmentsM];
    wmma::fragment<wmma::matrix_b, kFragment, kFragment, kK, E, wmma::row_major> b[kWarpFragmentsN];
    const S* sa = reinterpret_cast<const S*>(st.a);
    const S* sb = reinterpret_cast<const S*>(st.b);
#pragma unroll
    for (int i = 0; i < kWarpFragmentsM; ++i) {
      wmma::load_matrix_sync(a[i], sa + i * kFragment * Stage::kLdA, Stage::kLdA);
      if constexpr (sizeof(T) == 4) {
        for (int e = 0; e < a[i].num_elements; ++e) a[i].x[e] = wmma::__float_to_tf32(a[i].x[e]);
      }
    }
#pragma unroll
    for (int j = 0; j < kWarpFragmentsN; ++j) {
      wmma::load_matrix_sync(b[j], sb + j * kFragment, Stage::kLdB);
      if constexpr (sizeof(T) == 4) {
        for (int e = 0; e < b[j].num_elements; ++e) b[j].x[e] = wmma::__float_to_tf32(b[j].x[e]);
      }
    }
#pragma unroll
    for (int i = 0; i < kWarpFragmentsM; ++i)
#pragma unroll
      for (int j = 0; j < kWarpFragmentsN; ++j) wmma::mma_sync(acc.c[i][j], a[i], b[j], acc.c[i][j]);
  }
  template <typename T>
  __device__ __forceinline__ void store(const Accumulator<T>& acc, WarpStage<T>& st) {
#pragma unroll
    for (int i = 0; i < kWarpFragmentsM; ++i)
#pragma unroll
      for (int j = 0; j < kWarpFragmentsN; ++j)
        nvcuda::wmma::store_matrix_sync(st.c + i * kFragment * WarpStage<T>::kLdC + j * kFragment, acc.c[i][j],
                                        WarpStage<T>::kLdC, nvcuda::wmma::mem_row_major);
  }
};

template <typename T, typename LoadA, typename LoadB, typename Epilogue>
__global__ void __launch_bounds__(kGemmWarps* kWarpLanes)
    warp_gemm_kernel(GemmShape g, LoadA load_a, LoadB load_b, Epilogue epilogue) {
  __shared__ __align__(128) unsigned char raw[kGemmWarps * sizeof(WarpStage<T>)];
  const int warp_id = static_cast<int>(threadIdx.x) / kWarpLanes;
  WarpStage<T>& stage = reinterpret_cast<WarpStage<T>*>(raw)[warp_id];
  DeviceWarp warp{static_cast<int>(threadIdx.x) % kWarpLanes};
  const int tiles = static_cast<int>(g.tiles());  // < 2³¹: checked by warp_gemm
  for (int tile = static_cast<int>(blockIdx.x) * kGemmWarps + warp_id; tile < tiles;
       tile += static_cast<int>(gridDim.x) * kGemmWarps)
    gemm_tile<T>(warp, stage, g, tile, load_a, load_b, epilogue);
}

template <typename T, typename LoadA, typename LoadB, typename Epilogue>
void warp_gemm(const GemmShape& g, LoadA load_a, LoadB load_b, Epilogue epilogue) {
  if (g.tiles() <= 0) return;
  TORCH_CHECK(g.tiles() < kMaxIndex32, "interir._C: too many GEMM tiles (", g.tiles(), ")");
  const int64_t blocks = std::min<int64_t>(ceil_div(g.tiles(), kGemmWarps), int64_t(1) << 20);
  warp_gemm_kernel<T><<<static_cast<unsigned>(blocks), kGemmWarps * kWarpLanes, 0,
                        at::cuda::getCurrentCUDAStream()>>>(g, load_a, load_b, epilogue);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace interir
