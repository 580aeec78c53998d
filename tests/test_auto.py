"""`auto` chooses by proof and measurement: stand-in backends on the CPU, timings injected."""
import json

import pytest
import torch

from interir import ops
from interir.ops import auto, backends

REFERENCE = __import__("interir.ops.reference", fromlist=["TABLE"]).TABLE


def _table(op, *, scale=1.0, crash=False):
    """A stand-in for one op: the reference's functions, its forward scaled (wrong when scale != 1) or crashing."""
    fns = dict(REFERENCE[op])
    forward = fns["forward"]

    def stand_in(*args):
        if crash:
            raise RuntimeError("illegal memory access (simulated)")
        out = forward(*args)
        return out * scale if scale != 1.0 else out

    return {op: {**fns, "forward": stand_in}}


@pytest.fixture
def chooser(tmp_path, monkeypatch):
    """A fresh chooser with its disk cache in tmp_path and injected timings: {backend: seconds}."""
    monkeypatch.setenv("INTERIR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("INTERIR_BACKEND", raising=False)
    fresh = auto.Chooser()
    fresh.times = {"reference": 1.0}
    fresh.timer = lambda op, backend, fn, device: fresh.times.get(backend, 1.0)
    backends.set_auto_chooser(fresh)
    names = []

    def stand_in(name, table, seconds):
        ops.register_backend(name, table, auto_devices=("cpu",))
        fresh.times[name] = seconds
        names.append(name)

    fresh.stand_in = stand_in
    yield fresh
    for name in names:
        ops.unregister_backend(name)
    backends.set_auto_chooser(auto.CHOOSER)


def _kron_args():
    return torch.randn(2, 3, 5, 6), torch.randn(2, 3, 5, 5), torch.randn(2, 3, 6, 6)


def test_the_fastest_correct_backend_wins_and_a_slower_one_loses(chooser, capsys):
    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    chooser.stand_in("slowpoke", _table("kron_apply"), 0.5)
    x = _kron_args()
    torch.testing.assert_close(ops.kron_apply(*x), ops.kron_apply(*x, backend="reference"))
    (choice,) = chooser.choices.values()
    assert choice.backend == "quick" and "slower" in choice.rejected["slowpoke"]
    assert choice.seconds == {"reference": 1.0, "quick": 0.2, "slowpoke": 0.5}


def test_a_wrong_backend_is_rejected_with_one_warning_line(chooser, capsys):
    chooser.stand_in("sloppy", _table("kron_apply", scale=1.01), 0.01)  # fastest, but 1 % off
    x = _kron_args()
    torch.testing.assert_close(ops.kron_apply(*x), ops.kron_apply(*x, backend="reference"))
    ops.kron_apply(*x)  # the same class again: decided, no second warning
    (choice,) = chooser.choices.values()
    assert choice.backend == "reference" and "disagrees with the reference" in choice.rejected["sloppy"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend 'sloppy' is not used for kron_apply" in err[0]


def test_a_crashing_backend_is_skipped(chooser, capsys):
    chooser.stand_in("crashy", _table("kron_apply", crash=True), 0.01)
    chooser.stand_in("steady", _table("kron_apply"), 0.3)
    ops.kron_apply(*_kron_args())
    (choice,) = chooser.choices.values()
    assert choice.backend == "steady" and choice.rejected["crashy"].startswith("crashed: RuntimeError")
    assert "crashy" in capsys.readouterr().err


def test_never_slower_than_the_reference(chooser):
    chooser.stand_in("sluggish", _table("kron_apply"), 3.0)
    ops.kron_apply(*_kron_args())
    (choice,) = chooser.choices.values()
    assert choice.backend == "reference" and "slower" in choice.rejected["sluggish"]


def test_each_class_is_measured_once_and_kept_on_disk(chooser, tmp_path):
    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    calls = []
    timer = chooser.timer
    chooser.timer = lambda *a: (calls.append(a[1]), timer(*a))[1]
    for _ in range(3):
        ops.kron_apply(*_kron_args())
    ops.kron_apply(torch.randn(1, 1, 30, 40), torch.randn(1, 1, 30, 30), torch.randn(1, 1, 40, 40))  # a new class
    assert calls == ["reference", "quick", "reference", "quick"]
    saved = json.loads((tmp_path / "auto-backends.json").read_text())
    (entries,) = saved.values()
    assert sorted(e["backend"] for e in entries.values()) == ["quick", "quick"]
    again = auto.Chooser()  # a new process: the disk cache answers without measuring
    again.timer = lambda *a: pytest.fail("measured again")
    assert again.choose("kron_apply", torch.device("cpu"), _kron_args() + (False,)) == "quick"


def test_a_damaged_cache_is_measured_again(chooser, tmp_path):
    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    (tmp_path / "auto-backends.json").write_text("{not json")
    ops.kron_apply(*_kron_args())
    assert [c.backend for c in chooser.choices.values()] == ["quick"]


def test_a_forced_backend_is_never_second_guessed(chooser, monkeypatch):
    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    monkeypatch.setenv("INTERIR_BACKEND", "reference")
    ops.kron_apply(*_kron_args())
    assert chooser.choices == {}


def test_inside_a_compile_trace_no_probe_runs(chooser, monkeypatch, capsys):
    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert chooser.choose("kron_apply", torch.device("cpu"), _kron_args() + (False,)) == "reference"
    assert chooser.choices == {} and "torch.compile trace" in capsys.readouterr().err


def test_choices_are_written_into_the_training_log_and_checkpoints(chooser, tmp_path):
    from interir.checkpoint import read_metadata
    from interir.train import train
    from tests.test_train import _cfg

    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    result = train(_cfg(tmp_path, **{"train.total_iter": 1, "device": "cpu"}), progress=False)  # the stand-in's
    log = (tmp_path / "exp" / "run" / "train.log").read_text()
    assert "auto's ops backends:" in log and "kron_apply" in log and "→ quick" in log
    meta = read_metadata(tmp_path / "exp" / "run" / "step_00000001.safetensors")
    assert meta["extra"]["backend"] == "auto" and set(meta["extra"]["ops_backends"].values()) == {"quick"}
    assert result["steps"] == 1


def test_interir_info_shows_the_measured_choices(chooser, capsys):
    from interir.cli import main

    chooser.stand_in("quick", _table("kron_apply"), 0.2)
    ops.kron_apply(*_kron_args())
    assert main(["info", "--preset", "tiny", "--size", "16", "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert "auto's measured choices" in out and "kron_apply" in out and "→ quick" in out
