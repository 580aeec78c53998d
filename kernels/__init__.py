"""The `triton` backend of interir.ops: fused Triton kernels, installed as the subpackage interir.kernels.

Importing this package registers the backend's torch.library ops (interir::<op>_triton). On a machine without
a GPU the kernels run only under the Triton interpreter (TRITON_INTERPRET=1, set before triton is imported).
"""
import triton  # noqa: F401  (a missing triton makes the backend report "a dependency is missing: triton")

from interir.kernels import explainable_conv, fft_loss, kron  # noqa: F401,E402  (each registers its ops)
