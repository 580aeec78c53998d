"""Atomic writes: complete files only, and the permissions a plain open() would give."""
import os
import stat

import pytest

from interir.atomic import atomic_write, atomic_write_text


def test_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        target = tmp_path / "w.txt"
        atomic_write_text(target, "hello")
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "w.txt"
    target.write_text("old")
    os.chmod(target, 0o604)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o604


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]
