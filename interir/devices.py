"""The one place a device name from the command line or a config becomes a torch.device."""
from __future__ import annotations

import torch

from interir.errors import InterIRError


def resolve_device(name: str | None, local_rank: int | None = None) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cpu', 'cuda', 'cuda:N' as given, checked against this machine.

    Under torchrun, `local_rank` picks the GPU of a bare 'cuda'/'auto' (and makes it the current device).
    """
    if isinstance(name, str) and not name.strip():
        raise InterIRError("--device is empty; use auto, cpu, cuda or cuda:N")
    text = (name or "auto").strip().lower() if isinstance(name, str) or name is None else str(name)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise InterIRError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InterIRError(f"device {name!r} was asked for but CUDA is not available here; use cpu")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InterIRError(f"device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if local_rank is not None:
            torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise InterIRError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return dev
