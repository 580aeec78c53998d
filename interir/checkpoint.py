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
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import safe_open, save_file

from interir import quantize
from interir.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from interir.errors import InterIRError
from interir.model import build, model_spec
from interir.validation import expect_int, plain_file_name

FORMAT = "interir/1"
INT8 = "int8"  # the `storage` metadata of a file whose kernels are int8 (interir/quantize.py)
LATEST = "latest.json"


# ------------------------------------------------------------------------------------------ weights
def save_weights(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None,
                 dtype: torch.dtype | None = None) -> Path:
    """Write `model`'s weights and description to a safetensors file, atomically.

    `dtype` (e.g. torch.float16) stores floating-point tensors in that type; loading casts them back to the
    network's own dtype. torch.int8 stores each kernel as int8 with per-output-channel scales and the rest as
    float16 (interir/quantize.py), except the layers the network names in `full_precision_layers`.
    """
    net = unwrap(model)
    # clone: safetensors refuses tensors that share memory (DGUNet shares one PReLU between modules)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "model": json.dumps(model_spec(net))}
    if dtype == torch.int8:
        prefixes = tuple(f"{layer}." for layer in getattr(net, "full_precision_layers", ()))
        state = quantize.pack(state, keep=lambda name: name.startswith(prefixes))
        meta["storage"] = INT8
    elif dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
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
        raise InterIRError(f"{path} is not a readable safetensors checkpoint ({_reason(exc)})") from None
    if meta.get("format") != FORMAT or "model" not in meta:
        raise InterIRError(f"{path} is not an interir checkpoint (no '{FORMAT}' metadata)")
    model = _json_field(path, meta, "model")
    extra = _json_field(path, meta, "extra") if "extra" in meta else {}
    if not isinstance(model, dict) or not isinstance(model.get("name", ""), str) \
            or not isinstance(model.get("preset", ""), str):
        raise InterIRError(f"{path}: its model description is malformed (expected a mapping with a name and a "
                           f"preset, got {str(model)[:80]!r})")
    if not isinstance(extra, dict):
        raise InterIRError(f"{path}: its 'extra' metadata must be a mapping, got {type(extra).__name__}")
    return {"model": model, "extra": extra}


def _json_field(path: Path, meta: dict, key: str) -> Any:
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError) as exc:
        raise InterIRError(f"{path}: its '{key}' metadata is not valid JSON ({exc})") from None


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a safetensors file, read from its header only (an int8 file's scales left out)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in quantize.logical_names(f.keys())}
    except Exception as exc:
        raise InterIRError(f"{path} is not a readable safetensors checkpoint ({_reason(exc)})") from None


def _check_fits(path, file_shapes: dict[str, tuple], own_shapes: dict[str, tuple]) -> None:
    """One-line error naming what differs between a file's tensors and a network's."""
    missing = sorted(set(own_shapes) - set(file_shapes))
    unexpected = sorted(set(file_shapes) - set(own_shapes))
    wrong = [f"{k} {file_shapes[k]} vs {own_shapes[k]}" for k in own_shapes
             if k in file_shapes and tuple(file_shapes[k]) != tuple(own_shapes[k])]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise InterIRError(f"checkpoint {path} does not fit this network: " + "; ".join(parts))


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (an int8 file's kernels dequantized to float32); a damaged file or one
    holding NaN/Inf weights is one InterIRError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            storage = (f.metadata() or {}).get("storage")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise InterIRError(f"checkpoint not found: {path}") from None
    except Exception as exc:
        raise InterIRError(f"{path} is damaged or not a safetensors file ({_reason(exc)})") from None
    if storage == INT8:
        state = quantize.unpack(state, str(path))
    elif storage is not None:
        raise InterIRError(f"{path} has storage {storage!r}; this version of interir reads {INT8!r} or none")
    elif any(quantize.is_scale_name(k) for k in state):
        raise InterIRError(f"{path} is damaged: it holds int8 scales but no '{INT8}' storage metadata")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InterIRError(f"{path} holds NaN or Inf values in {len(bad)} tensor(s) (e.g. {bad[0]}): the weights "
                           f"are broken (a diverged training?) and would restore garbage")
    return state


def load_weights_into(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a weights file into an existing network; a mismatch says which tensors differ."""
    own = unwrap(model).state_dict()
    _check_fits(path, tensor_shapes(path), {k: tuple(v.shape) for k, v in own.items()})
    unwrap(model).load_state_dict(read_weights(path))


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               expect: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint describes and load its weights.

    `path` may be a weights file or an experiment folder (its latest step, EMA weights preferred).
    `expect` (e.g. {"preset": "small"}) makes a checkpoint of another network an error naming the field.
    The description is first built on the meta device (no memory) and compared with the file's tensors, so a
    file whose metadata describes a bigger network than it holds is refused before anything is allocated.
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
    with torch.device("meta"):
        skeleton = build(meta["model"])
    _check_fits(path, tensor_shapes(path), {k: tuple(v.shape) for k, v in skeleton.state_dict().items()})
    del skeleton
    model = build(meta["model"])
    model.load_state_dict(read_weights(path))
    return model.to(device).eval(), meta


def shipped_checkpoint() -> Path:
    """The small model shipped inside the package (interir/weights/), if this installation has one."""
    path = Path(__file__).parent / "weights" / "interir_small.safetensors"
    if not path.is_file():
        raise InterIRError("no checkpoint given and this installation ships no trained model; pass a checkpoint path")
    return path


SHIPPED = "shipped"  # the name every command takes for the shipped model, as `interir export shipped`


def resolve_weights(path: str | os.PathLike) -> Path:
    """A weights file itself, the newest weights of an experiment folder (EMA preferred), or the shipped model
    for `shipped` (when no file or folder of that name is there)."""
    if str(path) == SHIPPED and not Path(path).exists():
        return shipped_checkpoint()
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
_STEP_FILE = re.compile(r"^step_(\d{8})\.state\.pt$")


class CheckpointDir:
    """Saves and finds the checkpoints of one experiment folder (see the module doc for the layout)."""

    def __init__(self, root: str | os.PathLike, keep_last: int = 3):
        self.root = Path(root)
        self.keep_last = keep_last

    def latest(self) -> dict[str, Any] | None:
        """{"step", "weights", "ema", "state"} of the newest complete checkpoint, or None when there is none.

        latest.json is untrusted input: malformed JSON, wrong types or a file name that leaves the folder is an
        InterIRError naming it."""
        pointer = self.root / LATEST
        if not pointer.is_file():
            return None
        try:
            info = json.loads(pointer.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InterIRError(f"{pointer} is corrupt ({exc})") from None
        return self._checked(info, pointer)

    @staticmethod
    def _checked(info: Any, where: Path) -> dict[str, Any]:
        if not isinstance(info, dict):
            raise InterIRError(f"{where} is malformed: expected a mapping, got {type(info).__name__}")
        try:
            step = expect_int(f"{where}: step", info.get("step"), minimum=0)
            out = {"step": step, "weights": plain_file_name(f"{where}: weights", info.get("weights")),
                   "ema": None if info.get("ema") is None else plain_file_name(f"{where}: ema", info.get("ema")),
                   "state": plain_file_name(f"{where}: state", info.get("state"))}
        except InterIRError as exc:
            raise InterIRError(f"{exc} (the file is malformed)") from None
        return out

    def steps(self) -> list[int]:
        """Steps that have a training-state file in the folder, newest first."""
        if not self.root.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.root.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def at(self, step: int) -> dict[str, Any]:
        """The checkpoint files of `step` (EMA weights only when the file exists)."""
        stem = f"step_{step:08d}"
        ema = f"{stem}.ema.safetensors"
        return {"step": step, "weights": f"{stem}.safetensors",
                "ema": ema if (self.root / ema).is_file() else None, "state": f"{stem}.state.pt"}

    def candidates(self) -> tuple[list[dict[str, Any]], str | None]:
        """Checkpoints to resume from, newest first: latest.json's, then every older step found in the folder.
        Also returns why latest.json could not be used (None when it could)."""
        problem, out = None, []
        try:
            latest = self.latest()
        except InterIRError as exc:
            latest, problem = None, str(exc)
        if latest is not None:
            out.append(latest)
        newest = latest["step"] if latest is not None else None
        out += [self.at(s) for s in self.steps() if newest is None or s < newest]
        return out, problem

    def save(self, step: int, model: nn.Module, state: dict[str, Any], ema: nn.Module | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write weights, EMA weights and the training state of `step`, then point latest.json at them."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.root)
        info = self.at(step)
        save_weights(self.root / info["weights"], model, {**(extra or {}), "step": step})
        info["ema"] = None
        if ema is not None:
            info["ema"] = f"step_{step:08d}.ema.safetensors"
            save_weights(self.root / info["ema"], ema, {**(extra or {}), "step": step, "ema": True})
        with atomic_path(self.root / info["state"]) as tmp:
            torch.save(state, tmp)
        atomic_write_text(self.root / LATEST, json.dumps(info, indent=2))
        self._prune(step)
        return info

    def load_state(self, info: dict[str, Any]) -> dict[str, Any]:
        """The training state of a checkpoint, loaded with weights_only=True (tensors and plain types only).

        A damaged file, or one holding other objects (which torch refuses to unpickle safely), is one
        InterIRError; interir never loads such a file with weights_only=False."""
        path = self.root / info["state"]
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InterIRError(f"{path} is missing") from None
        except pickle.UnpicklingError:
            raise InterIRError(f"{path} holds objects other than tensors and plain values; interir does not load "
                               f"such files (it would run arbitrary code)") from None
        except Exception as exc:
            raise InterIRError(f"{path} is damaged ({_reason(exc)})") from None
        if not isinstance(state, dict) or not isinstance(state.get("step"), int) \
                or not isinstance(state.get("optimizer"), dict) or not isinstance(state.get("rng"), dict):
            raise InterIRError(f"{path} is not an interir training state (step, optimizer, rng)")
        return state

    def copy_newest(self, dest: str | os.PathLike) -> dict[str, Any] | None:
        """Copy the checkpoint latest.json names (weights, EMA weights, training state) into folder `dest`, each
        file atomically and `dest`'s latest.json last, so that `interir train --resume` continues from it there.
        Returns its {"step", "weights", "ema", "state"}, or None when this folder has no checkpoint."""
        info = self.latest()
        if info is None:
            return None
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for key in ("weights", "ema", "state"):
            if info[key] is None:
                continue
            source = self.root / info[key]
            if not source.is_file():
                raise InterIRError(f"{source} is missing ({self.root / LATEST} names it)")
            with atomic_path(dest / info[key]) as tmp:
                shutil.copyfile(source, tmp)
        atomic_write_text(dest / LATEST, json.dumps(info, indent=2))
        return info

    def _prune(self, newest: int) -> None:
        steps = sorted(self.steps())
        for step in steps[: max(0, len(steps) - self.keep_last)]:
            if step == newest:
                continue
            for p in self.root.glob(f"step_{step:08d}.*"):
                p.unlink(missing_ok=True)
