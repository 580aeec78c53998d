"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader sees either the old file or the complete new one, never a partial write; a crash leaves the
previous file intact. The new file is flushed to disk (fsync) before the rename, a replaced file keeps its
permission bits, and a new one gets those a plain open() would give (0666 minus the umask).

Temporary names are short whatever the target's name (a 255-byte file name still works) and carry the
writer's process id, `.<start of name>.interir-tmp-<pid>-<random>.tmp`, so that `remove_stale_temporaries`
can delete what a killed process (kill -9, power loss) left behind without touching a live writer's files.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

TEMP_TAG = "interir-tmp"
_NAME_BYTES = 48  # at most this much of the target's name goes into a temporary name
_STALE = re.compile(r"^\..*\." + TEMP_TAG + r"-(\d+)-[0-9a-f]{8}(\.tmp|\.pt2)?$", re.DOTALL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name(name: str, suffix: str = ".tmp") -> str:
    """A hidden name for a temporary sibling of `name` (≤ 100 bytes; marked with this process's id)."""
    head = name.encode("utf-8", "surrogateescape")[:_NAME_BYTES].decode("utf-8", "ignore")
    return f".{head}.{TEMP_TAG}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is flushed and renamed to `path`, else
    removed. The caller writes the temporary path (any writer that takes a file name); `suffix` ends its name,
    for writers that insist on one (".tmp" or ".pt2": what `remove_stale_temporaries` knows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"nothing was written for {path}")
        _fsync_file(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and atomically move the result to `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def swap_in(staging: str | os.PathLike, out: str | os.PathLike, parts) -> None:
    """Move the entries `parts` of a finished `staging` folder into `out`, replacing earlier entries of those
    names (and only those). The earlier ones are moved aside first and put back if a rename fails, so `out`
    holds either the old set or the new one."""
    staging, out = Path(staging), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trash = out / temp_name("previous-set", suffix="")
    trash.mkdir()
    try:
        for part in parts:
            if (out / part).exists():
                os.rename(out / part, trash / part)
        for part in parts:
            if (staging / part).exists():
                os.rename(staging / part, out / part)
    except OSError:
        for part in parts:  # put the earlier entries back where the swap stopped
            if (trash / part).exists() and not (out / part).exists():
                os.rename(trash / part, out / part)
        raise
    shutil.rmtree(trash, ignore_errors=True)
    fsync_dir(out)


@contextlib.contextmanager
def staged_set(out: str | os.PathLike, parts) -> Iterator[Path]:
    """Build a folder set in a staging folder beside `out` and swap its `parts` into `out` (swap_in) when the
    block finishes without an error; the staging folder is removed either way, so an error or an
    interruption leaves `out` as it was. Stale staging folders of dead runs beside `out` are removed first."""
    out = Path(out)
    parent = out.resolve().parent
    check_writable_folder(parent, "staging folder of the set")
    remove_stale_temporaries(parent)
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / temp_name(out.name, suffix="")
    staging.mkdir()
    try:
        yield staging
        swap_in(staging, out, parts)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and staging folders (named by `temp_name`) in `folder` whose writing
    process no longer runs; returns what was removed. Anything else is left alone."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _STALE.match(p.name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def check_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Raise OSError (one line) unless files can be created in `folder` or, when it does not exist yet, in
    its nearest existing parent (which must be a folder). Creates nothing that stays."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"cannot write the {what} {folder}: {probe} is not a folder")
    tmp = probe / temp_name("probe")
    try:
        with open(tmp, "xb"):
            pass
    except OSError as exc:
        raise OSError(f"cannot write the {what} {folder}: {exc.strerror or exc}") from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_new_file(path: str | os.PathLike, what: str, *, overwrite: bool = False, inputs=(),
                   option: str | None = "--overwrite") -> None:
    """Before any work: refuse (one-line InterIRError) an output file that is one of `inputs`, is a folder, or
    exists unless `overwrite` (`option` is the flag that allows it, None when the command has none); and check
    that its folder can take it. An input is never replaced, whatever the flags."""
    from interir.errors import InterIRError

    path = Path(path)
    for source in inputs:
        if _same_path(path, Path(source)):
            raise InterIRError(f"the {what} {path} is also an input of this command ({source}); choose another name "
                               "(inputs are never replaced)")
    if path.is_dir():
        raise InterIRError(f"the {what} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        allow = f"; pass {option} to replace it" if option else "; choose another name or remove it first"
        raise InterIRError(f"the {what} {path} exists{allow}")
    check_writable_folder(path.parent if str(path.parent) else ".", f"folder of the {what}")


def check_report_path(path: str | os.PathLike, option: str = "--json") -> None:
    """Before any work: a JSON report file may be new, or replace an earlier JSON file (reports are made again
    and again), but never a folder or a file of another kind (one-line InterIRError)."""
    import json

    from interir.errors import InterIRError

    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InterIRError(f"{option} {path}: give a file name ending in .json")
    if path.is_file():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            raise InterIRError(f"{option} {path} exists and is not a JSON report; choose another name") from None
    check_new_file(path, f"{option} report", overwrite=True)
