"""The `cuda` backend's plumbing: the build script's decisions, the backend's reasons, and interir._C's argument
checks. The kernels' numbers are checked, with every other fused backend, by tests/test_backend_*.py (on a GPU,
or through the host emulation of the same csrc/ code without one)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interir import ops
from interir.ops import cuda_build

ROOT = Path(__file__).resolve().parents[1]


def _setup_py(env_changes: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_CUDA", "INTERIR_BUILD_CUDA")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the install path of a CPU-only torch")
def test_install_without_cuda_succeeds_and_says_why():
    result = _setup_py({})
    assert result.returncode == 0, result.stderr
    assert "not building the CUDA extension" in result.stderr and "CPU-only build" in result.stderr
    assert result.stdout.strip().endswith("interir")


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the install path of a CPU-only torch")
def test_forced_build_without_cuda_fails_and_says_why():
    result = _setup_py({"FORCE_CUDA": "1"})
    assert result.returncode != 0
    assert "FORCE_CUDA=1 but the CUDA extension cannot be built" in result.stderr
    assert "CPU-only build" in result.stderr


def test_build_can_be_switched_off():
    result = _setup_py({"INTERIR_BUILD_CUDA": "0"})
    assert result.returncode == 0, result.stderr
    assert "INTERIR_BUILD_CUDA=0" in result.stderr


def test_unbuilt_extension_is_reported_with_the_reason():
    code = ("from interir import ops; r = ops.available_backends()['cuda']; print(r)")
    env = dict(os.environ, INTERIR_CUDA_EMULATE="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        import interir._C  # noqa: F401
    except ImportError:
        assert "interir._C is not built" in result.stdout and "FORCE_CUDA=1" in result.stdout
    else:
        assert result.stdout.strip() == "None"


@pytest.fixture(scope="module")
def ext():
    reason = ops.available_backends()["cuda"]
    if reason is not None:
        pytest.skip(f"backend 'cuda' unavailable: {reason}")
    return cuda_build.load_extension()


def _device():
    return "cpu" if cuda_build.emulating() else "cuda"


def test_arguments_are_checked_by_name(ext):
    dev = _device()
    x = torch.randn(2, 4, 5, 6, device=dev)
    attn = torch.rand(2, 4, 3, 3, device=dev)
    cases = {
        "weight has 3×1 input channels but x has 4": lambda: ext.modulated_conv(
            x, torch.randn(5, 3, 3, 3, device=dev), None, attn, 1),
        "attn must have shape": lambda: ext.modulated_conv(x, torch.randn(5, 4, 3, 3, device=dev), None,
                                                           attn[:1].contiguous(), 1),
        "bias must have shape": lambda: ext.modulated_conv(x, torch.randn(5, 4, 3, 3, device=dev),
                                                           torch.zeros(4, device=dev), attn, 1),
        "groups=3 must divide": lambda: ext.modulated_conv(x, torch.randn(6, 4, 3, 3, device=dev), None, attn, 3),
        "weight is BFloat16 but x is Float": lambda: ext.modulated_conv(
            x, torch.randn(5, 4, 3, 3, device=dev, dtype=torch.bfloat16), None, attn, 1),
        "x must be contiguous": lambda: ext.explainable_attention(x.transpose(2, 3), torch.tensor(0.0, device=dev),
                                                                  3, 0.5),
        "x must be float32, bfloat16 or float16": lambda: ext.explainable_attention(
            x.double(), torch.tensor(0.0, device=dev), 3, 0.5),
        "kernel_size must be in 1..7": lambda: ext.explainable_attention(x, torch.tensor(0.0, device=dev), 9, 0.5),
        "tau must be > 0": lambda: ext.explainable_attention(x, torch.tensor(0.0, device=dev), 3, 0.0),
        "p2 must have shape": lambda: ext.kron_apply(x, torch.randn(2, 4, 5, 5, device=dev),
                                                     torch.randn(2, 4, 5, 5, device=dev), False),
        "eta must have one element": lambda: ext.kron_step(x, x, torch.randn(2, 4, 5, 5, device=dev),
                                                           torch.randn(2, 4, 6, 6, device=dev), x,
                                                           torch.ones(2, device=dev)),
        "target must have shape": lambda: ext.fft_l1_loss(x, x[:, :, :4].contiguous()),
        "must be a": lambda: ext.fft_l1_loss(x.to("meta"), x.to("meta")),
    }
    for message, call in cases.items():
        with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(".", r"\.")):
            call()


def test_backend_refusals_are_one_line_reasons(ext):
    dev = _device()
    x = torch.randn(1, 2, 5, 5, device=dev)
    w = torch.randn(2, 2, 9, 9, device=dev)
    a = torch.rand(1, 2, 9, 9, device=dev)
    with pytest.raises(ops.BackendUnavailable, match="backend 'cuda' cannot run modulated_conv: .*kernel sizes up to 7"):
        ops.modulated_conv(x, w, None, a, backend="cuda")
    with pytest.raises(ops.BackendUnavailable, match="backend 'cuda' cannot run kron_apply: .*float64"):
        p = torch.randn(1, 2, 5, 5, device=dev, dtype=torch.float64)
        ops.kron_apply(x.double(), p, p, backend="cuda")
    other = torch.randn(1, 2, 5, 5, device="meta")
    with pytest.raises(ops.BackendUnavailable, match="cannot run fft_l1_loss: .*meta tensor"):
        ops.fft_l1_loss(other, other, backend="cuda")
