"""Where in the unfolding a checkpoint restores: each stage's PSNR and mean brightness on one degradation set.

    python scripts/stage_psnr.py interir/weights/interir_small.safetensors runs/ship48_photos1.safetensors \
        --data data/demo48/heldout_set --combo H

For every image of `<data>/<combo>/input` (its clean target in `<data>/target`, paired by the manifest of an
`interir synth` set) and every checkpoint, the network runs once with `return_stages` (interir.build_model: the
image after each IPBlock, then after the final RESM, which is the output). One line gives each stage's mean value
and its PSNR against the target (the stage clamped to [0, 1]), after a line with the input's and the target's means.
docs/successor.md quotes it on the haze gap.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

import torch  # noqa: E402

from interir.checkpoint import load_model  # noqa: E402
from interir.data.datasets import load_synthetic_testset  # noqa: E402
from interir.errors import InterIRError  # noqa: E402


def stage_lines(models: dict[str, torch.nn.Module], pairs) -> list[str]:
    """One line per image and checkpoint: each stage's mean and PSNR (dB) against the image's target. pairs: items
    of interir.data.datasets' paired datasets ("input", "target": C×H×W in [0, 1], "name")."""
    lines = []
    for item in pairs:
        x, y = item["input"], item["target"]
        lines.append(f"{item['name']}: input mean {x.mean():.3f}, target mean {y.mean():.3f}")
        for label, model in models.items():
            with torch.no_grad():
                _, stages = model(x[None], return_stages=True)
            parts = []
            for caption, stage in zip(model.stage_labels(len(stages)), stages):  # every zoo network has both
                stage = stage[0].clamp(0, 1)
                mse = torch.mean((stage - y) ** 2).item()
                psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
                parts.append(f"{caption}: {stage.mean():.3f}, {psnr:.2f} dB")
            lines.append(f"  {label}: " + " | ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="weights (.safetensors) or experiment folders")
    parser.add_argument("--data", required=True, help="an `interir synth` set: <combo>/input and target/")
    parser.add_argument("--combo", default="H", help="the degradation folder to read (default H)")
    args = parser.parse_args(argv)
    try:
        data = Path(args.data)
        if not (data / args.combo / "input").is_dir() or not (data / "target").is_dir():
            raise InterIRError(f"{data}: expected {args.combo}/input and target/ folders (an `interir synth` set)")
        # the set's manifest names each pair; every file is checked before any model loads
        (pairs,) = load_synthetic_testset(data, [args.combo]).values()
        models = {ckpt: load_model(ckpt, "cpu")[0].eval() for ckpt in args.checkpoints}
        for line in stage_lines(models, pairs):
            print(line)
    except InterIRError as err:
        print(f"stage_psnr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
