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

Experiment folders live only as long as the machine's disk. `--carry DIR` keeps each unfinished run's newest
checkpoint in DIR/<experiment name>/ (a folder one can commit, e.g. runs/carry), so that a fresh checkout resumes
the run exactly where the last one stopped:
  - before a run trains, a carried checkpoint newer than the experiment folder's own is copied into it;
  - when the queue is stopped (Ctrl-C or SIGTERM; the training stops with it), the run's newest checkpoint replaces
    DIR/<name>/, which holds that one checkpoint and nothing else;
  - when a run's training finishes, its last checkpoint is carried until its results.json is written, and then
    DIR/<name>/ is removed;
  - `--carry-only` copies the newest checkpoints into DIR without training (for a queue that was killed).
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

from interir.atomic import atomic_write_bytes, staged_set  # noqa: E402
from interir.checkpoint import CheckpointDir  # noqa: E402
from interir.config import load_config  # noqa: E402
from interir.errors import InterIRError  # noqa: E402


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
    p.add_argument("--carry", type=Path, metavar="DIR",
                   help="keep each unfinished run's newest checkpoint in DIR/<name>/ between checkouts (module doc)")
    p.add_argument("--carry-only", action="store_true",
                   help="copy the unfinished runs' newest checkpoints into --carry and exit, without training")
    args = p.parse_args(argv)
    if args.carry_only and args.carry is None:
        p.error("--carry-only needs --carry DIR")
    if args.carry is not None and args.carry.exists() and not args.carry.is_dir():
        p.error(f"--carry {args.carry}: not a folder")
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


def _newest_step(folder: Path) -> int | None:
    try:
        info = CheckpointDir(folder).latest()
    except InterIRError:  # a damaged latest.json: `interir train --resume` falls back on its own
        return None
    return None if info is None else info["step"]


def restore_carried(carried: Path, folder: Path) -> int | None:
    """Copy the checkpoint carried in `carried` into the experiment folder when it is newer than the folder's
    own; returns its step, or None when nothing was copied."""
    step = _newest_step(carried)
    if step is None or (_newest_step(folder) or -1) >= step:
        return None
    CheckpointDir(carried).copy_newest(folder)
    return step


def carry_newest(folder: Path, carried: Path) -> int | None:
    """Replace `carried` with the experiment folder's newest checkpoint (the old one stays until the new one is
    complete); returns its step, or None (and `carried` untouched) when the folder has none."""
    if _newest_step(folder) is None:
        return None
    with staged_set(carried.parent, [carried.name]) as staging:
        info = CheckpointDir(folder).copy_newest(staging / carried.name)
    return info["step"]


def _train(config: Path) -> int:
    """`interir train CONFIG --resume`; 130 when the queue is stopped. SIGTERM to the queue ends the training at once
    (its checkpoints are written atomically, so it loses only the steps since the last one); after a Ctrl-C, which a
    terminal sends to the training too, the queue gives it 10 s to stop by itself before ending it the same way."""
    child = subprocess.Popen([sys.executable, "-m", "interir", "train", str(config), "--resume", "--no-progress"])
    before = signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    try:
        code = child.wait()
    except KeyboardInterrupt:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait()
        return 130
    finally:
        signal.signal(signal.SIGTERM, before)
    return 130 if code in (130, -signal.SIGTERM, -signal.SIGINT) else code


def _stop(signum, frame):
    raise KeyboardInterrupt


def run_one(config: Path, data: str, carry: Path | None = None) -> int:
    """Train (resuming) and evaluate one config; 0 when its results.json is in place."""
    target = results_path(config)
    folder = experiment_folder(config)
    carried = None if carry is None else carry / folder.name
    if target.exists():
        print(f"train_queue: {config} done ({target})", flush=True)
        return 0
    if carried is not None and (step := restore_carried(carried, folder)) is not None:
        print(f"train_queue: {config}: resuming from the checkpoint of step {step} carried in {carried}", flush=True)
    print(f"train_queue: training {config}", flush=True)
    code = _train(config)
    if code:
        print(f"train_queue: {config}: training stopped (exit {code}); the same command resumes it", flush=True)
        if carried is not None and (step := carry_newest(folder, carried)) is not None:
            print(f"train_queue: {config}: the checkpoint of step {step} is carried in {carried}", flush=True)
        return code
    if carried is not None:  # until results.json is written, a stopped or failed evaluation is redone from here
        carry_newest(folder, carried)
    with tempfile.TemporaryDirectory(prefix="train_queue_") as scratch:
        out = Path(scratch) / "eval"
        code = subprocess.call([sys.executable, "-m", "interir", "eval", str(folder),
                                "--data", data, "--out", str(out)])
        if code:
            print(f"train_queue: {config}: evaluation failed (exit {code})", flush=True)
            return code
        atomic_write_bytes(target, (out / "results.json").read_bytes())
    print(f"train_queue: {config} evaluated → {target}", flush=True)
    if carried is not None and carried.exists():
        shutil.rmtree(carried)
        print(f"train_queue: {config}: finished, {carried} removed", flush=True)
    return 0


def carry_only(configs: list[Path], carry: Path) -> int:
    """--carry-only: each unfinished run's newest checkpoint into carry/<name>/."""
    for config in configs:
        if results_path(config).exists():
            continue
        folder = experiment_folder(config)
        step = carry_newest(folder, carry / folder.name)
        where = "nothing to carry" if step is None else f"step {step} carried in {carry / folder.name}"
        print(f"train_queue: {config}: {where}", flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.carry_only:
        return carry_only(args.configs, args.carry)
    # SIGTERM stops the queue like Ctrl-C, and so does SIGINT even when the shell that started it in the
    # background (`… &`) made it ignore SIGINT; the training it starts then takes Ctrl-C again too
    before = signal.signal(signal.SIGTERM, _stop), signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for config in args.configs:
            code = run_one(config, args.data, args.carry)
            if code:
                return code
    except KeyboardInterrupt:
        print("train_queue: stopped", flush=True)
        return 130
    finally:  # as they were (main() also runs inside other programs: the tests)
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
