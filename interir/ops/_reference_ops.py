"""The `reference` backend: the functions of interir.ops.reference registered as torch.library ops."""
from interir.ops import explainable_conv, fft_loss, kron, reference

explainable_conv.define_backend(
    "reference",
    attention=reference.explainable_attention,
    attention_backward=reference.explainable_attention_backward,
    conv=reference.modulated_conv,
    conv_backward=reference.modulated_conv_backward,
)
kron.define_backend(
    "reference",
    apply=reference.kron_apply,
    apply_backward=reference.kron_apply_backward,
    step=reference.kron_step,
    step_backward=reference.kron_step_backward,
)
fft_loss.define_backend(
    "reference", loss=reference.fft_l1_loss, loss_backward=reference.fft_l1_loss_backward
)
