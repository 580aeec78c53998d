// The operations of interir._C (one implementation per build: cuda_ops.cu on a GPU, host_ops.cpp for the host
// emulation; both compile ops_impl.h). Inputs are checked by bindings.cpp before these are called. Shapes and
// meaning follow interir/ops/reference.py function by function.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace interir {
namespace impl {

// The device type this build runs on (kCUDA, or kCPU for the host emulation).
at::DeviceType device_type();

at::Tensor explainable_attention(const at::Tensor& x, const at::Tensor& theta, int64_t kernel_size, double tau);
std::tuple<at::Tensor, at::Tensor> explainable_attention_backward(const at::Tensor& grad_attn, const at::Tensor& x,
                                                                  const at::Tensor& theta, const at::Tensor& attn,
                                                                  double tau);
at::Tensor modulated_conv(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const at::Tensor& attn, int64_t groups);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> modulated_conv_backward(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& attn, int64_t groups);

at::Tensor kron_apply(const at::Tensor& x, const at::Tensor& p1, const at::Tensor& p2, bool transpose);
std::tuple<at::Tensor, at::Tensor, at::Tensor> kron_apply_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                                   const at::Tensor& p1, const at::Tensor& p2,
                                                                   bool transpose);
at::Tensor kron_step(const at::Tensor& x, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
                     const at::Tensor& r, const at::Tensor& eta);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> kron_step_backward(
    const at::Tensor& grad_out, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
    const at::Tensor& r, const at::Tensor& eta);

at::Tensor fft_l1_loss(const at::Tensor& pred, const at::Tensor& target);
std::tuple<at::Tensor, at::Tensor> fft_l1_loss_backward(const at::Tensor& grad_loss, const at::Tensor& pred,
                                                        const at::Tensor& target);

}  // namespace impl
}  // namespace interir
