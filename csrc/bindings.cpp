// Python bindings of interir._C: every argument is checked here (device, dtype, contiguity, shape), with a message
// naming the argument, before the launchers of ops.h run on the current stream. interir/ops/cuda.py
// registers these functions as the torch.library ops of the `cuda` backend.
#include <torch/extension.h>

#include <string>

#include "common.cuh"
#include "ops.h"

namespace interir {
namespace {

const char* device_name() { return impl::device_type() == at::kCUDA ? "CUDA" : "CPU (host emulation)"; }

void check_tensor(const at::Tensor& t, const char* op, const char* name, int64_t dim = -1, bool activation = true) {
  TORCH_CHECK(t.device().type() == impl::device_type(), op, ": ", name, " must be a ", device_name(),
              " tensor, got one on ", t.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK(dim < 0 || t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got shape ", t.sizes());
  if (activation) {
    const auto dt = t.scalar_type();
    TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, op, ": ", name,
                " must be float32, bfloat16 or float16, got ", dt);
  } else {
    TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be floating point, got ", t.scalar_type());
  }
}

void check_same(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name, const char* like_name) {
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but ", like_name, " is on ",
              like.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": ", name, " is ", t.scalar_type(), " but ", like_name,
              " is ", like.scalar_type());
}

void check_scalar(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name) {
  TORCH_CHECK(t.numel() == 1, op, ": ", name, " must have one element, got ", t.numel());
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but x is on ", like.device());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be floating point");
}

void check_shape(const at::Tensor& t, at::IntArrayRef want, const char* op, const char* name) {
  TORCH_CHECK(t.sizes() == want, op, ": ", name, " must have shape ", want, ", got ", t.sizes());
}

void check_kernel_size(int64_t k, const char* op) {
  TORCH_CHECK(k >= 1 && k <= kMaxKernel, op, ": kernel_size must be in 1..", kMaxKernel, ", got ", k);
}

at::Tensor explainable_attention(const at::Tensor& x, const at::Tensor& theta, int64_t kernel_size, double tau) {
  const char* op = "interir._C.explainable_attention";
  check_tensor(x, op, "x", 4);
  check_scalar(theta, x, op, "theta");
  check_kernel_size(kernel_size, op);
  TORCH_CHECK(tau > 0, op, ": tau must be > 0, got ", tau);
  TORCH_CHECK(x.size(2) > 0 && x.size(3) > 0, op, ": x must have a non-empty H×W, got ", x.sizes());
  return impl::explainable_attention(x, theta, kernel_size, tau);
}

std::tuple<at::Tensor, at::Tensor> explainable_attention_backward(const at::Tensor& grad_attn, const at::Tensor& x,
                                                                  const at::Tensor& theta, const at::Tensor& attn,
                                                                  double tau) {
  const char* op = "interir._C.explainable_attention_backward";
  check_tensor(x, op, "x", 4);
  check_scalar(theta, x, op, "theta");
  check_tensor(attn, op, "attn", 4, false);
  check_tensor(grad_attn, op, "grad_attn", 4, false);
  const int64_t k = attn.size(3);
  check_kernel_size(k, op);
  check_shape(attn, {x.size(0), x.size(1), k, k}, op, "attn");
  check_shape(grad_attn, attn.sizes(), op, "grad_attn");
  TORCH_CHECK(tau > 0, op, ": tau must be > 0, got ", tau);
  return impl::explainable_attention_backward(grad_attn, x, theta, attn, tau);
}

void check_conv(const char* op, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& attn, int64_t groups) {
  check_tensor(x, op, "x", 4);
  check_tensor(weight, op, "weight", 4);
  check_same(weight, x, op, "weight", "x");
  check_tensor(attn, op, "attn", 4, false);
  const int64_t k = weight.size(3);
  check_kernel_size(k, op);
  TORCH_CHECK(weight.size(2) == k && k % 2 == 1, op, ": weight must be Cout×Cin/groups×k×k with k odd, got ",
              weight.sizes());
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0 && weight.size(0) % groups == 0, op, ": groups=", groups,
              " must divide Cin=", x.size(1), " and Cout=", weight.size(0));
  TORCH_CHECK(weight.size(1) * groups == x.size(1), op, ": weight has ", weight.size(1), "×", groups,
              " input channels but x has ", x.size(1));
  check_shape(attn, {x.size(0), x.size(1), k, k}, op, "attn");
}

at::Tensor modulated_conv(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const at::Tensor& attn, int64_t groups) {
  const char* op = "interir._C.modulated_conv";
  check_conv(op, x, weight, attn, groups);
  if (bias.has_value()) {
    check_tensor(*bias, op, "bias", 1, false);
    check_shape(*bias, {weight.size(0)}, op, "bias");
  }
  return impl::modulated_conv(x, weight, bias, attn, groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> modulated_conv_backward(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& attn, int64_t groups) {
  const char* op = "interir._C.modulated_conv_backward";
  check_conv(op, x, weight, attn, groups);
  check_tensor(grad_y, op, "grad_y", 4);
  check_shape(grad_y, {x.size(0), weight.size(0), x.size(2), x.size(3)}, op, "grad_y");
  return impl::modulated_conv_backward(grad_y, x, weight, attn, groups);
}

void check_kron(const char* op, const char* xname, const at::Tensor& x, const char* aname, const at::Tensor& p1,
                const char* bname, const at::Tensor& p2) {
  check_tensor(x, op, xname, 4);
  check_tensor(p1, op, aname, 4);
  check_tensor(p2, op, bname, 4);
  check_same(p1, x, op, aname, xname);
  check_same(p2, x, op, bname, xname);
  check_shape(p1, {x.size(0), x.size(1), x.size(2), x.size(2)}, op, aname);
  check_shape(p2, {x.size(0), x.size(1), x.size(3), x.size(3)}, op, bname);
}

at::Tensor kron_apply(const at::Tensor& x, const at::Tensor& p1, const at::Tensor& p2, bool transpose) {
  check_kron("interir._C.kron_apply", "x", x, "p1", p1, "p2", p2);
  return impl::kron_apply(x, p1, p2, transpose);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kron_apply_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                                   const at::Tensor& p1, const at::Tensor& p2,
                                                                   bool transpose) {
  const char* op = "interir._C.kron_apply_backward";
  check_kron(op, "x", x, "p1", p1, "p2", p2);
  check_tensor(grad_y, op, "grad_y", 4);
  check_shape(grad_y, x.sizes(), op, "grad_y");
  return impl::kron_apply_backward(grad_y, x, p1, p2, transpose);
}

void check_step(const char* op, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
                const at::Tensor& r, const at::Tensor& eta) {
  check_kron(op, "f", f, "gram1", gram1, "gram2", gram2);
  check_tensor(r, op, "r", 4);
  check_same(r, f, op, "r", "f");
  check_shape(r, f.sizes(), op, "r");
  check_scalar(eta, f, op, "eta");
}

at::Tensor kron_step(const at::Tensor& x, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
                     const at::Tensor& r, const at::Tensor& eta) {
  const char* op = "interir._C.kron_step";
  check_step(op, f, gram1, gram2, r, eta);
  check_tensor(x, op, "x", 4);
  check_same(x, f, op, "x", "f");
  check_shape(x, f.sizes(), op, "x");
  return impl::kron_step(x, f, gram1, gram2, r, eta);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> kron_step_backward(
    const at::Tensor& grad_out, const at::Tensor& f, const at::Tensor& gram1, const at::Tensor& gram2,
    const at::Tensor& r, const at::Tensor& eta) {
  const char* op = "interir._C.kron_step_backward";
  check_step(op, f, gram1, gram2, r, eta);
  check_tensor(grad_out, op, "grad_out", 4);
  check_shape(grad_out, f.sizes(), op, "grad_out");
  return impl::kron_step_backward(grad_out, f, gram1, gram2, r, eta);
}

void check_loss(const char* op, const at::Tensor& pred, const at::Tensor& target) {
  check_tensor(pred, op, "pred");
  check_tensor(target, op, "target");
  TORCH_CHECK(pred.dim() >= 2, op, ": pred must be at least 2-D, got shape ", pred.sizes());
  check_shape(target, pred.sizes(), op, "target");
  TORCH_CHECK(target.device() == pred.device(), op, ": target is on ", target.device(), " but pred is on ",
              pred.device());
}

at::Tensor fft_l1_loss(const at::Tensor& pred, const at::Tensor& target) {
  check_loss("interir._C.fft_l1_loss", pred, target);
  return impl::fft_l1_loss(pred, target);
}

std::tuple<at::Tensor, at::Tensor> fft_l1_loss_backward(const at::Tensor& grad_loss, const at::Tensor& pred,
                                                        const at::Tensor& target) {
  const char* op = "interir._C.fft_l1_loss_backward";
  check_loss(op, pred, target);
  check_scalar(grad_loss, pred, op, "grad_loss");
  return impl::fft_l1_loss_backward(grad_loss, pred, target);
}

}  // namespace
}  // namespace interir

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "interir._C: the CUDA kernels of interir's cuda backend (or their host emulation)";
  m.attr("device_type") = interir::impl::device_type() == at::kCUDA ? "cuda" : "cpu";
  m.attr("kernel_size_max") = interir::kMaxKernel;
  m.def("explainable_attention", &interir::explainable_attention, "A = k²·softmax(pool(1[x > θ])): B×C×k×k float32");
  m.def("explainable_attention_backward", &interir::explainable_attention_backward, "(dx, dθ)");
  m.def("modulated_conv", &interir::modulated_conv, "y = Σ W·A·x + bias, shared weight, 'same' padding");
  m.def("modulated_conv_backward", &interir::modulated_conv_backward, "(dx, dW, dA, dbias)");
  m.def("kron_apply", &interir::kron_apply, "P1·X·P2 (or P1ᵀ·X·P2ᵀ)");
  m.def("kron_apply_backward", &interir::kron_apply_backward, "(dx, dp1, dp2)");
  m.def("kron_step", &interir::kron_step, "X − η·(G1·F·G2 + R)");
  m.def("kron_step_backward", &interir::kron_step_backward, "(dx, df, dgram1, dgram2, dr, deta)");
  m.def("fft_l1_loss", &interir::fft_l1_loss, "mean |Re| + |Im| of fft2(pred − target), FSNet form");
  m.def("fft_l1_loss_backward", &interir::fft_l1_loss_backward, "(dpred, dtarget)");
}
