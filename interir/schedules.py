"""Training schedules as pure functions of the step and the config (docs/training.md).

    lr = learning_rate(step, cfg)                  # warmup, then cosine | constant | multistep
    plan = stages(cfg)                             # progressive patch/batch stages (one stage by default)
    stage = stage_at(plan, step)                   # the stage a step belongs to
    positions = step_positions(plan, step, rank, world)   # the stream positions that step reads

Nothing here holds state, so a resumed run recomputes exactly what the uninterrupted run used at every step:
the learning rate, the stage (patch size and batch) and the data (positions of the seeded stream of
interir.train.PositionStream). Steps are 0-based: step s is the (s+1)-th optimizer step.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any


# ------------------------------------------------------------------------------------------- learning rate
def learning_rate(step: int, cfg: dict[str, Any]) -> float:
    """The learning rate of step `step` (0-based) for the experiment `cfg`.

    Warmup (train.scheduler.warmup_iter = W > 0): steps 0 … W−1 use lr·(s+1)/W, a linear ramp from lr/W to lr.
    Then, with T = train.total_iter:
      cosine:    eta_min + (lr − eta_min)·(1 + cos(π·(s−W)/(T−W)))/2 — the cosine starts where warmup ends;
      constant:  lr;
      multistep: lr·gamma^k, k = the number of milestones ≤ s (absolute steps, as torch's MultiStepLR counts
                 them: the step whose 0-based index is a milestone is the first at the lower rate).
    With W = 0 the cosine is eta_min + (lr − eta_min)·(1 + cos(π·s/T))/2, bit for bit as before warmup existed.
    """
    t = cfg["train"]
    base, sched = float(t["optim"]["lr"]), t["scheduler"]
    warmup = int(sched.get("warmup_iter") or 0)
    if step < warmup:
        return base * (step + 1) / warmup
    kind = sched["type"]
    if kind == "constant":
        return base
    if kind == "multistep":
        return base * float(sched.get("gamma", 0.5)) ** bisect.bisect_right(list(sched["milestones"]), step)
    total = max(int(t["total_iter"]) - warmup, 1)
    eta_min = float(sched.get("eta_min", 1e-6))
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * min(step - warmup, total) / total)) / 2


# ------------------------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Stage:
    """One stage of training: steps start … start+iters−1 read patches of `patch` pixels (None: whole images)
    in batches of `batch` per process. `position` is the number of samples one process reads before the stage,
    Σ iters_j·batch_j over the earlier stages j (so the stage's first stream position is position·world)."""

    index: int
    start: int
    iters: int
    patch: int | None
    batch: int
    position: int

    @property
    def end(self) -> int:
        """The first step after the stage (= the step count when it is done)."""
        return self.start + self.iters


def stages(cfg: dict[str, Any]) -> list[Stage]:
    """The stages of `cfg`: datasets.train.stages ([[iters, patch, batch], ...]), or one stage of
    train.total_iter steps with datasets.train.patch_size and batch_size_per_gpu."""
    ds = cfg["datasets"]["train"]
    raw = ds.get("stages") or [[int(cfg["train"]["total_iter"]), ds.get("patch_size"), ds["batch_size_per_gpu"]]]
    out: list[Stage] = []
    start = position = 0
    for index, (iters, patch, batch) in enumerate(raw):
        out.append(Stage(index, start, int(iters), None if patch is None else int(patch), int(batch), position))
        start += int(iters)
        position += int(iters) * int(batch)
    return out


def stage_at(plan: list[Stage], step: int) -> Stage:
    """The stage step `step` belongs to (the last stage for any step past the end)."""
    for stage in plan:
        if step < stage.end:
            return stage
    return plan[-1]


def step_positions(plan: list[Stage], step: int, rank: int = 0, world: int = 1) -> range:
    """The stream positions step `step` of process `rank` reads: in its stage k,
    (position_k + (step − start_k)·B_k)·world + rank·B_k … + B_k − 1, i.e. every sample of every earlier step
    (of all processes) comes first, so positions never repeat or skip when the batch changes between stages.
    With one stage this is s·B·world + r·B …, the order used before stages existed."""
    stage = stage_at(plan, step)
    first = (stage.position + (step - stage.start) * stage.batch) * world + rank * stage.batch
    return range(first, first + stage.batch)
