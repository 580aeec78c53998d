"""The model registry: every network of the project registers itself here, by name, with its presets.

    @register_model("interir", config=InterIRConfig, presets=PRESETS, default_preset="paper",
                    smallest_preset="tiny", loss="l1_fft")
    class InterIR(RestorationModel): ...

    spec = {"name": "interir", "preset": "small", "explainable": False}
    model = build(spec)                      # build() is re-exported by interir.model, which imports every model
    model_spec(model) == {"name": "interir", "preset": "small", ...every config field...}

The description is what checkpoints and YAML experiments store, so a checkpoint rebuilds its own network.
The commands (train, eval, restore, explain, info, bench) find networks only through this registry and talk
to them only through the protocol of interir.model.protocol, so a new model is one file (docs/ops.md,
"Adding a model"). This module imports no model: importing `interir.model` registers them all.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch.nn as nn

from interir.errors import InterIRError


@dataclass(frozen=True)
class ModelEntry:
    """A registered network: its class (constructed from a config), config dataclass and named presets.

    default_preset: the full-size network (`interir info` and the benchmarks' choice); smallest_preset: the
    one tests and smoke runs use; loss: the name of its training loss in interir.losses; uses_ops: whether
    it calls interir.ops (the benchmarks then time it on every ops backend)."""

    name: str
    network: Callable[[Any], nn.Module]
    config: type
    presets: Mapping[str, Mapping[str, Any]]
    default_preset: str
    smallest_preset: str
    loss: str
    uses_ops: bool


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, config: type, presets: Mapping[str, Mapping[str, Any]], default_preset: str,
                   smallest_preset: str, loss: str = "l1_fft", uses_ops: bool = True):
    """Class decorator: register `network(config)` under `name`. Preset names must be unique across models
    (a preset alone, as in `interir info --preset`, names its network)."""
    for preset in (default_preset, smallest_preset):
        if preset not in presets:
            raise ValueError(f"model {name!r}: preset {preset!r} is not one of its presets")
    for other in _MODELS.values():
        clash = set(presets) & set(other.presets)
        if clash and other.name != name:
            raise ValueError(f"model {name!r}: preset(s) {sorted(clash)} already belong to {other.name!r}")

    def decorate(network):
        _MODELS[name] = ModelEntry(name, network, config, dict(presets), default_preset, smallest_preset, loss,
                                   uses_ops)
        network.registry_name = name
        return network

    return decorate


def model_names() -> tuple[str, ...]:
    return tuple(_MODELS)


def model_entry(name: str) -> ModelEntry:
    """The entry of a registered model; an unknown name is an InterIRError listing the known ones."""
    key = str(name).lower()
    if key not in _MODELS:
        raise InterIRError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}")
    return _MODELS[key]


def all_presets() -> dict[str, str]:
    """{preset: model name} over every registered model."""
    return {preset: entry.name for entry in _MODELS.values() for preset in entry.presets}


def entry_of_preset(preset: str) -> ModelEntry:
    owners = all_presets()
    if preset not in owners:
        raise InterIRError(f"unknown preset {preset!r}; choose one of {', '.join(owners)}")
    return _MODELS[owners[preset]]


def config_from_preset(entry: ModelEntry, preset: str, overrides: dict[str, Any]):
    """`entry.config` of preset `preset` with keyword overrides; unknown presets or fields are one-line errors.

    The preset's name is kept in the config's `extra` so that checkpoints can describe the network."""
    network = entry.network.__name__
    if preset not in entry.presets:
        raise InterIRError(f"unknown {network} preset {preset!r}; choose one of {', '.join(entry.presets)}")
    overrides = dict(overrides)
    names = {f.name for f in dataclasses.fields(entry.config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InterIRError(f"unknown {network} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    extra = {**overrides.pop("extra", {}), "preset": preset}
    return entry.config(**{**entry.presets[preset], **overrides, "extra": extra})


def build(spec: Mapping[str, Any] | str) -> nn.Module:
    """Network from {"name": ..., "preset": ..., **overrides}, or a bare preset name of any model."""
    if isinstance(spec, str):
        entry = entry_of_preset(spec)
        return entry.network(config_from_preset(entry, spec, {}))
    spec = dict(spec)
    entry = model_entry(spec.pop("name", "interir"))
    preset = spec.pop("preset", entry.default_preset)
    return entry.network(config_from_preset(entry, preset, spec))


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The description `build` needs to rebuild `model` (name, preset and every config field)."""
    name = getattr(type(model), "registry_name", None)
    cfg = getattr(model, "cfg", None)
    if name is None or cfg is None or not dataclasses.is_dataclass(cfg):
        raise InterIRError(f"{type(model).__name__} is not a registered model with a dataclass `cfg`; it cannot "
                           f"be described")
    fields = dataclasses.asdict(cfg)
    extra = fields.pop("extra", {}) or {}
    return {"name": name, "preset": extra.get("preset", model_entry(name).default_preset), **fields}
