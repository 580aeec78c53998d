"""Prove one backend on one op call: forward and every gradient against the float64 reference, bitwise
determinism, and its time against the reference's. Used by `auto` (interir/ops/auto.py), `interir check` and,
for the tolerance rule, the tests (docs/testing.md).

    verdict = verify("modulated_conv", "triton", args)     # args: the op's dispatch arguments
    verdict.ok, verdict.reason, verdict.error_ratio, verdict.seconds, verdict.reference_seconds
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from interir.ops import backends

# The floor of the tolerance rule when no test-specific one is given: relative to max|exact| of each output.
FLOOR = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2, torch.float64: 1e-12}
# Two unit roundoffs of the 16-bit dtypes: the per-term error scale of a sum computed from 16-bit operands.
ROUNDOFF2 = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def _activation_dtype(args: Sequence[Any]) -> torch.dtype | None:
    """The dtype of the call's first floating tensor argument: the precision the op computes in."""
    return next((a.dtype for a in args if isinstance(a, Tensor) and a.is_floating_point()), None)


def within_reference_error(got: Tensor, same_dtype: Tensor, exact: Tensor, floor: float) -> tuple[bool, float, float]:
    """The tolerance rule: (|got − exact|∞ ≤ 2·|same_dtype − exact|∞ + floor, that error, that bound).

    A non-finite element of `got` (an output no kernel wrote, NaN-poisoned) fails."""
    if got.shape != exact.shape or not got.numel():
        return got.shape == exact.shape, 0.0, 0.0
    if not bool(torch.isfinite(got).all()):
        return False, float("inf"), 0.0
    exact = exact.to(torch.float64)
    err = (got.to(torch.float64) - exact).abs().max().item()
    bound = 2 * (same_dtype.to(torch.float64) - exact).abs().max().item() + floor
    return err <= bound, err, bound


def assert_within_reference_error(got: Tensor, same_dtype: Tensor, exact: Tensor, floor: float,
                                  what: str = "") -> None:
    """The tolerance rule as an assertion (the tests): also checks the shape and the dtype of `got`."""
    assert got.shape == exact.shape, f"{what}: shape {tuple(got.shape)} != {tuple(exact.shape)}"
    assert got.dtype == same_dtype.dtype, f"{what}: dtype {got.dtype} != {same_dtype.dtype}"
    assert bool(torch.isfinite(got).all()), f"{what}: non-finite elements (an output element left unwritten?)"
    ok, err, bound = within_reference_error(got.cpu(), same_dtype.cpu(), exact.cpu(), floor)
    assert ok, f"{what}: error {err:.3g} > 2 × same-dtype reference error + floor = {bound:.3g}"


@dataclass
class Verdict:
    """The result of proving one backend on one call."""

    op: str
    backend: str
    ok: bool
    reason: str = ""  # why not ok: the error, a crash, a refusal
    error_ratio: float = 0.0  # the largest error / bound over every output and gradient (≤ 1 passes)
    deterministic: bool | None = None
    seconds: float | None = None  # median forward + backward time
    reference_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _leaves(args: Sequence[Any], dtype_of: Callable[[Tensor], torch.dtype] | None = None) -> list[Any]:
    """Fresh copies of the arguments, floating tensors as gradient leaves (optionally in another dtype)."""
    out = []
    for a in args:
        if isinstance(a, Tensor) and a.is_floating_point():
            t = a.detach().to(dtype_of(a) if dtype_of else a.dtype).clone()
            out.append(t.requires_grad_(True))
        elif isinstance(a, Tensor):
            out.append(a.detach().clone())
        else:
            out.append(a)
    return out


def run_op(op: str, backend: str, args: Sequence[Any], *, seed: int = 0,
           dtype_of: Callable[[Tensor], torch.dtype] | None = None, front: Callable | None = None) -> list[Tensor]:
    """Forward of `op` on `backend`, then backward of a fixed random weighting of its floating outputs: returns
    the outputs and the gradients of every floating tensor argument, in order (None gradients as zeros).

    front: call the public front-end `front(*args, backend=...)` (argument checks, dtype rules, contiguity)
    instead of the backend's torch.library op with the dispatch arguments."""
    leaves = _leaves(args, dtype_of)
    # The output weights (the gradient the backward receives) are rounded to the arguments' own activation
    # dtype in every run, the float64 one included: the exact reference must differentiate the same weighting
    # the backend got, or the weights' rounding would count as the backend's error.
    weight_dtype = _activation_dtype(args) or torch.float64
    fn = backends.op_callable(backend, op) if front is None else (lambda *a: front(*a, backend=backend))
    with torch.enable_grad():
        result = fn(*leaves)
        outs = [result] if isinstance(result, Tensor) else list(result)
        outs = [o for o in outs if isinstance(o, Tensor) and o.is_floating_point() and o.numel()]
        g = torch.Generator().manual_seed(seed)
        total = None
        for o in outs:
            w = torch.rand(o.shape, generator=g, dtype=torch.float64).to(weight_dtype).to(o.device, o.dtype)
            term = (o * w).sum()
            total = term if total is None else total + term.to(total.dtype)
        grads = []
        inputs = [t for t in leaves if isinstance(t, Tensor) and t.requires_grad]
        if total is not None and total.requires_grad:
            grads = torch.autograd.grad(total, inputs, allow_unused=True)
            grads = [gr if gr is not None else torch.zeros_like(t) for gr, t in zip(grads, inputs)]
    return [o.detach() for o in outs] + list(grads)


def _floor(t: Tensor, exact: Tensor) -> float:
    return FLOOR.get(t.dtype, 1e-5) * max(1.0, exact.abs().max().item() if exact.numel() else 1.0)


def _scalar_floors(op: str, args: Sequence[Any], got: list[Tensor], front: Callable | None) -> dict[int, float]:
    """{output index: floor} for the one-element outputs that sum many terms computed in 16-bit (dη of
    kron_step from bfloat16/float16 maps, say). Their rounding errors add up like a random walk, so a fused
    backend as accurate as the reference still lands beyond 2× the reference's own error about 30% of the
    time (the ratio of two half-normals); the floor is the walk's scale: 2u·Σ|terms|/√terms, with
    Σ|terms| from the float64 reference run on the arguments' absolute values."""
    dtype = _activation_dtype(args)
    terms = max((a.numel() for a in args if isinstance(a, Tensor)), default=1)
    scalars = [i for i, g in enumerate(got) if g.numel() == 1]
    if dtype not in ROUNDOFF2 or not scalars or terms <= 1:
        return {}
    absolute = [a.abs() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args]
    magnitude = run_op(op, "reference", absolute, front=front, dtype_of=lambda t: torch.float64)
    return {i: ROUNDOFF2[dtype] * magnitude[i].abs().max().item() / terms**0.5 for i in scalars}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_timer(fn: Callable[[], Any], device: torch.device, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() (CUDA synchronised), in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def verify(op: str, backend: str, args: Sequence[Any], *, timer: Callable | None = default_timer,
           determinism: bool = True, reference: list[Tensor] | None = None, front: Callable | None = None
           ) -> Verdict:
    """Prove `backend` on the call `op(*args)` (see the module doc). Never raises for the backend's own
    failures: a crash or a refusal is a Verdict with ok=False and the reason (`refused: …` for a refusal).
    `front`: see run_op."""
    device = next((a.device for a in args if isinstance(a, Tensor)), torch.device("cpu"))
    verdict = Verdict(op, backend, ok=False)
    reason = backends.why_not(backend, op, *args) if front is None else None
    if reason:
        verdict.reason = f"refused: {reason}"
        return verdict
    try:
        got = run_op(op, backend, args, front=front)
    except backends.BackendUnavailable as exc:
        verdict.reason = f"refused: {str(exc).split(': ', 1)[-1]}"
        return verdict
    except Exception as exc:  # noqa: BLE001  (a crashing backend is a finding, not an error of the check)
        verdict.reason = f"crashed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        return verdict
    same = run_op(op, "reference", args, front=front)
    exact = reference if reference is not None else run_op(op, "reference", args, front=front,
                                                           dtype_of=lambda t: torch.float64)
    if len(got) != len(exact):
        verdict.reason = f"returned {len(got)} outputs and gradients, the reference {len(exact)}"
        return verdict
    worst, failures = 0.0, []
    scalar_floors = _scalar_floors(op, args, got, front)
    for i, (g, s, e) in enumerate(zip(got, same, exact)):
        if g.shape != e.shape:
            failures.append(f"output {i}: shape {tuple(g.shape)} != {tuple(e.shape)}")
            continue
        floor = max(_floor(g, e.cpu()), scalar_floors.get(i, 0.0))
        ok, err, bound = within_reference_error(g.cpu(), s.cpu(), e.cpu(), floor)
        worst = max(worst, err / bound if bound else (0.0 if err == 0 else float("inf")))
        if not ok:
            failures.append(f"output {i}: error {err:.3g} > bound {bound:.3g}")
    verdict.error_ratio = worst
    if failures:
        verdict.reason = "disagrees with the reference: " + "; ".join(failures[:3])
        return verdict
    if determinism:
        again = run_op(op, backend, args, front=front)
        verdict.deterministic = all(torch.equal(a, b) for a, b in zip(got, again))
        if not verdict.deterministic:
            verdict.reason = "not deterministic: two identical runs differ"
            return verdict
    verdict.ok = True
    if timer is not None:
        verdict.seconds = timer(lambda: run_op(op, backend, args, front=front), device)
        verdict.reference_seconds = timer(lambda: run_op(op, "reference", args, front=front), device)
    return verdict
