"""scripts/gpu_session.sh, the one command a lent GPU machine runs, through its --dry-run on this CPU: every
stage runs under one deadline and returns its file, and the per-test limit of tests/conftest.py works."""
import json
import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"


def _run(out: Path, *args: str, seconds: int | None = None, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "INTERIR_CUDA_EMULATE", "INTERIR_BACKEND", "INTERIR_TEST_TIMEOUT")}
    env.update(OUT=str(out), PYTHON=sys.executable)
    if seconds is not None:
        env["SESSION_SECONDS"] = str(seconds)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_dry_run_returns_every_stage_within_its_budget(tmp_path):
    started = time.monotonic()
    proc = _run(tmp_path / "out", "--dry-run")
    took = time.monotonic() - started
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stderr[-2000:]
    assert took < 180, took
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"summary.txt", "session.log", "build.log", "check.json", "tests.xml",
                                "bench.jsonl"} <= set(files), files
    assert sum(name.startswith("bench_") for name in files) == 2, files  # the bench JSON and markdown
    for stage in ("build", "check", "tests", "bench"):
        assert f"{stage}: rc 0 in " in summary, summary
    assert "commit " in summary and "torch" in summary
    check = json.loads((out / "check.json").read_text())
    assert check["summary"]["rows"] > 0 and check["summary"]["failed"] == 0
    assert check["summary"]["ok"] == sum(r["status"] == "ok" for r in check["results"]) > 0
    suite = ET.parse(out / "tests.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) > 0 and suite.get("failures") == "0" and suite.get("errors") == "0"
    lines = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert lines[0]["suite"] == "machine" and sum(line["suite"] == "ops" for line in lines) > 1


def test_a_spent_budget_skips_the_stages_and_fails(tmp_path):
    proc = _run(tmp_path / "out", "--dry-run", seconds=5, timeout=120)
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert proc.returncode == 1
    for stage in ("build", "check", "tests", "bench"):
        assert f"{stage}: not run" in summary, summary


def test_the_script_refuses_unknown_arguments(tmp_path):
    proc = _run(tmp_path / "out", "--dry", timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.parametrize("name, value", [("SESSION_SECONDS", "abc"), ("SESSION_SECONDS", "0"), ("TEST_WORKERS", "0")])
def test_bad_settings_are_one_line_before_any_work(tmp_path, name, value):
    env = {**os.environ, "OUT": str(tmp_path / "out"), name: value}
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and name in proc.stderr
    assert not (tmp_path / "out").exists()


def test_per_test_limit_fails_a_slow_test_and_runs_the_next(tmp_path):
    (tmp_path / "test_slow.py").write_text(textwrap.dedent("""
        import time
        def test_sleeps():
            time.sleep(30)
        def test_after():
            assert True
    """))
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    env = {**os.environ, "INTERIR_TEST_TIMEOUT": "1"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 25
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout, proc.stdout[-2000:]
    assert "INTERIR_TEST_TIMEOUT=1 s" in proc.stdout
