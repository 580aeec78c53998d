"""Where a CPU training step goes, and what torch.compile does to it: one process, the variants in turns.

    python -m bench.train_step [--preset small] [--batch 8] [--size 96] [--threads 2] [--steps 12] [--compile]

Prints the step split into forward, loss, backward and gradient clipping + Adam (medians, eager), then the whole
step of each variant timed in turns from the same weights and batch, with the loss of each step. The variants are
eager, and with --compile a torch.compile'd copy, whose first step (the compile) is reported apart. The step is
the model suite's (bench/model_cases.make_train_step: `interir train`'s loss, clipping and Adam settings).
docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.model_cases import build_network, make_train_step
from interir.cpu_malloc import keep_freed_memory


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
    base = build_network("interir", args.preset)
    torch.manual_seed(0)
    x, y = torch.rand(args.batch, 3, args.size, args.size), torch.rand(args.batch, 3, args.size, args.size)
    phases: list[dict[str, float]] = []
    steps = {"eager": make_train_step(base, "interir", x, y, "fp32", "reference", False, split=phases).run}
    if args.compile:
        steps["compiled"] = make_train_step(base, "interir", x, y, "fp32", "reference", True).run
        started = time.perf_counter()
        steps["compiled"]()
        print(f"compiled: first step (the compile) {time.perf_counter() - started:.1f} s")
        steps["eager"]()  # the same number of Adam steps, so that the losses compare step for step
    for step in steps.values():
        step(), step()
    phases.clear()
    times: dict[str, list[float]] = {name: [] for name in steps}
    losses: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            started = time.perf_counter()
            loss = step().item()
            times[name].append(time.perf_counter() - started)
            losses[name].append(loss)
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
