"""The backend switch: precedence (call > context > env > auto), errors, and that a backend plugs in
without touching the model."""
import os

import numpy as np
import pytest
import torch

import interir
from interir import ops
from tests.conftest import KERNEL_DEVICE


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


@pytest.fixture
def stand_in():
    """Register stand-in backends by name for one test, through the public registry API."""
    names = []

    def register(name, table):
        ops.register_backend(name, table)
        names.append(name)

    yield register
    for name in names:
        ops.unregister_backend(name)


REFERENCE_TABLE = __import__("interir.ops.reference", fromlist=["TABLE"]).TABLE


def test_unavailable_backend_says_which_and_why(tmp_path, monkeypatch):
    (tmp_path / "broken_backend_mod.py").write_text(
        "from interir.errors import BackendNotInstalled\n"
        "raise BackendNotInstalled('its toolkit is not installed here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ops.register_backend_module("brokenx", "broken_backend_mod")
    try:
        assert ops.available_backends()["brokenx"] == "its toolkit is not installed here"
        x = torch.randn(1, 1, 3, 3)
        with pytest.raises(ops.BackendUnavailable, match="backend 'brokenx' cannot run kron_apply: its toolkit"):
            ops.kron_apply(x, torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3), backend="brokenx")
    finally:
        ops.unregister_backend("brokenx")
    with pytest.raises(ValueError, match="unknown backend 'brokenx'"):
        ops.kron_apply(x, torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3), backend="brokenx")


def test_a_backend_without_an_op_says_so(stand_in):
    stand_in("lossonly", {"fft_l1_loss": REFERENCE_TABLE["fft_l1_loss"]})
    x = torch.randn(1, 1, 3, 3)
    with pytest.raises(ops.BackendUnavailable, match="'lossonly' cannot run kron_apply: it has no implementation"):
        ops.kron_apply(x, x, x, backend="lossonly")
    assert ops.fft_l1_loss(x, x.flip(-1), backend="lossonly") > 0


def test_why_not_veto_is_reported(stand_in):
    calls = []
    ref = REFERENCE_TABLE["fft_l1_loss"]

    def counted(pred, target, keep):
        calls.append(1)
        return ref["forward"](pred, target, keep)

    stand_in("evenonly", {"fft_l1_loss": {**ref, "forward": counted,
                                          "why_not": lambda p, t, k: None if p.shape[-1] % 2 == 0
                                          else "odd widths unsupported"}})
    a, b = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    ops.fft_l1_loss(a, b, backend="evenonly")
    assert calls == [1]
    with pytest.raises(ops.BackendUnavailable, match="odd widths unsupported"):
        ops.fft_l1_loss(a[..., :3], b[..., :3], backend="evenonly")


def test_a_backend_plugs_in_without_touching_the_model(stand_in):
    """Route every op to a counting stand-in backend: the model must call only interir.ops for the hot
    pieces, and the result must equal the reference run."""
    from tests.conftest import wake_up

    counts = {}

    def counted(name, fn):
        def wrapper(*args):
            counts[name] = counts.get(name, 0) + 1
            return fn(*args)
        return wrapper

    stand_in("counting", {name: {**fns, "forward": counted(name, fns["forward"])}
                          for name, fns in REFERENCE_TABLE.items()})
    model = wake_up(interir.build_model("tiny")).eval()
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        expected = model(x)
        with ops.use_backend("counting"):
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


def test_registering_a_backend_again_swaps_its_functions(stand_in):
    ref = REFERENCE_TABLE["kron_apply"]
    x = torch.randn(1, 1, 3, 3)
    stand_in("swapped", {"kron_apply": {**ref, "forward": lambda x, p1, p2, t: torch.zeros_like(x)}})
    assert torch.equal(ops.kron_apply(x, x, x, backend="swapped"), torch.zeros_like(x))
    stand_in("swapped", {"kron_apply": ref})
    torch.testing.assert_close(ops.kron_apply(x, x, x, backend="swapped"), ops.kron_apply(x, x, x))


def test_a_table_with_an_unknown_op_is_refused():
    with pytest.raises(ValueError, match="unknown op 'blur'"):
        ops.register_backend("blurry", {"blur": {"forward": abs, "backward": abs}})


def test_tiny_model_compiles_with_the_triton_backend():
    """torch.compile (fullgraph) of the model on the triton backend equals its eager run."""
    from tests.conftest import wake_up

    reason = ops.available_backends()["triton"]
    if reason:
        pytest.skip(f"triton backend unavailable: {reason}")
    model = wake_up(interir.build_model("tiny", channels=8)).eval().to(KERNEL_DEVICE)
    x = torch.rand(1, 3, 16, 16, device=KERNEL_DEVICE)
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
        moved += not torch.equal(a.cpu(), init[name])
    assert moved > 0  # the steps did train the network


def test_a_call_without_grad_skips_only_the_torch_library_wrapper(monkeypatch):
    """At inference, with nothing tracing or watching, an op runs its backend's function directly (the same
    function the torch.library op calls); with a gradient wanted, under FlopCounterMode, or with the fast paths
    off, it goes through the op."""
    from torch.utils.flop_counter import FlopCounterMode

    from interir import fast_paths
    from interir.ops import backends

    backends.load("reference")
    op, slot = backends._REGISTRY["reference"]["kron_apply"]
    calls = []
    monkeypatch.setitem(backends._REGISTRY["reference"], "kron_apply", (lambda *a: calls.append(1) or op(*a), slot))
    x, p1, p2 = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 5), torch.randn(2, 3, 4, 4)
    expected = p1 @ (x @ p2)

    def run(**kw):
        before = len(calls)
        y = ops.kron_apply(x, p1, p2, backend="reference", **kw)
        torch.testing.assert_close(y, expected)
        return len(calls) - before

    with torch.no_grad():
        assert run() == 0
    assert run() == 0  # grad mode on, but no input wants a gradient
    x.requires_grad_()
    assert run() == 1
    with torch.no_grad():
        assert run() == 0
        with FlopCounterMode(display=False) as counter:
            assert run() == 1
        assert counter.get_total_flops() > 0
        with fast_paths.disabled():
            assert run() == 1
