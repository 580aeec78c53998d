// The launch primitives of ops_impl.h as plain loops on the CPU (the host emulation): the same contract as
// executor_cuda.cuh, the same per-thread partition (kThreads "threads" per block) and the same summation tree,
// so the tests exercise the GPU kernels' arithmetic and indexing on machines without a GPU.
#pragma once

#include <algorithm>
#include <vector>

#include "common.cuh"

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

}  // namespace interir
