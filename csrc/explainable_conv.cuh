// Per-thread bodies of the explainable convolution (docs/model.md): the attention A = k²·softmax(pool(1[x > θ]))
// and the per-sample modulated convolution y[b,o] = Σ_{c,t} W[o,c,t]·A[b,c,t]·x[b,c,·+t] + bias[o], with
// one batch-shared weight (no per-sample weight tensor). Layouts are contiguous NCHW; W is Cout×(Cin/g)×k×k.
#pragma once

#include <cmath>

#include "common.cuh"

namespace interir {

// Output channels (forward) or input channels (dx) one thread accumulates in registers.
constexpr int kConvTile = 8;

// ------------------------------------------------------------------------------------------------ attention

// The mask 1[(x − θ)/τ > 0] without a division per pixel (a division's slow path is a subroutine call, whose
// calling convention spills registers in a kernel holding k² accumulators). For τ > 0 (validated by the op) the
// rounded quotient of a float d = x − θ is positive iff d > τ·2⁻¹⁵⁰ exactly (half the smallest subnormal
// rounds to zero), i.e. iff d > the largest float ≤ τ·2⁻¹⁵⁰: this function's value. NaN compares false either way.
inline float positive_quotient_floor(float tau) {
  const double bound = static_cast<double>(tau) * 0x1p-150;
  float floor_bound = static_cast<float>(bound);
  if (static_cast<double>(floor_bound) > bound) floor_bound = std::nextafter(floor_bound, 0.f);
  return floor_bound;
}

// Number of pixels of bin q (= bi·k + bj) of an H×W map with (x − θ)/τ > 0, i.e. x − θ > d_min (see
// positive_quotient_floor), over this thread's share of the bin; NaN if one of its pixels is NaN.
template <typename T>
INTERIR_HD float attention_bin_partial(const T* plane, float theta, float d_min, int H, int W, int k, int q,
                                       int tid, int nthreads) {
  const int bi = q / k, bj = q % k;
  const int h0 = bin_start(bi, H, k), h1 = bin_end(bi, H, k);
  const int w0 = bin_start(bj, W, k), w1 = bin_end(bj, W, k);
  // 32-bit index arithmetic (the launcher checks H·W < 2³¹): a 64-bit division is a subroutine call too.
  const int bw = w1 - w0;
  const int n = (h1 - h0) * bw;
  float count = 0.f;
  for (int r = tid; r < n; r += nthreads) {
    const int h = h0 + r / bw, w = w0 + r % bw;
    const float d = to_float(plane[static_cast<int64_t>(h) * W + w]) - theta;
    count += d > d_min ? 1.f : (d == d ? 0.f : d);  // a NaN pixel makes the bin NaN, as in the reference
  }
  return count;
}

INTERIR_HD float attention_bin_size(int H, int W, int k, int q) {
  const int bi = q / k, bj = q % k;
  return static_cast<float>(bin_end(bi, H, k) - bin_start(bi, H, k)) *
         static_cast<float>(bin_end(bj, W, k) - bin_start(bj, W, k));
}

// The kernel size as a compile-time constant: arrays indexed by tap then live in registers (loops unroll).
template <int K>
struct Taps {
  static constexpr int k = K;
  static constexpr int count = K * K;
};

// attn[t] = taps·softmax(pooled)[t] over the Count taps.
template <int Count>
INTERIR_HD void attention_softmax(const float* pooled, float* attn) {
  float top = pooled[0];
#pragma unroll
  for (int t = 1; t < Count; ++t) top = pooled[t] > top ? pooled[t] : top;
  float total = 0.f;
#pragma unroll
  for (int t = 0; t < Count; ++t) total += expf(pooled[t] - top);
#pragma unroll
  for (int t = 0; t < Count; ++t) attn[t] = static_cast<float>(Count) * (expf(pooled[t] - top) / total);
}

// dL/dpooled from dL/dA: with s = A/taps (the softmax), dp = taps·s ⊙ (g − Σ g·s).
template <int Count>
INTERIR_HD void attention_pooled_grad(const float* grad_attn, const float* attn, float* grad_pooled) {
  float dot = 0.f;
#pragma unroll
  for (int t = 0; t < Count; ++t) dot += grad_attn[t] * (attn[t] / Count);
#pragma unroll
  for (int t = 0; t < Count; ++t) grad_pooled[t] = attn[t] * (grad_attn[t] - dot);
}

// dL/dz at pixel (h, w), z = (x − θ)/τ: the adjoint of the bin averages, times the surrogate σ'(z)/τ.
template <int K, typename T>
INTERIR_HD float attention_grad_z(const float* grad_pooled, T x, float theta, float tau, int H, int W, int h, int w) {
  float grad_mask = 0.f;
#pragma unroll
  for (int bi = 0; bi < K; ++bi) {
    const int h0 = bin_start(bi, H, K), h1 = bin_end(bi, H, K);
    const bool in_row = h >= h0 && h < h1;
#pragma unroll
    for (int bj = 0; bj < K; ++bj) {
      const int w0 = bin_start(bj, W, K), w1 = bin_end(bj, W, K);
      const float share = grad_pooled[bi * K + bj] / (static_cast<float>(h1 - h0) * static_cast<float>(w1 - w0));
      grad_mask += in_row && w >= w0 && w < w1 ? share : 0.f;
    }
  }
  const float sig = 1.f / (1.f + expf(-(to_float(x) - theta) / tau));
  return grad_mask * sig * (1.f - sig) / tau;
}

// ------------------------------------------------------------------------------------------- modulated conv

struct ConvShape {
  int B, Cin, Cout, H, W, k, groups;
  INTERIR_HD int cin_g() const { return Cin / groups; }
  INTERIR_HD int cout_g() const { return Cout / groups; }
  INTERIR_HD int taps() const { return k * k; }
  INTERIR_HD int64_t hw() const { return static_cast<int64_t>(H) * W; }
};

// The coordinates of thread idx of the forward or dx grid: (b, group, tile of kConvTile channels out of
// `channels` per group, pixel), pixel fastest.
struct ConvThread {
  int b, g, tile, h, w;
};

INTERIR_HD ConvThread conv_thread(const ConvShape& s, int channels, int64_t idx) {
  const int tiles = static_cast<int>(ceil_div(channels, kConvTile));
  ConvThread t;
  t.w = static_cast<int>(idx % s.W);
  idx /= s.W;
  t.h = static_cast<int>(idx % s.H);
  idx /= s.H;
  t.tile = static_cast<int>(idx % tiles);
  idx /= tiles;
  t.g = static_cast<int>(idx % s.groups);
  t.b = static_cast<int>(idx / s.groups);
  return t;
}

// f(t, n) for every tap t = i·k + j whose neighbour (h + dir·(i − pad), w + dir·(j − pad)) lies inside the map,
// n being that neighbour's index in the H×W plane: dir = +1 gathers the inputs of output (h, w), dir = −1 the
// outputs that input (h, w) feeds ("same" padding: neighbours outside are zero and skipped).
template <typename F>
INTERIR_HD void for_each_tap(const ConvShape& s, int h, int w, int dir, F&& f) {
  const int pad = s.k / 2;
  for (int i = 0; i < s.k; ++i) {
    const int hh = h + dir * (i - pad);
    if (hh < 0 || hh >= s.H) continue;
    for (int j = 0; j < s.k; ++j) {
      const int ww = w + dir * (j - pad);
      if (ww < 0 || ww >= s.W) continue;
      f(i * s.k + j, static_cast<int64_t>(hh) * s.W + ww);
    }
  }
}

// Threads of the forward: one per (b, group, tile of kConvTile output channels, pixel), pixel fastest.
INTERIR_HD int64_t conv_forward_threads(const ConvShape& s) {
  return static_cast<int64_t>(s.B) * s.groups * ceil_div(s.cout_g(), kConvTile) * s.hw();
}

// y for up to kConvTile output channels at one pixel; bias (float, Cout) may be null.
template <typename T>
INTERIR_HD void conv_forward_point(const T* x, const T* weight, const float* bias, const float* attn, T* y,
                                   const ConvShape& s, int64_t idx) {
  const ConvThread th = conv_thread(s, s.cout_g(), idx);
  const int b = th.b, g = th.g, tile = th.tile, h = th.h, w = th.w;
  const int o0 = g * s.cout_g() + tile * kConvTile;
  const int n_out = s.cout_g() - tile * kConvTile < kConvTile ? s.cout_g() - tile * kConvTile : kConvTile;
  const int taps = s.taps(), cin_g = s.cin_g();
  float acc[kConvTile];
  for (int q = 0; q < kConvTile; ++q) acc[q] = 0.f;
  for (int cl = 0; cl < cin_g; ++cl) {
    const int64_t plane = static_cast<int64_t>(b) * s.Cin + g * cin_g + cl;
    const T* xp = x + plane * s.hw();
    const float* ap = attn + plane * taps;
    for_each_tap(s, h, w, +1, [&](int t, int64_t n) {
      const float v = to_float(xp[n]) * ap[t];  // A scales the input operand
      const T* wp = weight + (static_cast<int64_t>(o0) * cin_g + cl) * taps + t;
      for (int q = 0; q < kConvTile; ++q)
        if (q < n_out) acc[q] += to_float(wp[static_cast<int64_t>(q) * cin_g * taps]) * v;
    });
  }
  for (int q = 0; q < n_out; ++q) {
    const float out = acc[q] + (bias != nullptr ? bias[o0 + q] : 0.f);
    y[(static_cast<int64_t>(b) * s.Cout + o0 + q) * s.hw() + static_cast<int64_t>(h) * s.W + w] = static_cast<T>(out);
  }
}

// ------------------------------------------------------------------- operands of the tensor-core convolutions

// Wm_b[o, (c_local, t)] = W[o, c_local, t]·A[b, c, t] rounded to T, as the reference forms its modulated kernel
// (A rounded to T first, the product rounded to T); o_local is within group g, k = c_local·k² + t.
template <typename T>
INTERIR_HD T modulated_weight(const T* weight, const float* attn, const ConvShape& s, int b, int g, int o_local,
                              int k) {
  const int taps = s.taps();
  const int o = g * s.cout_g() + o_local;
  const int c = g * s.cin_g() + k / taps;
  const float w = to_float(weight[static_cast<int64_t>(o) * s.cin_g() * taps + k]);
  const float a = to_float(static_cast<T>(attn[(static_cast<int64_t>(b) * s.Cin + c) * taps + k % taps]));
  return static_cast<T>(w * a);
}

// plane[(h, w) + dir·(tap t − pad)] for pixel n = h·W + w of an H×W plane, zero outside ("same" padding).
template <typename T>
INTERIR_HD T tap_value(const T* plane, const ConvShape& s, int t, int n, int dir) {
  const int pad = s.k / 2;
  const int hh = n / s.W + dir * (t / s.k - pad);
  const int ww = n % s.W + dir * (t % s.k - pad);
  return hh >= 0 && hh < s.H && ww >= 0 && ww < s.W ? plane[static_cast<int64_t>(hh) * s.W + ww] : static_cast<T>(0.f);
}

// Threads of dx: one per (b, group, tile of kConvTile input channels, pixel), pixel fastest.
INTERIR_HD int64_t conv_input_grad_threads(const ConvShape& s) {
  return static_cast<int64_t>(s.B) * s.groups * ceil_div(s.cin_g(), kConvTile) * s.hw();
}

// dx[b,c,h,w] = Σ_t A[b,c,t]·Σ_{o in c's group} W[o,c,t]·dy[b,o,(h,w) − t + pad] for up to kConvTile channels.
template <typename T>
INTERIR_HD void conv_input_grad_point(const T* grad_y, const T* weight, const float* attn, T* grad_x,
                                      const ConvShape& s, int64_t idx) {
  const ConvThread th = conv_thread(s, s.cin_g(), idx);
  const int b = th.b, g = th.g, tile = th.tile, h = th.h, w = th.w;
  const int cl0 = tile * kConvTile;
  const int n_in = s.cin_g() - cl0 < kConvTile ? s.cin_g() - cl0 : kConvTile;
  const int taps = s.taps(), cin_g = s.cin_g(), cout_g = s.cout_g();
  const float* ap = attn + (static_cast<int64_t>(b) * s.Cin + g * cin_g + cl0) * taps;
  float acc[kConvTile];
  for (int q = 0; q < kConvTile; ++q) acc[q] = 0.f;
  for (int ol = 0; ol < cout_g; ++ol) {
    const int o = g * cout_g + ol;
    const T* gp = grad_y + (static_cast<int64_t>(b) * s.Cout + o) * s.hw();
    for_each_tap(s, h, w, -1, [&](int t, int64_t n) {
      const float gv = to_float(gp[n]);
      const T* wp = weight + (static_cast<int64_t>(o) * cin_g + cl0) * taps + t;
      for (int q = 0; q < kConvTile; ++q)
        if (q < n_in) acc[q] += to_float(wp[q * taps]) * ap[q * taps + t] * gv;
    });
  }
  for (int q = 0; q < n_in; ++q)
    grad_x[(static_cast<int64_t>(b) * s.Cin + g * cin_g + cl0 + q) * s.hw() + static_cast<int64_t>(h) * s.W + w] =
        static_cast<T>(acc[q]);
}

// for_each_tap with the kernel size K known at compile time (s.k == K): the taps unroll, so an array indexed
// by t stays in registers.
template <int K, typename F>
INTERIR_HD void for_each_tap_fixed(const ConvShape& s, int h, int w, int dir, F&& f) {
  constexpr int pad = K / 2;
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int hh = h + dir * (i - pad);
    const bool row_in = hh >= 0 && hh < s.H;
#pragma unroll
    for (int j = 0; j < K; ++j) {
      const int ww = w + dir * (j - pad);
      if (row_in && ww >= 0 && ww < s.W) f(i * K + j, static_cast<int64_t>(hh) * s.W + ww);
    }
  }
}

// This thread's share of the per-sample kernel gradient dK_b[o,c,t] = Σ_p dy[b,o,p]·x[b,c,p + t − pad]
// for every tap t of a K×K kernel; block = (b·Cout + o)·(Cin/g) + c_local.
template <int K, typename T>
INTERIR_HD void conv_kernel_grad_partial(const T* grad_y, const T* x, const ConvShape& s, int64_t block, int tid,
                                         int nthreads, float* acc) {
  const int cin_g = s.cin_g();
  const int cl = static_cast<int>(block % cin_g);
  const int64_t bo = block / cin_g;  // b·Cout + o
  const int o = static_cast<int>(bo % s.Cout);
  const int b = static_cast<int>(bo / s.Cout);
  const int c = (o / s.cout_g()) * cin_g + cl;
  const T* gp = grad_y + bo * s.hw();
  const T* xp = x + (static_cast<int64_t>(b) * s.Cin + c) * s.hw();
  for (int64_t p = tid; p < s.hw(); p += nthreads) {
    const int h = static_cast<int>(p / s.W), w = static_cast<int>(p % s.W);
    const float gv = to_float(gp[p]);
    for_each_tap_fixed<K>(s, h, w, +1, [&](int t, int64_t n) { acc[t] += gv * to_float(xp[n]); });
  }
}

// dW[o,c_local,t] = Σ_b dK_b[o,c_local,t]·A[b,c,t] (fixed order over b); idx enumerates W's elements.
// 32-bit index arithmetic here and in conv_attention_grad (conv_shape checks W and A have < 2³¹ elements).
INTERIR_HD float conv_weight_grad(const float* kernel_grad, const float* attn, const ConvShape& s, int64_t idx) {
  const int taps = s.taps(), cin_g = s.cin_g();
  const int i = static_cast<int>(idx);
  const int t = i % taps;
  const int cl = (i / taps) % cin_g;
  const int o = i / (taps * cin_g);
  const int c = (o / s.cout_g()) * cin_g + cl;
  float total = 0.f;
  for (int b = 0; b < s.B; ++b)
    total += kernel_grad[(static_cast<int64_t>(b) * s.Cout + o) * cin_g * taps + static_cast<int64_t>(cl) * taps + t] *
             attn[(static_cast<int64_t>(b) * s.Cin + c) * taps + t];
  return total;
}

// dA[b,c,t] = Σ_{o in c's group} dK_b[o,c_local,t]·W[o,c_local,t]; idx enumerates A's elements.
template <typename T>
INTERIR_HD float conv_attention_grad(const float* kernel_grad, const T* weight, const ConvShape& s, int64_t idx) {
  const int taps = s.taps(), cin_g = s.cin_g(), cout_g = s.cout_g();
  const int i = static_cast<int>(idx);
  const int t = i % taps;
  const int c = (i / taps) % s.Cin;
  const int b = i / (taps * s.Cin);
  const int g = c / cin_g, cl = c % cin_g;
  float total = 0.f;
  for (int ol = 0; ol < cout_g; ++ol) {
    const int64_t wo = (static_cast<int64_t>(g * cout_g + ol) * cin_g + cl) * taps + t;
    total += kernel_grad[static_cast<int64_t>(b) * s.Cout * cin_g * taps + wo] * to_float(weight[wo]);
  }
  return total;
}

// This thread's share of dbias[o] = Σ_{b,p} dy[b,o,p]; block = o.
template <typename T>
INTERIR_HD float conv_bias_grad_partial(const T* grad_y, const ConvShape& s, int64_t o, int tid, int nthreads) {
  float total = 0.f;
  const int64_t n = static_cast<int64_t>(s.B) * s.hw();
  for (int64_t r = tid; r < n; r += nthreads) {
    const int64_t b = r / s.hw(), p = r % s.hw();
    total += to_float(grad_y[(b * s.Cout + o) * s.hw() + p]);
  }
  return total;
}

}  // namespace interir
