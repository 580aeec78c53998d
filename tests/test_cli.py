"""`interir` command line: help, `info`, and one-line errors with non-zero exit codes."""
import json
import subprocess
import sys

import pytest

import interir
from interir import cpu_kernels, fast_paths
from interir.cli import main
from interir.profile import count_macs_all, count_macs_hooks, count_parameters


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "synth" in out


def test_info_prints_and_writes_figures(tmp_path, capsys):
    out_json = tmp_path / "sub" / "tiny.json"
    assert main(["info", "--preset", "tiny", "--size", "32", "--repeats", "1", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    model = interir.build_model("tiny")
    assert report["parameters"] == count_parameters(model) == 284_464
    assert report["macs_all"] == count_macs_all(model, (1, 3, 32, 32))
    assert report["macs_hooks"] == count_macs_hooks(model, (1, 3, 32, 32))
    assert report["cpu_latency"]["median_s"] > 0
    assert "284,464" in text and "MACs" in text
    assert f"CPU kernels           {cpu_kernels.status()}" in text
    assert report["environment"]["cpu_kernels"] == cpu_kernels.status()
    assert not list(out_json.parent.glob(".*tmp"))  # the atomic write left no temporary file


def test_info_says_why_the_cpu_kernels_are_off(monkeypatch):
    monkeypatch.setenv(cpu_kernels.ENV_VAR, "0")
    assert cpu_kernels.status() == "off (INTERIR_CPU_KERNELS=0)"
    monkeypatch.setenv(cpu_kernels.ENV_VAR, "auto")
    with fast_paths.disabled():
        assert cpu_kernels.status().startswith("off (the fast paths are off")


def test_info_error_is_one_line(capsys):
    assert main(["info", "--preset", "tiny", "--size", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interir info: error:") and "\n" not in err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "interir", "info", "--preset", "tiny", "--size", "16", "--no-latency"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "parameters" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name, reason, gpu, env, needle", [
    ("reference", None, False, {}, "available"),
    ("triton", None, False, {}, "no CUDA GPU here"),
    ("triton", None, False, {"TRITON_INTERPRET": "1"}, "Triton interpreter only"),
    ("cuda", None, False, {"INTERIR_CUDA_EMULATE": "1"}, "host emulation only"),
    ("triton", None, True, {}, "available"),
    ("cuda", "not built", True, {}, "unavailable (not built)"),
])
def test_info_says_what_a_backend_can_do_on_this_machine(monkeypatch, name, reason, gpu, env, needle):
    from interir.profile import backend_status

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("INTERIR_CUDA_EMULATE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("torch.cuda.is_available", lambda: gpu)
    status = backend_status(name, reason)
    assert needle in status
    if not gpu and name != "reference":
        assert status != "available"


def test_info_counts_threads_in_good_english(capsys):
    import torch

    n = torch.get_num_threads()
    try:
        assert main(["info", "--preset", "tiny", "--size", "16", "--repeats", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert "1 thread)" in out and "1 threads" not in out


def test_info_json_replaces_only_an_earlier_json_report(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG not a report")
    argv = ["info", "--preset", "tiny", "--size", "32", "--repeats", "1", "--no-latency", "--json"]
    assert main(argv + [str(photo)]) == 1
    assert ".json" in capsys.readouterr().err and photo.read_bytes() == b"\x89PNG not a report"
    notes = tmp_path / "notes.json"
    notes.write_text("my notes, not JSON")
    assert main(argv + [str(notes)]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a JSON report" in err and "\n" not in err and notes.read_text() == "my notes, not JSON"
    report = tmp_path / "report.json"
    report.write_text("{}")
    assert main(argv + [str(report)]) == 0
    assert json.loads(report.read_text())["parameters"] == 284_464
