"""Train several experiments side by side on one GPU inside a fixed lease, then evaluate them (docs/gpu.md,
"Training on a leased GPU").

    python scripts/gpu_train_session.py --out OUT --seconds 560 CONFIG [CONFIG ...]
    python scripts/gpu_train_session.py --dry-run --out /tmp/dry CONFIG ...     # the same stages on a CPU

A lease is short and its GPU is shared by every run, so nobody can know beforehand how many steps fit. The
session measures it instead:

1. probe: every config trains 60 steps at once (a throw-away folder); the rate of its last 20 steps, with all
   of them competing, is its speed;
2. train: every config is trained from scratch with `train.total_iter` set to what fits the time left, with a
   safety margin. Configs that share a `--group` tag (the ablation study) get the same step count, the
   slowest member's, so their budgets stay equal;
3. eval: `interir eval` of each run on `--data`, side by side;
4. pack: each run's EMA weights as float16 safetensors, its train.log, its results.json and the session
   summary, in at most 8 files of at most 16 MiB (what a lease returns).

A run still going at the training deadline gets SIGINT; it keeps the checkpoints it saved, and the summary
says it was cut. Nothing here is tuned to a result: the step counts are whatever the probe measured.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

PROBE_STEPS = 60
STEP_LINE = re.compile(r"step (\d+) loss \S+ lr \S+ ([\d.]+) img/s")
MiB = 1 << 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", help="experiment YAML files; prefix one with TAG: to put it in a group")
    p.add_argument("--out", required=True, help="folder for what comes back")
    p.add_argument("--work", default="gpu_work", help="folder for the experiments and the probe")
    p.add_argument("--seconds", type=float, default=560, help="the whole session's budget")
    p.add_argument("--reserve", type=float, default=80, help="seconds kept for eval and packing")
    p.add_argument("--margin", type=float, default=0.85, help="fraction of the measured rate planned on")
    p.add_argument("--data", default="data/demo48/heldout_set", help="`interir eval --data` folder")
    p.add_argument("--backend", default="reference", help="ops backend of every run")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny patches and steps: the stages only")
    args = p.parse_args(argv)
    if not 0 < args.margin <= 1 or args.seconds <= args.reserve:
        p.error("--margin must be in (0, 1] and --seconds above --reserve")
    return args


class Session:
    def __init__(self, args):
        self.args, self.start = args, time.monotonic()
        self.out, self.work = Path(args.out), Path(args.work)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.summary = self.out / "summary.txt"
        self.summary.write_text("")
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        if args.dry_run:
            self.env["CUDA_VISIBLE_DEVICES"] = ""

    def left(self) -> float:
        return self.args.seconds - (time.monotonic() - self.start)

    def say(self, line: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f} s] {line}"
        print(line, flush=True)
        with self.summary.open("a") as f:
            f.write(line + "\n")

    def train_command(self, config: str, root: Path, steps: int, print_freq: int) -> list[str]:
        sets = [f"train.total_iter={steps}", f"logger.print_freq={print_freq}", f"path.experiments_root={root}",
                f"backend={self.args.backend}"]
        if self.args.dry_run:
            sets += ["device=cpu", "datasets.train.patch_size=32", "datasets.train.batch_size_per_gpu=2",
                     "logger.save_checkpoint_freq=2"]
        cmd = [sys.executable, "-m", "interir", "train", config, "--no-progress"]
        for s in sets:
            cmd += ["--set", s]
        return cmd

    def run_all(self, commands: dict[str, list[str]], deadline: float, logs: Path) -> dict[str, str]:
        """Start every command at once; SIGINT those still running at `deadline` (seconds left), SIGKILL 15 s
        later. Returns name → "ok" | "exit N" | "cut"."""
        logs.mkdir(parents=True, exist_ok=True)
        procs = {}
        for name, cmd in commands.items():
            f = (logs / f"{name}.out").open("w")
            procs[name] = (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env), f)
        status, signalled = {}, None
        while len(status) < len(procs):
            for name, (p, f) in procs.items():
                if name not in status and p.poll() is not None:
                    f.close()
                    status[name] = "cut" if signalled else ("ok" if p.returncode == 0 else f"exit {p.returncode}")
            if signalled is None and self.left() < deadline:
                signalled = time.monotonic()
                for name, (p, _) in procs.items():
                    if name not in status:
                        p.send_signal(signal.SIGINT)
            elif signalled is not None and time.monotonic() - signalled > 15:
                for name, (p, _) in procs.items():
                    if name not in status:
                        p.kill()
            time.sleep(0.5)
        return status


def last_rate(log: Path) -> tuple[int, float] | None:
    """(step, images/s) of the last progress line of a train log."""
    hits = STEP_LINE.findall(log.read_text()) if log.exists() else []
    return (int(hits[-1][0]), float(hits[-1][1])) if hits else None


def group_of(spec: str) -> tuple[str | None, str]:
    if ":" in spec and not Path(spec).exists():
        tag, config = spec.split(":", 1)
        return tag, config
    return None, spec


def experiment_name(config: str) -> str:
    from interir.config import load_config
    return load_config(config)["name"]


def batch_of(config: str, dry: bool) -> int:
    from interir.config import load_config
    return 2 if dry else load_config(config)["datasets"]["train"]["batch_size_per_gpu"]


def export_weights(folder: Path, dest: Path) -> Path | None:
    """The newest EMA (else raw) weights of an experiment, as float16 safetensors."""
    import torch

    from interir.checkpoint import load_model, save_weights
    try:
        model, meta = load_model(folder)
    except Exception as exc:  # a run that saved nothing: reported, not fatal
        print(f"no weights in {folder}: {exc}")
        return None
    return save_weights(dest, model, extra=meta.get("extra"), dtype=torch.float16)


def pack(files: list[Path], out: Path, stem: str, limit: int = 15 * MiB) -> list[Path]:
    """Tar `files` into as few archives as keep each under `limit` bytes."""
    bundles, current, size = [], [], 0
    for f in sorted(files, key=lambda p: -p.stat().st_size):
        if current and size + f.stat().st_size > limit:
            bundles.append(current)
            current, size = [], 0
        current.append(f)
        size += f.stat().st_size
    if current:
        bundles.append(current)
    made = []
    for i, bundle in enumerate(bundles):
        path = out / f"{stem}{i + 1}.tar"
        with tarfile.open(path, "w") as tar:
            for f in bundle:
                tar.add(f, arcname=f.name)
        made.append(path)
    return made


def main(argv=None) -> int:
    args = parse_args(argv)
    s = Session(args)
    jobs = []  # (group, config, experiment name)
    for spec in args.configs:
        group, config = group_of(spec)
        jobs.append((group, config, experiment_name(config)))
    s.say(f"{len(jobs)} configs; budget {args.seconds:.0f} s; backend {args.backend}; dry run {args.dry_run}")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        smi = "no nvidia-smi"
    import torch
    s.say(f"python {sys.version.split()[0]}, torch {torch.__version__}, GPU: {smi}; commit "
          f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}")

    # 1. probe
    probe_steps, probe_print = (6, 3) if args.dry_run else (PROBE_STEPS, 20)
    probe_root = s.work / "probe"
    cmds = {name: s.train_command(cfg, probe_root, probe_steps, probe_print) for _, cfg, name in jobs}
    status = s.run_all(cmds, deadline=args.seconds - (60 if args.dry_run else 120), logs=s.work / "probe_logs")
    rates = {}
    for group, cfg, name in jobs:
        hit = last_rate(probe_root / name / "train.log")
        if status[name] == "ok" and hit:
            rates[name] = hit[1] / batch_of(cfg, args.dry_run)
        s.say(f"probe {name}: {status[name]}, {rates.get(name, 0):.2f} steps/s")
        if name not in rates:
            s.say("  " + " | ".join((s.work / "probe_logs" / f"{name}.out").read_text().splitlines()[-3:]))

    # 2. train
    budget = s.left() - args.reserve - (5 if args.dry_run else 25)  # 25 s: start-up of the real runs
    steps = {}
    for group, cfg, name in jobs:
        if name not in rates:
            continue
        members = [n for g, _, n in jobs if g is not None and g == group and n in rates]
        rate = min(rates[n] for n in members) if group is not None else rates[name]
        steps[name] = 8 if args.dry_run else max(100, int(rate * budget * args.margin) // 100 * 100)
    s.say(f"training budget {budget:.0f} s; steps: " + ", ".join(f"{n} {k}" for n, k in steps.items()))
    runs_root = s.work / "experiments"
    cmds = {name: s.train_command(cfg, runs_root, steps[name], 100 if not args.dry_run else 4)
            for _, cfg, name in jobs if name in steps}
    t0 = time.monotonic()
    status = s.run_all(cmds, deadline=args.reserve, logs=s.work / "train_logs")
    s.say(f"training took {time.monotonic() - t0:.0f} s")
    for name in cmds:
        hit = last_rate(runs_root / name / "train.log")
        s.say(f"train {name}: {status[name]}, last step {hit[0] if hit else '-'} of {steps[name]}")

    # 3. eval
    device = "cpu" if args.dry_run else "cuda"
    evals = {}
    for name in cmds:
        if (runs_root / name / "latest.json").exists():
            evals[name] = [sys.executable, "-m", "interir", "eval", str(runs_root / name), "--data", args.data,
                           "--device", device, "--out", str(s.work / "eval" / name), "--overwrite"]
            if args.dry_run:
                evals[name] += ["--max-images", "1"]
    status = s.run_all(evals, deadline=20, logs=s.work / "eval_logs")
    for name in evals:
        res = s.work / "eval" / name / "results.json"
        if res.exists():
            rows = json.loads(res.read_text())["rows"]
            avg = rows[-1]
            s.say(f"eval {name}: {status[name]}; average {avg['psnr_input']:.2f} → {avg['psnr']:.2f} dB")
        else:
            s.say(f"eval {name}: {status[name]}, no results")

    # 4. pack
    small, weights = [], []
    for name in cmds:
        for src, dest in ((runs_root / name / "train.log", f"{name}.train.log"),
                          (s.work / "eval" / name / "results.json", f"{name}.results.json"),
                          (s.work / "train_logs" / f"{name}.out", f"{name}.out")):
            if src.exists():
                (s.work / "pack").mkdir(exist_ok=True)
                dst = s.work / "pack" / dest
                dst.write_bytes(src.read_bytes())
                small.append(dst)
        w = export_weights(runs_root / name, s.work / "pack" / f"{name}.safetensors")
        if w is not None:
            weights.append(w)
    made = pack(small, s.out, "logs") + pack(weights, s.out, "weights")
    s.say("packed " + ", ".join(f"{p.name} {p.stat().st_size / MiB:.1f} MiB" for p in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
