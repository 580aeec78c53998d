"""Train a list of experiments one after another, across sessions, and keep each one's evaluation next to its config.

    python scripts/train_queue.py configs/ablation/*.yml --data data/demo48/heldout_set
    python scripts/train_queue.py configs/ablation/*.yml --data data/demo48/heldout_set --shard 0/2   # one core's half
    python scripts/train_queue.py configs/ablation/*.yml --data data/demo48/heldout_set --shard 1/2   # the other half

For each config in the order given: when `<config stem>.results.json` already lies beside the config, it is done and
skipped. Otherwise `interir train CONFIG --resume` continues it from its newest checkpoint (or starts it), and when
training finishes, `interir eval` of the experiment folder on --data writes results.json, which is copied beside the
config (atomically). A run that is stopped (Ctrl-C, SIGTERM, the end of a session) keeps the checkpoints it saved;
the next call of the same command resumes it. `--shard i/n` takes every n-th config from the i-th, so that n
queues on n cores never train the same run. docs/ablation.md runs its study this way.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

from interir.atomic import atomic_write_bytes  # noqa: E402
from interir.config import load_config  # noqa: E402


def results_path(config: Path) -> Path:
    """Where a config's evaluation is kept: configs/ablation/x.yml → configs/ablation/x.results.json."""
    return config.with_name(config.stem + ".results.json")


def experiment_folder(config: Path) -> Path:
    cfg = load_config(config)
    return Path(cfg["path"]["experiments_root"]) / cfg["name"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", type=Path, help="experiment YAML files, trained in this order")
    p.add_argument("--data", required=True, help="the `interir eval --data` folder (an `interir synth` set)")
    p.add_argument("--shard", default="0/1", help="i/n: this queue takes configs i, i+n, i+2n, … (default 0/1)")
    args = p.parse_args(argv)
    try:
        i, n = (int(v) for v in args.shard.split("/"))
    except ValueError:
        p.error(f"--shard takes i/n, got {args.shard!r}")
    if not 0 <= i < n:
        p.error(f"--shard {args.shard}: i must be in [0, n)")
    missing = [str(c) for c in args.configs if not c.is_file()]
    if missing:
        p.error(f"no such config: {', '.join(missing)}")
    if not Path(args.data).is_dir():
        p.error(f"--data {args.data}: not a folder")
    args.configs = args.configs[i::n]
    return args


def run_one(config: Path, data: str) -> int:
    """Train (resuming) and evaluate one config; 0 when its results.json is in place."""
    target = results_path(config)
    if target.exists():
        print(f"train_queue: {config} done ({target})", flush=True)
        return 0
    print(f"train_queue: training {config}", flush=True)
    code = subprocess.call([sys.executable, "-m", "interir", "train", str(config), "--resume", "--no-progress"])
    if code:
        print(f"train_queue: {config}: training stopped (exit {code}); the same command resumes it", flush=True)
        return code
    with tempfile.TemporaryDirectory(prefix="train_queue_") as scratch:
        out = Path(scratch) / "eval"
        code = subprocess.call([sys.executable, "-m", "interir", "eval", str(experiment_folder(config)),
                                "--data", data, "--out", str(out)])
        if code:
            print(f"train_queue: {config}: evaluation failed (exit {code})", flush=True)
            return code
        atomic_write_bytes(target, (out / "results.json").read_bytes())
    print(f"train_queue: {config} evaluated → {target}", flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    for config in args.configs:
        code = run_one(config, args.data)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
