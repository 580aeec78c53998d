"""InterIR: physically interpretable multi-degradation image restoration (deep unfolding + explainable conv).

    import interir
    model = interir.build_model("small")
    restored = model(degraded)          # B×3×H×W in [0, 1]
"""
__version__ = "0.1.0"

from interir.errors import InterIRError  # noqa: F401


from interir._source_tree import install_if_needed as _find_kernels_in_a_source_checkout  # noqa: E402

_find_kernels_in_a_source_checkout()


def build_model(preset: str = "paper", **overrides):
    """Build an InterIR network from a preset name (`paper`, `small`, `tiny`) and keyword overrides."""
    from interir.model import build_model as _build

    return _build(preset, **overrides)
