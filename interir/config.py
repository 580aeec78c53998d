"""Experiment configuration: YAML files with BasicSR-like keys, merged over the paper recipe (SPEC §5).

    cfg = load_config("configs/mdir_small.yml", overrides=["train.total_iter=100", "model.preset=tiny"])

Unknown keys are an error naming the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from interir.errors import InterIRError

# The paper recipe (SPEC §5); YAML files override any of it.
DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda
    "backend": "auto",  # interir.ops backend: auto | reference | triton | cuda
    "model": {"name": "interir", "preset": "paper"},  # + any config field of the model
    "datasets": {
        "train": {
            "type": "mdir",  # mdir: clean images degraded on the fly | paired: input/target folders
            "root": None,
            "patch_size": 256,
            "batch_size_per_gpu": 32,  # per process
            "num_workers": 4,
            "flips": True,
            "combos": None,  # mdir: list of combinations, default all 7
            "repeat": 1,  # mdir: passes over the image list per epoch
            "size_mismatch": "error",  # paired: error | crop
            "cache": True,  # mdir: keep decoded images in memory
        },
        "val": None,  # {type: synthetic|paired, root: ..., max_images: N, y_channel: false}
    },
    "train": {
        "total_iter": 300_000,
        "optim": {"type": "Adam", "lr": 5e-4, "betas": [0.9, 0.999], "weight_decay": 0.0},
        "scheduler": {"type": "cosine", "eta_min": 1e-6},  # cosine | constant
        # auto: l1_fft for InterIR, dgunet for DGUNet | l1_fft: l1·L1 + fft·FFT-L1 (SPEC §3) | dgunet: multi-stage
        "loss": {"type": "auto", "l1": 1.0, "fft": 0.1},
        "grad_clip": 1.0,  # max gradient norm; 0 disables
        "ema_decay": 0.999,  # 0 disables the EMA copy
        "bf16": False,  # bfloat16 autocast
        "compile": False,  # torch.compile the model
    },
    "logger": {
        "print_freq": 100,
        "save_checkpoint_freq": 5000,
        "val_freq": 5000,
        "keep_checkpoints": 3,
        "tensorboard": True,
    },
    # pretrained: a weights file (or experiment folder) the model starts from when not resuming
    "path": {"experiments_root": "experiments", "pretrained": None},
}

# sections whose keys are free-form (model options depend on the model; val may be None)
_OPEN = {("model",), ("datasets", "val")}


def _merge(base: dict, update: dict, where: tuple = ()) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = where + (key,)
        if key not in base and where not in _OPEN:
            raise InterIRError(f"unknown config key '{'.'.join(path)}'")
        if isinstance(value, dict) and isinstance(base.get(key), dict) and path not in _OPEN:
            out[key] = _merge(base[key], value, path)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = {**base[key], **value}
        else:
            out[key] = value
    return out


def apply_override(cfg: dict, assignment: str) -> dict:
    """Apply one `dotted.key=yaml_value` override, e.g. "train.optim.lr=1e-4"."""
    if "=" not in assignment:
        raise InterIRError(f"override {assignment!r} must look like section.key=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    update: dict = {}
    node = update
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return _merge(cfg, update)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """DEFAULTS ← the YAML file ← overrides. Relative dataset roots resolve against the YAML's folder."""
    cfg = copy.deepcopy(DEFAULTS)
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InterIRError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InterIRError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from exc
        if not isinstance(data, dict):
            raise InterIRError(f"{path} must hold a mapping of config sections")
        cfg = _merge(cfg, data)
        base_dir = path.parent
    for assignment in overrides or []:
        cfg = apply_override(cfg, assignment)
    for section in ("train", "val"):
        ds = cfg["datasets"].get(section)
        if ds and ds.get("root") and not os.path.isabs(os.path.expanduser(str(ds["root"]))):
            candidate = base_dir / str(ds["root"])
            ds["root"] = str(candidate if candidate.exists() else Path(str(ds["root"])))
    return cfg
