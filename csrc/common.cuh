// Shared by every kernel of interir._C: the host/device qualifier, the fixed "thread" count of a block, and the
// deterministic block reduction.
//
// Every kernel body is a plain function of its thread's coordinates (marked INTERIR_HD), so the same code is
// compiled twice: by nvcc into the CUDA kernels (cuda_ops.cu, with executor_cuda.cuh) and by the host compiler
// into the "host emulation" (host_ops.cpp, with executor_host.h), which runs the very same per-thread functions
// in loops on CPU tensors
// so that the test suite can check the kernels' arithmetic and indexing on machines without a GPU.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INTERIR_HD __host__ __device__ __forceinline__
#define INTERIR_LAMBDA __host__ __device__
// Before a host-device template that calls device-only code of its template arguments (a warp policy): each
// instantiation runs on one side only (mma_gemm.cuh), so nvcc's cross-side call check does not apply.
#define INTERIR_ONE_SIDED _Pragma("nv_exec_check_disable")
#else
#define INTERIR_HD inline
#define INTERIR_LAMBDA
#define INTERIR_ONE_SIDED
#endif

namespace interir {

// Threads per block of every reduction kernel (a power of two); the host emulation uses the same partition.
constexpr int kThreads = 256;
// Sizes below this use 32-bit index arithmetic in the kernels that say so (checked by their launchers).
constexpr int64_t kMaxIndex32 = int64_t(1) << 31;
// The largest kernel size of the explainable conv (k² accumulators live in registers).
constexpr int kMaxKernel = 7;
constexpr int kMaxTaps = kMaxKernel * kMaxKernel;

INTERIR_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Adaptive-pooling bin i of n cells into k bins covers [bin_start, bin_end) (PyTorch's rule).
INTERIR_HD int bin_start(int i, int n, int k) { return static_cast<int>((static_cast<int64_t>(i) * n) / k); }
INTERIR_HD int bin_end(int i, int n, int k) {
  return static_cast<int>(ceil_div(static_cast<int64_t>(i + 1) * n, k));
}

template <typename T>
INTERIR_HD float to_float(T v) { return static_cast<float>(v); }

// The fixed summation tree of a block reduction over kThreads values, in place; the result is v[0].
// block_sum (below) is the same tree on a GPU; the host emulation calls this one.
INTERIR_HD void tree_sum(float* v) {
  for (int stride = kThreads / 2; stride > 0; stride >>= 1)
    for (int tid = 0; tid < stride; ++tid) v[tid] += v[tid + stride];
}

}  // namespace interir

#if defined(__CUDACC__)
namespace interir {

// Sum of `value` over the block (blockDim.x == kThreads) in a fixed tree order: deterministic run to run.
// `shared` holds kThreads floats. The result is returned to thread 0 only.
__device__ __forceinline__ float block_sum(float value, float* shared) {
  const int tid = threadIdx.x;
  __syncthreads();  // `shared` may still be read by a previous call
  shared[tid] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (tid < stride) shared[tid] += shared[tid + stride];
    __syncthreads();
  }
  return shared[0];
}

}  // namespace interir
#endif
