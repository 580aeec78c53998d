"""The CPU fast paths (interir/fast_paths.py, docs/performance.md) equal the plain path to float round-off."""
from __future__ import annotations

import math

import pytest
import torch

from interir import fast_paths
from interir.checkpoint import load_model, shipped_checkpoint
from interir.data.imageio import read_image
from interir.demo import BUNDLED_PHOTO
from interir.model import build
from interir.model.blocks import _add_scaled
from interir.ops import reference
from tests.conftest import wake_up


def test_the_switch_restores_its_previous_state():
    assert fast_paths.enabled()
    with fast_paths.disabled():
        assert not fast_paths.enabled()
        with fast_paths.disabled(False):
            assert fast_paths.enabled()
        assert not fast_paths.enabled()
    assert fast_paths.enabled()


# ------------------------------------------------------------------------------------ residual updates
def test_fused_residual_update_equals_the_plain_one():
    x, y, beta = torch.randn(2, 6, 5, 5), torch.randn(2, 6, 5, 5), torch.randn(1, 6, 1, 1)
    with fast_paths.disabled():
        plain = _add_scaled(x, y, beta)
    assert torch.allclose(_add_scaled(x, y, beta), plain, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------- attention without grad
def _surrogate_attention(x, theta, k, tau):
    """The autograd path of reference.explainable_attention, forced (its forward value)."""
    return reference.explainable_attention(x.detach().requires_grad_(True), theta, k, tau).detach()


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_attention_without_grad_equals_the_surrogate_forward(tau, k):
    x = torch.randn(2, 5, 11, 13)
    theta = torch.tensor([0.1])
    with torch.no_grad():
        fast = reference.explainable_attention(x, theta, k, tau)
    assert torch.allclose(fast, _surrogate_attention(x, theta, k, tau), rtol=0, atol=1e-6)


def test_attention_without_grad_keeps_a_nan_in_its_own_plane_only():
    x = torch.randn(2, 3, 8, 8)
    x[1, 2, 3, 4] = float("nan")
    with torch.no_grad():
        fast = reference.explainable_attention(x, torch.tensor([0.0]), 3, 0.5)
    assert torch.isnan(fast[1, 2]).all()
    finite = torch.ones(2, 3, dtype=torch.bool)
    finite[1, 2] = False
    assert torch.isfinite(fast[finite]).all()
    want = _surrogate_attention(x, torch.tensor([0.0]), 3, 0.5)
    assert torch.allclose(fast[finite], want[finite], rtol=0, atol=1e-6)


def test_attention_without_grad_of_infinite_pixels_is_finite_like_the_surrogate():
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 0, 0], x[0, 0, 5, 5] = math.inf, -math.inf
    with torch.no_grad():
        fast = reference.explainable_attention(x, torch.tensor([0.0]), 3, 0.5)
    assert torch.isfinite(fast).all()
    assert torch.allclose(fast, _surrogate_attention(x, torch.tensor([0.0]), 3, 0.5), rtol=0, atol=1e-6)


def test_attention_op_forward_takes_the_path_without_grad(monkeypatch):
    from interir import ops

    calls = []
    original = reference.attention_without_grad
    monkeypatch.setattr(reference, "attention_without_grad", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    theta = torch.zeros(1, requires_grad=True)
    ops.explainable_attention(x, theta, 3, backend="reference").sum().backward()
    assert calls and x.grad is not None and theta.grad is not None


# ------------------------------------------------------------------------------------------ whole network
def test_shipped_model_restores_the_same_with_and_without_fast_paths():
    model, _ = load_model(shipped_checkpoint())
    x = read_image(BUNDLED_PHOTO)[None, :, :96, :128].float()
    with torch.no_grad():
        fast = model(x)
        with fast_paths.disabled():
            plain = model(x)
    assert (fast - plain).abs().max().item() <= 1e-5


def test_training_gradients_are_the_same_with_and_without_fast_paths():
    torch.manual_seed(0)
    model = wake_up(build({"name": "interir", "preset": "tiny"})).train()
    x, y = torch.rand(2, 3, 20, 24), torch.rand(2, 3, 20, 24)

    def grads():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast = grads()
    with fast_paths.disabled():
        plain = grads()
    assert fast.keys() == plain.keys()
    for name in fast:
        scale = plain[name].abs().max().item() + 1e-12
        assert (fast[name] - plain[name]).abs().max().item() <= 1e-4 * scale, name



def test_a_bad_switch_value_is_a_one_line_error_before_any_work(monkeypatch, capsys, tmp_path):
    from interir.cli import main

    monkeypatch.setenv(fast_paths.ENV_VAR, "maybe")
    monkeypatch.setattr(fast_paths, "_enabled", None)  # read the environment again
    assert main(["restore", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interir restore: error: INTERIR_FAST_PATHS='maybe'") and "\n" not in err
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(fast_paths.ENV_VAR, "off")
    monkeypatch.setattr(fast_paths, "_enabled", None)
    assert not fast_paths.enabled()
