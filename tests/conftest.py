"""Shared test helpers: fresh seeds per test, and a perturbation that wakes up zero-initialised branches."""
import dataclasses
import importlib
import importlib.util
import os
import random
import signal
from pathlib import Path

import pytest
import torch

# Without a GPU the Triton kernels run under the interpreter (chosen before triton is imported), and the CUDA
# kernels under their host emulation (csrc/ compiled for the CPU at first use; see interir/ops/cuda_build.py).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("INTERIR_CUDA_EMULATE", "1")


def _interpreter_without_an_idle_sanitizer() -> None:
    """The Triton interpreter's integer-overflow sanitizer redoes every int32 add and multiply of a kernel in int64
    and ends in a device assert, which Triton drops unless kernels are compiled with debug=True, in the interpreter
    as on a GPU: with the defaults an int32 overflow in an interpreted kernel passes silently. So it checks nothing
    and costs nearly half of an interpreted kernel's time; it is switched off here. (TRITON_DEBUG=1 does not turn
    the interpreter's debug on; setting `interpreter_builder.options.debug` by hand does, and then the sanitizer is
    left on and raises on an overflow.)"""
    try:
        from triton.runtime import interpreter
    except ImportError:  # no Triton: its tests skip
        return
    builder = getattr(interpreter, "interpreter_builder", None)  # the one builder every interpreted launch uses
    options = getattr(builder, "options", None)
    if (dataclasses.is_dataclass(options) and getattr(options, "debug", True) is False
            and "sanitize_overflow" in {f.name for f in dataclasses.fields(options)}):
        builder.options = dataclasses.replace(options, sanitize_overflow=False)


if os.environ.get("TRITON_INTERPRET") == "1":
    _interpreter_without_an_idle_sanitizer()


# Fresh random inputs on every run; rerun a failure with the PYTEST_SEED printed in the session header.
BASE_SEED = int(os.environ.get("PYTEST_SEED") or random.SystemRandom().randrange(2**31))
os.environ["PYTEST_SEED"] = str(BASE_SEED)  # pytest-xdist's workers start after this and take the same seed


def pytest_report_header(config):
    return f"random inputs: PYTEST_SEED={BASE_SEED}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed again at the end (`pytest -q` prints no header), so that a failure can be replayed."""
    if exitstatus:
        terminalreporter.write_line(f"random inputs: PYTEST_SEED={BASE_SEED}")


def pytest_sessionstart(session):
    """Build the fused CPU kernels (interir/cpu_kernels.py) once before any test, so that no command a test runs
    compiles them (and prints that it does) in the middle of its output."""
    from interir import cpu_kernels

    if cpu_kernels.mode() != "off":
        cpu_kernels.load()


# Test files whose every test exercises the fused kernels: what a GPU session runs (marker `kernels`, with
# `gpu`); a test elsewhere joins by taking the `backend` or `any_backend` fixture.
KERNEL_TEST_FILES = ("test_backend_explainable_conv.py", "test_backend_kron.py", "test_backend_fft_loss.py",
                     "test_backends.py", "test_cuda_extension.py", "test_auto.py", "test_ops_inputs.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.path.name in KERNEL_TEST_FILES or "backend" in fixtures or "any_backend" in fixtures:
            item.add_marker(pytest.mark.kernels)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """INTERIR_TEST_TIMEOUT=S fails a test that runs longer than S seconds (scripts/gpu_session.sh sets it, so
    that one stuck test cannot eat a GPU lease; a kernel stuck inside one CUDA call is left to the stage's
    own time limit)."""
    limit = float(os.environ.get("INTERIR_TEST_TIMEOUT") or 0)
    if limit <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        pytest.fail(f"over the per-test limit INTERIR_TEST_TIMEOUT={limit:g} s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    """Seed torch and random per test from PYTEST_SEED and the test's id."""
    seed = (BASE_SEED + sum(ord(ch) * (i + 1) for i, ch in enumerate(request.node.nodeid))) % 2**31
    torch.manual_seed(seed)
    random.seed(seed)
    yield seed


def wake_up(model: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Give every EPBlock's β, γ (initialised to 0) random values so every branch carries signal."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("beta") or name.endswith("gamma"):
                p.normal_(0, std)
    return model


FUSED_BACKENDS = ["triton", "cuda"]
# Where the fused backends' tests put their tensors: the GPU when there is one, else the CPU (the Triton
# interpreter and the CUDA host emulation).
KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(params=FUSED_BACKENDS)
def backend(request, monkeypatch):
    """Each fused backend in turn (skipped, with the reason, where it cannot run); outputs NaN-poisoned.

    Without a GPU, `triton` runs under the Triton interpreter and `cuda` under its host emulation.
    """
    return use_backend_or_skip(request.param, monkeypatch)


@pytest.fixture(params=["reference", *FUSED_BACKENDS])
def any_backend(request, monkeypatch):
    """The reference backend, then each fused backend as in `backend`."""
    return use_backend_or_skip(request.param, monkeypatch)


def use_backend_or_skip(name: str, monkeypatch) -> str:
    """`name` with NaN-poisoned outputs, or a skip naming why it cannot run here."""
    if name == "reference":
        return name
    reason = __import__("interir.ops", fromlist=["ops"]).available_backends()[name]
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    if name == "cuda" and not torch.cuda.is_available() and os.environ.get("INTERIR_CUDA_EMULATE") != "1":
        pytest.skip("backend 'cuda' needs an NVIDIA GPU (or INTERIR_CUDA_EMULATE=1 for its host emulation)")
    monkeypatch.setenv("INTERIR_POISON_OUTPUTS", "1")
    return name


def triton_kernels(module: str, monkeypatch):
    """interir.kernels.<module> with NaN-poisoned outputs, or a skip naming why the triton backend is unavailable."""
    from interir import ops

    reason = ops.available_backends()["triton"]
    if reason is not None:
        pytest.skip(f"backend 'triton' unavailable: {reason}")
    monkeypatch.setenv("INTERIR_POISON_OUTPUTS", "1")
    return importlib.import_module(f"interir.kernels.{module}")


def skip_triton_half_on_cpu(backend: str) -> None:
    """Half-precision cases run on a GPU and under the CUDA host emulation; the Triton interpreter lacks bf16 math."""
    if backend == "triton" and not torch.cuda.is_available():
        pytest.skip("bfloat16/float16 Triton kernels need a GPU (the Triton interpreter has no bfloat16 math)")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one intra-op thread is faster (and much faster on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_script(name: str):
    """scripts/<name>.py imported as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
