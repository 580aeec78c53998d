"""Checkpoints: weights as safetensors (no pickle) that rebuild their own network, and training states.

An experiment folder holds, for each saved step,
    step_00001000.safetensors         model weights + metadata (the model description of interir.model.zoo)
    step_00001000.ema.safetensors     EMA weights, when training keeps an EMA
    step_00001000.state.pt            optimizer, scheduler, step, RNG states (tensors and plain types only)
and `latest.json`, rewritten last, naming the newest complete step. Every file is written atomically
(temporary file, then rename), so a killed write leaves the previous checkpoint intact and `latest.json`
never points at a partial one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, safe_open, save_file

from interir.atomic import atomic_path, atomic_write_text
from interir.errors import InterIRError
from interir.model.zoo import build, model_spec

FORMAT = "interir/1"
LATEST = "latest.json"


# ------------------------------------------------------------------------------------------ weights
def save_weights(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None,
                 dtype: torch.dtype | None = None) -> Path:
    """Write `model`'s weights and description to a safetensors file, atomically.

    `dtype` (e.g. torch.float16) stores floating-point tensors in that type; loading casts them back to the
    network's own dtype.
    """
    # clone: safetensors refuses tensors that share memory (DGUNet shares one PReLU between modules)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in unwrap(model).state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": FORMAT, "model": json.dumps(model_spec(unwrap(model)))}
    if extra:
        meta["extra"] = json.dumps(extra)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """{"model": description, "extra": {...}} of a weights file, without reading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise InterIRError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise InterIRError(f"{path} is not a readable safetensors checkpoint ({exc})") from exc
    if meta.get("format") != FORMAT or "model" not in meta:
        raise InterIRError(f"{path} is not an interir checkpoint (no '{FORMAT}' metadata)")
    return {"model": json.loads(meta["model"]), "extra": json.loads(meta.get("extra", "{}"))}


def load_weights_into(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a weights file into an existing network; a mismatch says which tensors differ."""
    state = load_file(str(path))
    own = unwrap(model).state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise InterIRError(f"checkpoint {path} does not fit this network: " + "; ".join(parts))
    unwrap(model).load_state_dict(state)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               expect: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint describes and load its weights.

    `path` may be a weights file or an experiment folder (its latest step, EMA weights preferred).
    `expect` (e.g. {"preset": "small"}) makes a checkpoint of another network an error naming the field.
    Returns (model in eval mode on `device`, metadata).
    """
    if path is None:
        path = shipped_checkpoint()
    path = resolve_weights(path)
    meta = read_metadata(path)
    for key, want in (expect or {}).items():
        have = meta["model"].get(key)
        if have != want:
            raise InterIRError(f"checkpoint {path} has {key}={have!r}, expected {want!r}")
    model = build(meta["model"])
    load_weights_into(model, path)
    return model.to(device).eval(), meta


def shipped_checkpoint() -> Path:
    """The small model shipped inside the package (interir/weights/), if this installation has one."""
    path = Path(__file__).parent / "weights" / "interir_small.safetensors"
    if not path.is_file():
        raise InterIRError("no checkpoint given and this installation ships no trained model; pass a checkpoint path")
    return path


def resolve_weights(path: str | os.PathLike) -> Path:
    """A weights file itself, or the newest weights of an experiment folder (EMA preferred)."""
    path = Path(path)
    if path.is_dir():
        latest = CheckpointDir(path).latest()
        if latest is None:
            raise InterIRError(f"{path} holds no checkpoint ({LATEST} is missing)")
        return path / (latest["ema"] or latest["weights"])
    if not path.exists():
        raise InterIRError(f"checkpoint not found: {path}")
    return path


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# ------------------------------------------------------------------------------------------ training
class CheckpointDir:
    """Saves and finds the checkpoints of one experiment folder (see the module doc for the layout)."""

    def __init__(self, root: str | os.PathLike, keep_last: int = 3):
        self.root = Path(root)
        self.keep_last = keep_last

    def latest(self) -> dict[str, Any] | None:
        """{"step", "weights", "ema", "state"} of the newest complete checkpoint, or None."""
        pointer = self.root / LATEST
        if not pointer.is_file():
            return None
        try:
            info = json.loads(pointer.read_text())
        except json.JSONDecodeError as exc:
            raise InterIRError(f"{pointer} is corrupt ({exc})") from exc
        return info

    def save(self, step: int, model: nn.Module, state: dict[str, Any], ema: nn.Module | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write weights, EMA weights and the training state of `step`, then point latest.json at them."""
        self.root.mkdir(parents=True, exist_ok=True)
        stem = f"step_{step:08d}"
        info = {"step": step, "weights": f"{stem}.safetensors", "ema": None, "state": f"{stem}.state.pt"}
        save_weights(self.root / info["weights"], model, {**(extra or {}), "step": step})
        if ema is not None:
            info["ema"] = f"{stem}.ema.safetensors"
            save_weights(self.root / info["ema"], ema, {**(extra or {}), "step": step, "ema": True})
        with atomic_path(self.root / info["state"]) as tmp:
            torch.save(state, tmp)
        atomic_write_text(self.root / LATEST, json.dumps(info, indent=2))
        self._prune(step)
        return info

    def load_state(self, info: dict[str, Any]) -> dict[str, Any]:
        """The training state of a checkpoint (loaded with weights_only=True: no arbitrary pickle)."""
        return torch.load(self.root / info["state"], map_location="cpu", weights_only=True)

    def _prune(self, newest: int) -> None:
        steps = sorted({int(p.name[5:13]) for p in self.root.glob("step_*.state.pt")})
        for step in steps[: max(0, len(steps) - self.keep_last)]:
            if step == newest:
                continue
            for p in self.root.glob(f"step_{step:08d}.*"):
                p.unlink(missing_ok=True)
