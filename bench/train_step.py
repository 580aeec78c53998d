"""Where a CPU training step goes, and what torch.compile does to it: one process, the variants in turns.

    python -m bench.train_step [--preset small] [--batch 8] [--size 96] [--threads 2] [--steps 12] [--compile]

Prints the step split into forward, loss, backward and Adam (medians, eager), then the whole step of each
variant timed in turns from the same weights and batch, with the loss of each step. The variants are eager,
and with --compile a torch.compile'd copy, whose first step (the compile) is reported apart.
docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from interir.config import DEFAULTS
from interir.cpu_malloc import keep_freed_memory
from interir.losses import TrainingLoss
from interir.model import build, model_entry


def make_step(model: torch.nn.Module, loss_fn: TrainingLoss, x: torch.Tensor, y: torch.Tensor, net=None):
    """A callable doing one Adam step of `model` (through `net`, e.g. a compiled copy) on (x, y); returns the loss
    and the seconds of each phase."""
    net = model if net is None else net
    optimizer = torch.optim.Adam(model.parameters(), lr=DEFAULTS["train"]["optim"]["lr"])

    def step() -> tuple[float, dict[str, float]]:
        t0 = time.perf_counter()
        out = net(x, return_stages=True) if loss_fn.needs_stages else net(x)
        t1 = time.perf_counter()
        loss = loss_fn(out, y)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        return loss.item(), {"forward": t1 - t0, "loss": t2 - t1, "backward": t3 - t2, "adam": t4 - t3}

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd copy")
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = build({"name": "interir", "preset": args.preset}).train()
    loss_fn = TrainingLoss(DEFAULTS["train"]["loss"], model_entry("interir"))
    x, y = torch.rand(args.batch, 3, args.size, args.size), torch.rand(args.batch, 3, args.size, args.size)
    steps = {"eager": make_step(copy.deepcopy(base), loss_fn, x, y)}
    if args.compile:
        model = copy.deepcopy(base)
        steps["compiled"] = make_step(model, loss_fn, x, y, torch.compile(model))
        started = time.perf_counter()
        steps["compiled"]()
        print(f"compiled: first step (the compile) {time.perf_counter() - started:.1f} s")
        steps["eager"]()  # the same number of Adam steps, so that the losses compare step for step
    for step in steps.values():
        step(), step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    losses: dict[str, list[float]] = {name: [] for name in steps}
    phases: list[dict[str, float]] = []
    for _ in range(args.steps):
        for name, step in steps.items():
            started = time.perf_counter()
            loss, split = step()
            times[name].append(time.perf_counter() - started)
            losses[name].append(loss)
            if name == "eager":
                phases.append(split)
    print(f"interir:{args.preset}, batch {args.batch}×{args.size}², {args.threads} threads, {args.steps} steps in turns")
    print("eager split (median ms): " + ", ".join(
        f"{k} {statistics.median(p[k] for p in phases) * 1e3:.1f}" for k in phases[0]))
    for name in steps:
        print(f"{name}: step {statistics.median(times[name]) * 1e3:.1f} ms (median), last loss {losses[name][-1]:.6f}")
    if args.compile:
        gaps = [abs(a - b) for a, b in zip(losses["eager"], losses["compiled"])]
        print(f"compiled / eager: {statistics.median(times['eager']) / statistics.median(times['compiled']):.3f}× "
              f"faster; loss gap first {gaps[0]:.1e}, largest {max(gaps):.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
