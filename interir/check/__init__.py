"""`interir check`: kernel correctness as a product command (docs/testing.md), the first thing to run on a new GPU.

    interir check                          every backend of this device on the fixed cases: fp32/bf16/fp16
    interir check --quick --json out.json  a short run, every figure as JSON
    interir check --device cpu --emulate   the same on a CPU: Triton interpreter + CUDA host emulation (small)
    interir check --static                 no GPU needed: compile every Triton launch for sm_80/90/100/120

Exit code 1 when any backend disagrees with the reference, crashes or is not deterministic (runtime), or when a
kernel fails to compile, spills, or needs more shared memory than the target has (--static).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys

from interir.errors import InterIRError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--emulate", action="store_true",
                        help="on a CPU: run the Triton kernels under the interpreter and the CUDA kernels through their "
                             "host emulation (small cases; what the test suite does)")
    parser.add_argument("--quick", action="store_true", help="one case per op (the odd-size one)")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16",
                        help="comma-separated dtypes to check (default: float32,bfloat16,float16)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write every figure as JSON (a .json file; an earlier JSON report there is replaced)")
    parser.add_argument("--static", action="store_true",
                        help="the ahead-of-time compile report of every Triton launch (no GPU needed)")
    parser.add_argument("--targets", default="sm_80,sm_90,sm_100,sm_120",
                        help="--static: comma-separated targets (default: sm_80,sm_90,sm_100,sm_120)")
    parser.add_argument("--configs", choices=("default", "all"), default="all",
                        help="--static: the configs the wrappers choose by default, or every tuning candidate too")
    parser.add_argument("--cuda-log", metavar="LOG",
                        help="--static: also report the CUDA extension's kernels from the log of a build made with "
                             "INTERIR_PTXAS_VERBOSE=1 (ptxas -v figures; gate: no spill, no stack in block reductions)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    if args.json:
        from interir.atomic import check_report_path

        check_report_path(args.json)
    if args.static:
        from interir.check.static import run_static

        return run_static(args)
    return _run_runtime(args)


def _run_runtime(args: argparse.Namespace) -> int:
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    from interir.check.runtime import DTYPES

    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise InterIRError(f"--dtypes takes {', '.join(DTYPES)}; got {args.dtypes!r}")
    if args.emulate:
        if args.device == "auto":
            args.device = "cpu"
        if os.environ.get("TRITON_INTERPRET") != "1" or os.environ.get("INTERIR_CUDA_EMULATE") != "1":
            return _rerun_emulated(args)  # the interpreter must be chosen before triton is first imported
    os.environ["INTERIR_POISON_OUTPUTS"] = "1"  # an element a kernel forgot to write shows as NaN
    from interir.check import runtime
    from interir.devices import resolve_device

    device = resolve_device(args.device)
    if args.emulate and device.type != "cpu":
        raise InterIRError("--emulate runs on the CPU; drop --device or use --device cpu")
    loaded = runtime.fused_backends(device)
    print(f"interir check on {device} ({'emulated: Triton interpreter + CUDA host emulation' if args.emulate else 'native'})")
    for name, reason in loaded.items():
        print(f"  {name:<10} {'loaded' if reason is None else 'unavailable: ' + reason}")
    finished: list = []

    def write_json(complete: bool, **extra) -> None:
        if args.json:
            from interir.atomic import atomic_write_text

            report = runtime.report(finished, device, args.emulate, complete=complete) | extra
            atomic_write_text(args.json, json.dumps(report, indent=1))

    if device.type == "cpu" and not args.emulate:
        note = ("no fused backend runs natively on a CPU (they are GPU kernels): the reference serves every op here; "
                "--emulate checks the kernels' code through the interpreter and the host emulation")
        print(note)
        write_json(complete=True, note=note)  # the report says so too: no file would read as a lost run
        if args.json:
            print(f"wrote {args.json}")
        return 0

    def progress(row, seconds):
        finished.append(row)
        write_json(complete=False)  # a run cut short (a GPU lease's time limit) keeps every row it finished
        if not args.quiet:
            print(f"  {row.op:<22} {row.case:<32} {row.dtype:<9} {row.backend:<8} {row.status} ({seconds:.1f} s)",
                  file=sys.stderr, flush=True)

    interrupted = False
    try:
        with _signals_interrupt():
            runtime.run_checks(device, quick=args.quick, emulate=args.emulate, dtypes=dtypes, progress=progress)
    except KeyboardInterrupt:
        interrupted = True
    print(runtime.format_table(finished))
    totals = runtime.summary(finished)
    print(f"{totals['rows']} checks: {totals.get('ok', 0)} ok, {totals.get('refused', 0)} refused, "
          f"{totals['failed']} failed" + (" (interrupted: the rows above are those that finished)" if interrupted
                                          else ""))
    write_json(complete=not interrupted)
    if args.json:
        print(f"wrote {args.json}")
    return 1 if totals["failed"] or interrupted else 0


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM (what `timeout` sends) stops the check like Ctrl-C: the finished rows are still reported."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rerun_emulated(args: argparse.Namespace) -> int:
    """Run this check again in a fresh process whose environment selects the Triton interpreter and the CUDA
    host emulation from the start (torch imports triton, which reads that choice only once)."""
    import subprocess

    argv = [sys.executable, "-m", "interir", "check", "--emulate", "--device", args.device, "--dtypes", args.dtypes]
    argv += ["--quick"] if args.quick else []
    argv += ["--json", args.json] if args.json else []
    argv += ["-q"] if args.quiet else []
    env = {**os.environ, "TRITON_INTERPRET": "1", "INTERIR_CUDA_EMULATE": "1"}
    return subprocess.call(argv, env=env)
