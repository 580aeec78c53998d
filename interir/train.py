"""`interir train CONFIG.yml`: the paper recipe (SPEC §5) for any model of the zoo, one process or DDP.

    interir train configs/mdir_small.yml                       # one process
    torchrun --nproc_per_node 4 -m interir train configs/mdir_paper.yml
    interir train configs/mdir_small.yml --resume              # continue from the latest checkpoint

Data order is a pure function of (seed, step): step s of rank r reads stream positions
s·G + r·B … s·G + r·B + B − 1 (B per-process batch, G = B·world size) of a seeded, epoch-wise permuted stream,
and every sample's crop/degradation is seeded by its position. So a resumed run sees exactly the batches the
uninterrupted run would have seen, whatever the number of DataLoader workers.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from interir import ops
from interir.atomic import atomic_write_text
from interir.checkpoint import CheckpointDir, unwrap
from interir.config import load_config
from interir.errors import InterIRError
from interir.model.zoo import build, model_spec


# ------------------------------------------------------------------------------------------- data order
class PositionStream(Dataset):
    """Maps a stream position to (a sample of `base`, seeded by the position). Worker-safe."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, seed
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:  # the stream is unbounded; DataLoader only needs the sampler
        return len(self.base)

    def __getitem__(self, position: int) -> dict:
        from interir.data.degrade import mix_seed

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


class StepSampler(Sampler):
    """Yields the stream positions of steps start, start+1, … for one rank (see the module doc)."""

    def __init__(self, start_step: int, batch: int, rank: int = 0, world: int = 1, total_steps: int | None = None):
        self.start, self.batch, self.rank, self.world, self.total = start_step, batch, rank, world, total_steps

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while self.total is None or step < self.total:
            base = step * self.batch * self.world + self.rank * self.batch
            yield from range(base, base + self.batch)
            step += 1

    def __len__(self) -> int:
        return 0 if self.total is None else max(0, self.total - self.start) * self.batch


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


class Loss:
    """The training loss: `l1_fft` = l1·mean|Î − I| + fft·FFT-L1 (SPEC §3), or DGUNet's multi-stage loss
    (Charbonnier + 0.05·edge on every stage's output); `auto` picks the model's own."""

    def __init__(self, cfg: dict[str, Any], model_name: str):
        self.kind = cfg.get("type", "auto")
        if self.kind == "auto":
            self.kind = "dgunet" if model_name == "dgunet" else "l1_fft"
        if self.kind not in ("l1_fft", "dgunet"):
            raise InterIRError(f"train.loss.type must be 'auto', 'l1_fft' or 'dgunet', got {self.kind!r}")
        if self.kind == "dgunet" and model_name != "dgunet":
            raise InterIRError("train.loss.type 'dgunet' needs model.name: dgunet")
        self.l1, self.fft = float(cfg.get("l1", 1.0)), float(cfg.get("fft", 0.1))
        self.needs_stages = self.kind == "dgunet"

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "dgunet":
            from interir.model.dgunet import dgunet_loss

            return dgunet_loss(output[1], target)
        pred = output.float()
        loss = self.l1 * (pred - target).abs().mean()
        if self.fft:
            loss = loss + self.fft * ops.fft_l1_loss(pred, target)
        return loss


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise InterIRError("device 'cuda' requested but no CUDA GPU is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if choice != "cpu":
        raise InterIRError(f"device must be auto, cpu or cuda, got {choice!r}")
    return torch.device("cpu")


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
                self.line("tensorboard is not installed: logging to train.log only (pip install tensorboard)")

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


# ------------------------------------------------------------------------------------------- trainer
def train(cfg: dict[str, Any], resume: bool = False, progress: bool = True,
          stop_at: int | None = None) -> dict[str, Any]:
    """Run the experiment `cfg` (see interir.config.DEFAULTS).

    Returns {"steps", "losses" (this run's, one per step), "folder", "model", "ema"}. `stop_at` ends the run
    at that step (saving a checkpoint there) without changing the schedule, as an interruption would.
    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 logs and saves.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg["device"], local_rank)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_rank = rank == 0
    tcfg, lcfg, dcfg = cfg["train"], cfg["logger"], cfg["datasets"]["train"]
    folder = Path(cfg["path"]["experiments_root"]) / cfg["name"]
    ckpt = CheckpointDir(folder, keep_last=lcfg["keep_checkpoints"])
    latest = ckpt.latest()
    if latest is not None and not resume:
        raise InterIRError(f"{folder} already holds checkpoints (step {latest['step']}); pass --resume to "
                           f"continue, or change `name`")
    if resume and latest is None and main_rank:
        print(f"interir train: nothing to resume in {folder}; starting from step 0", file=sys.stderr)

    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    model = build(cfg["model"]).to(device)
    model.validate_inputs = False  # the data pipeline makes valid images; skip the per-step NaN scan
    spec = model_spec(model)
    loss_fn = Loss(tcfg["loss"], spec["name"])
    ema = EMA(model, tcfg["ema_decay"]) if tcfg["ema_decay"] else None
    opt_cfg = tcfg["optim"]
    if opt_cfg.get("type", "Adam") not in ("Adam", "AdamW"):
        raise InterIRError(f"train.optim.type must be Adam or AdamW, got {opt_cfg.get('type')!r}")
    optim_cls = torch.optim.AdamW if opt_cfg.get("type") == "AdamW" else torch.optim.Adam
    optimizer = optim_cls(model.parameters(), lr=opt_cfg["lr"], betas=tuple(opt_cfg["betas"]),
                          weight_decay=opt_cfg.get("weight_decay", 0.0))
    total = int(tcfg["total_iter"])
    sched_cfg = tcfg["scheduler"]
    if sched_cfg["type"] == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1),
                                                               eta_min=sched_cfg.get("eta_min", 1e-6))
    elif sched_cfg["type"] == "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    else:
        raise InterIRError(f"train.scheduler.type must be cosine or constant, got {sched_cfg['type']!r}")

    start = 0
    if cfg["path"].get("pretrained") and not (resume and latest is not None):
        from interir.checkpoint import load_weights_into, resolve_weights

        load_weights_into(model, resolve_weights(cfg["path"]["pretrained"]))
        if ema is not None:
            ema = EMA(model, tcfg["ema_decay"])
    if resume and latest is not None:
        from interir.checkpoint import load_weights_into

        load_weights_into(model, folder / latest["weights"])
        if ema is not None and latest.get("ema"):
            load_weights_into(ema.module, folder / latest["ema"])
        state = ckpt.load_state(latest)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start = int(state["step"])

    net = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if tcfg["compile"]:
        net = torch.compile(net)

    batch = int(dcfg["batch_size_per_gpu"])
    stream = PositionStream(build_train_set(dcfg), cfg["seed"])
    sampler = StepSampler(start, batch, rank, world, total)
    workers = int(dcfg["num_workers"])
    loader = DataLoader(stream, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=_collate,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=2 if workers else None)

    if main_rank:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "config.json", json.dumps(cfg, indent=2, default=str))
    log = TextLog(folder, main_rank, bool(lcfg["tensorboard"]))
    if main_rank:
        n_params = sum(p.numel() for p in model.parameters())
        log.line(f"start step {start}/{total}, model {spec['name']}:{spec['preset']} ({n_params:,} parameters), "
                 f"device {device}, world {world}, batch {batch}×{world}, backend {cfg['backend']}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(tcfg["bf16"]))
    losses: list[float] = []
    bar = None
    if progress and main_rank:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=cfg["name"], unit="it", dynamic_ncols=True)
    step, tick, seen = start, time.perf_counter(), 0
    with ops.use_backend(cfg["backend"]):
        net.train()
        for data in loader:
            x = data["input"].to(device, non_blocking=True)
            y = data["target"].to(device, non_blocking=True)
            with autocast:
                out = net(x, return_stages=True) if loss_fn.needs_stages else net(x)
            loss = loss_fn(out, y)
            if not torch.isfinite(loss):
                raise InterIRError(f"loss became {loss.item()} at step {step + 1}; lower train.optim.lr or "
                                   f"enable train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            step += 1
            seen += x.shape[0] * world
            value = loss.detach().item()
            losses.append(value)
            if bar is not None:
                bar.update(1)
            if main_rank and (step % lcfg["print_freq"] == 0 or step == total):
                rate = seen / max(time.perf_counter() - tick, 1e-9)
                lr = scheduler.get_last_lr()[0]
                log.line(f"step {step} loss {value:.5f} lr {lr:.3e} {rate:.1f} img/s")
                log.scalars(step, {"train/loss": value, "train/lr": lr, "train/images_per_s": rate})
                if bar is not None:
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                tick, seen = time.perf_counter(), 0
            if main_rank and cfg["datasets"].get("val") and (step % lcfg["val_freq"] == 0 or step == total):
                _validate(ema.module if ema is not None else model, cfg["datasets"]["val"], device, log, step)
            last = step == total or step == stop_at
            if step % lcfg["save_checkpoint_freq"] == 0 or last:
                if main_rank:
                    state = {"step": step, "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": _rng_state()}
                    ckpt.save(step, model, state, ema.module if ema is not None else None,
                              extra={"experiment": cfg["name"]})
                    log.line(f"saved checkpoint at step {step}")
                if distributed:
                    dist.barrier()
            if last:
                break
    if bar is not None:
        bar.close()
    log.close()
    if distributed:
        dist.barrier()
    return {"steps": step, "losses": losses, "folder": str(folder), "model": model,
            "ema": ema.module if ema is not None else None}


@torch.no_grad()
def _validate(model: nn.Module, vcfg: dict[str, Any], device: torch.device, log: TextLog, step: int) -> None:
    from interir.evaluate import evaluate_sets, load_eval_sets

    sets = load_eval_sets(vcfg["root"])
    was_training = model.training
    rows = evaluate_sets(model, sets, device, y_channel=bool(vcfg.get("y_channel", False)),
                         max_images=vcfg.get("max_images"), progress=False)
    model.train(was_training)
    avg = rows[-1]
    log.line(f"val step {step}: PSNR {avg['psnr']:.2f} dB SSIM {avg['ssim']:.4f} (input {avg['psnr_input']:.2f} dB)")
    log.scalars(step, {"val/psnr": avg["psnr"], "val/ssim": avg["ssim"]})


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
        last = result["losses"][-1] if result["losses"] else math.nan
        print(f"trained to step {result['steps']} (last loss {last:.5f}); checkpoints in {result['folder']}")
    return 0
