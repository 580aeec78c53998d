"""Small helpers shared by the op contracts: argument checks, the autocast dtype, flop formulas."""
from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check(condition: bool, message: str) -> None:
    """Raise a one-line ValueError naming the argument when `condition` is false."""
    if not condition:
        raise ValueError(message)


def shape_text(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def scalar_tensor(name: str, value, like: Tensor) -> Tensor:
    """A 0-dim tensor on `like`'s device from a one-element tensor or a Python number (finite)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.tensor(float(value), dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)
    check(isinstance(value, Tensor), f"{name} must be a number or a one-element tensor, got {type(value).__name__}")
    check(value.numel() == 1, f"{name} must have one element, got {value.numel()}")
    check(value.is_floating_point(), f"{name} must be floating point, got {value.dtype}")
    return value.reshape(()).to(device=like.device)


def float_dtype_of(name: str, t: Tensor) -> torch.dtype:
    check(t.dtype in FLOAT_DTYPES, f"{name} must be a floating-point tensor, got {t.dtype}")
    return t.dtype


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active for `device_type`, or None when autocast is off there."""
    if device_type not in ("cuda", "cpu"):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def common_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype an op computes in: the autocast dtype if autocast is on, else the promoted input dtype."""
    dtype = autocast_dtype(tensors[0].device.type)
    if dtype is not None:
        return dtype
    result = tensors[0].dtype
    for t in tensors[1:]:
        result = torch.promote_types(result, t.dtype)
    return result


def register_flops(op_name: str, formula) -> None:
    """Teach torch.utils.flop_counter.FlopCounterMode the cost of `interir::<op_name>`: formula(*argument
    shapes, out_shape=...) -> FLOPs (2 per multiply-add). Tools built on FlopCounterMode then count it."""
    from torch.utils.flop_counter import register_flop_formula

    register_flop_formula(getattr(torch.ops.interir, op_name))(formula)
