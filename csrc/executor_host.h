// The launch primitives of ops_impl.h as plain loops on the CPU (the host emulation): the same contract as
// executor_cuda.cuh, the same per-thread partition (kThreads "threads" per block) and the same summation tree,
// so the tests exercise the GPU kernels' arithmetic and indexing on machines without a GPU.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "common.cuh"
#include "mma_gemm.cuh"

namespace interir {

template <typename F>
void parallel_for(int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <int Values, typename P, typename Fin>
void block_reduce(int64_t blocks, P partial, Fin finish) {
  static_assert(Values >= 1 && Values <= kMaxTaps, "block_reduce: 1 to kMaxTaps values");
  std::vector<float> acc(static_cast<size_t>(kThreads) * Values);
  float column[kThreads];
  float sums[Values];
  for (int64_t block = 0; block < blocks; ++block) {
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int tid = 0; tid < kThreads; ++tid) partial(block, tid, acc.data() + static_cast<size_t>(tid) * Values);
    for (int v = 0; v < Values; ++v) {
      for (int tid = 0; tid < kThreads; ++tid) column[tid] = acc[static_cast<size_t>(tid) * Values + v];
      tree_sum(column);
      sums[v] = column[0];
    }
    finish(block, sums);
  }
}

// The warp policy of mma_gemm.cuh in the host emulation: the 32 lanes in a loop, each tensor-core product as a
// plain loop over the staged operands (float32 operands rounded as TF32 rounds them), accumulated in float.
struct HostWarp {
  template <typename T>
  struct Accumulator {
    float v[kFragment * kFragment];
  };
  template <typename F>
  void lanes(F&& f) {
    for (int lane = 0; lane < kWarpLanes; ++lane) f(lane);
  }
  void sync() {}
  template <typename T>
  void zero(Accumulator<T>& acc) {
    std::fill(acc.v, acc.v + kFragment * kFragment, 0.f);
  }
  template <typename T>
  static float operand(T v) {
    if constexpr (sizeof(T) == 4) return round_to_tf32(static_cast<float>(v));
    return static_cast<float>(v);
  }
  template <typename T>
  void mma(Accumulator<T>& acc, const T* a, int lda, const T* b, int ldb) {
    for (int r = 0; r < kFragment; ++r)
      for (int col = 0; col < kFragment; ++col) {
        float total = acc.v[r * kFragment + col];
        for (int kk = 0; kk < MmaStep<T>::k; ++kk) total += operand(a[r * lda + kk]) * operand(b[kk * ldb + col]);
        acc.v[r * kFragment + col] = total;
      }
  }
  template <typename T>
  void store(const Accumulator<T>& acc, float* c, int ldc) {
    for (int r = 0; r < kFragment; ++r)
      for (int col = 0; col < kFragment; ++col) c[r * ldc + col] = acc.v[r * kFragment + col];
  }
};

// Every task index in order, on one warp (the contract of executor_cuda.cuh's warp_tasks).
template <typename Task>
void warp_tasks(const Task& task) {
  TORCH_CHECK(task.count() < kMaxIndex32, "interir._C: too many warp tasks (", task.count(), ")");
  HostWarp warp;
  auto stage = std::make_unique<typename Task::Stage>();
  for (int i = 0; i < static_cast<int>(task.count()); ++i) task(warp, *stage, i);
}

}  // namespace interir
