"""An InterIR with more IPBlocks, started from a trained one (docs/successor.md, "A deeper successor").

    python scripts/deepen.py runs/ship48_photos1.safetensors runs/ship48x4_start.safetensors --num-blocks 4

The new network keeps every trained weight (the embedding, the IPBlocks, the final RESM, the up path). Each new
IPBlock, appended after the trained ones, is a copy of the last trained IPBlock with its RESM step η set to 0, so
that at first it passes X through unchanged (X − η·V); its DMUM and MUM still update P and M, which the final
RESM reads, so the new network starts near the trained one, not equal to it. `--storage int8` writes the file as
`interir pack` does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

from interir.checkpoint import load_model, resolve_weights, save_weights  # noqa: E402
from interir.errors import InterIRError  # noqa: E402
from interir.model.interir import InterIR  # noqa: E402
from interir.pack import STORAGES, check_weights_output  # noqa: E402


def deepen(net: InterIR, num_blocks: int) -> InterIR:
    """A copy of `net` with `num_blocks` IPBlocks: its own first, then copies of its last with η = 0."""
    if not isinstance(net, InterIR):
        raise InterIRError(f"only an InterIR network can be deepened, not {type(net).__name__}")
    have = len(net.blocks)
    if have == 0 or num_blocks <= have:
        raise InterIRError(f"--num-blocks must be above the network's {have} IPBlocks (and it needs one), "
                           f"got {num_blocks}")
    deeper = InterIR(net.cfg, num_blocks=num_blocks)
    own = net.state_dict()
    last = f"blocks.{have - 1}."
    state = {k: v.clone() for k, v in own.items()}
    for i in range(have, num_blocks):
        state.update({f"blocks.{i}." + k[len(last):]: v.clone() for k, v in own.items() if k.startswith(last)})
        state[f"blocks.{i}.resm.eta"].zero_()
    deeper.load_state_dict(state)
    return deeper.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a trained InterIR: weights file or experiment folder")
    parser.add_argument("out", help="output .safetensors file")
    parser.add_argument("--num-blocks", type=int, required=True, help="IPBlocks of the new network")
    parser.add_argument("--storage", choices=["float32", *sorted(STORAGES)], default="float32")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        source = resolve_weights(args.checkpoint)
        check_weights_output(out, source, args.overwrite)
        net, meta = load_model(source)
        deeper = deepen(net, args.num_blocks)
        extra = {"deepened_from": str(source), "source_extra": meta["extra"]}
        save_weights(out, deeper, extra=extra, dtype=STORAGES.get(args.storage))
    except InterIRError as exc:
        print(f"deepen: error: {exc}", file=sys.stderr)
        return 1
    params = sum(p.numel() for p in deeper.parameters())
    print(f"wrote {out}: {args.num_blocks} IPBlocks, {params / 1e6:.2f} M parameters, "
          f"{out.stat().st_size / 2**20:.2f} MiB ({args.storage})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
