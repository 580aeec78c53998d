"""Where a CPU training step goes, and what torch.compile does to it: one process, the variants in turns.

    python -m bench.train_step [--preset small] [--batch 8] [--size 96] [--threads 2] [--steps 12] [--compile]
                               [--processes 2] [--plain] [--direct-backward]

Prints the step split into forward, loss, backward and gradient clipping + Adam (medians, eager), then the whole
step of each variant timed in turns from the same weights and batch, with the loss of each step. The variants are
eager, with --plain the same eager step with the fast paths (and CPU kernels) off, the path before them, with
--direct-backward the eager step with the explainable convolution's backward on the direct convolutions instead of
the Winograd kernels (docs/performance.md, "The Winograd backward"), and with --compile a torch.compile'd copy,
whose first step (the compile) is reported apart. The step is the model suite's (bench/model_cases.make_train_step: `interir train`'s loss, clipping and Adam settings).
With --processes N, the same steps are then run by N processes of threads/N threads each, each with 1/N of the
batch under DistributedDataParallel (gloo), as `torchrun --nproc_per_node N -m interir train` runs them
(docs/training.md, "Two processes on one CPU"); they cannot run in turns with the in-process variants, so they run
after them, from the same weights. docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.model_cases import PLAIN, build_network, make_train_step
from interir import cpu_kernels
from interir.cpu_malloc import keep_freed_memory
from interir.train import batch_loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (after 2 warm-up steps)")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd copy")
    parser.add_argument("--plain", action="store_true", help="also time the step with the fast paths off")
    parser.add_argument("--direct-backward", action="store_true",
                        help="also time the step with the explainable convolution's backward by direct convolutions")
    parser.add_argument("--processes", type=int, default=1,
                        help="also time the step split over this many processes (DDP, gloo); default 1: not")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.batch % args.processes or args.threads % args.processes:
        parser.error("--processes must be ≥ 1 and divide --batch and --threads")
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    base = build_network("interir", args.preset)
    torch.manual_seed(0)
    x, y = torch.rand(args.batch, 3, args.size, args.size), torch.rand(args.batch, 3, args.size, args.size)
    phases: list[dict[str, float]] = []
    steps = {"eager": make_train_step(base, "interir", x, y, "fp32", "reference", False, split=phases).run}
    if args.plain:
        steps["plain"] = make_train_step(base, "interir", x, y, "fp32", PLAIN, False).run
    if args.direct_backward:
        steps["direct backward"] = _direct_backward(make_train_step(base, "interir", x, y, "fp32", "reference",
                                                                    False).run)
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
    for name in ("plain", "direct backward"):
        if name in times:
            print(f"eager / {name}: {statistics.median(times[name]) / statistics.median(times['eager']):.3f}× faster")
    if args.processes > 1:
        split_times, split_losses = _time_processes(base, x, y, args)
        split = statistics.median(split_times)
        gaps = [abs(a - b) for a, b in zip(losses["eager"], split_losses)]
        against = "".join(f", {statistics.median(times[name]) / split:.3f}× {name}'s speed" for name in
                          ("eager", "plain") if name in times)
        print(f"{args.processes} processes × {args.threads // args.processes} threads, batch "
              f"{args.batch // args.processes} each: step {split * 1e3:.1f} ms (median), last loss "
              f"{split_losses[-1]:.6f}{against}; loss gap to eager first {gaps[0]:.1e}, largest {max(gaps):.1e}")
    return 0


def _direct_backward(step: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """`step` with the explainable convolution's backward by the direct convolutions, the path before the Winograd
    backward: `cpu_kernels.winograd3x3_backward` answers None, as it does for an input it leaves to them."""

    def run() -> torch.Tensor:
        real = cpu_kernels.winograd3x3_backward
        cpu_kernels.winograd3x3_backward = lambda *args: None
        try:
            return step()
        finally:
            cpu_kernels.winograd3x3_backward = real

    return run


def _time_processes(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                    args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Step times and whole-batch losses of `args.processes` processes running the eager variant's steps (2 warm-up
    + args.steps, from `base`'s weights), each on its share of (x, y)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "rank0.pt")
        mp.spawn(_process, args=(args.processes, port, base, x, y, args.threads // args.processes, args.steps, out),
                 nprocs=args.processes, join=True)
        result = torch.load(out)
    return result["times"], result["losses"]


def _process(rank: int, world: int, port: int, base, x, y, threads: int, steps: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    keep_freed_memory()
    torch.set_num_threads(threads)
    dist.init_process_group("gloo")
    share = x.shape[0] // world
    part = slice(rank * share, (rank + 1) * share)
    step = make_train_step(base, "interir", x[part], y[part], "fp32", "reference", False,
                           wrap=torch.nn.parallel.DistributedDataParallel).run
    step(), step()
    times, losses = [], []
    for _ in range(steps):
        started = time.perf_counter()
        loss = batch_loss(step(), world)  # as `interir train` logs it: the whole batch's
        times.append(time.perf_counter() - started)
        losses.append(loss)
    if rank == 0:
        torch.save({"times": times, "losses": losses}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
