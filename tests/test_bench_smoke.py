"""The benchmark runner (bench/) in smoke mode, so that it cannot rot: every case is recorded with figures or a
reason, the record is complete and finite, and `interir bench` forwards to it. No timing value is asserted."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interir.cli import main

ROOT = Path(__file__).resolve().parents[1]
MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "INTERIR_CPU_MALLOC")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _reason(entry: dict) -> bool:
    """A skip or error that says why in words."""
    text = entry.get("skipped") or entry.get("error")
    return isinstance(text, str) and len(text) > 5


def _jsonl_path(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "bench-cases.jsonl"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run on the CPU through `python -m bench`, started without any malloc setting (it tunes its own)."""
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items()
           if k not in (*MALLOC_ENV, "TRITON_INTERPRET", "INTERIR_CUDA_EMULATE", "INTERIR_BACKEND")}
    cmd = [sys.executable, "-m", "bench", "--smoke", "--device", "cpu", "--threads", "1", "--out", str(out),
           "--jsonl", str(_jsonl_path(tmp_path_factory))]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(out.iterdir())
    assert [f.suffix for f in files] == [".json", ".md"], files
    assert files[0].stem == files[1].stem and files[0].stem.endswith("_smoke")
    return json.loads(files[0].read_text()), files[1].read_text(), proc


def test_smoke_record_describes_the_run(smoke_run):
    report, md, proc = smoke_run
    assert report["device"]["type"] == "cpu" and report["device"]["name"]
    assert report["device"]["cpu_count"] >= 1 and report["device"]["threads"] == 1
    assert report["versions"]["torch"] and report["versions"]["python"]
    assert set(report["git"]) == {"commit", "dirty"}
    assert report["command"].startswith("python -m bench --smoke")
    assert report["malloc"] == {"choice": "keep", "tuned_here": True}  # glibc keeps freed memory (cpu_malloc)
    assert report["ops"]["memory_method"]
    assert report["backends"]["reference"] is None
    assert "interpreter" in report["backends"]["triton"] and report["backends"]["cuda"]
    assert _positive(report["ceilings"]["copy"]["gbps"])
    assert all(_positive(report["ceilings"]["matmul"][d]["tflops"]) for d in ("fp32", "bf16"))
    assert _positive(report["duration_s"])
    assert proc.stdout == md and "## Ops" in md and "### Training step" in md  # the summary is printed last


def test_smoke_record_has_every_op_case(smoke_run):
    from bench import op_cases

    report = smoke_run[0]
    records = {(r["op"], r["regime"], tuple(r["shape"]), r["dtype"], r["direction"]): r for r in report["ops"]["cases"]}
    expected = [(c, d, r) for c in op_cases.op_cases("cpu", smoke=True) for d in op_cases.DTYPES
                for r in op_cases.DIRECTIONS]
    assert len(records) == len(expected) == len(report["ops"]["cases"])
    for case, dtype, direction in expected:
        record = records[(case.op, case.regime, case.shape, dtype, direction)]
        assert _positive(record["bytes"]) and _positive(record["flops"])
        assert list(record["methods"]) == case.methods(["reference", "triton", "cuda"])
        for method, result in record["methods"].items():
            if method in ("reference", op_cases.FLOOR):  # both run on the CPU: they must have been timed
                for key in ("median_ms", "min_ms", "gbps", "tflops", "frac_copy", "frac_matmul"):
                    assert _positive(result[key]), (record, method, key)
                assert result["repeats"] == 1 and result["peak_bytes"] >= 0
            else:
                assert _reason(result), (record, method)
        if case.op == "explainable_conv":
            assert _positive(record["methods"]["reference"]["ratio_to_floor"])
        assert record["methods"]["reference"]["speedup_vs_reference"] == 1.0


def test_smoke_record_has_every_model_case(smoke_run):
    from bench import model_cases

    model = smoke_run[0]["model"]
    assert [n["network"] for n in model["networks"]] == list(model_cases.NETWORKS)
    for net in model["networks"]:
        static = net["static"]
        assert all(_positive(static[k]) for k in ("parameters", "macs_all", "macs_hooks"))
        assert static["macs_hooks"] <= static["macs_all"]
        modes = model_cases.modes(net["network"])
        assert len(net["train"]) == len(modes) * 2  # every mode, fp32 and bf16
        for rec in net["train"]:
            if rec["backend"] in ("reference", model_cases.PLAIN, model_cases.NO_BACKEND) and not rec["compiled"]:
                for key in ("step_ms", "images_per_s", "peak_bytes", "state_bytes", "first_call_s"):
                    assert _positive(rec[key]), (net["network"], rec, key)
                assert rec["transient_bytes"] >= 0 and rec["memory_method"]
            else:
                assert _reason(rec), rec
        sizes = model["plan"]["infer_sizes"]
        backends = [b for b, compiled in modes if not compiled]
        assert len(net["inference"]) == len(sizes) * 2 * len(backends)
        for rec in net["inference"]:
            if rec["backend"] in ("reference", model_cases.PLAIN, model_cases.NO_BACKEND):
                assert _positive(rec["latency_ms"]) and _positive(rec["macs_all"]), rec
            else:
                assert _reason(rec), rec


def test_models_take_a_preset_and_unknown_ones_are_one_line_errors(capsys):
    from bench import model_cases

    plan = model_cases.model_plan("cpu", networks=("interir:small", "interir", "dgunet"))
    assert plan.networks == [("interir", "small"), ("interir", "paper"), ("dgunet", "dgunet")]
    assert model_cases.model_plan("cpu", smoke=True, networks=("interir:small",)).networks == [("interir", "small")]
    for bad, word in (("interir:huge", "huge"), ("nafnet", "nafnet")):
        assert main(["bench", "--models", bad]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("interir bench: error: --models:") and word in err and "\n" not in err


def test_interir_bench_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: interir bench") and "--smoke" in out and "--backends" in out


def test_interir_bench_bad_option_is_one_line(capsys):
    assert main(["bench", "--ops", "no_such_op"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interir bench: error:") and "no_such_op" in err and "\n" not in err


def test_interir_bench_without_a_checkout_says_so(monkeypatch, capsys):
    """Installed from a wheel there is no bench/ folder: one line saying what to do, exit code 1."""
    monkeypatch.setitem(sys.modules, "bench", None)
    monkeypatch.setitem(sys.modules, "bench.runner", None)
    assert main(["bench", "--smoke"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interir bench: error:") and "source checkout" in err and "\n" not in err


def test_smoke_jsonl_has_every_case_as_it_finished(smoke_run, tmp_path_factory):
    """--jsonl: the machine first, then one line per op case and per model group, equal to the final record."""
    report = smoke_run[0]
    lines = [json.loads(line) for line in _jsonl_path(tmp_path_factory).read_text().splitlines()]
    assert lines[0]["suite"] == "machine" and lines[0]["device"] == report["device"]
    ops_lines = [{k: v for k, v in line.items() if k != "suite"} for line in lines if line["suite"] == "ops"]
    assert ops_lines == json.loads(json.dumps(report["ops"]["cases"]))
    for net in report["model"]["networks"]:
        for suite, key in (("train", "train"), ("infer", "inference")):
            got = [line["records"] for line in lines if line["suite"] == suite and line["network"] == net["network"]]
            assert got == [json.loads(json.dumps(net[key]))]


def test_bench_refuses_a_jsonl_path_in_a_missing_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--device", "cpu", "--no-save",
                           "--jsonl", str(tmp_path / "missing" / "cases.jsonl")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "--jsonl" in proc.stderr and "Traceback" not in proc.stderr


def test_train_step_bench_splits_the_step(capsys):
    from bench import train_step

    assert train_step.main(["--batch", "1", "--size", "32", "--steps", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "eager split (median ms): forward" in out and "backward" in out and "adam" in out
    assert "eager: step" in out and "compiled" not in out


def test_train_step_bench_times_the_direct_backward_without_the_winograd_kernels(capsys, monkeypatch):
    """--direct-backward adds a variant whose steps never call the Winograd backward: with it the eager steps
    call the kernel as often as without it (on a CPU where training takes the kernel: `winograd_trains`, held true
    here)."""
    from bench import train_step
    from interir import cpu_kernels

    monkeypatch.setattr(cpu_kernels, "winograd_trains", lambda: True)
    calls = []
    real = cpu_kernels.winograd3x3_backward
    monkeypatch.setattr(cpu_kernels, "winograd3x3_backward", lambda *a: calls.append(1) or real(*a))
    argv = ["--batch", "1", "--size", "32", "--steps", "1", "--threads", "1"]
    assert train_step.main(argv) == 0
    alone = len(calls)
    assert train_step.main(argv + ["--direct-backward"]) == 0
    out = capsys.readouterr().out
    assert "direct backward: step" in out and "eager / direct backward:" in out
    assert len(calls) == 2 * alone and (alone > 0 or cpu_kernels.load() is None)


def test_train_step_bench_times_the_step_over_two_processes(capsys):
    from bench import train_step

    argv = ["--preset", "tiny", "--batch", "2", "--size", "32", "--steps", "2", "--threads", "2", "--processes", "2",
            "--plain"]
    assert train_step.main(argv) == 0
    out = capsys.readouterr().out
    assert "plain: step" in out and "eager / plain:" in out
    line = next(t for t in out.splitlines() if t.startswith("2 processes"))
    assert "batch 1 each: step" in line and "× eager's speed" in line and "× plain's speed" in line
    gap = float(line.rsplit("largest ", 1)[1])
    assert gap < 1e-5  # the same steps as the one process's, to float round-off
    with pytest.raises(SystemExit):
        train_step.main(["--batch", "3", "--processes", "2"])


def test_cpu_kernels_bench_times_every_piece(capsys):
    from bench import cpu_kernels as bench_cpu_kernels
    from interir import cpu_kernels

    if cpu_kernels.mode() == "off" or cpu_kernels.load() is None:
        pytest.skip("the CPU kernels are off or unavailable here")
    assert bench_cpu_kernels.main(["--rounds", "1", "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| Convs") or
            line.startswith("| EPBlock")]
    assert len(rows) == 6 and all(line.count("ms") == 2 and "×" in line for line in rows), rows


@pytest.mark.parametrize("extra, message", [
    (["--out", "{file}"], "--out"),
    (["--backends", "cuda"], "none of them can be timed on cpu"),
])
def test_bench_refuses_what_it_cannot_do_before_timing(tmp_path, extra, message):
    (tmp_path / "file.txt").write_text("a user's file")
    extra = [e.replace("{file}", str(tmp_path / "file.txt")) for e in extra]
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--device", "cpu", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "file.txt").read_text() == "a user's file"
