"""The three accelerated operations of InterIR, each with a pure-PyTorch reference and pluggable backends.

    from interir import ops
    y = ops.explainable_conv(x, weight, bias, theta)          # SPEC §2
    y = ops.kron_apply(x, p1, p2, transpose=False)            # SPEC §1
    loss = ops.fft_l1_loss(pred, target)                      # SPEC §3
    with ops.use_backend("reference"): ...                    # or INTERIR_BACKEND=reference
"""
from interir.ops import _reference_ops  # noqa: F401  (registers the reference backend)
from interir.ops import backends  # noqa: E402
from interir.ops.backends import (  # noqa: F401
    BACKENDS,
    BackendUnavailable,
    available_backends,
    current_backend,
    use_backend,
)
from interir.ops.explainable_conv import explainable_attention, explainable_conv, modulated_conv  # noqa: F401
from interir.ops.fft_loss import fft_l1_loss  # noqa: F401
from interir.ops.kron import kron_apply, kron_gram, kron_normal, kron_step  # noqa: F401
from interir.ops.reference import explainable_mask  # noqa: F401

backends._LOAD_ERRORS.setdefault("reference", "")  # loaded just above
backends.preload_requested()
