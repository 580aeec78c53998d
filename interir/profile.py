"""Efficiency figures of docs/model.md, efficiency figures and the `interir info` command.

- parameters;
- multiply-accumulates (MACs) for one input, counted two ways:
  `macs_all`   every matrix-class product (convolutions, per-sample modulated convs, Kronecker and DMUM
               matrix products), by torch's FlopCounterMode with formulas for interir's custom ops;
  `macs_hooks` what a module-hook counter (thop / ptflops style) sees: nn.Conv2d and nn.Linear only —
               the functional per-sample convs and the matrix products are invisible to it;
- CPU latency (median of repeated forwards after a warm-up).
MAC counting runs on the meta device, so the paper preset is counted at any size without memory or time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from interir import cpu_kernels, ops
from interir.model import all_presets, build, entry_of_preset

def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_copy(model: nn.Module) -> nn.Module:
    """The same network on the meta device (no memory), for counting."""
    import copy

    return copy.deepcopy(model).to("meta")


def count_macs_all(model: nn.Module, input_shape=(1, 3, 256, 256)) -> int:
    """MACs of one forward, every matrix-class product included (see module doc): what FlopCounterMode counts,
    since every interir op carries its flop formula (interir/ops/*.py)."""
    meta = _meta_copy(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(input_shape, device="meta"))
    return counter.get_total_flops() // 2


def count_macs_hooks(model: nn.Module, input_shape=(1, 3, 256, 256)) -> int:
    """MACs that forward hooks on nn.Conv2d / nn.Linear see (thop-style: output size × fan-in, no bias)."""
    meta = _meta_copy(model)
    total = 0

    def conv_hook(mod, inputs, out):
        nonlocal total
        total += out.numel() * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)

    def linear_hook(mod, inputs, out):
        nonlocal total
        total += out.numel() * mod.in_features

    handles = []
    for mod in meta.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            meta(torch.empty(input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def measure_latency(model: nn.Module, size: int = 256, repeats: int = 5, warmup: int = 1, batch: int = 1,
                    device: str = "cpu") -> dict:
    """Forward latency in seconds (median, min, all runs) of `model` on a random batch×3×size×size input."""
    model = model.to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs_s": times,
            "size": size, "batch": batch, "threads": torch.get_num_threads(), "device": device}


def profile_preset(preset: str, size: int = 256, repeats: int = 5, latency: bool = True, **overrides) -> dict:
    """Every figure of docs/model.md, efficiency figures for one preset (InterIR's or DGUNet's), as a JSON-able dict."""
    name = entry_of_preset(preset).name
    model = build({"name": name, "preset": preset, **overrides})
    shape = (1, 3, size, size)
    report = {
        "model": name,
        "preset": preset,
        "config": {k: v for k, v in model.cfg.to_dict().items() if k != "extra"},
        "parameters": count_parameters(model),
        "input_shape": list(shape),
        "macs_all": count_macs_all(model, shape),
        "macs_hooks": count_macs_hooks(model, shape),
    }
    if latency:
        report["cpu_latency"] = measure_latency(model, size, repeats)
    return report


def environment() -> dict:
    """Versions and backends, for `interir info` and benchmark records."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "cpu_kernels": cpu_kernels.status(),
        "backends": {k: backend_status(k, v) for k, v in ops.available_backends().items()},
        "auto_choices": ops.backends.auto_chooser().cached_choices(),
    }


def backend_status(name: str, reason: str | None) -> str:
    """What a backend can do on this machine, in words (`interir info`)."""
    if reason:
        return f"unavailable ({reason})"
    if name == "reference" or torch.cuda.is_available():
        return "available"
    if name == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        return "CPU tensors through the Triton interpreter only (TRITON_INTERPRET=1: slow, for tests)"
    if name == "cuda" and os.environ.get("INTERIR_CUDA_EMULATE") == "1":
        return "CPU tensors through the CUDA host emulation only (INTERIR_CUDA_EMULATE=1: slow, for tests)"
    return "installed, but no CUDA GPU here (these kernels run on NVIDIA GPUs; the reference backend runs here)"


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper", choices=list(all_presets()),
                        help="a preset of any registered model: InterIR's paper/small/tiny, DGUNet's dgunet/"
                             "dgunet-derain/dgunet-tiny (default: paper)")
    parser.add_argument("--size", type=int, default=256, help="input side for MACs and latency (default: 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards for the latency median (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the latency (default: torch's)")
    parser.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the figures as JSON to FILE (a .json file; an earlier JSON report there is "
                             "replaced)")


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def run(args: argparse.Namespace) -> int:
    if args.size < 1 or args.repeats < 1:
        raise ValueError("--size and --repeats must be positive")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be positive")
        torch.set_num_threads(args.threads)
    if args.json:
        from interir.atomic import check_report_path

        check_report_path(args.json)
    report = profile_preset(args.preset, args.size, args.repeats, latency=not args.no_latency)
    report["environment"] = env = environment()  # after the latency run, which loads the CPU kernels if it can
    print(f"{report['model']} preset '{args.preset}': {report['config']}")
    print(f"  parameters            {report['parameters']:,} ({_fmt(report['parameters'])})")
    print(f"  MACs, all products    {_fmt(report['macs_all'])} at 3×{args.size}×{args.size}")
    print(f"  MACs, module hooks    {_fmt(report['macs_hooks'])} (what thop/ptflops-style counters see)")
    if "cpu_latency" in report:
        lat = report["cpu_latency"]
        print(f"  CPU latency           {lat['median_s'] * 1e3:.1f} ms median of {args.repeats} "
              f"(min {lat['min_s'] * 1e3:.1f} ms, {lat['threads']} thread{'s' if lat['threads'] != 1 else ''})")
    print(f"  torch {env['torch']}, triton {env['triton']}, GPU {env['cuda_device']}")
    print(f"  CPU kernels           {env['cpu_kernels']}")
    print("  backends:")
    for name, status in env["backends"].items():
        print(f"    {name:<10} {status}")
    choices = env["auto_choices"]
    if choices:
        print("  auto's measured choices (this software; ops/auto.py's cache):")
        for key, choice in choices.items():
            times = ", ".join(f"{b} {t * 1e3:.3g} ms" for b, t in choice.get("seconds", {}).items())
            print(f"    {key} → {choice['backend']}" + (f" ({times})" if times else ""))
    else:
        print("  auto: nothing measured yet (on a GPU it measures each op's backends at first use)")
    if args.json:
        from interir.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0
