"""What a benchmark ran on: the device, software versions, the git commit and the relevant environment."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

RECORDED_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "INTERIR_CPU_MALLOC", "OMP_NUM_THREADS",
                "TRITON_INTERPRET", "INTERIR_BACKEND", "INTERIR_TRITON_AUTOTUNE", "INTERIR_CUDA_EMULATE", "CUDA_VISIBLE_DEVICES")
REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_info(device: torch.device) -> dict:
    info = {"type": device.type, "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_bytes=props.total_memory, sm_count=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = info["cpu"]
    return info


def device_slug(info: dict) -> str:
    """A file-name-safe short name: the GPU's name, or 'cpu-<model>-<threads>t'."""
    if info["type"] == "cuda":
        name = info["name"]
    else:
        model = re.sub(r"\((r|tm)\)|\bcpu\b\s*@.*$|\bprocessor\b", "", info["cpu"], flags=re.IGNORECASE)
        name = f"cpu-{model}-{info['threads']}t"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "device"


def git_info(root: Path = REPO_ROOT) -> dict:
    """{"commit": full hash or None, "dirty": tracked files modified?}."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(device: torch.device) -> dict:
    """device, versions, git and environment sections of a benchmark record."""
    versions = {"python": platform.python_version(), "torch": torch.__version__, "triton": _package_version("triton"),
                "interir": _package_version("interir"), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
                "platform": platform.platform()}
    return {"device": device_info(device), "versions": versions, "git": git_info(),
            "env": {k: os.environ.get(k) for k in RECORDED_ENV}}
