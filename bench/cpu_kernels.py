"""The fused CPU kernels (interir/cpu_kernels.py) against the plain modules they replace, at the presets' shapes.

    python -m bench.cpu_kernels [--threads 2] [--rounds 21]

Prints one markdown table (docs/performance.md quotes it): each piece at the shapes InterIR's `small` (C = 32)
and `paper` (C = 48) presets run at 256² (their maps are 64²), plain module against fused kernel timed in turns
(bench/timing.py), the median ms of each, their ratio, and the GMAC/s of the products in it (Convs: both 1×1
convolutions; EPBlock: everything, its 3×3 convolution included). The whole networks are in the model suite
(`python -m bench --suite model`), whose `reference-plain` mode is the path before the fast paths and these kernels.
"""
from __future__ import annotations

import argparse

import torch

from bench.timing import time_in_turns
from interir import cpu_kernels
from interir.cpu_malloc import keep_freed_memory
from interir.model.blocks import Convs, EPBlock
from interir.profile import count_macs_all


def plain_and_fused(module: torch.nn.Module, x: torch.Tensor, rounds: int) -> tuple[float, float]:
    """Median seconds per forward of `module` on x, without and with the fused kernels, timed in turns."""

    def plain():
        with cpu_kernels.disabled():
            return module(x)

    times = time_in_turns({"plain": plain, "fused": lambda: module(x)}, torch.device("cpu"), repeats=rounds)
    return times["plain"].median_s, times["fused"].median_s


def cases() -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    rows = []
    for preset, c in (("small", 32), ("paper", 48)):
        rows.append((f"Convs {c}→{8 * c}→{c} ({preset})", Convs(c, c, 8), torch.randn(1, c, 64, 64)))
        rows.append((f"Convs {2 * c}→{8 * c}→{c} ({preset})", Convs(2 * c, c, 8), torch.randn(1, 2 * c, 64, 64)))
        rows.append((f"EPBlock c = {c} ({preset})", EPBlock(c), torch.randn(1, c, 64, 64)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_kernels", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=21, help="timed calls per method (default 21)")
    args = p.parse_args(argv)
    if args.rounds < 1 or (args.threads is not None and args.threads < 1):
        p.error("--rounds and --threads must be at least 1")
    keep_freed_memory()  # as every interir command and the model suite run (docs/performance.md, "The allocator")
    if args.threads:
        torch.set_num_threads(args.threads)
    if cpu_kernels.load() is None:
        print(f"the CPU kernels are unavailable here: {cpu_kernels.unavailable_reason()}")
        return 1
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 64² maps, batch 1, median of {args.rounds} "
          "in turns\n")
    print("| piece | plain | fused | ratio | GMAC/s plain → fused |\n|---|---|---|---|---|")
    for name, module, x in cases():
        module.eval()
        macs = count_macs_all(module, tuple(x.shape))
        with torch.inference_mode():
            plain, fused = plain_and_fused(module, x, args.rounds)
        print(f"| {name} | {plain * 1e3:.2f} ms | {fused * 1e3:.2f} ms | {plain / fused:.2f}× | "
              f"{macs / plain / 1e9:.0f} → {macs / fused / 1e9:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
