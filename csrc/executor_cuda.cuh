// The two launch primitives of ops_impl.h on a GPU: kernels on the current CUDA stream.
//   parallel_for(n, f)                          f(i) for every i in [0, n), one thread each (grid-stride)
//   block_reduce<V>(blocks, partial, fin)       per block: every thread adds its share into V floats
//                                               (partial(block, tid, acc)), the block sums them in a fixed
//                                               tree order, thread 0 calls fin(block, sums). V is a
//                                               compile-time count, so acc[V] lives in registers.
//   warp_tasks(task)                            the tensor-core tasks of mma_gemm.cuh / conv_mma.cuh: every
//                                               warp takes task indices in turn (grid-stride), each warp with
//                                               its own Task::Stage in shared memory.
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

// The warp policy of mma_gemm.cuh on a GPU: this lane's share of the staging, the products as WMMA fragments.
struct DeviceWarp {
  int lane;
  template <typename T>
  using Accumulator = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, kFragment, kFragment, MmaStep<T>::k, float>;
  template <typename F>
  __device__ __forceinline__ void lanes(F&& f) {
    f(lane);
  }
  __device__ __forceinline__ void sync() { __syncwarp(); }
  template <typename Fragment>  // Accumulator<T> (T is not deducible through the alias)
  __device__ __forceinline__ void zero(Fragment& acc) {
    nvcuda::wmma::fill_fragment(acc, 0.f);
  }
  template <typename T>
  __device__ __forceinline__ void mma(Accumulator<T>& acc, const T* a, int lda, const T* b, int ldb) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800  // bf16/TF32 WMMA need sm_80; launchers keep older GPUs on FFMA
    __trap();
#else
    namespace wmma = nvcuda::wmma;
    using E = typename WmmaOperand<T>::type;
    using S = typename WmmaOperand<T>::storage;
    constexpr int kK = MmaStep<T>::k;
    wmma::fragment<wmma::matrix_a, kFragment, kFragment, kK, E, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, kFragment, kFragment, kK, E, wmma::row_major> fb;
    wmma::load_matrix_sync(fa, reinterpret_cast<const S*>(a), lda);
    wmma::load_matrix_sync(fb, reinterpret_cast<const S*>(b), ldb);
    if constexpr (sizeof(T) == 4) {
      for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(fa.x[e]);
      for (int e = 0; e < fb.num_elements; ++e) fb.x[e] = wmma::__float_to_tf32(fb.x[e]);
    }
    wmma::mma_sync(acc, fa, fb, acc);
#endif
  }
  template <typename Fragment>
  __device__ __forceinline__ void store(const Fragment& acc, float* c, int ldc) {
    nvcuda::wmma::store_matrix_sync(c, acc, ldc, nvcuda::wmma::mem_row_major);
  }
};

// Warps per block of a task: as many as fit 45 KiB of static shared memory, at most 4.
template <typename Stage>
constexpr int task_warps() {
  return sizeof(Stage) * 4 <= 45 * 1024 ? 4 : sizeof(Stage) * 2 <= 45 * 1024 ? 2 : 1;
}

template <typename Task>
__global__ void __launch_bounds__(task_warps<typename Task::Stage>() * kWarpLanes, 1) warp_task_kernel(Task task) {
  using Stage = typename Task::Stage;
  constexpr int warps = task_warps<Stage>();
  __shared__ __align__(128) unsigned char raw[warps * sizeof(Stage)];
  const int warp_id = static_cast<int>(threadIdx.x) / kWarpLanes;
  Stage& stage = reinterpret_cast<Stage*>(raw)[warp_id];
  DeviceWarp warp{static_cast<int>(threadIdx.x) % kWarpLanes};
  const int count = static_cast<int>(task.count());  // < 2³¹: checked by warp_tasks
  for (int i = static_cast<int>(blockIdx.x) * warps + warp_id; i < count; i += static_cast<int>(gridDim.x) * warps)
    task(warp, stage, i);
}

template <typename Task>
void warp_tasks(const Task& task) {
  static_assert(sizeof(typename Task::Stage) <= 45 * 1024, "a warp's stage must fit in static shared memory");
  const int64_t count = task.count();
  if (count <= 0) return;
  TORCH_CHECK(count < kMaxIndex32, "interir._C: too many warp tasks (", count, ")");
  constexpr int warps = task_warps<typename Task::Stage>();
  const int64_t blocks = std::min<int64_t>(ceil_div(count, warps), int64_t(1) << 20);
  warp_task_kernel<<<static_cast<unsigned>(blocks), warps * kWarpLanes, 0, at::cuda::getCurrentCUDAStream()>>>(task);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace interir
