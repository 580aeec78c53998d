"""The backend switch: precedence (call > context > env > auto), errors, and that a backend plugs in
without touching the model."""
import os

import numpy as np
import pytest
import torch

import interir
from interir import ops
from interir.ops import backends


def test_default_is_auto_and_reference_on_cpu(monkeypatch):
    monkeypatch.delenv("INTERIR_BACKEND", raising=False)
    assert ops.current_backend() == "auto"
    assert ops.available_backends()["reference"] is None


def test_precedence_env_context_call(monkeypatch):
    monkeypatch.setenv("INTERIR_BACKEND", "reference")
    assert ops.current_backend() == "reference"
    with ops.use_backend("auto"):
        assert ops.current_backend() == "auto"
        with ops.use_backend("triton"):
            assert ops.current_backend() == "triton"
        assert ops.current_backend() == "auto"
    assert ops.current_backend() == "reference"


def test_unknown_backend_names_are_rejected(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        with ops.use_backend("fast"):
            pass
    monkeypatch.setenv("INTERIR_BACKEND", "gpu")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        ops.current_backend()


def test_unavailable_backend_says_which_and_why(monkeypatch):
    monkeypatch.setitem(backends._LOAD_ERRORS, "cuda", "the extension interir._C was not built")
    x = torch.randn(1, 1, 3, 3)
    with pytest.raises(ops.BackendUnavailable, match="backend 'cuda' cannot run kron_apply: the extension"):
        ops.kron_apply(x, torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3), backend="cuda")


def test_supports_veto_is_reported_and_auto_skips(monkeypatch):
    calls = []

    def fake_loss(pred, target):
        calls.append(1)
        return torch.ops.interir.fft_l1_loss_reference(pred, target)

    monkeypatch.setitem(backends._LOAD_ERRORS, "triton", "")
    monkeypatch.setitem(backends._REGISTRY["triton"], "fft_l1_loss",
                        (fake_loss, lambda p, t: None if p.shape[-1] % 2 == 0 else "odd widths unsupported"))
    a, b = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    ops.fft_l1_loss(a, b, backend="triton")
    assert calls == [1]
    with pytest.raises(ops.BackendUnavailable, match="odd widths unsupported"):
        ops.fft_l1_loss(a[..., :3], b[..., :3], backend="triton")


def test_a_backend_plugs_in_without_touching_the_model(monkeypatch):
    """Route every op to a counting 'triton' stand-in: the model must call only interir.ops for the hot
    pieces, and the result must equal the reference run."""
    from tests.conftest import wake_up

    counts = {}
    monkeypatch.setitem(backends._LOAD_ERRORS, "triton", "")
    for name, (fn, _) in list(backends._REGISTRY["reference"].items()):
        def counted(*args, _fn=fn, _name=name, **kw):
            counts[_name] = counts.get(_name, 0) + 1
            return _fn(*args, **kw)

        monkeypatch.setitem(backends._REGISTRY["triton"], name, (counted, None))
    model = wake_up(interir.build_model("tiny")).eval()
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        expected = model(x)
        with ops.use_backend("triton"):
            got = model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    n_conv = len(model.explainable_convs())
    n_resm = model.cfg.num_blocks + 1
    assert counts == {
        "explainable_attention": n_conv,
        "modulated_conv": n_conv,
        "kron_apply": 2 * n_resm,  # PᵀP(X) and Pᵀ(Dd) in each RESM
        "kron_step": n_resm,
    }


def test_tiny_model_compiles_with_the_triton_backend():
    """torch.compile (fullgraph) of the model on the triton backend equals its eager run."""
    from tests.conftest import wake_up

    reason = ops.available_backends()["triton"]
    if reason:
        pytest.skip(f"triton backend unavailable: {reason}")
    model = wake_up(interir.build_model("tiny", channels=8)).eval()
    x = torch.rand(1, 3, 16, 16)
    with ops.use_backend("triton"), torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_training_on_triton_follows_the_reference_loss_curve(tmp_path):
    """Training steps of the tiny model (same seed, same data) on each backend: the same loss curve.

    10 steps by default (the interpreter is slow on 2 cores); INTERIR_CURVE_STEPS=50 runs the issue's 50
    (passed on this machine in 9 min 20 s)."""
    from tests.test_train import _cfg
    from interir.train import train

    reason = ops.available_backends()["triton"]
    if reason:
        pytest.skip(f"triton backend unavailable: {reason}")
    steps = int(os.environ.get("INTERIR_CURVE_STEPS", "10"))
    over = {"train.total_iter": steps, "datasets.train.patch_size": 16, "model.channels": 8,
            "logger.save_checkpoint_freq": 1000, "train.ema_decay": 0}
    ref = train(_cfg(tmp_path / "ref", **over, backend="reference"), progress=False)
    fused = train(_cfg(tmp_path / "tri", **over, backend="triton"), progress=False)
    assert len(ref["losses"]) == len(fused["losses"]) == steps
    np.testing.assert_allclose(fused["losses"], ref["losses"], rtol=2e-3, atol=1e-5)
    torch.manual_seed(0)  # what train() does before it builds the network
    init = interir.build_model("tiny", channels=8).state_dict()
    moved = 0
    for (name, a), b in zip(ref["model"].state_dict().items(), fused["model"].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5, msg=name)
        moved += not torch.equal(a, init[name])
    assert moved > 0  # the steps did train the network
