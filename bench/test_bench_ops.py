"""pytest-benchmark cases of the three ops: the runner's op cases (bench/op_cases.py) on every backend, forward
and forward+backward, fp32 and bf16, plus the plain shared-weight conv floor of the explainable conv.

    pytest bench/test_bench_ops.py                        # time them: smoke sizes on CPU, full sizes on a GPU
    INTERIR_BENCH_SIZE=full pytest bench/test_bench_ops.py -k kron_step
    pytest bench/test_bench_ops.py --benchmark-disable    # run each case once, as a check

Not part of the test suite (pyproject's testpaths is tests/). Nothing here asserts a time; extra_info carries
each case's bytes and flops, so GB/s and TFLOP/s follow from the reported times.
"""
import os

import pytest
import torch

from bench import op_cases
from bench.runner import backend_status
from interir import ops

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SIZE = os.environ.get("INTERIR_BENCH_SIZE", "full" if DEVICE.type == "cuda" else "smoke")
if SIZE not in ("smoke", "full"):
    raise ValueError(f"INTERIR_BENCH_SIZE must be 'smoke' or 'full', got {SIZE!r}")
BACKENDS = backend_status(DEVICE, None)  # backend -> None, or why it is not timed here
CASES = op_cases.op_cases(DEVICE.type, smoke=SIZE == "smoke")


def _id(case, dtype_name, direction, method) -> str:
    return f"{case.op}-{case.regime}-{case.label.replace('×', 'x')}-{dtype_name}-{direction}-{method}"


PARAMS = [
    pytest.param(case, dtype_name, direction, method, id=_id(case, dtype_name, direction, method))
    for case in CASES
    for dtype_name in op_cases.DTYPES
    for direction in op_cases.DIRECTIONS
    for method in case.methods(list(BACKENDS))
]


@pytest.mark.parametrize("case, dtype_name, direction, method", PARAMS)
def test_op(benchmark, case, dtype_name, direction, method):
    if case.skip:
        pytest.skip(case.skip)
    if BACKENDS.get(method):
        pytest.skip(f"{method}: {BACKENDS[method]}")
    dtype = op_cases.DTYPES[dtype_name]
    inputs = op_cases.make_inputs(case, dtype, DEVICE, requires_grad=direction == "fwd+bwd")
    grad = op_cases.output_gradient(case, inputs) if direction == "fwd+bwd" else None
    call = op_cases.make_call(case, direction, method, inputs, grad)
    try:
        call()  # warm-up, and a backend that refuses these inputs is a skip, not a failure
    except ops.BackendUnavailable as exc:
        pytest.skip(str(exc))
    benchmark.extra_info.update(op=case.op, regime=case.regime, shape=list(case.shape), dtype=dtype_name,
                                direction=direction, method=method, note=case.note,
                                bytes=op_cases.bytes_moved(case, direction, dtype),
                                flops=op_cases.flops(case, direction))
    if DEVICE.type == "cuda":
        def run():
            call()
            torch.cuda.synchronize()
    else:
        run = call
    benchmark(run)
