"""What this CPU allows InterIR: the speed of the products it is made of, measured side by side in one process.

    python -m bench.cpu_roofline [--threads 2] [--rounds 9]

Prints one markdown table (docs/performance.md quotes it): GFLOP-rate ceilings (a large matrix product) and
the shapes InterIR's `small` and `paper` presets run at 256² (their convolutions work at 64², a quarter of the
side), each as GMAC/s (multiply-accumulates per second) = MACs / median time, with the methods compared timed
in turns. NNPACK's Winograd 3×3 convolution is timed beside oneDNN's direct one, with its error against a
float64 convolution relative to the project's float32 tolerance rule (interir/ops/verify.py).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bench.timing import time_in_turns
from interir.ops.verify import FLOOR


def in_turns(calls: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each callable, run in turns (bench/timing.py)."""
    timings = time_in_turns(calls, torch.device("cpu"), repeats=rounds)
    return {name: t.median_s for name, t in timings.items()}


def conv_cases(rounds: int) -> list[tuple[str, str, float, str]]:
    """(case, method, GMAC/s, note) rows for the 3×3 and 1×1 convolutions of the presets."""
    rows = []
    nnpack = torch.backends.nnpack.is_available()  # also initialises NNPACK, which its convolution needs
    for c in (64, 96, 128, 192):  # the 3×3 convs of `small` (2C = 64, DMUM 4C = 128) and `paper` (96, 192)
        x, w, b = torch.randn(1, c, 64, 64), torch.randn(c, c, 3, 3) / (3 * c ** 0.5), torch.randn(c)
        calls = {"oneDNN direct": lambda: F.conv2d(x, w, b, padding=1)}
        if nnpack:
            calls["NNPACK Winograd"] = lambda: torch._nnpack_spatial_convolution(x, w, b, [1, 1])
        macs = c * c * 9 * 64 * 64
        times = in_turns(calls, rounds)
        note = ""
        if nnpack:
            exact = F.conv2d(x.double(), w.double(), b.double(), padding=1)
            scale = exact.abs().max().item()
            direct = (calls["oneDNN direct"]().double() - exact).abs().max().item()
            wino = (calls["NNPACK Winograd"]().double() - exact).abs().max().item()
            bound = 2 * direct + FLOOR[torch.float32] * scale
            note = (f"Winograd error {wino / scale:.2e} of max, tolerance {bound / scale:.2e}: "
                    f"{'within' if wino <= bound else 'OUTSIDE'}")
        for method, t in times.items():
            rows.append((f"3×3 conv {c}→{c} at 64²", method, macs / t / 1e9, note if method != "oneDNN direct" else ""))
    for cin, cout in ((32, 256), (256, 32), (48, 384), (384, 48)):  # Convs of `small` and `paper`
        x, w, b = torch.randn(1, cin, 64, 64), torch.randn(cout, cin, 1, 1), torch.randn(cout)
        cols, w2 = x.reshape(cin, -1), w.reshape(cout, cin)
        times = in_turns({"oneDNN 1×1 conv": lambda: F.conv2d(x, w, b),
                          "MKL matrix product": lambda: torch.addmm(b[:, None], w2, cols)}, rounds)
        for method, t in times.items():
            rows.append((f"1×1 conv {cin}→{cout} at 64²", method, cin * cout * 64 * 64 / t / 1e9, ""))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_roofline", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=9, help="timed calls per method (default 9)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    t = in_turns({"mm": lambda: a @ b}, args.rounds)["mm"]
    rows = [("matrix product 2048³", "MKL", 2048 ** 3 / t / 1e9, "the float32 ceiling")]
    rows += conv_cases(args.rounds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, median of {args.rounds}\n")
    print("| case | method | GMAC/s | note |\n|---|---|---|---|")
    for case, method, rate, note in rows:
        print(f"| {case} | {method} | {rate:.0f} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
