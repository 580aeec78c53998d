"""`interir check --static`: every Triton launch the wrappers make, compiled ahead of time for GPU targets.

No GPU is needed. The wrappers of interir.kernels run on CPU tensors at the networks' shapes while Triton's
active driver reports a CUDA target and its `jit_cache_hook` records each launch (signature, constants,
specialisation, warps, stages) instead of compiling it: the very launch a GPU run would make. Each recorded
launch is then compiled for every target with the installed Triton (`triton.compile`), and its ptxas log
(registers, spill stores/loads, stack), shared memory and SASS (the tensor-core instruction class and the
widest global load, from cuobjdump) are reported. Recorded: every dtype (float32, bfloat16, float16), float32
with TF32 dots on and off, and either the configs the wrappers choose by default or every tuning candidate too.
The gate (exit code 1): a compile error, a spill in a default config, or more shared memory than the target has.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from interir.check.traffic import conv_traffic

# The shared memory one block may use (opt-in maximum), bytes.
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 103: 232448, 120: 101376}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Launch:
    """One recorded launch: what triton.compile needs, and which wrapper call made it."""

    kernel: str
    fn: Any = field(compare=False, hash=False)  # the JITFunction
    signature: tuple
    constants: tuple
    attrs: tuple
    num_warps: int
    num_stages: int
    num_ctas: int
    origin: str = field(compare=False, hash=False)  # e.g. "modulated_conv fwd float32 tf32 default"
    default: bool = field(compare=False, hash=False)  # a config the wrappers choose by themselves
    shape: tuple | None = field(default=None, compare=False, hash=False)  # the problem, for the traffic model


# ------------------------------------------------------------------------------------------- recording
class _TargetDriver:
    """Stands in for Triton's active driver: a CUDA device of the given capability, current device 0."""

    def __init__(self, target):
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def is_active(self):
        return True


@contextlib.contextmanager
def recording(capability: int = 90):
    """Within this context Triton launches are recorded, not compiled or run; yields the list they go to."""
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    launches: list[tuple[Any, dict]] = []

    def hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled):
        launches.append((fn.jit_function, compile))
        return True  # "handled": Triton skips the compile and the launch

    previous_hook = knobs.runtime.jit_cache_hook
    previous_driver = getattr(driver, "_active", None)  # reset_active() would look for a real GPU driver
    driver.set_active(_TargetDriver(GPUTarget("cuda", capability, 32)))
    knobs.runtime.jit_cache_hook = hook
    try:
        yield launches
    finally:
        knobs.runtime.jit_cache_hook = previous_hook
        driver._active = previous_driver


def _freeze(value):
    """A hashable copy (dicts become sorted (key, value) tuples that dict() turns back)."""
    if isinstance(value, dict):
        return tuple(sorted(((k, _freeze(v)) for k, v in value.items()), key=lambda kv: repr(kv[0])))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _calls(dtype: torch.dtype, config_index: int | None):
    """(name, thunk) of every wrapper call, on CPU tensors, at shapes that reach every branch of the wrappers'
    config choice and both kinds of Triton specialisation (sizes that are multiples of 16 and odd ones, whose
    masked edges cost registers): the explainable convs of the `paper`, `small` and `tiny` presets (2C = 96,
    64, 32 channels) on 64² maps (256² training patches; B = 4) and on odd maps, the depthwise variant up to
    128² maps, the Kronecker pieces from 16² to 256² maps (1024² inference), the loss at 256². config_index:
    None for the wrappers' own choice, else that candidate of every kernel (skipped where a kernel has fewer)."""
    from interir.kernels import depthwise_conv, explainable_attention, fft_loss, kron, modulated_conv

    def chosen(tuning):
        if config_index is None:
            return None
        return config_index if config_index < len(tuning.candidates) else "skip"

    calls = []

    def add(name, tuning, thunk, shape=None):
        k = chosen(tuning)
        if k != "skip":
            calls.append((name, lambda: thunk(k), shape))

    b, theta = 4, torch.zeros(())
    # (channels, map height, map width): the presets' 2C on 64² maps, then odd maps (masked edges), on both
    # sides of the pixel-count threshold of the conv heuristic
    for c2, mh, mw in ((96, 64, 64), (64, 64, 64), (32, 64, 64), (96, 45, 60), (96, 75, 113)):
        x = torch.randn(b, c2, mh, mw).to(dtype)
        w = torch.randn(c2, c2, 3, 3).to(dtype)
        attn = torch.rand(b, c2, 3, 3)
        dwa_k = (lambda k: None if k is None or k >= len(modulated_conv.DWA.candidates) else k)
        where = f"{c2}ch {mh}×{mw}"
        problem = dict(b=b, cin=c2, cout=c2, h=mh, w=mw, k=3, groups=1)
        add(f"explainable_attention fwd {where}", explainable_attention.TUNING,
            lambda k, x=x: explainable_attention.explainable_attention(x, theta, 3, 0.5, config=k))
        add(f"explainable_attention bwd {where}", explainable_attention.TUNING,
            lambda k, x=x, a=attn: explainable_attention.explainable_attention_backward(a, x, theta, a, 0.5, config=k))
        add(f"modulated_conv fwd {where}", modulated_conv.FWD,
            lambda k, x=x, w=w, a=attn: modulated_conv.modulated_conv(x, w, None, a, 1, config=k), problem)
        add(f"modulated_conv bwd {where}", modulated_conv.DX,
            lambda k, x=x, w=w, a=attn: modulated_conv.modulated_conv_backward(x, x, w, a, 1, config_dx=k,
                                                                               config_dwa=dwa_k(k)), problem)
    for mh, mw in ((64, 64), (128, 128), (75, 113)):
        x = torch.randn(b, 96, mh, mw).to(dtype)
        wd, attn = torch.randn(96, 1, 3, 3).to(dtype), torch.rand(b, 96, 3, 3)
        add(f"depthwise fwd {mh}×{mw}", depthwise_conv.TUNING,
            lambda k, x=x, wd=wd, a=attn: modulated_conv.modulated_conv(x, wd, None, a, 96, config=k))
        add(f"depthwise bwd {mh}×{mw}", depthwise_conv.TUNING,
            lambda k, x=x, wd=wd, a=attn: modulated_conv.modulated_conv_backward(x, x, wd, a, 96, config_dx=k,
                                                                                 config_dwa=k))
    eta = torch.tensor(0.01)
    for mh, mw, batch in ((16, 16, 4), (20, 30, 4), (64, 64, 4), (75, 113, 1), (256, 256, 1)):
        xm = torch.randn(batch, 48, mh, mw).to(dtype)
        p1, p2 = torch.randn(batch, 48, mh, mh).to(dtype), torch.randn(batch, 48, mw, mw).to(dtype)
        where = f"{mh}×{mw}"
        add(f"kron_apply fwd {where}", kron.TUNING,
            lambda k, x=xm, p1=p1, p2=p2: kron.kron_apply(x, p1, p2, True, config=k))
        add(f"kron_apply bwd {where}", kron.TUNING,
            lambda k, x=xm, p1=p1, p2=p2: kron.kron_apply_backward(x, x, p1, p2, True, config=k))
        add(f"kron_step fwd {where}", kron.TUNING,
            lambda k, x=xm, p1=p1, p2=p2: kron.kron_step(x, x, p1, p2, x, eta, config=k))
        add(f"kron_step bwd {where}", kron.TUNING,
            lambda k, x=xm, p1=p1, p2=p2: kron.kron_step_backward(x, x, p1, p2, x, eta, config=k))
    if dtype == torch.float32:  # the loss computes in float32 whatever the input dtype
        pred = torch.rand(b, 3, 256, 256)
        add("fft_l1_loss fwd", fft_loss.TUNING, lambda k: fft_loss.forward(pred, pred.flip(-1), True)
            if k is None else fft_loss.fft_l1_loss(pred, pred.flip(-1), config=k))
        add("fft_l1_loss bwd", fft_loss.TUNING, lambda k: fft_loss.fft_l1_loss_backward(
            torch.tensor(1.0), pred, pred.flip(-1), config=k))
    return calls


def record_launches(configs: str = "default", capability: int = 90) -> list[Launch]:
    """Every distinct launch of every wrapper call, for each dtype and precision (see the module doc)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("recording needs compiled Triton kernels: run without TRITON_INTERPRET=1")
    seen: dict[Launch, Launch] = {}
    from interir.kernels import TUNINGS

    most = max(len(t.candidates) for t in TUNINGS)
    indices = [None] + (list(range(most)) if configs == "all" else [])
    variants = [("float32", True), ("float32", False), ("bfloat16", None), ("float16", None)]
    for dtype_name, tf32 in variants:
        for index in indices:
            previous = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
            try:
                with recording(capability) as launches:
                    for name, thunk, shape in _calls(DTYPES[dtype_name], index):
                        before = len(launches)
                        thunk()
                        precision = "" if tf32 is None else (" tf32" if tf32 else " ieee")
                        label = f"{name} {dtype_name}{precision} {'default' if index is None else f'config {index}'}"
                        for fn, c in launches[before:]:
                            launch = Launch(fn.__name__, fn, _freeze(c["signature"]), _freeze(c["constants"]),
                                            _freeze(c["configs"][0]), c["num_warps"], c["num_stages"],
                                            c.get("num_ctas", 1), label, index is None, _freeze(shape))
                            if launch in seen:
                                if launch.default and not seen[launch].default:
                                    seen[launch] = launch
                            else:
                                seen[launch] = launch
            finally:
                torch.backends.cuda.matmul.allow_tf32 = previous
    return list(seen.values())


# ------------------------------------------------------------------------------------------- compiling
@dataclass
class Compiled:
    kernel: str
    origin: str
    default: bool
    target: str
    num_warps: int
    num_stages: int
    ok: bool
    error: str = ""
    registers: int | None = None
    spill_bytes: int | None = None  # spill stores + spill loads
    stack_bytes: int | None = None
    shared_bytes: int | None = None
    shared_limit: int | None = None
    mma: str = "none"  # the tensor-core instruction class in the SASS
    widest_load: str = "none"
    global_loads: dict = field(default_factory=dict)  # global-load instruction → how many in the SASS
    traffic: dict | None = None  # interir/check/traffic.py, for the modulated-conv kernels
    seconds: float = 0.0


_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_STACK = re.compile(r"(\d+) bytes stack frame")


def _sass_facts(cubin: bytes) -> tuple[str, str, dict]:
    """(tensor-core class, widest global load, {global-load instruction: count}) of a cubin's SASS."""
    from interir.check.cuda_report import find_cuobjdump

    tool = find_cuobjdump() or "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True, timeout=120).stdout
    finally:
        os.unlink(f.name)
    mma = sorted(set(re.findall(r"\b(HGMMA|HMMA|UTC\w*MMA|QGMMA|IMMA|DMMA)\b", sass)))
    found = re.findall(r"\b(UTMALDG(?:\.\w+)*|LDGSTS(?:\.\w+)*|LDG(?:\.\w+)*)\b", sass)
    counts = {op: found.count(op) for op in sorted(set(found))}
    loads = set(found)

    def width(op: str) -> int:
        if op.startswith("UTMALDG"):
            return 10**6
        sizes = {"128": 128, "64": 64, "32": 32, "16": 16, "U8": 8, "S8": 8, "U16": 16, "S16": 16}
        bits = re.findall(r"\.(128|64|32|16|U8|S8|U16|S16)\b", op)
        size = sizes[bits[-1]] if bits else 32
        return size + (1 if op.startswith("LDGSTS") else 0)

    widest = max(loads, key=width) if loads else "none"
    return (", ".join(mma) if mma else "none"), widest, counts


def compile_launch(launch: Launch, capability: int) -> Compiled:
    """triton.compile of one recorded launch for sm_<capability>, with its ptxas log and SASS facts."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    out = Compiled(launch.kernel, launch.origin, launch.default, f"sm_{capability}", launch.num_warps,
                   launch.num_stages, ok=False, shared_limit=SMEM_LIMIT.get(capability))
    started = time.perf_counter()
    src = ASTSource(launch.fn, dict(launch.signature), dict(launch.constants), dict(launch.attrs))
    log = io.StringIO()
    previous = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    knobs.nvidia.dump_ptxas_log = True  # ptxas -v's log, printed by Triton's own build step
    knobs.compilation.always_compile = True  # a cached kernel would skip that step (and its log)
    try:
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(src, target=GPUTarget("cuda", capability, 32),
                                    options={"num_warps": launch.num_warps, "num_stages": launch.num_stages,
                                             "num_ctas": launch.num_ctas})
    except Exception as exc:  # noqa: BLE001  (a compile error is the finding)
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        out.error = " ".join((lines[-1] if lines else type(exc).__name__).split())[:300]
        out.seconds = time.perf_counter() - started
        return out
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = previous
    text = log.getvalue()
    regs, spill, stack = _PTXAS_REGS.findall(text), _PTXAS_SPILL.findall(text), _PTXAS_STACK.findall(text)
    out.ok = True
    out.registers = int(regs[-1]) if regs else None
    out.spill_bytes = sum(int(a) + int(b) for a, b in spill) if spill else None
    out.stack_bytes = int(stack[-1]) if stack else None
    out.shared_bytes = int(kernel.metadata.shared)
    out.mma, out.widest_load, out.global_loads = _sass_facts(kernel.asm["cubin"])
    if launch.shape is not None:
        names = launch.fn.arg_names  # constants are keyed by argument position
        values = {names[key[0]]: v for key, v in dict(launch.constants).items()}
        element = re.search(r"fp32|bf16|fp16", dict(launch.signature)[names[0]]).group(0)  # the activations
        out.traffic = conv_traffic(launch.kernel, values, dict(launch.shape), element)
    out.seconds = time.perf_counter() - started
    return out


def gate_failures(rows: list[Compiled]) -> list[str]:
    """What fails the gate: a compile error, a spill in a default config, shared memory over the limit."""
    failures = []
    for r in rows:
        where = f"{r.kernel} [{r.origin}] on {r.target}"
        if not r.ok:
            failures.append(f"{where}: does not compile: {r.error}")
            continue
        if r.default and r.spill_bytes:
            failures.append(f"{where}: spills {r.spill_bytes} bytes")
        if r.shared_limit and r.shared_bytes and r.shared_bytes > r.shared_limit:
            failures.append(f"{where}: needs {r.shared_bytes} B of shared memory, the target has {r.shared_limit}")
    return failures


def format_table(rows: list[Compiled]) -> str:
    lines = ["| kernel | launch | target | warps / stages | compiled | registers | spill B | stack B | shared B | "
             "tensor cores | widest load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        status = "yes" if r.ok else f"NO: {r.error[:120]}"
        lines.append(f"| {r.kernel} | {r.origin} | {r.target} | {r.num_warps} / {r.num_stages} | {status} | "
                     f"{_dash(r.registers)} | {_dash(r.spill_bytes)} | {_dash(r.stack_bytes)} | {_dash(r.shared_bytes)} | "
                     f"{r.mma if r.ok else '—'} | {r.widest_load if r.ok else '—'} |")
    return "\n".join(lines)


def format_traffic_table(rows: list[Compiled]) -> str:
    """The modulated-conv kernels' traffic model (interir/check/traffic.py) beside their global loads."""
    lines = ["| kernel | launch | target | activation reads per block | blocks | loaded / written bytes | "
             "compulsory / written | global loads in the SASS |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.ok and r.traffic:
            t = r.traffic
            loads = ", ".join(f"{op}×{n}" for op, n in r.global_loads.items())
            lines.append(f"| {r.kernel} | {r.origin} | {r.target} | {t['activation_reads_per_block']} | "
                         f"{t['blocks_of_the_other_side']} | {t['loaded_per_written']} | {t['compulsory_per_written']} | "
                         f"{loads} |")
    return "\n".join(lines)


def _dash(value) -> str:
    return "—" if value is None else str(value)


def totals(rows: list[Compiled]) -> dict[str, dict[str, int]]:
    """Per target: launches, compiled, failed, spilling (any config), spilling default configs."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        t = out.setdefault(r.target, {"launches": 0, "compiled": 0, "failed": 0, "spilling": 0,
                                      "spilling_default": 0})
        t["launches"] += 1
        t["compiled" if r.ok else "failed"] += 1
        t["spilling"] += bool(r.ok and r.spill_bytes)
        t["spilling_default"] += bool(r.ok and r.spill_bytes and r.default)
    return out


# ------------------------------------------------------------------------------------------- the command
def _targets(text: str) -> list[int]:
    from interir.errors import InterIRError

    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"(?:sm_?)?(\d{2,3})a?", part)
        if m is None:
            raise InterIRError(f"--targets takes names like sm_90, got {part!r}")
        out.append(int(m.group(1)))
    if not out:
        raise InterIRError("--targets names no target")
    return out


def run_static(args) -> int:
    """The `interir check --static` command (see interir/check/__init__.py)."""
    if os.environ.get("TRITON_INTERPRET") == "1":  # compiled kernels only: start afresh without the interpreter
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        argv = [sys.executable, "-m", "interir", "check", "--static", "--targets", args.targets,
                "--configs", args.configs] + (["--json", args.json] if args.json else []) + (["-q"] if args.quiet else [])
        argv += ["--cuda-log", args.cuda_log] if args.cuda_log else []
        return subprocess.call(argv, env=env)
    import triton

    from interir.errors import InterIRError

    targets = _targets(args.targets)
    if args.cuda_log and not os.path.isfile(args.cuda_log):  # checked before minutes of compiling
        raise InterIRError(f"--cuda-log {args.cuda_log}: no such file (the log of a build made with "
                           "INTERIR_PTXAS_VERBOSE=1)")
    started = time.perf_counter()
    launches = record_launches(args.configs)
    print(f"interir check --static: Triton {triton.__version__}, {len(launches)} distinct launches "
          f"({sum(launch.default for launch in launches)} default configs) × {len(targets)} targets")
    rows = []
    for capability in targets:
        for launch in launches:
            row = compile_launch(launch, capability)
            rows.append(row)
            if not args.quiet:
                note = "ok" if row.ok else "FAILED"
                print(f"  sm_{capability} {launch.kernel:<22} {launch.origin:<48} {note} ({row.seconds:.1f} s)",
                      file=sys.stderr, flush=True)
    print(format_table(rows))
    if any(r.traffic for r in rows):
        print("\nTraffic of the modulated-conv kernels (interir/check/traffic.py):\n")
        print(format_traffic_table(rows))
    summary = totals(rows)
    for target, t in summary.items():
        print(f"{target}: {t['launches']} launches, {t['compiled']} compiled, {t['failed']} failed, "
              f"{t['spilling']} spilling ({t['spilling_default']} of them default configs)")
    failures = gate_failures(rows)
    cuda = None
    if args.cuda_log:
        from interir.check import cuda_report

        with open(args.cuda_log, encoding="utf-8", errors="replace") as f:
            kernels = cuda_report.parse_ptxas_log(f.read())
        if not kernels:
            failures.append(f"{args.cuda_log}: no ptxas figures (build with INTERIR_PTXAS_VERBOSE=1)")
        print(cuda_report.format_table(kernels))
        print("\n" + cuda_report.format_traffic_table(cuda_report.traffic_rows()))
        failures += cuda_report.gate_failures(kernels)
        cuda = cuda_report.report(kernels)
    for failure in failures:
        print(f"gate: {failure}")
    print(f"{'FAILED' if failures else 'passed'} in {time.perf_counter() - started:.0f} s")
    if args.json:
        from interir.atomic import atomic_write_text

        report = {"schema": "interir-check-static/1", "triton": triton.__version__, "torch": torch.__version__,
                  "targets": [f"sm_{t}" for t in targets], "configs": args.configs, "totals": summary,
                  "gate_failures": failures, "rows": [asdict(r) for r in rows], "cuda_extension": cuda}
        atomic_write_text(args.json, json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 1 if failures else 0
