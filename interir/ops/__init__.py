"""The three accelerated operations of InterIR, each with a pure-PyTorch reference and pluggable backends.

    from interir import ops
    y = ops.explainable_conv(x, weight, bias, theta)          # docs/model.md, ExplainableConv
    y = ops.kron_apply(x, p1, p2, transpose=False)            # docs/model.md, degradation model
    loss = ops.fft_l1_loss(pred, target)                      # docs/model.md, loss
    with ops.use_backend("reference"): ...                    # or INTERIR_BACKEND=reference

Each op's contract lives in its module (explainable_conv.py, kron.py, fft_loss.py); backends are tables of
plain functions that the registry (backends.py) turns into torch.library ops. See docs/ops.md.
"""
from interir.ops.backends import (  # noqa: F401
    BACKENDS,
    BackendUnavailable,
    available_backends,
    backend_names,
    current_backend,
    register_backend,
    register_backend_module,
    unregister_backend,
    use_backend,
)
from interir.ops.explainable_conv import explainable_attention, explainable_conv, modulated_conv  # noqa: F401
from interir.ops.fft_loss import fft_l1_loss  # noqa: F401
from interir.ops.kron import kron_apply, kron_gram, kron_normal, kron_step  # noqa: F401
from interir.ops.reference import explainable_mask  # noqa: F401
from interir.ops import backends as _backends
from interir.ops.auto import auto_choices  # noqa: F401,E402  (installs auto's measuring chooser)

_backends.load("reference")  # define the reference ops now (torch.ops.interir.*_reference)
_backends.preload_requested()
