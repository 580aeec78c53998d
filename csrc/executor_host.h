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

// The warp of gemm_tile in the host emulation: the 32 lanes in a loop, the tensor-core products as plain loops
// over the staged operands (float32 operands rounded as TF32 rounds them), accumulated in float.
struct HostWarp {
  template <typename T>
  struct Accumulator {
    float v[kTileM * kTileN];
  };
  template <typename F>
  void lanes(F&& f) {
    for (int lane = 0; lane < kWarpLanes; ++lane) f(lane);
  }
  void sync() {}
  template <typename T>
  void zero(Accumulator<T>& acc) {
    std::fill(acc.v, acc.v + kTileM * kTileN, 0.f);
  }
  template <typename T>
  static float operand(T v) {
    if constexpr (sizeof(T) == 4) return round_to_tf32(static_cast<float>(v));
    return static_cast<float>(v);
  }
  template <typename T>
  void multiply(Accumulator<T>& acc, const WarpStage<T>& st) {
    using Stage = WarpStage<T>;
    for (int r = 0; r < kTileM; ++r)
      for (int col = 0; col < kTileN; ++col) {
        float total = acc.v[r * kTileN + col];
        for (int kk = 0; kk < Stage::kK; ++kk)
          total += operand(st.a[r * Stage::kLdA + kk]) * operand(st.b[kk * Stage::kLdB + col]);
        acc.v[r * kTileN + col] = total;
      }
  }
  template <typename T>
  void store(const Accumulator<T>& acc, WarpStage<T>& st) {
    for (int r = 0; r < kTileM; ++r)
      for (int col = 0; col < kTileN; ++col) st.c[r * WarpStage<T>::kLdC + col] = acc.v[r * kTileN + col];
  }
};

// Every tile of the implicit GEMM, in order (the contract of executor_cuda.cuh's warp_gemm).
template <typename T, typename LoadA, typename LoadB, typename Epilogue>
void warp_gemm(const GemmShape& g, LoadA load_a, LoadB load_b, Epilogue epilogue) {
  HostWarp warp;
  auto stage = std::make_unique<WarpStage<T>>();
  TORCH_CHECK(g.tiles() < kMaxIndex32, "interir._C: too many GEMM tiles (", g.tiles(), ")");
  for (int tile = 0; tile < static_cast<int>(g.tiles()); ++tile)
    gemm_tile<T>(warp, *stage, g, tile, load_a, load_b, epilogue);
}

}  // namespace interir
