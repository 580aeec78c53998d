"""The model benchmark cases: which networks, sizes and modes run on a device, and the calls that run them.

- Networks: every registered model at its default preset (InterIR `paper`, the DGUNet baseline `dgunet`); smoke
  runs take each one's smallest preset (`tiny`, `dgunet-tiny`).
- Training step: forward + the project's loss (interir.losses.TrainingLoss: L1 + 0.1·FFT-L1 for InterIR, DGUNet's
  multi-stage loss for DGUNet) + backward + gradient clipping + Adam step, with the paper recipe's settings
  (interir.config.DEFAULTS); no scheduler or EMA. bf16 = bfloat16 autocast around the forward, as
  `interir train` does with train.bf16.
- Modes: ops backend (reference, triton, cuda) × eager / torch.compile(model). DGUNet uses none of interir's
  ops, so its modes are eager and compile only (backend "-").
- Shapes: training batch 32 × 256²; inference batch 1 at 256², 512², 1024².
- CPU rule (unless full_shapes): training batch 2 × 128²; fp32 only; an inference forward of more than
  1 T multiply-accumulates is skipped (recorded), so is torch.compile unless asked for (it takes minutes).
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from interir import fast_paths, ops
from interir.config import DEFAULTS
from interir.model import build, model_entry, model_names
from interir.profile import count_macs_all, count_macs_hooks, count_parameters
from interir.losses import TrainingLoss as Loss
from interir.train import make_optimizer

NETWORKS = {name: model_entry(name).default_preset for name in model_names()}  # every registered model
SMOKE_PRESETS = {name: model_entry(name).smallest_preset for name in model_names()}
NO_BACKEND = "-"  # the mode backend of a network that calls none of interir's ops
PLAIN = "reference-plain"  # the reference backend with the fast paths (and so the CPU kernels) off: the path before them
TRAIN_BATCH, TRAIN_SIZE = 32, 256
INFER_SIZES = (256, 512, 1024)
MACS_AT = 256  # the side at which parameters' companions, the two MAC counts, are quoted
CPU_TRAIN_BATCH, CPU_TRAIN_SIZE = 2, 128
CPU_MAX_FORWARD_MACS = 10**12
SMOKE_TRAIN_BATCH, SMOKE_TRAIN_SIZE, SMOKE_INFER_SIZES = 2, 32, (32, 64)


@dataclass
class ModelPlan:
    """What the model suite runs on one device."""

    networks: list[tuple[str, str]]  # (network name, preset)
    train_batch: int
    train_size: int
    infer_sizes: tuple[int, ...]
    max_forward_macs: int | None  # inference forwards above this are skipped (None: no limit)
    fp32_only: str | None  # why bf16 is not run, or None
    notes: list[str] = field(default_factory=list)


def parse_network(spec: str) -> tuple[str, str | None]:
    """"interir" → ("interir", None: the default preset); "interir:small" → ("interir", "small")."""
    name, _, preset = spec.partition(":")
    if name not in NETWORKS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(NETWORKS)}")
    if preset and preset not in model_entry(name).presets:
        raise ValueError(f"unknown preset {preset!r} of {name}; choose from {', '.join(model_entry(name).presets)}")
    return name, preset or None


def model_plan(device_type: str, *, smoke: bool = False, full_shapes: bool = False,
               networks: tuple[str, ...] = tuple(NETWORKS)) -> ModelPlan:
    """`networks`: names, each optionally with a preset ("interir:small"); without one, the default preset
    (the smallest in smoke runs)."""
    parsed = [parse_network(n) for n in networks]
    if smoke:
        return ModelPlan([(n, p or SMOKE_PRESETS[n]) for n, p in parsed], SMOKE_TRAIN_BATCH, SMOKE_TRAIN_SIZE,
                         SMOKE_INFER_SIZES, None, None, ["smoke sizes and presets"])
    plan = ModelPlan([(n, p or NETWORKS[n]) for n, p in parsed], TRAIN_BATCH, TRAIN_SIZE, INFER_SIZES, None, None)
    if device_type == "cpu" and not full_shapes:
        plan.train_batch, plan.train_size = CPU_TRAIN_BATCH, CPU_TRAIN_SIZE
        plan.max_forward_macs = CPU_MAX_FORWARD_MACS
        plan.fp32_only = "CPU: the model suite runs fp32 only (--full-shapes runs bf16 autocast too)"
        plan.notes.append(f"CPU: training batch {TRAIN_BATCH}×{TRAIN_SIZE}² → "
                          f"{CPU_TRAIN_BATCH}×{CPU_TRAIN_SIZE}²; inference forwards above "
                          f"{CPU_MAX_FORWARD_MACS / 1e12:g} TMAC skipped; fp32 only")
    return plan


def modes(network: str) -> list[tuple[str, bool]]:
    """(backend, compiled) of every mode of `network`, eager first. A network that calls interir's ops also
    runs PLAIN: the reference with the fast paths off (interir/fast_paths.py), the path before them."""
    if not model_entry(network).uses_ops:
        return [(NO_BACKEND, False), (NO_BACKEND, True)]
    return [(b, compiled) for b in (*ops.BACKENDS, PLAIN) for compiled in (False, True)]


def mode_name(backend: str, compiled: bool) -> str:
    return f"{backend} {'compile' if compiled else 'eager'}"


def build_network(network: str, preset: str, seed: int = 0) -> nn.Module:
    """The network on the CPU with seeded weights; `validate_inputs` off, as `interir train` runs it."""
    torch.manual_seed(seed)
    model = build({"name": network, "preset": preset})
    model.validate_inputs = False
    return model


def static_figures(model: nn.Module, sizes: tuple[int, ...]) -> dict:
    """Parameters, both MAC counts at MACS_AT², and the all-products MACs at every size (one image)."""
    shape = (1, 3, MACS_AT, MACS_AT)
    return {"parameters": count_parameters(model), "macs_at": MACS_AT,
            "macs_all": count_macs_all(model, shape), "macs_hooks": count_macs_hooks(model, shape),
            "macs_all_by_size": {str(s): count_macs_all(model, (1, 3, s, s)) for s in sizes}}


def ops_backend(backend: str) -> str | None:
    """The interir ops backend a mode's backend runs (PLAIN: the reference), None for NO_BACKEND."""
    return {NO_BACKEND: None, PLAIN: "reference"}.get(backend, backend)


@contextlib.contextmanager
def _backend_context(backend: str):
    with contextlib.ExitStack() as stack:
        if ops_backend(backend) is not None:
            stack.enter_context(ops.use_backend(ops_backend(backend)))
        if backend == PLAIN:
            stack.enter_context(fast_paths.disabled())
        yield


def _autocast(device: torch.device, dtype_name: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")


@dataclass
class TrainStep:
    """One mode's training step and what it holds (the model copy, its optimizer). `run()` returns the step's loss
    (a detached tensor); with `split` given, it also appends the seconds of each phase of the step to it."""

    run: Callable[[], torch.Tensor]
    model: nn.Module
    optimizer: torch.optim.Optimizer


PHASES = ("forward", "loss", "backward", "clip + adam")


def make_train_step(base: nn.Module, network: str, x: torch.Tensor, y: torch.Tensor, dtype_name: str,
                    backend: str, compiled: bool, split: list[dict[str, float]] | None = None,
                    wrap: Callable[[nn.Module], nn.Module] | None = None) -> TrainStep:
    """A copy of `base` on x's device with its own Adam, and a callable doing one training step on (x, y).
    `split`: a list that gets, per step, {phase: seconds} for PHASES (the device synchronised between them).
    `wrap`: what the forward runs through instead of the copy itself (DistributedDataParallel, for one process of
    several)."""
    model = copy.deepcopy(base).to(x.device).train()
    tcfg = DEFAULTS["train"]
    optim = tcfg["optim"]
    optimizer = make_optimizer(model.parameters(), optim, optim["lr"])
    loss_fn = Loss(tcfg["loss"], model_entry(network))
    net = wrap(model) if wrap is not None else model
    net = torch.compile(net) if compiled else net
    clip = tcfg["grad_clip"]

    def mark(marks: list[float]) -> None:
        if split is not None:
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            marks.append(time.perf_counter())

    def step() -> torch.Tensor:
        marks: list[float] = []
        with _backend_context(backend):
            mark(marks)
            with _autocast(x.device, dtype_name):
                out = net(x, return_stages=True) if loss_fn.needs_stages else net(x)
            mark(marks)
            loss = loss_fn(out, y)
            mark(marks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            mark(marks)
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            mark(marks)
        if split is not None:
            split.append({phase: b - a for phase, a, b in zip(PHASES, marks, marks[1:])})
        return loss.detach()

    return TrainStep(step, model, optimizer)


def make_inference(model: nn.Module, x: torch.Tensor, dtype_name: str, backend: str) -> Callable[[], Any]:
    """A callable doing one forward of `model` (already on x's device, in eval mode) on x."""

    def forward():
        with torch.inference_mode(), _backend_context(backend), _autocast(x.device, dtype_name):
            return model(x)

    return forward
