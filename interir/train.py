"""`interir train CONFIG.yml`: the paper recipe (docs/model.md) for any model of the zoo, one process or DDP.

    interir train configs/mdir_small.yml                       # one process
    torchrun --nproc_per_node 4 -m interir train configs/mdir_paper.yml
    interir train configs/mdir_small.yml --resume              # continue from the latest checkpoint

Data order is a pure function of (seed, step): step s of rank r reads stream positions
s·G + r·B … s·G + r·B + B − 1 (B per-process batch, G = B·world size) of a seeded, epoch-wise permuted stream,
and every sample's crop/degradation is seeded by its position. So a resumed run sees exactly the batches the
uninterrupted run would have seen, whatever the number of DataLoader workers. With progressive stages
(datasets.train.stages, docs/training.md) the batch B and patch size are those of the step's stage, and a step's
first position counts every sample of all earlier steps (interir.schedules.step_positions), so resuming mid-stage
or at a stage boundary is exact too. The learning rate is likewise a function of the step (interir.schedules).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
from dataclasses import dataclass
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from interir import ops
from interir.atomic import atomic_write_text, remove_stale_temporaries
from interir.checkpoint import CheckpointDir, load_weights_into, resolve_weights, unwrap
from interir.config import load_config, validate_config
from interir.devices import resolve_device
from interir.errors import InterIRError
from interir.losses import TrainingLoss
from interir.model import build, model_entry, model_spec
from interir.progress import progress as show_progress
from interir.progress import say
from interir.schedules import Stage, learning_rate, stage_at, stages, step_positions


# ------------------------------------------------------------------------------------------- data order
class PositionStream(Dataset):
    """Maps a stream position to (a sample of `base`, seeded by the position). Worker-safe."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, seed
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:  # the stream is unbounded; DataLoader only needs the sampler
        return len(self.base)

    def __getitem__(self, position: int | tuple[int, int | None]) -> dict:
        """`position`, or (position, patch size) from StepBatchSampler: the base dataset crops that size."""
        from interir.data.degrade import mix_seed

        if isinstance(position, tuple):
            position, self.base.patch_size = position
        n = len(self.base)
        epoch, offset = divmod(int(position), n)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perm, self._perm_epoch = torch.randperm(n, generator=g), epoch
        index = int(self._perm[offset])
        if hasattr(self.base, "seed"):  # the base dataset draws its crop/degradation from (seed, epoch, index)
            self.base.seed = mix_seed(self.seed, 1)
            self.base.set_epoch(epoch)
        return self.base[index]


class StepBatchSampler(Sampler):
    """Yields, for steps start, start+1, … total−1, one rank's batch: [(stream position, patch size), ...] of
    the step's stage (see the module doc and interir.schedules)."""

    def __init__(self, start_step: int, plan: list[Stage], rank: int = 0, world: int = 1,
                 total_steps: int | None = None):
        self.start, self.plan, self.rank, self.world, self.total = start_step, plan, rank, world, total_steps

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        step = self.start
        while self.total is None or step < self.total:
            patch = stage_at(self.plan, step).patch
            yield [(p, patch) for p in step_positions(self.plan, step, self.rank, self.world)]
            step += 1

    def __len__(self) -> int:
        return 0 if self.total is None else max(0, self.total - self.start)


def build_train_set(ds: dict[str, Any]) -> Dataset:
    from interir.data.datasets import MultiDegradationDataset, PairedFolderDataset

    if not ds.get("root"):
        raise InterIRError("datasets.train.root is not set: point it at a folder of images")
    if not Path(ds["root"]).exists():
        raise InterIRError(f"datasets.train.root does not exist: {ds['root']}")
    kind = ds.get("type", "mdir")
    if kind == "mdir":
        kwargs = {"combos": ds["combos"]} if ds.get("combos") else {}
        return MultiDegradationDataset(ds["root"], ds["patch_size"], flips=ds["flips"], seed=0,
                                       repeat=ds["repeat"], cache=ds["cache"], **kwargs)
    if kind == "paired":
        return PairedFolderDataset(ds["root"], patch_size=ds["patch_size"], flips=ds["flips"], seed=0,
                                   size_mismatch=ds["size_mismatch"])
    raise InterIRError(f"datasets.train.type must be 'mdir' or 'paired', got {kind!r}")


def _collate(items: list[dict]) -> dict[str, Any]:
    return {"input": torch.stack([it["input"] for it in items]), "target": torch.stack([it["target"] for it in items]),
            "combo": [it.get("combo", "") for it in items]}


# ------------------------------------------------------------------------------------------- pieces
class EMA:
    """Exponential moving average of a model's parameters (buffers copied): θ_ema ← d·θ_ema + (1 − d)·θ."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            if value.is_floating_point():
                value.lerp_(src[name].to(value.dtype), 1 - self.decay)
            else:
                value.copy_(src[name])


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TextLog:
    """Appends lines to the experiment's train.log (rank 0 only) and optionally TensorBoard scalars."""

    def __init__(self, folder: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.file = open(folder / "train.log", "a", encoding="utf-8") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(folder / "tb"))
            except ImportError:
                note = "tensorboard is not installed: logging to train.log only (pip install tensorboard)"
                self.line(note)
                say(f"interir train: {note}")

    def line(self, text: str) -> None:
        if self.file:
            self.file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
            self.file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb:
            self.tb.close()


# ------------------------------------------------------------------------------------------- schedule
def _saved_total(state: dict[str, Any]) -> int | None:
    """train.total_iter a checkpoint was made for (this version's record, or an older CosineAnnealingLR's T_max)."""
    sched = state.get("scheduler")
    if isinstance(sched, dict):
        for key in ("total_iter", "T_max"):
            if isinstance(sched.get(key), int):
                return sched[key]
    return None


# ------------------------------------------------------------------------------------------- trainer
@dataclass
class Run:
    """Everything one training process holds (set up by `setup`)."""

    cfg: dict[str, Any]
    device: torch.device
    rank: int
    world: int
    folder: Path
    checkpoints: CheckpointDir
    model: nn.Module
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    loss_fn: TrainingLoss
    spec: dict[str, Any]

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def total(self) -> int:
        return int(self.cfg["train"]["total_iter"])


def setup(cfg: dict[str, Any]) -> Run:
    """Process group, device, network, EMA, optimizer and loss of the experiment `cfg` (nothing loaded yet)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg["device"], local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    tcfg = cfg["train"]
    folder = Path(cfg["path"]["experiments_root"]) / cfg["name"]
    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    model = build(cfg["model"]).to(device)
    model.validate_inputs = False  # the data pipeline makes valid images; skip the per-step NaN scan
    spec = model_spec(model)
    optimizer = make_optimizer(model.parameters(), tcfg["optim"], learning_rate(0, cfg))
    return Run(cfg, device, rank, world, folder, CheckpointDir(folder, keep_last=cfg["logger"]["keep_checkpoints"]),
               model, EMA(model, tcfg["ema_decay"]) if tcfg["ema_decay"] else None, optimizer,
               TrainingLoss(tcfg["loss"], model_entry(spec["name"])), spec)


def make_optimizer(params, opt_cfg: dict, lr: float) -> torch.optim.Optimizer:
    """Adam or AdamW as `train.optim` sets it, updating all parameters together (`foreach`): a few multi-tensor ops
    per step instead of a loop over every tensor. That is PyTorch's default on CUDA; on a CPU it is 1.7× faster for
    `small`'s 896 tensors and gives bit-identical weights (docs/performance.md, "Adam over all tensors at once")."""
    optim_cls = torch.optim.AdamW if opt_cfg.get("type") == "AdamW" else torch.optim.Adam
    return optim_cls(params, lr=lr, betas=tuple(opt_cfg["betas"]), weight_decay=opt_cfg.get("weight_decay", 0.0),
                     foreach=True)


def restore(run: Run, resume: bool) -> int:
    """Load what the run starts from and return its first step: the newest intact checkpoint when resuming
    (a damaged one is skipped, saying so), else `path.pretrained` weights, else step 0."""
    candidates, problem = run.checkpoints.candidates()
    if candidates and not resume:
        raise InterIRError(f"{run.folder} already holds checkpoints (step {candidates[0]['step']}); pass --resume "
                           f"to continue, or change `name`")
    if not resume or not candidates:
        if resume and run.main:
            say(f"interir train: nothing to resume in {run.folder}; starting from step 0")
        pretrained = run.cfg["path"].get("pretrained")
        if pretrained:
            load_weights_into(run.model, resolve_weights(pretrained))
            if run.ema is not None:
                run.ema = EMA(run.model, run.cfg["train"]["ema_decay"])
        return 0
    if problem and run.main:
        say(f"interir train: {problem}; looking for the newest intact checkpoint instead")
    damaged = []
    for info in candidates:
        try:
            state = _load_checkpoint(run, info)
        except InterIRError as exc:
            damaged.append(f"step {info['step']}: {exc}")
            if run.main:
                say(f"interir train: the step {info['step']} checkpoint cannot be used ({exc})")
            continue
        if damaged and run.main:
            say(f"interir train: resuming from step {info['step']}, the newest intact checkpoint")
        return _continue_schedule(run, state)
    raise InterIRError(f"no intact checkpoint to resume in {run.folder} ({'; '.join(damaged)})")


def _load_checkpoint(run: Run, info: dict[str, Any]) -> dict[str, Any]:
    """Weights, EMA weights and training state of one checkpoint into the run; InterIRError if any is damaged."""
    folder = run.folder
    load_weights_into(run.model, folder / info["weights"])
    if run.ema is not None and info.get("ema"):
        load_weights_into(run.ema.module, folder / info["ema"])
    state = run.checkpoints.load_state(info)
    if state["step"] != info["step"]:
        raise InterIRError(f"{folder / info['state']} records step {state['step']}, not {info['step']}")
    try:
        # how the update is computed is this run's choice (make_optimizer), not the checkpoint's: loading the state
        # would put back the saved groups' `foreach` (None in checkpoints made before it was set)
        chosen = [group["foreach"] for group in run.optimizer.param_groups]
        run.optimizer.load_state_dict(state["optimizer"])
        for group, foreach in zip(run.optimizer.param_groups, chosen):
            group["foreach"] = foreach
        _set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InterIRError(f"{folder / info['state']} does not fit this run ({' '.join(str(exc).split())})") from None
    return state


def _continue_schedule(run: Run, state: dict[str, Any]) -> int:
    start = int(state["step"])
    saved = _saved_total(state)
    if saved is not None and saved != run.total and run.main:
        message = (f"train.total_iter is {run.total}, the checkpoint was made for {saved}: the "
                   f"{run.cfg['train']['scheduler']['type']} schedule now runs to step {run.total} "
                   f"(learning rate at step {start}: {learning_rate(start, run.cfg):.3e})")
        say(f"interir train: {message}")
    return start


def train(cfg: dict[str, Any], resume: bool = False, progress: bool = True,
          stop_at: int | None = None) -> dict[str, Any]:
    """Run the experiment `cfg` (see interir.config.DEFAULTS; validated again here).

    Returns {"steps", "losses" (this run's, one per step), "folder", "model", "ema"}. `stop_at` ends the run
    at that step (saving a checkpoint there) without changing the schedule, as an interruption would.
    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 logs and saves.
    """
    cfg = validate_config(cfg)
    run = setup(cfg)
    start = restore(run, resume)
    if start >= run.total:
        if run.main:
            say(f"interir train: {run.folder} is already at step {start} of train.total_iter={run.total}: nothing "
                f"to train (raise it, e.g. --set train.total_iter={2 * run.total}, to train further)")
        losses: list[float] = []
    else:
        losses = _loop(run, start, progress, stop_at)
    if run.world > 1:
        dist.barrier()
    return {"steps": max(start, start + len(losses)), "losses": losses, "folder": str(run.folder),
            "model": run.model, "ema": run.ema.module if run.ema is not None else None}


def _loop(run: Run, start: int, progress: bool, stop_at: int | None) -> list[float]:
    """Train from step `start` to train.total_iter (or `stop_at`); log, validate and save on the way."""
    cfg, model, ema, optimizer, device = run.cfg, run.model, run.ema, run.optimizer, run.device
    tcfg, lcfg, dcfg = cfg["train"], cfg["logger"], cfg["datasets"]["train"]
    total, world = run.total, run.world
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if tcfg["compile"]:
        net = torch.compile(net)

    plan = stages(cfg)
    staged = bool(dcfg.get("stages"))
    batch = stage_at(plan, start).batch
    stream = PositionStream(build_train_set(dcfg), cfg["seed"])
    sampler = StepBatchSampler(start, plan, run.rank, world, total)
    workers = int(dcfg["num_workers"])
    loader = DataLoader(stream, batch_sampler=sampler, num_workers=workers, collate_fn=_collate,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=2 if workers else None)
    batches = iter(loader)
    # the data's first failure (an unreadable photo, a patch larger than a photo) comes before a new experiment
    # folder is made, so a run that cannot start leaves nothing behind
    first = next(batches, None)

    folder = run.folder
    if run.main:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)  # what a killed run's interrupted writes left behind
        atomic_write_text(folder / "config.json", json.dumps(cfg, indent=2, default=str))
    log = TextLog(folder, run.main, bool(lcfg["tensorboard"]))
    if run.main:
        n_params = sum(p.numel() for p in model.parameters())
        log.line(f"start step {start}/{total}, model {run.spec['name']}:{run.spec['preset']} ({n_params:,} "
                 f"parameters), device {device}, world {world}, batch {batch}×{world}, backend {cfg['backend']}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(tcfg["bf16"]))
    losses: list[float] = []
    bar = show_progress(total=total, initial=start, desc=cfg["name"], unit="it", enabled=progress and run.main)
    step, tick, seen = start, time.perf_counter(), 0
    logged_choices: dict[str, str] = {}
    try:
        with ops.use_backend(cfg["backend"]):
            net.train()
            for data in itertools.chain([first] if first is not None else [], batches):
                if run.main and staged and (step == start or step == stage_at(plan, step).start):
                    log.line(_stage_line(plan, step, world))
                x = data["input"].to(device, non_blocking=True)
                y = data["target"].to(device, non_blocking=True)
                if step == start and tcfg["compile"]:
                    with torch.no_grad(), autocast:  # `auto` measures its backends here, not inside the trace
                        model(x)
                lr = learning_rate(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast:
                    out = net(x, return_stages=True) if run.loss_fn.needs_stages else net(x)
                loss = run.loss_fn(out, y)
                value = batch_loss(loss, world)
                if not math.isfinite(value):  # every process sees the same value, so all of them stop here
                    raise InterIRError(f"loss became {value} at step {step + 1}; lower train.optim.lr or "
                                       f"enable train.grad_clip")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tcfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
                optimizer.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                seen += x.shape[0] * world
                losses.append(value)
                bar.update(1)
                if run.main and ops.auto_choices() != logged_choices:
                    logged_choices = ops.auto_choices()
                    log.line("auto's ops backends: " + "; ".join(f"{k} → {v}" for k, v in logged_choices.items()))
                if run.main and (step % lcfg["print_freq"] == 0 or step == total):
                    rate = seen / max(time.perf_counter() - tick, 1e-9)
                    log.line(f"step {step} loss {value:.5f} lr {lr:.3e} {rate:.1f} img/s")
                    log.scalars(step, {"train/loss": value, "train/lr": lr, "train/images_per_s": rate})
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                    tick, seen = time.perf_counter(), 0
                if run.main and cfg["datasets"].get("val") and (step % lcfg["val_freq"] == 0 or step == total):
                    _validate(ema.module if ema is not None else model, cfg["datasets"]["val"], device, log, step)
                last = step == total or step == stop_at
                if step % lcfg["save_checkpoint_freq"] == 0 or last:
                    if run.main:
                        state = {"step": step, "optimizer": optimizer.state_dict(),
                                 "scheduler": {"type": tcfg["scheduler"]["type"], "total_iter": total},
                                 "rng": _rng_state()}
                        run.checkpoints.save(step, model, state, ema.module if ema is not None else None,
                                             extra={"experiment": cfg["name"], "backend": cfg["backend"],
                                                    "ops_backends": ops.auto_choices()})
                        log.line(f"saved checkpoint at step {step}")
                    if world > 1:
                        dist.barrier()
                if last:
                    break
    finally:
        bar.close()
        log.close()
    return losses


def batch_loss(loss: torch.Tensor, world: int) -> float:
    """The loss of the step's whole batch: with `world` processes, each holding an equal share of it, the mean of
    their losses (one all-reduce), so that the log and the returned losses do not depend on the process count."""
    value = loss.detach()
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / world
    return value.item()


def _stage_line(plan: list[Stage], step: int, world: int) -> str:
    """The train.log line of a stage's start (or of a run resumed inside it)."""
    stage = stage_at(plan, step)
    where = "starts" if step == stage.start else "resumes"
    return (f"stage {stage.index + 1}/{len(plan)} {where} at step {step}: patch {stage.patch}, batch "
            f"{stage.batch}×{world} (to step {stage.end})")


@torch.no_grad()
def _validate(model: nn.Module, vcfg: dict[str, Any], device: torch.device, log: TextLog, step: int) -> None:
    from interir.eval_core import evaluate_sets, load_eval_sets

    sets = load_eval_sets(vcfg["root"])
    was_training = model.training
    try:
        rows = evaluate_sets(model, sets, device, y_channel=bool(vcfg.get("y_channel", False)),
                             max_images=vcfg.get("max_images"), progress=False)
        if log.tb is not None:  # a few crops to look at (docs/training.md, validation images)
            write_val_images(log.tb, step, val_samples(model, sets, device, max_images=vcfg.get("max_images")))
    finally:
        model.train(was_training)
    avg = rows[-1]
    log.line(f"val step {step}: PSNR {avg['psnr']:.2f} dB SSIM {avg['ssim']:.4f} (input {avg['psnr_input']:.2f} dB)")
    log.scalars(step, {"val/psnr": avg["psnr"], "val/ssim": avg["ssim"]})


VAL_IMAGES, VAL_CROP = 3, 256  # validation images shown in TensorBoard, and their largest centre crop


def _center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    top, left = (h - min(h, size)) // 2, (w - min(w, size)) // 2
    return t[..., top:top + min(h, size), left:left + min(w, size)]


@torch.no_grad()
def val_samples(model: nn.Module, sets: dict[str, Dataset], device: torch.device, count: int = VAL_IMAGES,
                size: int = VAL_CROP, max_images: int | None = None) -> list[tuple[str, torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor]]:
    """[(name, input, restored, target)] for the first `count` validation images, taken in turn from each set
    (image 0 of every set, then image 1, …; at most `max_images` per set): centre crops of at most size² pixels,
    the crop of the input restored by `model` (in eval mode)."""
    model.eval()
    out = []
    longest = max((len(ds) for ds in sets.values()), default=0)
    for i in range(min(longest, max_images or longest)):
        for name, ds in sets.items():
            if len(out) == count:
                return out
            if i >= len(ds):
                continue
            item = ds[i]
            x = _center_crop(item["input"], size)
            restored = model(x[None].to(device)).float().cpu()[0].clamp(0, 1)
            out.append((f"{name}/{i}", x, restored, _center_crop(item["target"], size)))
    return out


def write_val_images(writer: Any, step: int, samples: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]],
                     gap: int = 2) -> None:
    """One TensorBoard image per sample, tagged val/<name>: input | restored | target side by side (C×H×W in
    [0, 1], white columns of `gap` pixels between them). `writer` is a SummaryWriter or anything with its
    add_image(tag, image, step, dataformats=...)."""
    for name, *panels in samples:
        h = min(p.shape[-2] for p in panels)
        panels = [p.float().clamp(0, 1)[..., :h, :] for p in panels]
        white = torch.ones(panels[0].shape[0], h, gap)
        row = torch.cat([panels[0], white, panels[1], white, panels[2]], dim=-1)
        writer.add_image(f"val/{name}", row, step, dataformats="CHW")


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML experiment file (see configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the experiment's latest checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.total_iter=1000 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    with contextlib.ExitStack() as stack:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            stack.callback(lambda: dist.is_initialized() and dist.destroy_process_group())
        result = train(cfg, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        if result["losses"]:
            print(f"trained to step {result['steps']} (last loss {result['losses'][-1]:.5f}); checkpoints in "
                  f"{result['folder']}")
        else:
            print(f"nothing trained: already at step {result['steps']}; checkpoints in {result['folder']}")
    return 0
