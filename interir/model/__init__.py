"""Restoration networks: InterIR (SPEC §2), its blocks and presets; the DGUNet baseline (SPEC §9); the zoo."""
from interir.model.blocks import Convs, EPBlock, ExplainableConv, LayerNorm2d, frobenius_normalize  # noqa: F401
from interir.model.interir import DMUM, MUM, RESM, InterIR, InterIRConfig, IPBlock  # noqa: F401
from interir.model.presets import ABLATIONS, PRESETS, build_model, preset_config  # noqa: F401
from interir.model.dgunet import (  # noqa: F401
    DGUNET_PRESETS,
    DGUNet,
    DGUNetConfig,
    build_dgunet,
    dgunet_loss,
    dgunet_preset_config,
)
