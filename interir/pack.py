"""`interir pack`: a checkpoint's weights as a small file to share or ship: float16, or int8 kernels with
per-output-channel scales (interir/quantize.py; README, "Small weight files: `interir pack`")."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from interir.atomic import check_new_file
from interir.errors import InterIRError

STORAGES = {"float16": torch.float16, "int8": torch.int8}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="weights file or experiment folder (its latest EMA weights; `shipped`: "
                                           "the shipped model)")
    parser.add_argument("out", help="output .safetensors file")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="int8",
                        help="int8: kernels as int8 with one scale per output channel, the rest float16 (default); "
                             "float16: every weight float16")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def check_weights_output(out: Path, source: Path, overwrite: bool) -> None:
    """Before any work: a .safetensors name in an existing folder, never `source`, an existing file only with
    `overwrite` (one-line InterIRError). Also used by scripts/deepen.py."""
    if out.suffix.lower() != ".safetensors":
        raise InterIRError(f"{out}: the file name must end in .safetensors")
    if not out.parent.is_dir():
        raise InterIRError(f"folder {out.parent} does not exist")
    check_new_file(out, "output", overwrite=overwrite, inputs=[source])


def run(args: argparse.Namespace) -> int:
    from interir.checkpoint import load_model, resolve_weights, save_weights

    out = Path(args.out)
    source = resolve_weights(args.checkpoint)
    check_weights_output(out, source, args.overwrite)
    net, meta = load_model(source)
    save_weights(out, net, extra=meta["extra"], dtype=STORAGES[args.storage])
    size = out.stat().st_size
    print(f"wrote {out} ({args.storage}, {size / 2**20:.2f} MiB, {size / source.stat().st_size:.2f}× {source})")
    return 0


__all__ = ["STORAGES", "check_weights_output"]
