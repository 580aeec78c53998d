"""The CUDA extension's share of `interir check --static`: the `ptxas -v` figures of its build.

Build with `INTERIR_PTXAS_VERBOSE=1` (setup.py then passes -Xptxas=-v to nvcc) and hand the build log over:

    INTERIR_PTXAS_VERBOSE=1 FORCE_CUDA=1 pip install --no-build-isolation -e . 2>&1 | tee build.log
    interir check --static --cuda-log build.log       (also: python -m interir.check.cuda_report build.log)
    python -m interir.check.cuda_report build.log --sass build/lib/interir/_C*.so

Per kernel and target: registers, stack frame, spill stores and loads, and with --sass the tensor-core
instruction class in the extension's SASS (cuobjdump). The gate: no spill, no stack frame in the block
reductions (their accumulators must live in registers), and with --sass every tensor-core GEMM kernel
(warp_task_kernel, csrc/mma_gemm.cuh) really holds tensor-core instructions.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

_ENTRY = re.compile(r"ptxas info\s*: Compiling entry function '([^']+)' for '(sm_\w+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")


@dataclass
class CudaKernel:
    kernel: str  # demangled, shortened
    target: str
    registers: int | None
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    tensor_cores: str = "?"  # the tensor-core instruction class in the SASS ("none"; "?" without --sass)

    @property
    def spill_bytes(self) -> int:
        return self.spill_store_bytes + self.spill_load_bytes


def _demangle(names: list[str]) -> list[str]:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if tool is None or not names:
        return names
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


def _shorten(name: str) -> str:
    """`void interir::block_reduce_kernel<49, interir::impl::attention_forward_t<float, 7>…>(…)` → its launcher
    and the kernel template: block_reduce_kernel<49> of attention_forward_t<float, 7>."""
    name = re.sub(r"^void ", "", name)
    kernel = re.match(r"interir::(\w+)", name)
    launcher = re.search(r"interir::impl::(\w+(?:<[^<>]*>)?)", name) or re.search(r"interir::(\w+Task<[^<>]*>)", name)
    values = re.match(r"interir::block_reduce_kernel<(\d+)", name)
    head = kernel.group(1) if kernel else name[:60]
    if values:
        head += f"<{values.group(1)}>"
    return f"{head} of {launcher.group(1)}" if launcher else head


def parse_ptxas_log(text: str) -> list[CudaKernel]:
    """Every kernel ptxas compiled, with its figures, from an nvcc -Xptxas=-v build log."""
    parts = _ENTRY.split(text)
    raw = []
    for i in range(1, len(parts) - 2, 3):
        mangled, target, body = parts[i], parts[i + 1], parts[i + 2]
        frame, used = _FRAME.search(body), _USED.search(body)
        raw.append((mangled, target, int(used.group(1)) if used else None,
                    *(int(v) for v in (frame.groups() if frame else (0, 0, 0)))))
    names = _demangle([r[0] for r in raw])
    return [CudaKernel(_shorten(n), r[1], r[2], r[3], r[4], r[5]) for n, r in zip(names, raw)]


_SASS_FUNCTION = re.compile(r"^\s*Function : (\S+)\s*$", re.MULTILINE)
_TENSOR_CORE_OPS = re.compile(r"\b(HGMMA|HMMA|IMMA|DMMA|QGMMA)\b")


def find_cuobjdump() -> str | None:
    """cuobjdump: the one Triton ships, else CUDA_HOME's, else PATH's (also used by interir check --static)."""
    candidates = []
    try:
        import triton

        candidates.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump"))
    except ImportError:
        pass
    candidates += [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump"),
                   shutil.which("cuobjdump")]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def tensor_core_classes(sass: str) -> dict[str, str]:
    """{shortened kernel name: its tensor-core instruction classes ("HMMA", … or "none")} of `cuobjdump -sass`."""
    parts = _SASS_FUNCTION.split(sass)
    mangled, bodies = parts[1::2], parts[2::2]
    classes = {}
    for name, body in zip(_demangle(mangled), bodies):
        found = sorted(set(_TENSOR_CORE_OPS.findall(body)))
        classes[_shorten(name)] = ", ".join(found) if found else "none"
    return classes


def attach_sass(kernels: list[CudaKernel], library: str) -> None:
    """Fill each kernel's tensor_cores from the SASS of the built library (the .so); raises OSError on failure."""
    tool = find_cuobjdump()
    if tool is None:
        raise OSError("no cuobjdump (set CUDA_HOME)")
    run = subprocess.run([tool, "-sass", library], capture_output=True, text=True, timeout=600, check=False)
    if run.returncode != 0 or "Function :" not in run.stdout:
        raise OSError(f"cuobjdump -sass {library} failed: {run.stderr.strip() or 'no SASS'}")
    classes = tensor_core_classes(run.stdout)
    for k in kernels:
        k.tensor_cores = classes.get(k.kernel, "none")


def gate_failures(kernels: list[CudaKernel]) -> list[str]:
    failures = []
    for k in kernels:
        if k.kernel.startswith("warp_task_kernel") and k.tensor_cores == "none":
            failures.append(f"{k.kernel} on {k.target}: no tensor-core instruction in its SASS")
        if k.spill_bytes:
            failures.append(f"{k.kernel} on {k.target}: spills {k.spill_bytes} bytes")
        if k.kernel.startswith("block_reduce_kernel") and k.stack_bytes:
            failures.append(f"{k.kernel} on {k.target}: a {k.stack_bytes}-byte stack frame (accumulators in "
                            f"local memory)")
    return failures


def format_table(kernels: list[CudaKernel]) -> str:
    lines = ["| CUDA kernel | target | registers | stack B | spill B | tensor cores |", "|---|---|---|---|---|---|"]
    lines += [f"| {k.kernel} | {k.target} | {k.registers} | {k.stack_bytes} | {k.spill_bytes} | {k.tensor_cores} |"
              for k in kernels]
    return "\n".join(lines)


# The problem of the traffic table: the paper's EPBlock convolution (96 channels) on 64² maps, batch 4, bf16,
# as the Triton kernels' traffic is recorded (interir check --static).
TRAFFIC_SHAPE = {"b": 4, "cin": 96, "cout": 96, "h": 64, "w": 64, "k": 3, "groups": 1}


def traffic_rows(element: str = "bf16") -> list[dict]:
    """The CUDA convolutions' traffic model (interir/check/traffic.py) at TRAFFIC_SHAPE, every path and pass."""
    from interir.check.traffic import CUDA_KERNELS, cuda_conv_traffic

    return [cuda_conv_traffic(path, kind, TRAFFIC_SHAPE, element) for path, kind in CUDA_KERNELS]


def format_traffic_table(rows: list[dict]) -> str:
    lines = ["| CUDA convolution | activation reads per block | blocks | loaded / written | compulsory / written |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['kernel']} | {r['activation_reads_per_block']} | {r['blocks_of_the_other_side']} | "
              f"{r['loaded_per_written']} | {r['compulsory_per_written']} |" for r in rows]
    return "\n".join(lines)


def report(kernels: list[CudaKernel]) -> dict:
    return {"kernels": [asdict(k) | {"spill_bytes": k.spill_bytes} for k in kernels],
            "gate_failures": gate_failures(kernels),
            "traffic": {"shape": TRAFFIC_SHAPE, "element": "bf16", "rows": traffic_rows()}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    library = None
    if len(argv) == 3 and argv[1] == "--sass":
        argv, library = argv[:1], argv[2]
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m interir.check.cuda_report BUILD_LOG [--sass LIBRARY.so]  (the log of a build made "
              "with INTERIR_PTXAS_VERBOSE=1)", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8", errors="replace") as f:
            kernels = parse_ptxas_log(f.read())
    except OSError as exc:
        print(f"{argv[0]}: cannot read the build log ({exc.strerror})", file=sys.stderr)
        return 2
    if not kernels:
        print(f"{argv[0]}: no ptxas figures (build with INTERIR_PTXAS_VERBOSE=1)", file=sys.stderr)
        return 1
    if library is not None:
        try:
            attach_sass(kernels, library)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"{library}: {exc}", file=sys.stderr)
            return 1
    print(format_table(kernels))
    print(f"\nTraffic of the convolutions at {TRAFFIC_SHAPE} in bf16 (interir/check/traffic.py):\n")
    print(format_traffic_table(traffic_rows()))
    failures = gate_failures(kernels)
    for failure in failures:
        print(f"gate: {failure}")
    print(f"{len(kernels)} CUDA kernels: {'FAILED' if failures else 'passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
