"""`interir check`: every backend the device has, proven on the fixed cases of cases.py.

For each case, dtype and backend: forward and every gradient against the float64 reference under the
tolerance rule (interir/ops/verify.py), bitwise determinism (two runs) and, except under emulation, the median
time of forward + backward against the reference's. A refusal (the backend says it cannot serve the call, e.g.
bfloat16 under the Triton interpreter) is reported, not failed; a disagreement, a crash or non-determinism
fails the check.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import torch

from interir.check.cases import CASES
from interir.ops import backends
from interir.ops.verify import default_timer, verify

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    op: str
    case: str
    shape: str  # the first tensor argument's shape as run (emulation reduces the maps to at most 16² or 32²)
    dtype: str
    backend: str
    status: str  # ok | FAIL | refused
    reason: str
    error_ratio: float
    deterministic: bool | None
    ms: float | None
    reference_ms: float | None

    @property
    def speedup(self) -> float | None:
        return self.reference_ms / self.ms if self.ms and self.reference_ms else None


def fused_backends(device: torch.device) -> dict[str, str | None]:
    """{backend: None if it is loaded, else why not} of every backend but the reference."""
    return {name: reason for name, reason in backends.available_backends().items() if name != "reference"}


def run_checks(device: torch.device, *, quick: bool = False, emulate: bool = False,
               dtypes: tuple[str, ...] = tuple(DTYPES), progress=None) -> list[Row]:
    """Prove every loaded fused backend on every case (quick: the first case of each op)."""
    names = [n for n, reason in fused_backends(device).items() if reason is None]
    cases = [c for c in CASES if c.quick or not quick]
    timer = None if emulate else (lambda fn, dev: default_timer(fn, dev, repeats=5, warmup=2))
    rows = []
    for case in cases:
        for dtype_name in dtypes:
            generator_seed = zlib.crc32(f"{case.op} {case.name} {dtype_name}".encode())
            for name in names:
                torch.manual_seed(generator_seed)
                args = case.make(device, DTYPES[dtype_name], emulate)
                started = time.perf_counter()
                verdict = verify(case.op, name, args, timer=timer, front=case.front)
                status = "ok" if verdict.ok else ("refused" if verdict.reason.startswith("refused") else "FAIL")
                shape = "×".join(str(s) for s in next(a for a in args if isinstance(a, torch.Tensor)).shape)
                rows.append(Row(case.op, case.name, shape, dtype_name, name, status, verdict.reason,
                                verdict.error_ratio,
                                verdict.deterministic,
                                verdict.seconds * 1e3 if verdict.seconds is not None else None,
                                verdict.reference_seconds * 1e3 if verdict.reference_seconds is not None else None))
                if progress is not None:
                    progress(rows[-1], time.perf_counter() - started)
    return rows


def format_table(rows: list[Row]) -> str:
    """One markdown table of every row."""
    lines = ["| op | case | shape run | dtype | backend | result | error / bound | deterministic | ms | × reference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        det = {True: "yes", False: "NO", None: "—"}[r.deterministic]
        ms = f"{r.ms:.3g}" if r.ms is not None else "—"
        speed = f"{r.speedup:.2f}" if r.speedup is not None else "—"
        result = r.status if r.status == "ok" else f"{r.status}: {r.reason.removeprefix('refused: ')}"
        ratio = f"{r.error_ratio:.2f}" if r.status != "refused" else "—"
        lines.append(f"| {r.op} | {r.case} | {r.shape} | {r.dtype} | {r.backend} | {result} | {ratio} | {det} | {ms} "
                     f"| {speed} |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {"rows": len(rows), **counts, "failed": counts.get("FAIL", 0)}


def report(rows: list[Row], device: torch.device, emulate: bool, *, complete: bool = True) -> dict[str, Any]:
    """Everything of a run, for --json (`complete` is false while it runs, or when it was cut short)."""
    from interir.profile import environment

    return {"schema": "interir-check/1", "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "emulated": emulate, "complete": complete, "environment": environment(), "summary": summary(rows),
            "backends": {k: v for k, v in fused_backends(device).items()},
            "results": [asdict(r) | {"speedup": r.speedup} for r in rows],
            "poisoned_outputs": os.environ.get("INTERIR_POISON_OUTPUTS") == "1"}
