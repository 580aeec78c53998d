"""Progress reporting: tqdm on a terminal, plain lines (no carriage-return floods) in redirected logs."""
import io
import subprocess
import sys

from interir.progress import LineProgress, progress


def test_line_progress_writes_whole_lines_at_start_periodically_and_at_the_end(monkeypatch):
    monkeypatch.setenv("INTERIR_PROGRESS_SECONDS", "0")  # a line at every update
    stream = io.StringIO()
    bar = LineProgress(range(3), desc="eval", unit="img", stream=stream)
    assert list(bar) == [0, 1, 2]
    bar.set_postfix(loss="0.5")
    bar.close()
    bar.close()  # closing twice writes once
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and lines[0] == "eval: 0/3 img (0%)" and lines[-1].startswith("eval: 3/3 img (100%)")
    assert "loss 0.5" in lines[-1] and len(lines) == 5


def test_quiet_periods_write_nothing_between_start_and_end(monkeypatch):
    monkeypatch.setenv("INTERIR_PROGRESS_SECONDS", "3600")
    stream = io.StringIO()
    bar = LineProgress(total=1000, desc="train", unit="it", stream=stream)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert len(stream.getvalue().splitlines()) == 2


def test_a_redirected_restore_log_has_no_carriage_returns(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 16), (90, 120, 200)).save(tmp_path / "a.png")
    proc = subprocess.run([sys.executable, "-m", "interir", "restore", str(tmp_path / "a.png"), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "restore: 1/1 img (100%)" in proc.stderr


def test_disabled_progress_is_silent(capsys):
    bar = progress(range(2), desc="x", enabled=False)
    assert list(bar) == [0, 1]
    bar.close()
    assert capsys.readouterr().err == ""
