// A matrix product on tensor cores whose operands are gathered, element by element, by the caller (an implicit
// GEMM): for every batch item, C[m][n] = Σ_k A(batch, m, k)·B(batch, k, n), each C element handed to the
// caller's epilogue. The convolutions of explainable_conv.cuh build their operands this way: the modulated weight
// W·A (rounded to the activation dtype, as the reference rounds it) and the tap-shifted input, with the zero
// padding done by the gather (docs/gpu.md, "The CUDA extension on tensor cores").
//
// One warp owns a kTileM×kTileN tile of C: it stages an A slab (kTileM×k) and a B slab (k×kTileN) in shared
// memory, multiplies them on tensor cores, and walks K in a fixed order, so the result is the same run to run.
//
// The warp policy every tensor-core task is written over (DeviceWarp in executor_cuda.cuh, HostWarp in
// executor_host.h):
//   warp.lanes(f)                       f(lane) for this lane (GPU) or for the 32 lanes in turn (host)
//   warp.sync()                         __syncwarp (GPU); nothing (host: the lanes already ran in turn)
//   Warp::Accumulator<T> acc            one 16×16 float32 fragment of C
//   warp.zero(acc)
//   warp.mma(acc, a, lda, b, ldb)       acc += A·B, A 16×k and B k×16 row-major in shared memory (k =
//                                       MmaStep<T>::k), strides multiples of 16 bytes, pointers 32-byte aligned
//   warp.store(acc, c, ldc)             the fragment to a row-major 16×16 float slab
// and launched by warp_tasks(task): every task index in [0, task.count()) goes to one warp with its own
// Task::Stage in shared memory (GPU: WMMA fragments, bf16/fp16 m16n16k16 and TF32 m16n16k8; host: loops over
// the same staged operands, with TF32's operand rounding).
#pragma once

#include <cstdint>
#include <cstring>

#include "common.cuh"

namespace interir {

constexpr int kWarpLanes = 32;
constexpr int kFragment = 16;                        // rows and columns of a WMMA fragment of C
constexpr int kWarpFragmentsM = 2, kWarpFragmentsN = 2;
constexpr int kTileM = kFragment * kWarpFragmentsM;  // C rows of one warp
constexpr int kTileN = kFragment * kWarpFragmentsN;  // C columns of one warp
constexpr int kGemmWarps = 4;                        // warps of a block, each on its own tiles

// The K step of one tensor-core product: 16 for 16-bit operands, 8 for TF32 (float32 operands).
template <typename T>
struct MmaStep {
  static constexpr int k = sizeof(T) == 2 ? 16 : 8;
};

// 32-bit throughout (the launchers check that the tile count fits): a 64-bit division is a subroutine call, and
// its calling convention spills registers.
struct GemmShape {
  int batches, M, N, K;
  INTERIR_HD int tiles_m() const { return (M + kTileM - 1) / kTileM; }
  INTERIR_HD int tiles_n() const { return (N + kTileN - 1) / kTileN; }
  INTERIR_HD int64_t tiles() const { return static_cast<int64_t>(batches) * tiles_m() * tiles_n(); }
};

// One warp's shared staging. WMMA wants row strides that are multiples of 16 bytes and fragment pointers
// aligned to 32 bytes: the padded strides below keep both (and spread the rows over the banks).
template <typename T>
struct WarpStage {
  static constexpr int kK = MmaStep<T>::k;
  static constexpr int kLdA = kK + 16 / static_cast<int>(sizeof(T));      // 24 (16-bit) or 12 (float)
  static constexpr int kLdB = kTileN + 16 / static_cast<int>(sizeof(T));  // 40 or 36
  static constexpr int kLdC = kTileN + 4;                                 // float
  alignas(32) T a[kTileM * kLdA];
  alignas(32) T b[kK * kLdB];
  alignas(32) float c[kTileM * kLdC];
};

// TF32's operand rounding (cvt.rna.tf32.f32: to nearest, ties away from zero, 10 mantissa bits), for the host
// emulation of the float32 products; non-finite values pass unchanged.
inline float round_to_tf32(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// One tile of C: `tile` enumerates (batch, tile row, tile column), columns fastest. load_a(batch, m, k) and
// load_b(batch, k, n) return operand elements (as T) for in-range indices only; out-of-range slots are zero.
// epilogue(batch, m, n, value) receives every in-range element of C once.
INTERIR_ONE_SIDED
template <typename T, typename Warp, typename LoadA, typename LoadB, typename Epilogue>
INTERIR_HD void gemm_tile(Warp& warp, WarpStage<T>& st, const GemmShape& g, int tile, const LoadA& load_a,
                          const LoadB& load_b, const Epilogue& epilogue) {
  using Stage = WarpStage<T>;
  constexpr int kK = Stage::kK;
  const int tn = tile % g.tiles_n();
  const int rest = tile / g.tiles_n();
  const int m0 = rest % g.tiles_m() * kTileM, n0 = tn * kTileN;
  const int batch = rest / g.tiles_m();
  typename Warp::template Accumulator<T> acc[kWarpFragmentsM][kWarpFragmentsN];
  for (int i = 0; i < kWarpFragmentsM; ++i)
    for (int j = 0; j < kWarpFragmentsN; ++j) warp.zero(acc[i][j]);
  for (int k0 = 0; k0 < g.K; k0 += kK) {
    warp.lanes([&](int lane) {
      for (int e = lane; e < kTileM * kK; e += kWarpLanes) {
        const int r = e / kK, kk = e % kK;
        const int m = m0 + r, k = k0 + kk;
        st.a[r * Stage::kLdA + kk] = m < g.M && k < g.K ? load_a(batch, m, k) : T(0.f);
      }
      for (int e = lane; e < kK * kTileN; e += kWarpLanes) {
        const int kk = e / kTileN, col = e % kTileN;
        const int k = k0 + kk, n = n0 + col;
        st.b[kk * Stage::kLdB + col] = k < g.K && n < g.N ? load_b(batch, k, n) : T(0.f);
      }
    });
    warp.sync();
    for (int i = 0; i < kWarpFragmentsM; ++i)
      for (int j = 0; j < kWarpFragmentsN; ++j)
        warp.mma(acc[i][j], st.a + i * kFragment * Stage::kLdA, Stage::kLdA, st.b + j * kFragment, Stage::kLdB);
    warp.sync();  // the next step overwrites the slabs
  }
  for (int i = 0; i < kWarpFragmentsM; ++i)
    for (int j = 0; j < kWarpFragmentsN; ++j)
      warp.store(acc[i][j], st.c + i * kFragment * Stage::kLdC + j * kFragment, Stage::kLdC);
  warp.sync();
  warp.lanes([&](int lane) {
    for (int e = lane; e < kTileM * kTileN; e += kWarpLanes) {
      const int r = e / kTileN, col = e % kTileN;
      const int m = m0 + r, n = n0 + col;
      if (m < g.M && n < g.N) epilogue(batch, m, n, st.c[r * Stage::kLdC + col]);
    }
  });
  warp.sync();  // the warp's next tile reuses the staging
}

// gemm_tile as a warp task (warp_tasks): load_a, load_b and epilogue are the caller's gathers, as above.
template <typename T, typename LoadA, typename LoadB, typename Epilogue>
struct GemmTask {
  using Stage = WarpStage<T>;
  GemmShape shape;
  LoadA load_a;
  LoadB load_b;
  Epilogue epilogue;
  INTERIR_HD int64_t count() const { return shape.tiles(); }
  INTERIR_ONE_SIDED
  template <typename Warp>
  INTERIR_HD void operator()(Warp& warp, Stage& st, int tile) const {
    gemm_tile<T>(warp, st, shape, tile, load_a, load_b, epilogue);
  }
};

template <typename T, typename LoadA, typename LoadB, typename Epilogue>
GemmTask<T, LoadA, LoadB, Epilogue> gemm_task(const GemmShape& g, LoadA a, LoadB b, Epilogue e) {
  return {g, a, b, e};
}

}  // namespace interir
