"""Progress for long work: a tqdm bar on a terminal, plain periodic lines when stderr is a file or a pipe.

    bar = progress(total=n, desc="restore", unit="img")      # or progress(iterable, ...)
    bar.update(1); bar.set_postfix(loss="0.31"); bar.close()

A redirected log gets one line when the work starts, one every `INTERIR_PROGRESS_SECONDS` (default 30) and
one at the end, instead of thousands of carriage-return redraws.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

_DEFAULT_SECONDS = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("INTERIR_PROGRESS_SECONDS", _DEFAULT_SECONDS)))
    except ValueError:
        return _DEFAULT_SECONDS


class LineProgress:
    """tqdm's small subset used here (update, set_postfix, close, iteration), written as plain lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, leave: bool = True, stream=None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.leave, self.stream = leave, stream or sys.stderr
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.interval = _interval()
        self.closed = False
        if leave:
            self._line()

    def _line(self, final: bool = False) -> None:
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        elapsed = time.monotonic() - self.start
        text = f"{self.desc}: {done} {self.unit}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        if final or self.n:
            rate = f", {self.n / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
            text += f", {elapsed:.1f} s{rate}"
        if self.postfix:
            text += f", {self.postfix}"
        print(text, file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:  # periodic lines also for inner (leave=False) bars
            self.last = now
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.leave:
            self._line(final=True)
        self.closed = True

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent(LineProgress):
    def __init__(self, iterable=None, **kwargs):
        self.iterable, self.n, self.closed = iterable, 0, True

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, initial: int = 0, leave: bool = True):
    """A progress reporter: tqdm when stderr is a terminal, LineProgress otherwise, nothing when not enabled."""
    if not enabled:
        return _Silent(iterable)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave)


def say(message: str) -> None:
    """One line on stderr that does not break a tqdm bar on a terminal."""
    text = " ".join(str(message).split())
    if sys.stderr.isatty():
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)
