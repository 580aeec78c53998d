"""Value checks that name the offending key: each returns the value normalised or raises one InterIRError line.

    lr = expect_float("train.optim.lr", raw, minimum=0, open_min=True)   # "1e-4" (a YAML 1.1 string) → 1e-4
    steps = expect_int("train.total_iter", raw, minimum=1)

Usable from every layer, like interir.errors: configs, model configs, command-line values.
"""
from __future__ import annotations

import math
import os
from pathlib import PurePath
from typing import Any, Iterable

from interir.errors import InterIRError


def _range_text(minimum, maximum, open_min: bool, open_max: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if open_min else '≥'} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if open_max else '≤'} {maximum:g}")
    return " and ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expect_int(key: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool, not 2.5) within [minimum, maximum]."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return int(value)
    rng = _range_text(minimum, maximum, False, False)
    raise InterIRError(f"{key} must be an integer{' ' + rng if rng else ''}, got {_short(value)}")


def expect_float(key: str, value: Any, minimum: float | None = None, maximum: float | None = None, *,
                 open_min: bool = False, open_max: bool = False) -> float:
    """A finite number within the range; numeric strings such as "1e-4" (which YAML 1.1 reads as text) count."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is not None and math.isfinite(number):
        low_ok = minimum is None or (number > minimum if open_min else number >= minimum)
        high_ok = maximum is None or (number < maximum if open_max else number <= maximum)
        if low_ok and high_ok:
            return number
    rng = _range_text(minimum, maximum, open_min, open_max)
    raise InterIRError(f"{key} must be a finite number{' ' + rng if rng else ''}, got {_short(value)}")


def expect_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise InterIRError(f"{key} must be true or false, got {_short(value)}")


def expect_str(key: str, value: Any, *, allow_none: bool = False, allow_empty: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str) and (allow_empty or value.strip()):
        return value
    what = "a non-empty string" + (" or null" if allow_none else "")
    raise InterIRError(f"{key} must be {what}, got {_short(value)}")


def expect_choice(key: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if isinstance(value, str) and value in choices:
        return value
    options = " or ".join(choices) if len(choices) <= 2 else f"{', '.join(choices[:-1])} or {choices[-1]}"
    raise InterIRError(f"{key} must be {options}, got {_short(value)}")


def expect_mapping(key: str, value: Any, *, allow_none: bool = False) -> dict | None:
    if value is None and allow_none:
        return None
    if isinstance(value, dict):
        return value
    raise InterIRError(f"{key} must be a mapping of keys to values{' or null' if allow_none else ''}, "
                       f"got {_short(value)}")


def relative_inside(key: str, value: Any) -> str:
    """A relative path that stays inside the folder it is relative to: no absolute path, no '..', no empty
    part. Used for names read from files (manifests, latest.json) and for experiment names."""
    text = expect_str(key, value)
    parts = PurePath(text.replace("\\", "/")).parts
    if os.path.isabs(text) or text.startswith(("/", "\\")) or PurePath(text).drive or not parts \
            or any(p in ("..", "") for p in parts) or "\0" in text:
        raise InterIRError(f"{key} must be a relative path inside its folder (no '..', not absolute), got "
                           f"{_short(value)}")
    return text


def plain_file_name(key: str, value: Any) -> str:
    """A bare file name (no folder part at all)."""
    text = relative_inside(key, value)
    if "/" in text or "\\" in text or text in (".",):
        raise InterIRError(f"{key} must be a file name without folders, got {_short(value)}")
    return text


SEED_MAX = 2**63 - 1  # what every generator the commands seed (torch's, numpy's) takes


def seed_arg(text: str) -> int:
    """argparse type of --seed: a whole number from 0 to 2⁶³ − 1 (one-line usage error otherwise)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is needed, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**63 - 1, got {text}")
    return value
