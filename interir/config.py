"""Experiment configuration: YAML files with BasicSR-like keys, merged over the paper recipe
(docs/model.md, training recipe).

    cfg = load_config("configs/mdir_small.yml", overrides=["train.total_iter=100", "model.preset=tiny"])

Unknown keys are an error naming the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from interir.data.degrade import parse_combo
from interir.errors import InterIRError
from interir.losses import LOSSES
from interir.validation import (expect_bool, expect_choice, expect_float, expect_int, expect_mapping, expect_str,
                                relative_inside)

# The paper recipe (docs/model.md, training recipe); YAML files override any of it.
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
            # progressive training (docs/training.md): [[iters, patch, batch], ...] replacing patch_size and
            # batch_size_per_gpu; the iters sum to train.total_iter
            "stages": None,
        },
        "val": None,  # {type: synthetic|paired, root: ..., max_images: N, y_channel: false}
    },
    "train": {
        "total_iter": 300_000,
        "optim": {"type": "Adam", "lr": 5e-4, "betas": [0.9, 0.999], "weight_decay": 0.0},
        # cosine | constant | multistep (milestones, gamma), after warmup_iter linear warmup steps (docs/training.md)
        "scheduler": {"type": "cosine", "eta_min": 1e-6, "warmup_iter": 0, "milestones": None, "gamma": 0.5},
        # auto: l1_fft for InterIR, dgunet for DGUNet | l1_fft: l1·L1 + fft·FFT-L1 (docs/model.md) | dgunet: multi-stage
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
_NULLABLE = {("datasets", "val")}  # sections that may be null


def _merge(base: dict, update: dict, where: tuple = ()) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = where + (key,)
        if not isinstance(key, str):
            raise InterIRError(f"config keys must be names, got {key!r} in '{'.'.join(where) or 'the top level'}'")
        if key not in base and where not in _OPEN:
            raise InterIRError(f"unknown config key '{'.'.join(path)}'")
        if isinstance(base.get(key), dict) and not isinstance(value, dict) and path not in _NULLABLE:
            raise InterIRError(f"config key '{'.'.join(path)}' is a section: give it a mapping of keys, "
                               f"got {value!r}")
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
    if not all(k.strip() for k in keys):
        raise InterIRError(f"override {assignment!r}: the key {dotted!r} has an empty part")
    try:
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InterIRError(f"override of '{dotted.strip()}': the value {raw!r} is not valid YAML ({problem}); "
                           f"quote it if it is text") from None
    return _merge(cfg, update)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """DEFAULTS ← the YAML file ← overrides. Relative dataset roots resolve against the YAML's folder."""
    cfg = copy.deepcopy(DEFAULTS)
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise InterIRError(f"the config {path} is a folder; give its YAML file")
        if not path.is_file():
            raise InterIRError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise InterIRError(f"{path} is not a YAML text file (it is not UTF-8 text)") from None
        except yaml.YAMLError as exc:
            raise InterIRError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from exc
        if not isinstance(data, dict):
            raise InterIRError(f"{path} must hold a mapping of config sections")
        cfg = _merge(cfg, data)
        base_dir = path.parent
    for assignment in overrides or []:
        cfg = apply_override(cfg, assignment)
    cfg = validate_config(cfg)
    for section in ("train", "val"):
        ds = cfg["datasets"].get(section)
        if ds and ds.get("root") and not os.path.isabs(os.path.expanduser(str(ds["root"]))):
            candidate = base_dir / str(ds["root"])
            ds["root"] = str(candidate if candidate.exists() else Path(str(ds["root"])))
    return cfg


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check the type and range of every key (one InterIRError line naming the first bad one) and return the
    config with numbers normalised (e.g. lr "1e-4", which YAML 1.1 reads as text, becomes 1e-4). Model options
    are checked by the model's own config class when the network is built."""
    cfg = copy.deepcopy(cfg)
    relative_inside("name", cfg["name"])
    cfg["seed"] = expect_int("seed", cfg["seed"], minimum=0)
    device = expect_str("device", cfg["device"])
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise InterIRError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    expect_choice("backend", cfg["backend"], ("auto", "reference", "triton", "cuda"))
    model = expect_mapping("model", cfg["model"])
    expect_str("model.name", model.get("name", "interir"))
    expect_str("model.preset", model.get("preset", "paper"))

    d = expect_mapping("datasets.train", cfg["datasets"]["train"])
    expect_choice("datasets.train.type", d["type"], ("mdir", "paired"))
    expect_str("datasets.train.root", d["root"], allow_none=True)
    if d["patch_size"] is not None:
        d["patch_size"] = expect_int("datasets.train.patch_size", d["patch_size"], minimum=1)
    d["batch_size_per_gpu"] = expect_int("datasets.train.batch_size_per_gpu", d["batch_size_per_gpu"], minimum=1)
    d["num_workers"] = expect_int("datasets.train.num_workers", d["num_workers"], minimum=0)
    expect_bool("datasets.train.flips", d["flips"])
    if d["combos"] is not None:
        if not isinstance(d["combos"], list) or not d["combos"]:
            raise InterIRError(f"datasets.train.combos must be a non-empty list such as [H+R+N, N] or null, "
                               f"got {d['combos']!r}")
        d["combos"] = [parse_combo(expect_str("datasets.train.combos", c)) for c in d["combos"]]
    d["repeat"] = expect_int("datasets.train.repeat", d["repeat"], minimum=1)
    expect_choice("datasets.train.size_mismatch", d["size_mismatch"], ("error", "crop"))
    expect_bool("datasets.train.cache", d["cache"])
    if d.get("stages") is not None:
        d["stages"] = _stages(d["stages"])
    val = expect_mapping("datasets.val", cfg["datasets"].get("val"), allow_none=True)
    if val is not None:
        unknown = sorted(set(val) - {"type", "root", "max_images", "y_channel"})
        if unknown:
            raise InterIRError(f"unknown config key 'datasets.val.{unknown[0]}' (keys: root, max_images, y_channel)")
        expect_str("datasets.val.root", val.get("root"))
        if val.get("type") is not None:  # documentation only (the folder's layout decides), but never a typo
            expect_choice("datasets.val.type", val["type"], ("synthetic", "paired"))
        if val.get("max_images") is not None:
            val["max_images"] = expect_int("datasets.val.max_images", val["max_images"], minimum=1)
        expect_bool("datasets.val.y_channel", val.get("y_channel", False))

    t = cfg["train"]
    t["total_iter"] = expect_int("train.total_iter", t["total_iter"], minimum=1)
    o = expect_mapping("train.optim", t["optim"])
    expect_choice("train.optim.type", o.get("type", "Adam"), ("Adam", "AdamW"))
    o["lr"] = expect_float("train.optim.lr", o["lr"], minimum=0)
    betas = o["betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise InterIRError(f"train.optim.betas must be a list of two numbers in [0, 1), got {betas!r}")
    o["betas"] = [expect_float("train.optim.betas", b, minimum=0, maximum=1, open_max=True) for b in betas]
    o["weight_decay"] = expect_float("train.optim.weight_decay", o.get("weight_decay", 0.0), minimum=0)
    sch = expect_mapping("train.scheduler", t["scheduler"])
    _scheduler(sch, t["total_iter"])
    if d.get("stages") is not None and sum(s[0] for s in d["stages"]) != t["total_iter"]:
        raise InterIRError(f"datasets.train.stages sum to {sum(s[0] for s in d['stages'])} iterations but "
                           f"train.total_iter is {t['total_iter']}: make them equal")
    loss = expect_mapping("train.loss", t["loss"])
    expect_choice("train.loss.type", loss.get("type", "auto"), ("auto", *LOSSES))
    for key in ("l1", "fft"):
        loss[key] = expect_float(f"train.loss.{key}", loss.get(key, 0.0), minimum=0)
    t["grad_clip"] = expect_float("train.grad_clip", t["grad_clip"], minimum=0)
    t["ema_decay"] = expect_float("train.ema_decay", t["ema_decay"], minimum=0, maximum=1, open_max=True)
    expect_bool("train.bf16", t["bf16"])
    expect_bool("train.compile", t["compile"])

    lg = cfg["logger"]
    for key in ("print_freq", "save_checkpoint_freq", "val_freq", "keep_checkpoints"):
        lg[key] = expect_int(f"logger.{key}", lg[key], minimum=1)
    expect_bool("logger.tensorboard", lg["tensorboard"])
    expect_str("path.experiments_root", cfg["path"]["experiments_root"])
    expect_str("path.pretrained", cfg["path"]["pretrained"], allow_none=True)
    return cfg


def _stages(raw: Any) -> list[list[int]]:
    """datasets.train.stages: a non-empty list of [iters, patch, batch], each an integer ≥ 1."""
    key = "datasets.train.stages"
    if not isinstance(raw, list) or not raw:
        raise InterIRError(f"{key} must be a non-empty list of [iters, patch, batch] such as "
                           f"[[1000, 64, 8], [500, 96, 4]] or null, got {raw!r}")
    out = []
    for i, stage in enumerate(raw):
        if not isinstance(stage, (list, tuple)) or len(stage) != 3:
            raise InterIRError(f"{key}[{i}] must be [iters, patch, batch], got {stage!r}")
        out.append([expect_int(f"{key}[{i}] {name}", value, minimum=1)
                    for name, value in zip(("iters", "patch", "batch"), stage)])
    return out


def _scheduler(sch: dict[str, Any], total_iter: int) -> None:
    """train.scheduler, normalised in place: type, eta_min, warmup_iter, and multistep's milestones and gamma."""
    kind = expect_choice("train.scheduler.type", sch["type"], ("cosine", "constant", "multistep"))
    sch["eta_min"] = expect_float("train.scheduler.eta_min", sch.get("eta_min", 1e-6), minimum=0)
    warmup = sch["warmup_iter"] = expect_int("train.scheduler.warmup_iter", sch.get("warmup_iter", 0), minimum=0)
    if warmup >= total_iter:
        raise InterIRError(f"train.scheduler.warmup_iter must be < train.total_iter ({total_iter}), got {warmup}")
    sch["gamma"] = expect_float("train.scheduler.gamma", sch.get("gamma", 0.5), minimum=0, maximum=1,
                                open_min=True)
    milestones = sch.get("milestones")
    if kind != "multistep":
        if milestones is not None:
            raise InterIRError(f"train.scheduler.milestones is set but train.scheduler.type is {kind}: milestones "
                               f"apply to type multistep (set the type, or milestones to null)")
        return
    if not isinstance(milestones, list) or not milestones:
        raise InterIRError(f"train.scheduler.milestones must be a non-empty list of steps such as [200000, 250000] "
                           f"for type multistep, got {milestones!r}")
    for m in milestones:
        if not isinstance(m, int) or isinstance(m, bool) or not warmup < m < total_iter:
            raise InterIRError(f"train.scheduler.milestones must be integer steps after train.scheduler.warmup_iter "
                               f"({warmup}) and before train.total_iter ({total_iter}), got {m!r}")
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise InterIRError(f"train.scheduler.milestones must be strictly increasing, got {milestones!r}")
    sch["milestones"] = [int(m) for m in milestones]
