"""The model zoo: build any network of the project from a (name, preset, overrides) description.

    spec = {"name": "interir", "preset": "small", "explainable": False}
    model = build(spec)
    model_spec(model) == {"name": "interir", "preset": "small", ...every config field...}

The description is what checkpoints and YAML experiments store, so a checkpoint rebuilds its own network.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch.nn as nn

from interir.errors import InterIRError

MODEL_NAMES = ("interir", "dgunet")


def config_from_preset(config_cls, presets: dict[str, dict], name: str, overrides: dict[str, Any],
                       network: str, preset_word: str = "preset"):
    """`config_cls` of preset `name` with keyword overrides; unknown presets or fields are one-line errors.

    The preset's name is kept in the config's `extra` so checkpoints can describe the network.
    """
    if name not in presets:
        raise InterIRError(f"unknown {preset_word} {name!r}; choose one of {', '.join(presets)}")
    fields = set(config_cls.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InterIRError(f"unknown {network} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    extra = {**overrides.pop("extra", {}), "preset": name}
    return config_cls(**{**presets[name], **overrides, "extra": extra})


def build(spec: dict[str, Any] | str) -> nn.Module:
    """Network from {"name": ..., "preset": ..., **overrides} (or a bare InterIR preset name)."""
    if isinstance(spec, str):
        spec = {"name": "interir", "preset": spec}
    spec = dict(spec)
    name = str(spec.pop("name", "interir")).lower()
    if name == "interir":
        from interir.model.presets import build_model

        return build_model(spec.pop("preset", "paper"), **spec)
    if name == "dgunet":
        try:
            from interir.model.dgunet import build_dgunet
        except ImportError as exc:  # pragma: no cover - depends on the installed version
            raise InterIRError(f"model 'dgunet' is not available in this installation ({exc})") from exc
        return build_dgunet(spec.pop("preset", "dgunet"), **spec)
    raise InterIRError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The description `build` needs to rebuild `model` (name, preset and every config field)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        raise InterIRError(f"{type(model).__name__} has no dataclass `cfg`; it cannot be described")
    fields = dataclasses.asdict(cfg)
    extra = fields.pop("extra", {}) or {}
    name = type(model).__name__.lower()
    return {"name": name, "preset": extra.get("preset", "paper" if name == "interir" else name), **fields}
