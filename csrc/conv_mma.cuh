// The 3×3 modulated convolution on tensor cores with its input read once per tile (docs/gpu.md, "The CUDA
// extension on tensor cores"): a warp stages an input tile with its one-pixel halo in shared memory and builds
// every tap's operand from it, instead of gathering the input from global memory once per tap.
//
//   ConvHaloTask<T, +1>   the forward: y[o, p] = Σ_{c,t} Wm_b[o, c, t]·x[c, p + t − 1] (+ bias)
//   ConvHaloTask<T, −1>   dx:          dx[c, p] = Σ_{o,t} Wm_b[o, c, t]·dy[o, p − t + 1]
//   KernelGradHaloTask<T> dK:          dK_b[o, c, t] = Σ_p dy[o, p]·x[c, p + t − 1]   (float32)
//
// with Wm_b = W·A rounded to T (modulated_weight, explainable_conv.cuh). Both are warp tasks over the warp policy
// of mma_gemm.cuh. A result tile is 16 channels × an 8×16-pixel patch; the input tile of a K step (16 channels
// for 16-bit types, 8 for TF32) is 10×18 pixels, so each input element is loaded 180/128 = 1.41× per 16-channel
// block of the result, where the implicit GEMM (mma_gemm.cuh) loads it once per tap, 9×.
#pragma once

#include "explainable_conv.cuh"
#include "mma_gemm.cuh"

namespace interir {

constexpr int kPatchH = 8, kPatchW = 16;            // the pixels of a result tile: 8 rows of one fragment each
constexpr int kPatch = kPatchH * kPatchW;           // 128
constexpr int kHaloH = kPatchH + 2, kHaloW = kPatchW + 2;  // with the 3×3 kernel's one-pixel border

// Stages `channels` planes (of `count` valid ones; the rest zero) of the H×W maps at `planes`, rows h0 − 1 …
// h0 + kPatchH and columns w0 − 1 … w0 + kPatchW, zero outside the map: halo[c][kHaloH][kHaloW].
template <typename T, typename Warp>
INTERIR_HD void stage_halo(Warp& warp, T* halo, const T* planes, int channels, int count, const ConvShape& s,
                           int h0, int w0) {
  warp.lanes([&](int lane) {
#pragma unroll 1
    for (int e = lane; e < channels * kHaloH * kHaloW; e += kWarpLanes) {
      const int c = e / (kHaloH * kHaloW), r = e / kHaloW % kHaloH, col = e % kHaloW;
      const int h = h0 - 1 + r, w = w0 - 1 + col;
      halo[e] = c < count && h >= 0 && h < s.H && w >= 0 && w < s.W
                    ? planes[c * s.hw() + static_cast<int64_t>(h) * s.W + w]
                    : static_cast<T>(0.f);
    }
  });
}

template <typename T>
struct ConvHaloStage {
  static constexpr int kK = MmaStep<T>::k;                      // channels summed per step
  static constexpr int kPadT = 16 / static_cast<int>(sizeof(T));  // row padding: strides stay multiples of 16 B
  static constexpr int kLdA = kK + kPadT;
  static constexpr int kLdB = kPatch + kPadT;
  static constexpr int kLdC = kFragment + 4;
  alignas(32) T halo[kK * kHaloH * kHaloW];
  alignas(32) T a[kFragment * kLdA];  // Wm at one tap: 16 result channels × kK summed channels
  alignas(32) T b[kK * kLdB];         // the tap's window of the halo: kK channels × 128 pixels
  alignas(32) float c[kFragment * kLdC];
};

// Dir = +1: the forward (src = x, dst = y, result channels = outputs); Dir = −1: dx (src = dy, dst = dx, result
// channels = inputs, taps mirrored). A task is (b, group, 16-channel block, 8×16 patch), patch columns fastest.
template <typename T, int Dir>
struct ConvHaloTask {
  using Stage = ConvHaloStage<T>;
  ConvShape s;
  const T* src;
  const T* weight;
  const float* attn;
  const float* bias;  // forward only, may be null
  T* dst;

  INTERIR_HD int result_channels() const { return Dir > 0 ? s.cout_g() : s.cin_g(); }
  INTERIR_HD int summed_channels() const { return Dir > 0 ? s.cin_g() : s.cout_g(); }
  INTERIR_HD int patches_w() const { return (s.W + kPatchW - 1) / kPatchW; }
  INTERIR_HD int patches_h() const { return (s.H + kPatchH - 1) / kPatchH; }
  INTERIR_HD int blocks() const { return (result_channels() + kFragment - 1) / kFragment; }
  INTERIR_HD int64_t count() const {
    return static_cast<int64_t>(s.B) * s.groups * blocks() * patches_h() * patches_w();
  }

  INTERIR_ONE_SIDED
  template <typename Warp>
  INTERIR_HD void operator()(Warp& warp, Stage& st, int task) const {
    constexpr int kK = Stage::kK;
    const int mch = result_channels(), kch = summed_channels();
    int rest = task;
    const int w0 = rest % patches_w() * kPatchW;
    rest /= patches_w();
    const int h0 = rest % patches_h() * kPatchH;
    rest /= patches_h();
    const int m0 = rest % blocks() * kFragment;
    rest /= blocks();
    const int g = rest % s.groups, b = rest / s.groups;
    const int src_channels = Dir > 0 ? s.Cin : s.Cout, dst_channels = Dir > 0 ? s.Cout : s.Cin;
    typename Warp::template Accumulator<T> acc[kPatchH];
#pragma unroll
    for (int r = 0; r < kPatchH; ++r) warp.zero(acc[r]);
    for (int c0 = 0; c0 < kch; c0 += kK) {
      const T* planes = src + (static_cast<int64_t>(b) * src_channels + g * kch + c0) * s.hw();
      stage_halo(warp, st.halo, planes, kK, kch - c0, s, h0, w0);
      for (int t = 0; t < 9; ++t) {
        // the halo offset of tap t: (i, j) for the forward, mirrored (2 − i, 2 − j) for dx
        const int dr = Dir > 0 ? t / 3 : 2 - t / 3, dc = Dir > 0 ? t % 3 : 2 - t % 3;
        warp.sync();  // the halo is staged; the previous tap's products have read a and b
        warp.lanes([&](int lane) {
#pragma unroll 1
          for (int e = lane; e < kFragment * kK; e += kWarpLanes) {
            const int m = m0 + e / kK, k = c0 + e % kK;
            T v = static_cast<T>(0.f);
            if (m < mch && k < kch)
              v = Dir > 0 ? modulated_weight(weight, attn, s, b, g, m, k * 9 + t)
                          : modulated_weight(weight, attn, s, b, g, k, m * 9 + t);
            st.a[e / kK * Stage::kLdA + e % kK] = v;
          }
#pragma unroll 1
          for (int e = lane; e < kK * kPatch; e += kWarpLanes) {
            const int k = e / kPatch, p = e % kPatch;
            st.b[k * Stage::kLdB + p] = st.halo[(k * kHaloH + p / kPatchW + dr) * kHaloW + p % kPatchW + dc];
          }
        });
        warp.sync();
#pragma unroll
        for (int r = 0; r < kPatchH; ++r) warp.mma(acc[r], st.a, Stage::kLdA, st.b + r * kPatchW, Stage::kLdB);
      }
      warp.sync();  // the next step's halo overwrites what this step's last tap read
    }
#pragma unroll
    for (int r = 0; r < kPatchH; ++r) {
      warp.store(acc[r], st.c, Stage::kLdC);
      warp.sync();
      warp.lanes([&](int lane) {
#pragma unroll 1
        for (int e = lane; e < kFragment * kFragment; e += kWarpLanes) {
          const int m = m0 + e / kFragment, h = h0 + r, w = w0 + e % kFragment;
          if (m >= mch || h >= s.H || w >= s.W) continue;
          const int channel = g * mch + m;
          const float extra = Dir > 0 && bias != nullptr ? bias[channel] : 0.f;
          dst[(static_cast<int64_t>(b) * dst_channels + channel) * s.hw() + static_cast<int64_t>(h) * s.W + w] =
              static_cast<T>(st.c[e / kFragment * Stage::kLdC + e % kFragment] + extra);
        }
      });
      warp.sync();
    }
  }
};

template <typename T>
struct KernelGradHaloStage {
  static constexpr int kK = MmaStep<T>::k;  // pixels summed per step
  static constexpr int kPadT = 16 / static_cast<int>(sizeof(T));
  static constexpr int kLdDy = kPatch + kPadT;
  static constexpr int kLdB = kFragment + kPadT;
  static constexpr int kLdC = kFragment + 4;
  alignas(32) T dy[kFragment * kLdDy];                 // 16 output channels × the patch's 128 pixels
  alignas(32) T halo[kFragment * kHaloH * kHaloW];     // 16 input channels × the haloed patch
  alignas(32) T b[kPatch * kLdB];                      // one tap's window: 128 pixels × 16 input channels
  alignas(32) float c[kFragment * kLdC];
};

// A task is (b, group, 16 output channels, 16 input channels) with all 9 taps; it walks the patches of the map
// in a fixed order, so the sum over the pixels is the same run to run.
template <typename T>
struct KernelGradHaloTask {
  using Stage = KernelGradHaloStage<T>;
  ConvShape s;
  const T* grad_y;
  const T* x;
  float* kernel_grad;  // B×Cout×Cin/g×9

  INTERIR_HD int out_blocks() const { return (s.cout_g() + kFragment - 1) / kFragment; }
  INTERIR_HD int in_blocks() const { return (s.cin_g() + kFragment - 1) / kFragment; }
  INTERIR_HD int64_t count() const { return static_cast<int64_t>(s.B) * s.groups * out_blocks() * in_blocks(); }

  INTERIR_ONE_SIDED
  template <typename Warp>
  INTERIR_HD void operator()(Warp& warp, Stage& st, int task) const {
    constexpr int kK = Stage::kK;
    int rest = task;
    const int c0 = rest % in_blocks() * kFragment;
    rest /= in_blocks();
    const int o0 = rest % out_blocks() * kFragment;
    rest /= out_blocks();
    const int g = rest % s.groups, b = rest / s.groups;
    const int n_out = s.cout_g() - o0, n_in = s.cin_g() - c0;
    const T* dy_planes = grad_y + (static_cast<int64_t>(b) * s.Cout + g * s.cout_g() + o0) * s.hw();
    const T* x_planes = x + (static_cast<int64_t>(b) * s.Cin + g * s.cin_g() + c0) * s.hw();
    typename Warp::template Accumulator<T> acc[9];
#pragma unroll
    for (int t = 0; t < 9; ++t) warp.zero(acc[t]);
    for (int h0 = 0; h0 < s.H; h0 += kPatchH)
      for (int w0 = 0; w0 < s.W; w0 += kPatchW) {
        warp.sync();  // the previous patch's products have read dy and b
        warp.lanes([&](int lane) {
#pragma unroll 1
          for (int e = lane; e < kFragment * kPatch; e += kWarpLanes) {
            const int o = e / kPatch, p = e % kPatch;
            const int h = h0 + p / kPatchW, w = w0 + p % kPatchW;
            st.dy[o * Stage::kLdDy + p] = o < n_out && h < s.H && w < s.W
                                              ? dy_planes[o * s.hw() + static_cast<int64_t>(h) * s.W + w]
                                              : static_cast<T>(0.f);
          }
        });
        stage_halo(warp, st.halo, x_planes, kFragment, n_in, s, h0, w0);
#pragma unroll
        for (int t = 0; t < 9; ++t) {
          warp.sync();  // dy and the halo are staged; the previous tap's products have read b
          warp.lanes([&](int lane) {
#pragma unroll 1
            for (int e = lane; e < kPatch * kFragment; e += kWarpLanes) {
              const int p = e / kFragment, c = e % kFragment;
              st.b[p * Stage::kLdB + c] =
                  st.halo[(c * kHaloH + p / kPatchW + t / 3) * kHaloW + p % kPatchW + t % 3];
            }
          });
          warp.sync();
#pragma unroll 1  // the 8–16 steps' operands would not fit in registers beside 9 accumulators
          for (int q = 0; q < kPatch; q += kK)
            warp.mma(acc[t], st.dy + q, Stage::kLdDy, st.b + q * Stage::kLdB, Stage::kLdB);
        }
      }
#pragma unroll
    for (int t = 0; t < 9; ++t) {
      warp.sync();
      warp.store(acc[t], st.c, Stage::kLdC);
      warp.sync();
      warp.lanes([&](int lane) {
#pragma unroll 1
        for (int e = lane; e < kFragment * kFragment; e += kWarpLanes) {
          const int o = e / kFragment, c = e % kFragment;
          if (o >= n_out || c >= n_in) continue;
          const int64_t row = static_cast<int64_t>(b) * s.Cout + g * s.cout_g() + o0 + o;
          kernel_grad[(row * s.cin_g() + c0 + c) * 9 + t] = st.c[o * Stage::kLdC + c];
        }
      });
    }
    warp.sync();
  }
};

}  // namespace interir
