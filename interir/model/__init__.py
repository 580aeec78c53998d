"""Restoration networks: InterIR (SPEC §2), its blocks and presets."""
from interir.model.blocks import Convs, EPBlock, ExplainableConv, LayerNorm2d, frobenius_normalize  # noqa: F401
from interir.model.interir import DMUM, MUM, RESM, InterIR, InterIRConfig, IPBlock  # noqa: F401
from interir.model.presets import ABLATIONS, PRESETS, build_model, preset_config  # noqa: F401
