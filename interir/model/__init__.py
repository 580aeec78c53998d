"""Restoration networks: InterIR (docs/model.md), its blocks and presets; the DGUNet baseline; the registry.

Importing this package registers every network (each module registers itself with interir.model.registry);
`build`, `model_spec` and the registry queries are re-exported here, so callers that use them from here always
see every model.
"""
from interir.model.blocks import Convs, EPBlock, ExplainableConv, LayerNorm2d, frobenius_normalize  # noqa: F401
from interir.model.interir import DMUM, MUM, RESM, InterIR, InterIRConfig, IPBlock  # noqa: F401
from interir.model.dgunet import (  # noqa: F401
    DGUNET_PRESETS,
    DGUNet,
    DGUNetConfig,
    build_dgunet,
    dgunet_loss,
    dgunet_preset_config,
)
from interir.model.presets import ABLATIONS, PRESETS  # noqa: F401
from interir.model.protocol import RestorationModel  # noqa: F401
from interir.model.registry import (  # noqa: F401
    all_presets,
    build,
    config_from_preset,
    entry_of_preset,
    model_entry,
    model_names,
    model_spec,
    register_model,
)


def preset_config(name: str, **overrides) -> InterIRConfig:
    """The InterIRConfig of preset `name`, with keyword overrides (any InterIRConfig field)."""
    return config_from_preset(model_entry("interir"), name, overrides)


def build_model(preset: str = "paper", **overrides) -> InterIR:
    """InterIR of preset `name` (`paper`, `small`, `tiny`) with keyword overrides, e.g. explainable=False."""
    return build({"name": "interir", "preset": preset, **overrides})
