"""The `triton` backend of interir.ops: fused Triton kernels, installed as the subpackage interir.kernels.

`TABLE` is the backend table the ops registry turns into torch.library ops (docs/ops.md); this package never
imports interir.ops. On a machine without a GPU the kernels run only under the Triton interpreter
(TRITON_INTERPRET=1, set before triton is imported).
"""
import triton  # noqa: F401  (a missing triton makes the backend report "a dependency is missing: triton")

from interir.kernels import depthwise_conv, explainable_attention, fft_loss, kron, modulated_conv  # noqa: E402

# Every kernel's launch configs (kernels/_tuning.py), e.g. for `interir check --static --configs all`.
TUNINGS = (explainable_attention.TUNING, depthwise_conv.TUNING, modulated_conv.FWD, modulated_conv.DX,
           modulated_conv.DWA, kron.TUNING, fft_loss.TUNING)

TABLE = {
    "explainable_attention": {
        "forward": explainable_attention.explainable_attention,
        "backward": explainable_attention.explainable_attention_backward,
        "why_not": explainable_attention.why_not,
    },
    "modulated_conv": {
        "forward": modulated_conv.modulated_conv,
        "backward": modulated_conv.modulated_conv_backward,
        "why_not": modulated_conv.why_not,
    },
    "kron_apply": {"forward": kron.kron_apply, "backward": kron.kron_apply_backward, "why_not": kron.apply_why_not},
    "kron_step": {"forward": kron.kron_step, "backward": kron.kron_step_backward, "why_not": kron.step_why_not},
    "fft_l1_loss": {"forward": fft_loss.forward, "backward": fft_loss.backward, "why_not": fft_loss.why_not,
                    "saved_like": fft_loss.saved_like},
}
