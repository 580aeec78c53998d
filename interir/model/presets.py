"""Named configurations of InterIR (SPEC §2, "Presets") and `build_model`."""
from __future__ import annotations

from interir.model.interir import InterIR, InterIRConfig
from interir.model.zoo import config_from_preset

PRESETS: dict[str, dict] = {
    "paper": dict(channels=48, num_blocks=16, expand=8),  # about 27 M parameters (the paper's model)
    "small": dict(channels=32, num_blocks=4, expand=8),  # CPU training, the shipped demo model
    "tiny": dict(channels=16, num_blocks=1, expand=8),  # tests
}

# SPEC §2 ablation switches (the paper's Table 4); all three off gives a DeepSN-Net-style baseline.
ABLATIONS = ("explainable", "additive_resm", "weighted_dmum")


def preset_config(name: str, **overrides) -> InterIRConfig:
    """The InterIRConfig of preset `name`, with keyword overrides (any InterIRConfig field)."""
    return config_from_preset(InterIRConfig, PRESETS, name, overrides, "InterIR")


def build_model(preset: str = "paper", **overrides) -> InterIR:
    """InterIR of preset `name` (`paper`, `small`, `tiny`) with keyword overrides, e.g. explainable=False."""
    return InterIR(preset_config(preset, **overrides))
