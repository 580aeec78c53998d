// The launchers of every operation, written once over the primitives parallel_for / block_reduce / warp_tasks
// (executor_cuda.cuh on a GPU, executor_host.h in the host emulation). Included by exactly one .cu/.cpp per
// build. Accumulation is float32 everywhere; outputs take the dtype of the input they are the gradient of.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "common.cuh"
#include "explainable_conv.cuh"
#include "fft_loss.cuh"
#include "kron.cuh"
#include "conv_mma.cuh"
#include "mma_gemm.cuh"
#include "ops.h"

#if defined(__CUDACC__)
#include "executor_cuda.cuh"
#else
#include "executor_host.h"
#endif

namespace interir {
namespace impl {

// An output buffer; NaN-filled when INTERIR_POISON_OUTPUTS=1 so that an element no thread wrote fails a test.
inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const char* poison = std::getenv("INTERIR_POISON_OUTPUTS");
  if (poison != nullptr && std::strcmp(poison, "1") == 0)
    return at::full(sizes, std::numeric_limits<float>::quiet_NaN(), options);
  return at::empty(sizes, options);
}

inline at::TensorOptions float_options(const at::Tensor& like) { return like.options().dtype(at::kFloat); }

// f(T{}) with T the C++ type of `dtype` (float, BFloat16 or Half).
template <typename F>
void dispatch_activation_type(at::ScalarType dtype, const char* op, F&& f) {
  switch (dtype) {
    case at::kFloat: f(float{}); break;
    case at::kBFloat16: f(c10::BFloat16{}); break;
    case at::kHalf: f(c10::Half{}); break;
    default: TORCH_CHECK(false, op, ": unsupported dtype ", dtype, " (float32, bfloat16 or float16)");
  }
}

// f(Taps<K>{}) with K = k, the kernel size, as a compile-time constant (1 … kMaxKernel).
template <typename F>
void dispatch_kernel_size(int k, const char* op, F&& f) {
  switch (k) {
    case 1: f(Taps<1>{}); break;
    case 2: f(Taps<2>{}); break;
    case 3: f(Taps<3>{}); break;
    case 4: f(Taps<4>{}); break;
    case 5: f(Taps<5>{}); break;
    case 6: f(Taps<6>{}); break;
    case 7: f(Taps<7>{}); break;
    default: TORCH_CHECK(false, op, ": kernel size ", k, " outside 1…", kMaxKernel);
  }
}

// out[0] = scale·Σ values[0:n] in a fixed order (one block).
inline void sum_into(const float* values, int64_t n, float scale, float* out) {
  block_reduce<1>(
      1,
      [=] INTERIR_LAMBDA(int64_t, int tid, float* acc) {
        for (int64_t i = tid; i < n; i += kThreads) acc[0] += values[i];
      },
      [=] INTERIR_LAMBDA(int64_t, const float* sums) { out[0] = scale * sums[0]; });
}

inline int64_t grid_blocks(int64_t n) { return std::min<int64_t>(std::max<int64_t>(ceil_div(n, kThreads), 1), 1024); }

// ------------------------------------------------------------------------------------------------ attention

template <typename T, int K>
void attention_forward_t(const at::Tensor& x, const float* theta, float tau, float* attn) {
  constexpr int taps = K * K;
  const T* xp = x.data_ptr<T>();
  const int H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  const int64_t hw = static_cast<int64_t>(H) * W;
  TORCH_CHECK(hw < kMaxIndex32, "interir._C explainable_attention: a map must have fewer than 2^31 pixels");
  const float d_min = positive_quotient_floor(tau);
  block_reduce<taps>(
      x.size(0) * x.size(1),
      [=] INTERIR_LAMBDA(int64_t plane, int tid, float* acc) {
        const float th = theta[0];
#pragma unroll
        for (int q = 0; q < taps; ++q)
          acc[q] = attention_bin_partial(xp + plane * hw, th, d_min, H, W, K, q, tid, kThreads);
      },
      [=] INTERIR_LAMBDA(int64_t plane, const float* sums) {
        float pooled[taps];
#pragma unroll
        for (int q = 0; q < taps; ++q) pooled[q] = sums[q] / attention_bin_size(H, W, K, q);
        attention_softmax<taps>(pooled, attn + plane * taps);
      });
}

at::Tensor explainable_attention(const at::Tensor& x, const at::Tensor& theta, int64_t kernel_size, double tau) {
  const c10::DeviceGuard guard(x.device());
  const at::Tensor th = theta.to(at::kFloat).contiguous();
  at::Tensor attn = new_output({x.size(0), x.size(1), kernel_size, kernel_size}, float_options(x));
  dispatch_activation_type(x.scalar_type(), "explainable_attention", [&](auto tag) {
    dispatch_kernel_size(static_cast<int>(kernel_size), "explainable_attention", [&](auto taps) {
      attention_forward_t<decltype(tag), decltype(taps)::k>(x, th.data_ptr<float>(), static_cast<float>(tau),
                                                            attn.data_ptr<float>());
    });
  });
  return attn;
}

template <typename T, int K>
void attention_backward_t(const float* grad_attn, const at::Tensor& x, const float* theta, const float* attn,
                          float tau, T* grad_x, float* plane_sums) {
  constexpr int taps = K * K;
  const T* xp = x.data_ptr<T>();
  const int H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  const int64_t hw = static_cast<int64_t>(H) * W;
  block_reduce<1>(
      x.size(0) * x.size(1),
      [=] INTERIR_LAMBDA(int64_t plane, int tid, float* acc) {
        float grad_pooled[taps];
        attention_pooled_grad<taps>(grad_attn + plane * taps, attn + plane * taps, grad_pooled);
        const float th = theta[0];
        for (int64_t p = tid; p < hw; p += kThreads) {
          const float gz = attention_grad_z<K>(grad_pooled, xp[plane * hw + p], th, tau, H, W,
                                               static_cast<int>(p / W), static_cast<int>(p % W));
          grad_x[plane * hw + p] = static_cast<T>(gz);
          acc[0] += gz;
        }
      },
      [=] INTERIR_LAMBDA(int64_t plane, const float* sums) { plane_sums[plane] = sums[0]; });
}

std::tuple<at::Tensor, at::Tensor> explainable_attention_backward(const at::Tensor& grad_attn, const at::Tensor& x,
                                                                  const at::Tensor& theta, const at::Tensor& attn,
                                                                  double tau) {
  const c10::DeviceGuard guard(x.device());
  const at::Tensor g = grad_attn.to(at::kFloat).contiguous(), a = attn.to(at::kFloat).contiguous();
  const at::Tensor th = theta.to(at::kFloat).contiguous();
  const int k = static_cast<int>(attn.size(-1));
  at::Tensor grad_x = new_output(x.sizes(), x.options());
  at::Tensor plane_sums = at::empty({x.size(0) * x.size(1)}, float_options(x));
  at::Tensor grad_theta = new_output({1}, float_options(x));
  dispatch_activation_type(x.scalar_type(), "explainable_attention_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_kernel_size(k, "explainable_attention_backward", [&](auto taps) {
      attention_backward_t<T, decltype(taps)::k>(g.data_ptr<float>(), x, th.data_ptr<float>(), a.data_ptr<float>(),
                                                 static_cast<float>(tau), grad_x.data_ptr<T>(),
                                                 plane_sums.data_ptr<float>());
    });
  });
  sum_into(plane_sums.data_ptr<float>(), plane_sums.numel(), -1.f, grad_theta.data_ptr<float>());  // dθ = −Σ dz
  return {grad_x, grad_theta.reshape(theta.sizes()).to(theta.scalar_type())};
}

// ------------------------------------------------------------------------------------------- modulated conv

inline ConvShape conv_shape(const at::Tensor& x, const at::Tensor& weight, int64_t groups) {
  const int64_t taps = weight.size(2) * weight.size(3);
  TORCH_CHECK(weight.numel() < kMaxIndex32 && x.size(0) * x.size(1) * taps < kMaxIndex32,
              "interir._C modulated_conv: the weight and the attention must have fewer than 2^31 elements");
  TORCH_CHECK(x.size(2) * x.size(3) < kMaxIndex32, "interir._C modulated_conv: a map must have fewer than 2^31 pixels");
  return ConvShape{static_cast<int>(x.size(0)), static_cast<int>(x.size(1)), static_cast<int>(weight.size(0)),
                   static_cast<int>(x.size(2)), static_cast<int>(x.size(3)), static_cast<int>(weight.size(3)),
                   static_cast<int>(groups)};
}

// How the convolutions of dtype T run (docs/gpu.md, "The CUDA extension on tensor cores"):
//   halo: on tensor cores, the input staged once per tile with its halo (conv_mma.cuh; 3×3 kernels);
//   gemm: on tensor cores, one implicit GEMM that gathers the input once per tap (mma_gemm.cuh; every size);
//   ffma: on the CUDA cores (explainable_conv.cuh).
// Tensor cores need sm_80 or newer; bf16 and fp16 take them always, float32 only when the user opted in to TF32
// for float32 matrix products (torch.set_float32_matmul_precision("high"), as the Triton kernels do).
// INTERIR_CUDA_TENSOR_CORES=gemm forces the GEMM and =0 the FFMA kernels, for comparisons (interir/ops/cuda.py
// refuses any other value before it gets here).
enum class ConvForm { ffma, gemm, halo };

template <typename T>
ConvForm conv_form(const ConvShape& s) {
  const char* env = std::getenv("INTERIR_CUDA_TENSOR_CORES");
  const bool ffma_only = env != nullptr && std::strcmp(env, "0") == 0;
  const bool gemm_only = env != nullptr && std::strcmp(env, "gemm") == 0;
  if (ffma_only) return ConvForm::ffma;
#if defined(__CUDACC__)
  if (at::cuda::getCurrentDeviceProperties()->major < 8) return ConvForm::ffma;  // bf16/TF32 WMMA: sm_80 and newer
#endif
  if constexpr (sizeof(T) == 4) {
    if (!at::globalContext().allowTF32CuBLAS()) return ConvForm::ffma;
  }
  return s.k == 3 && !gemm_only ? ConvForm::halo : ConvForm::gemm;
}

// The forward as one implicit GEMM per (b, group): y[o, p] = Σ_{(c,t)} Wm_b[o, (c,t)]·x[c, p + t − pad], with
// Wm_b = W·A rounded to T (the reference's modulated kernel) and the shifted x gathered with zero padding.
template <typename T>
void conv_forward_mma(const T* xp, const T* wp, const float* bias, const float* attn, T* yp, const ConvShape& s,
                      ConvForm form) {
  if (form == ConvForm::halo) return warp_tasks(ConvHaloTask<T, +1>{s, xp, wp, attn, bias, yp});
  const GemmShape g{s.B * s.groups, s.cout_g(), static_cast<int>(s.hw()), s.cin_g() * s.taps()};
  auto load_a = [=] INTERIR_LAMBDA(int bg, int m, int k) {
    return modulated_weight<T>(wp, attn, s, bg / s.groups, bg % s.groups, m, k);
  };
  auto load_b = [=] INTERIR_LAMBDA(int bg, int k, int n) {
    const int c = (bg % s.groups) * s.cin_g() + k / s.taps();
    return tap_value(xp + (static_cast<int64_t>(bg / s.groups) * s.Cin + c) * s.hw(), s, k % s.taps(), n, +1);
  };
  auto epilogue = [=] INTERIR_LAMBDA(int bg, int m, int n, float v) {
    const int o = (bg % s.groups) * s.cout_g() + m;
    const int64_t b = bg / s.groups;
    yp[(b * s.Cout + o) * s.hw() + n] = static_cast<T>(v + (bias != nullptr ? bias[o] : 0.f));
  };
  warp_tasks(gemm_task<T>(g, load_a, load_b, epilogue));
}

// dx as one implicit GEMM per (b, group): dx[c, p] = Σ_{(o,t)} Wm_b[o, c, t]·dy[o, p − t + pad].
template <typename T>
void conv_input_grad_mma(const T* gp, const T* wp, const float* attn, T* dxp, const ConvShape& s, ConvForm form) {
  if (form == ConvForm::halo) return warp_tasks(ConvHaloTask<T, -1>{s, gp, wp, attn, nullptr, dxp});
  const GemmShape g{s.B * s.groups, s.cin_g(), static_cast<int>(s.hw()), s.cout_g() * s.taps()};
  auto load_a = [=] INTERIR_LAMBDA(int bg, int m, int k) {
    const int taps = s.taps();
    return modulated_weight<T>(wp, attn, s, bg / s.groups, bg % s.groups,
                               k / taps, m * taps + k % taps);
  };
  auto load_b = [=] INTERIR_LAMBDA(int bg, int k, int n) {
    const int o = (bg % s.groups) * s.cout_g() + k / s.taps();
    return tap_value(gp + (static_cast<int64_t>(bg / s.groups) * s.Cout + o) * s.hw(), s, k % s.taps(), n, -1);
  };
  auto epilogue = [=] INTERIR_LAMBDA(int bg, int m, int n, float v) {
    const int64_t b = bg / s.groups;
    const int c = (bg % s.groups) * s.cin_g() + m;
    dxp[(b * s.Cin + c) * s.hw() + n] = static_cast<T>(v);
  };
  warp_tasks(gemm_task<T>(g, load_a, load_b, epilogue));
}

// The per-sample kernel gradient as one implicit GEMM per (b, group), summed over the pixels in a fixed order:
// dK_b[o, (c,t)] = Σ_p dy[o, p]·x[c, p + t − pad]  (float32, B×Cout×Cin/g×k²).
template <typename T>
void conv_kernel_grad_mma(const T* gp, const T* xp, const ConvShape& s, float* dk, ConvForm form) {
  if (form == ConvForm::halo) return warp_tasks(KernelGradHaloTask<T>{s, gp, xp, dk});
  const GemmShape g{s.B * s.groups, s.cout_g(), s.cin_g() * s.taps(), static_cast<int>(s.hw())};
  auto load_a = [=] INTERIR_LAMBDA(int bg, int m, int k) {
    const int64_t b = bg / s.groups;
    const int o = (bg % s.groups) * s.cout_g() + m;
    return gp[(b * s.Cout + o) * s.hw() + k];
  };
  auto load_b = [=] INTERIR_LAMBDA(int bg, int k, int n) {
    const int c = (bg % s.groups) * s.cin_g() + n / s.taps();
    return tap_value(xp + (static_cast<int64_t>(bg / s.groups) * s.Cin + c) * s.hw(), s, n % s.taps(), k, +1);
  };
  auto epilogue = [=] INTERIR_LAMBDA(int bg, int m, int n, float v) {
    const int64_t b = bg / s.groups;
    const int o = (bg % s.groups) * s.cout_g() + m;
    dk[(b * s.Cout + o) * s.cin_g() * s.taps() + n] = v;
  };
  warp_tasks(gemm_task<T>(g, load_a, load_b, epilogue));
}

template <typename T>
void conv_forward_t(const at::Tensor& x, const at::Tensor& weight, const float* bias, const float* attn,
                    at::Tensor& y, const ConvShape& s) {
  const T* xp = x.data_ptr<T>();
  const T* wp = weight.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  const ConvForm form = conv_form<T>(s);
  if (form != ConvForm::ffma) return conv_forward_mma<T>(xp, wp, bias, attn, yp, s, form);
  parallel_for(conv_forward_threads(s),
               [=] INTERIR_LAMBDA(int64_t i) { conv_forward_point(xp, wp, bias, attn, yp, s, i); });
}

at::Tensor modulated_conv(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const at::Tensor& attn, int64_t groups) {
  const c10::DeviceGuard guard(x.device());
  const ConvShape s = conv_shape(x, weight, groups);
  const at::Tensor a = attn.to(at::kFloat).contiguous();
  at::Tensor b;
  if (bias.has_value()) b = bias->to(at::kFloat).contiguous();
  at::Tensor y = new_output({s.B, s.Cout, s.H, s.W}, x.options());
  dispatch_activation_type(x.scalar_type(), "modulated_conv", [&](auto tag) {
    conv_forward_t<decltype(tag)>(x, weight, b.defined() ? b.data_ptr<float>() : nullptr, a.data_ptr<float>(), y, s);
  });
  return y;
}

// dK: the per-sample kernel gradient, one block per (b, o, c_local), the K² taps accumulated in registers.
template <typename T, int K>
void conv_kernel_grad_t(const T* gp, const T* xp, const ConvShape& s, float* dk) {
  block_reduce<K * K>(
      static_cast<int64_t>(s.B) * s.Cout * s.cin_g(),
      [=] INTERIR_LAMBDA(int64_t block, int tid, float* acc) {
        conv_kernel_grad_partial<K>(gp, xp, s, block, tid, kThreads, acc);
      },
      [=] INTERIR_LAMBDA(int64_t block, const float* sums) {
#pragma unroll
        for (int t = 0; t < K * K; ++t) dk[block * (K * K) + t] = sums[t];
      });
}

template <typename T>
void conv_backward_t(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight, const float* attn,
                     const ConvShape& s, at::Tensor& grad_x, at::Tensor& grad_weight, float* grad_attn,
                     at::Tensor& grad_bias) {
  const T* gp = grad_y.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  const T* wp = weight.data_ptr<T>();
  T* dxp = grad_x.data_ptr<T>();
  T* dwp = grad_weight.data_ptr<T>();
  T* dbp = grad_bias.data_ptr<T>();
  const ConvForm form = conv_form<T>(s);
  const bool mma = form != ConvForm::ffma;
  if (mma) {
    conv_input_grad_mma<T>(gp, wp, attn, dxp, s, form);
  } else {
    parallel_for(conv_input_grad_threads(s),
                 [=] INTERIR_LAMBDA(int64_t i) { conv_input_grad_point(gp, wp, attn, dxp, s, i); });
  }
  // The per-sample kernel gradient dK (B×Cout×Cin/g×k², float32); dW and dA are fixed-order sums over it.
  const int taps = s.taps();
  at::Tensor kernel_grad = at::empty({s.B, s.Cout, s.cin_g(), taps}, float_options(x));
  float* dk = kernel_grad.data_ptr<float>();
  if (mma) {
    conv_kernel_grad_mma<T>(gp, xp, s, dk, form);
  } else {
    dispatch_kernel_size(s.k, "modulated_conv_backward", [&](auto fixed) {
      conv_kernel_grad_t<T, decltype(fixed)::k>(gp, xp, s, dk);
    });
  }
  parallel_for(grad_weight.numel(),
               [=] INTERIR_LAMBDA(int64_t i) { dwp[i] = static_cast<T>(conv_weight_grad(dk, attn, s, i)); });
  parallel_for(static_cast<int64_t>(s.B) * s.Cin * taps,
               [=] INTERIR_LAMBDA(int64_t i) { grad_attn[i] = conv_attention_grad(dk, wp, s, i); });
  block_reduce<1>(
      s.Cout,
      [=] INTERIR_LAMBDA(int64_t o, int tid, float* acc) { acc[0] = conv_bias_grad_partial(gp, s, o, tid, kThreads); },
      [=] INTERIR_LAMBDA(int64_t o, const float* sums) { dbp[o] = static_cast<T>(sums[0]); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> modulated_conv_backward(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& attn, int64_t groups) {
  const c10::DeviceGuard guard(x.device());
  const ConvShape s = conv_shape(x, weight, groups);
  const at::Tensor a = attn.to(at::kFloat).contiguous();
  const at::Tensor g = grad_y.to(x.scalar_type()).contiguous();
  at::Tensor grad_x = new_output(x.sizes(), x.options());
  at::Tensor grad_weight = new_output(weight.sizes(), weight.options());
  at::Tensor grad_attn = new_output(attn.sizes(), float_options(x));
  at::Tensor grad_bias = new_output({s.Cout}, weight.options());
  dispatch_activation_type(x.scalar_type(), "modulated_conv_backward", [&](auto tag) {
    conv_backward_t<decltype(tag)>(g, x, weight, a.data_ptr<float>(), s, grad_x, grad_weight,
                                   grad_attn.data_ptr<float>(), grad_bias);
  });
  return {grad_x, grad_weight, grad_attn.to(attn.scalar_type()), grad_bias};
}

// ------------------------------------------------------------------------------------------------ Kronecker

// op(A)·op(B) per batch item, each element handed to epilogue(idx, acc).
template <typename TA, typename TB, typename Epi>
void bmm(const TA* a, const TB* b, const BmmShape& s, Epi epilogue) {
  parallel_for(s.elements(), [=] INTERIR_LAMBDA(int64_t i) { epilogue(i, bmm_element(a, b, s, i)); });
}

template <typename T, typename TA, typename TB>
void bmm_into(const TA* a, const TB* b, const BmmShape& s, T* out) {
  bmm(a, b, s, [=] INTERIR_LAMBDA(int64_t i, float acc) { out[i] = static_cast<T>(acc); });
}

template <typename T>
void kron_apply_t(const at::Tensor& x, const at::Tensor& p1, const at::Tensor& p2, bool transpose, at::Tensor& y) {
  const int64_t n = x.size(0) * x.size(1);
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  at::Tensor xp2 = at::empty(x.sizes(), float_options(x));  // X·op(P2), kept in float32
  bmm_into(x.data_ptr<T>(), p2.data_ptr<T>(), BmmShape{n, h, w, w, false, transpose}, xp2.data_ptr<float>());
  bmm_into(p1.data_ptr<T>(), xp2.data_ptr<float>(), BmmShape{n, h, w, h, transpose, false}, y.data_ptr<T>());
}

at::Tensor kron_apply(const at::Tensor& x, const at::Tensor& p1, const at::Tensor& p2, bool transpose) {
  const c10::DeviceGuard guard(x.device());
  at::Tensor y = new_output(x.sizes(), x.options());
  dispatch_activation_type(x.scalar_type(), "kron_apply",
                           [&](auto tag) { kron_apply_t<decltype(tag)>(x, p1, p2, transpose, y); });
  return y;
}

// With a = op(P1), b = op(P2), Y = a·X·b: dX = aᵀ·dY·bᵀ, da = dY·(X·b)ᵀ, db = (a·X)ᵀ·dY; dP = da or daᵀ.
template <typename T>
void kron_apply_backward_t(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& p1, const at::Tensor& p2,
                           bool tr, at::Tensor& dx, at::Tensor& dp1, at::Tensor& dp2) {
  const int64_t n = x.size(0) * x.size(1);
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  const T *g = grad_y.data_ptr<T>(), *xp = x.data_ptr<T>(), *a = p1.data_ptr<T>(), *b = p2.data_ptr<T>();
  at::Tensor tmp = at::empty(x.sizes(), float_options(x));
  float* t = tmp.data_ptr<float>();
  bmm_into(g, b, BmmShape{n, h, w, w, false, !tr}, t);                         // dY·bᵀ
  bmm_into(a, t, BmmShape{n, h, w, h, !tr, false}, dx.data_ptr<T>());          // aᵀ·(dY·bᵀ)
  bmm_into(xp, b, BmmShape{n, h, w, w, false, tr}, t);                         // X·b
  if (!tr) bmm_into(g, t, BmmShape{n, h, h, w, false, true}, dp1.data_ptr<T>());  // dY·(X·b)ᵀ
  else bmm_into(t, g, BmmShape{n, h, h, w, false, true}, dp1.data_ptr<T>());      // (X·b)·dYᵀ
  bmm_into(a, xp, BmmShape{n, h, w, h, tr, false}, t);                         // a·X
  if (!tr) bmm_into(t, g, BmmShape{n, w, w, h, true, false}, dp2.data_ptr<T>());  // (a·X)ᵀ·dY
  else bmm_into(g, t, BmmShape{n, w, w, h, true, false}, dp2.data_ptr<T>());      // dYᵀ·(a·X)
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kron_apply_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                                   const at::Tensor& p1, const at::Tensor& p2,
                                                                   bool transpose) {
  const c10::DeviceGuard guard(x.device());
  const at::Tensor g = grad_y.to(x.scalar_type()).contiguous();
  at::Tensor dx = new_output(x.sizes(), x.options());
  at::Tensor dp1 = new_output(p1.sizes(), p1.options());
  at::Tensor dp2 = new_output(p2.sizes(), p2.options());
  dispatch_activation_type(x.scalar_type(), "kron_apply_backward", [&](auto tag) {
    kron_apply_backward_t<decltype(tag)>(g, x, p1, p2, transpose, dx, dp1, dp2);
  });
  return {dx, dp1, dp2};
}

// out = X − η·(G1·F·G2 + R), the product G1·(F·G2) fused with the step in its epilogue.
template <typename T>
void kron_step_t(const at::Tensor& x, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
                 const at::Tensor& r, const float* eta, at::Tensor& out) {
  const int64_t n = x.size(0) * x.size(1);
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  at::Tensor fg2 = at::empty(x.sizes(), float_options(x));
  bmm_into(f.data_ptr<T>(), gram2.data_ptr<T>(), BmmShape{n, h, w, w, false, false}, fg2.data_ptr<float>());
  const T *xp = x.data_ptr<T>(), *rp = r.data_ptr<T>();
  T* op = out.data_ptr<T>();
  bmm(gram1.data_ptr<T>(), static_cast<const float*>(fg2.data_ptr<float>()), BmmShape{n, h, w, h, false, false},
      [=] INTERIR_LAMBDA(int64_t i, float acc) {
        op[i] = static_cast<T>(to_float(xp[i]) - eta[0] * (acc + to_float(rp[i])));
      });
}

at::Tensor kron_step(const at::Tensor& x, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
                     const at::Tensor& r, const at::Tensor& eta) {
  const c10::DeviceGuard guard(x.device());
  const at::Tensor e = eta.to(at::kFloat).contiguous();
  at::Tensor out = new_output(x.sizes(), x.options());
  dispatch_activation_type(x.scalar_type(), "kron_step", [&](auto tag) {
    kron_step_t<decltype(tag)>(x, f, gram1, gram2, r, e.data_ptr<float>(), out);
  });
  return out;
}

// out[i] = −η·acc (η read on the device).
template <typename T>
struct StoreScaled {
  T* out;
  const float* eta;
  INTERIR_HD void operator()(int64_t i, float acc) const { out[i] = static_cast<T>(-eta[0] * acc); }
};

// dX = dO, dR = −η·dO, dF = −η·G1ᵀ·dO·G2ᵀ, dG1 = −η·dO·(F·G2)ᵀ, dG2 = −η·(G1·F)ᵀ·dO, dη = −Σ dO ⊙ (G1·F·G2 + R).
template <typename T>
void kron_step_backward_t(const at::Tensor& grad_out, const at::Tensor& f, const at::Tensor& gram1,
                          const at::Tensor& gram2, const at::Tensor& r, const float* eta, at::Tensor& dx,
                          at::Tensor& df, at::Tensor& dg1, at::Tensor& dg2, at::Tensor& dr, float* deta) {
  const int64_t n = f.size(0) * f.size(1);
  const int h = static_cast<int>(f.size(2)), w = static_cast<int>(f.size(3));
  const T *g = grad_out.data_ptr<T>(), *fp = f.data_ptr<T>(), *a = gram1.data_ptr<T>(), *b = gram2.data_ptr<T>();
  const T* rp = r.data_ptr<T>();
  T *dxp = dx.data_ptr<T>(), *drp = dr.data_ptr<T>(), *dfp = df.data_ptr<T>();
  T *dg1p = dg1.data_ptr<T>(), *dg2p = dg2.data_ptr<T>();
  parallel_for(grad_out.numel(), [=] INTERIR_LAMBDA(int64_t i) {
    dxp[i] = g[i];
    drp[i] = static_cast<T>(-eta[0] * to_float(g[i]));
  });
  at::Tensor tmp = at::empty(f.sizes(), float_options(f)), v = at::empty(f.sizes(), float_options(f));
  float *t = tmp.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float* tc = t;
  auto scaled = [eta](T* out) { return StoreScaled<T>{out, eta}; };
  bmm_into(g, b, BmmShape{n, h, w, w, false, true}, t);                    // dO·G2ᵀ
  bmm(a, tc, BmmShape{n, h, w, h, true, false}, scaled(dfp));              // −η·G1ᵀ·(dO·G2ᵀ)
  bmm_into(fp, b, BmmShape{n, h, w, w, false, false}, t);                  // F·G2
  bmm(g, tc, BmmShape{n, h, h, w, false, true}, scaled(dg1p));             // −η·dO·(F·G2)ᵀ
  bmm(a, tc, BmmShape{n, h, w, h, false, false},                           // V = G1·(F·G2) + R
      [=] INTERIR_LAMBDA(int64_t i, float acc) { vp[i] = acc + to_float(rp[i]); });
  bmm_into(a, fp, BmmShape{n, h, w, h, false, false}, t);                  // G1·F
  bmm(tc, g, BmmShape{n, w, w, h, true, false}, scaled(dg2p));             // −η·(G1·F)ᵀ·dO
  const int64_t count = grad_out.numel(), blocks = grid_blocks(count);
  at::Tensor partials = at::empty({blocks}, float_options(f));
  float* pp = partials.data_ptr<float>();
  const float* vc = vp;
  block_reduce<1>(
      blocks,
      [=] INTERIR_LAMBDA(int64_t block, int tid, float* acc) { acc[0] = dot_partial(g, vc, count, block, blocks, tid); },
      [=] INTERIR_LAMBDA(int64_t block, const float* sums) { pp[block] = sums[0]; });
  sum_into(pp, blocks, -1.f, deta);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> kron_step_backward(
    const at::Tensor& grad_out, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
    const at::Tensor& r, const at::Tensor& eta) {
  const c10::DeviceGuard guard(f.device());
  const at::Tensor e = eta.to(at::kFloat).contiguous();
  const at::Tensor g = grad_out.to(f.scalar_type()).contiguous();
  at::Tensor dx = new_output(g.sizes(), grad_out.options().dtype(f.scalar_type()));
  at::Tensor df = new_output(f.sizes(), f.options()), dr = new_output(r.sizes(), r.options());
  at::Tensor dg1 = new_output(gram1.sizes(), gram1.options()), dg2 = new_output(gram2.sizes(), gram2.options());
  at::Tensor deta = new_output({1}, float_options(f));
  dispatch_activation_type(f.scalar_type(), "kron_step_backward", [&](auto tag) {
    kron_step_backward_t<decltype(tag)>(g, f, gram1, gram2, r, e.data_ptr<float>(), dx, df, dg1, dg2, dr,
                                        deta.data_ptr<float>());
  });
  return {dx, df, dg1, dg2, dr, deta.reshape(eta.sizes()).to(eta.scalar_type())};
}

// ------------------------------------------------------------------------------------------------- FFT loss

// The half spectrum of d = pred − target as float32 (Re, Im) pairs, …×H×Wh×2.
inline at::Tensor half_spectrum(const at::Tensor& pred, const at::Tensor& target) {
  const at::Tensor d = pred.to(at::kFloat) - target.to(at::kFloat);
  return at::view_as_real(at::fft_rfft2(d)).contiguous();
}

at::Tensor fft_l1_loss(const at::Tensor& pred, const at::Tensor& target) {
  const c10::DeviceGuard guard(pred.device());
  at::Tensor loss = new_output({}, float_options(pred));
  if (pred.numel() == 0) return loss.fill_(std::numeric_limits<float>::quiet_NaN());  // the mean of nothing
  const at::Tensor spec = half_spectrum(pred, target);
  const HalfSpectrum s{static_cast<int>(pred.size(-2)), static_cast<int>(pred.size(-1)),
                       static_cast<int>(pred.size(-1) / 2 + 1)};
  const int64_t n = spec.numel(), blocks = grid_blocks(n);
  at::Tensor partials = at::empty({blocks}, float_options(pred));
  const float* sp = spec.data_ptr<float>();
  float* pp = partials.data_ptr<float>();
  block_reduce<1>(
      blocks,
      [=] INTERIR_LAMBDA(int64_t block, int tid, float* acc) { acc[0] = half_spectrum_partial(sp, s, n, block, blocks, tid); },
      [=] INTERIR_LAMBDA(int64_t block, const float* sums) { pp[block] = sums[0]; });
  sum_into(pp, blocks, static_cast<float>(1.0 / (2.0 * static_cast<double>(pred.numel()))), loss.data_ptr<float>());
  return loss;
}

// ∂L/∂d = irfft2(S·g/(2·numel), norm="forward") with S the Hermitian sign spectrum: the inverse real transform
// counts the twinned columns twice, exactly the derivative of the weighted half-spectrum sum.
std::tuple<at::Tensor, at::Tensor> fft_l1_loss_backward(const at::Tensor& grad_loss, const at::Tensor& pred,
                                                        const at::Tensor& target) {
  const c10::DeviceGuard guard(pred.device());
  if (pred.numel() == 0) return {at::zeros_like(pred), at::zeros_like(target)};
  const at::Tensor spec = half_spectrum(pred, target);
  const int64_t H = pred.size(-2), W = pred.size(-1);
  const HalfSpectrum s{static_cast<int>(H), static_cast<int>(W), static_cast<int>(W / 2 + 1)};
  const at::Tensor g = grad_loss.to(at::kFloat).reshape({1}).contiguous();
  at::Tensor signs = new_output(spec.sizes(), spec.options());
  const float *sp = spec.data_ptr<float>(), *gp = g.data_ptr<float>();
  float* out = signs.data_ptr<float>();
  const float inv_count = static_cast<float>(1.0 / (2.0 * static_cast<double>(pred.numel())));
  parallel_for(spec.numel(), [=] INTERIR_LAMBDA(int64_t i) { out[i] = hermitian_sign(sp, s, i) * gp[0] * inv_count; });
  const at::Tensor grad_d = at::fft_irfft2(at::view_as_complex(signs), at::IntArrayRef({H, W}), {-2, -1}, "forward");
  return {grad_d.to(pred.scalar_type()), grad_d.neg().to(target.scalar_type())};
}

}  // namespace impl
}  // namespace interir
