"""The tables of docs/ablation.md, made from the evaluations kept beside the configs (`<run>.results.json`).

    python scripts/ablation_table.py                       # configs/ablation
    python scripts/ablation_table.py path/to/configs

Prints, in markdown:
  1. one row per finished run: its steps (the config's train.total_iter), average PSNR / SSIM, and the gain over
     the degraded input (dB) on average and on each combination; then the runs without results.json yet;
  2. the paper's Table 4 claims beside the differences measured here, each side the mean over its seeds (a design's
     runs are its configs without the `_s<seed>` suffix: interir_s0 and interir_s1 are two seeds of `interir`);
  3. the seed spread (largest minus smallest gain) of every design with more than one seed.
scripts/train_queue.py writes the results.json files; tests/test_ablation_table.py holds docs/ablation.md's rows to
what this prints.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

from interir.config import load_config  # noqa: E402
from interir.errors import InterIRError  # noqa: E402

SETS = ("average", "H+R+N", "H+R", "H+N", "R+N", "H", "R", "N")
# (the claim, the paper's Table 4 figure, the design with the change, the design without it)
CLAIMS = (
    ("all three changes", "+1.11", "interir", "baseline"),
    ("explainable convolution", "+0.72", "interir", "no_explainable"),
    ("new RESM (additive)", "+0.33", "interir", "no_additive_resm"),
    ("new DMUM & MUM (weighted)", "+0.24", "interir", "no_weighted_dmum"),
    ("InterIR beats a DGUNet of similar MACs", "> 0", "interir", "dgunet_small"),
)


def signed(value: float, digits: int = 2) -> str:
    """+3.03 / −0.20 (a true minus sign, as the docs print it); a value that rounds to zero is +0.00."""
    text = f"{round(value, digits) or 0.0:+.{digits}f}"
    return text.replace("-", "−")


def design_of(run: str) -> str:
    """interir_s1 → interir; no_explainable → no_explainable."""
    return re.sub(r"_s\d+$", "", run)


def read_run(config: Path) -> dict | None:
    """{"run", "steps", "psnr", "ssim", "gain": {set: dB}} of a finished run; None when it has no results.json."""
    results = config.with_name(config.stem + ".results.json")
    if not results.is_file():
        return None
    try:
        rows = {row["set"]: row for row in json.loads(results.read_text(encoding="utf-8"))["rows"]}
        gain = {name: rows[name]["psnr"] - rows[name]["psnr_input"] for name in SETS}
        average = rows["average"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InterIRError(f"{results} is not an `interir eval` results.json ({type(exc).__name__}: {exc})") from None
    steps = load_config(config)["train"]["total_iter"]
    return {"run": config.stem, "steps": steps, "psnr": average["psnr"], "ssim": average["ssim"], "gain": gain}


def run_rows(runs: list[dict]) -> list[str]:
    head = ["| run | steps | average PSNR / SSIM | gain | " + " | ".join(SETS[1:]) + " |",
            "|---|---|---|---|" + "---|" * (len(SETS) - 1)]
    return head + [f"| {r['run']} | {r['steps']:,} | {r['psnr']:.2f} / {r['ssim']:.4f} | "
                   + " | ".join(signed(r["gain"][name]) for name in SETS) + " |" for r in runs]


def mean_gain(runs: list[dict]) -> dict[str, float]:
    return {name: sum(r["gain"][name] for r in runs) / len(runs) for name in SETS}


def claim_rows(designs: dict[str, list[dict]]) -> list[str]:
    out = ["| claim (paper, Table 4) | paper (average) | here: average | " + " | ".join(SETS[1:]) + " | seeds |",
           "|---|---|---|" + "---|" * (len(SETS) - 1) + "---|"]
    for claim, paper, with_it, without in CLAIMS:
        if not designs.get(with_it) or not designs.get(without):
            missing = " and ".join(d for d in (with_it, without) if not designs.get(d))
            out.append(f"| {claim} | {paper} | ({missing}: not finished) |" + " |" * (len(SETS) - 1) + " |")
            continue
        a, b = mean_gain(designs[with_it]), mean_gain(designs[without])
        diff = [signed(a[name] - b[name]) for name in SETS]
        out.append(f"| {claim} | {paper} | " + " | ".join(diff)
                   + f" | {with_it} {len(designs[with_it])}, {without} {len(designs[without])} |")
    return out


def spread_rows(designs: dict[str, list[dict]]) -> list[str]:
    out = ["| design | seeds | spread of the average gain | largest spread on one combination |", "|---|---|---|---|"]
    for design, runs in designs.items():
        if len(runs) < 2:
            continue
        spread = {name: max(r["gain"][name] for r in runs) - min(r["gain"][name] for r in runs) for name in SETS}
        worst = max(SETS[1:], key=lambda name: spread[name])
        out.append(f"| {design} | {len(runs)} | {spread['average']:.2f} | {spread[worst]:.2f} ({worst}) |")
    return out


def tables(folder: Path) -> str:
    configs = sorted(folder.glob("*.yml"))
    if not configs:
        raise InterIRError(f"{folder}: no experiment configs (*.yml)")
    finished, unfinished = [], []
    for config in configs:
        run = read_run(config)
        (finished if run is not None else unfinished).append(run or config.stem)
    designs: dict[str, list[dict]] = {}
    for run in finished:
        designs.setdefault(design_of(run["run"]), []).append(run)
    lines = run_rows(finished)
    if unfinished:
        lines += ["", "Not finished (no results.json yet): " + ", ".join(f"`{name}`" for name in unfinished) + "."]
    lines += ["", *claim_rows(designs), "", *spread_rows(designs)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=Path("configs/ablation"),
                   help="the folder of the study's configs and results.json files (default configs/ablation)")
    args = p.parse_args(argv)
    if not args.folder.is_dir():
        p.error(f"{args.folder}: not a folder")
    try:
        print(tables(args.folder))
    except InterIRError as exc:
        print(f"ablation_table: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
