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


def test_a_255_byte_name_is_written(tmp_path):
    name = "ü" * 120 + "x" * 11 + ".txt"  # 240 + 11 + 4 = 255 bytes, the usual file-name limit
    assert len(name.encode()) == 255
    atomic_write_text(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok" and len(list(tmp_path.iterdir())) == 1


def test_stale_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    from interir.atomic import remove_stale_temporaries, temp_name

    dead_file = tmp_path / temp_name("a.png").replace(f"-{os.getpid()}-", "-999999999-")
    dead_dir = tmp_path / temp_name("explain_out", suffix="").replace(f"-{os.getpid()}-", "-999999998-")
    dead_program = tmp_path / temp_name("m.pt2", suffix=".pt2").replace(f"-{os.getpid()}-", "-999999997-")
    live = tmp_path / temp_name("b.png")
    lookalike = tmp_path / ".a.png.tmp"  # an older or foreign temporary name: not ours to judge
    user = tmp_path / "interir-tmp-999999999-deadbeef.tmp"  # not hidden: a user's file
    dead_file.write_bytes(b"x")
    dead_program.write_bytes(b"x")  # `interir export` names its temporary .pt2, as torch.export.save wants
    dead_dir.mkdir()
    (dead_dir / "f.png").write_bytes(b"x")
    for p in (live, lookalike, user):
        p.write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([dead_file, dead_dir, dead_program])
    assert live.exists() and lookalike.exists() and user.exists()


def test_check_writable_folder(tmp_path):
    from interir.atomic import check_writable_folder

    check_writable_folder(tmp_path / "new" / "deeper")  # creatable: fine, and not created
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="is not a folder"):
        check_writable_folder(tmp_path / "file" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe left nothing
