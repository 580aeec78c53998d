// Per-thread bodies of the Kronecker-factored operator (docs/model.md): batched small matrix products per (b, c).
// P(X) = P1·X·P2 is two products; the launchers (ops_impl.h) chain them through a float32 intermediate.
#pragma once

#include "common.cuh"

namespace interir {

// Shapes of one batched product C[n] = op(A[n])·op(B[n]), C: M×N, contraction K; op transposes when the
// flag is set (A is stored M×K, or K×M when transposed; B is K×N, or N×K). Every batch item is contiguous.
struct BmmShape {
  int64_t batch;
  int M, N, K;
  bool trans_a, trans_b;
  INTERIR_HD int64_t elements() const { return batch * M * N; }
};

// Element idx (batch-major, then row, then column) of op(A)·op(B), accumulated in float32 in order of K.
template <typename TA, typename TB>
INTERIR_HD float bmm_element(const TA* a, const TB* b, const BmmShape& s, int64_t idx) {
  const int j = static_cast<int>(idx % s.N);
  const int64_t r = idx / s.N;
  const int i = static_cast<int>(r % s.M);
  const int64_t n = r / s.M;
  const TA* an = a + n * s.M * s.K;
  const TB* bn = b + n * s.K * s.N;
  float acc = 0.f;
  for (int kk = 0; kk < s.K; ++kk) {
    const float av = to_float(s.trans_a ? an[static_cast<int64_t>(kk) * s.M + i] : an[static_cast<int64_t>(i) * s.K + kk]);
    const float bv = to_float(s.trans_b ? bn[static_cast<int64_t>(j) * s.K + kk] : bn[static_cast<int64_t>(kk) * s.N + j]);
    acc += av * bv;
  }
  return acc;
}

// This thread's share of Σ a[i]·b[i] over a grid of `blocks` blocks of kThreads threads.
template <typename TA, typename TB>
INTERIR_HD float dot_partial(const TA* a, const TB* b, int64_t n, int64_t block, int64_t blocks, int tid) {
  float total = 0.f;
  for (int64_t i = block * kThreads + tid; i < n; i += blocks * kThreads) total += to_float(a[i]) * to_float(b[i]);
  return total;
}

}  // namespace interir
