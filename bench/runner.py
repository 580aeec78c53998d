"""`python -m bench` (or `interir bench`): time the three ops and the whole model on every available backend.

    python -m bench                               # everything, on the GPU when there is one
    python -m bench --device cpu --suite ops      # the op cases only, on the CPU
    python -m bench --smoke --no-save             # tiny shapes, one repetition: every code path in seconds

Writes bench/results/<date>_<device>_<commit>.json (every figure, the device, versions, commit, command)
and a markdown summary beside it, printed last. A case that fails (out of memory, a backend refusing an
input) is recorded with its error and the run goes on; a case that is not run is recorded with the reason.
On the CPU glibc's malloc keeps freed memory for reuse, as in every `interir` command (interir/cpu_malloc.py).
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from bench import machine, model_cases, op_cases
from bench.ceilings import copy_gbps, matmul_tflops, measure_ceilings
from bench.memory import measure_peak, memory_method, training_state_bytes
from bench.report import finite, markdown, save
from bench.timing import Timing, describe_error, time_in_turns
from interir import cpu_malloc, ops

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Timing settings per (suite, device): warm-up calls, seconds of timed calls per method, repeats range.
TIMING = {
    ("ops", "cuda"): dict(warmup=3, budget_s=0.2, min_repeats=10, max_repeats=500),
    ("ops", "cpu"): dict(warmup=1, budget_s=1.0, min_repeats=3, max_repeats=30),
    ("train", "cuda"): dict(warmup=3, budget_s=3.0, min_repeats=5, max_repeats=20),
    ("train", "cpu"): dict(warmup=1, budget_s=10.0, min_repeats=3, max_repeats=5),
    ("infer", "cuda"): dict(warmup=3, budget_s=1.0, min_repeats=5, max_repeats=50),
    ("infer", "cpu"): dict(warmup=1, budget_s=5.0, min_repeats=3, max_repeats=10),
}
SMOKE_TIMING = dict(warmup=1, repeats=1)


class CaseStream:
    """`--jsonl`: one JSON line per finished case, flushed and synced as it is written (no-op without a path)."""

    def __init__(self, path: str | None):
        self._file = open(path, "a", encoding="utf-8") if path else None

    def write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(finite(record), default=str, allow_nan=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class BenchError(ValueError):
    """A user error (bad option, missing device): one line, exit code 1."""


def build_parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Benchmarks of interir's ops and models: every backend, "
                                "forward and forward+backward, JSON + markdown into bench/results/.")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where to run (default: cuda when available, else cpu)")
    p.add_argument("--suite", choices=("ops", "model", "all"), default="all", help="what to run (default: all)")
    p.add_argument("--backends", default=None, metavar="LIST",
                   help=f"comma-separated subset of {','.join(ops.BACKENDS)} (default: every one the device can time; "
                        "on CPU only the reference: Triton there runs only under its interpreter)")
    p.add_argument("--ops", default=",".join(op_cases.OPS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(op_cases.OPS)} (default: all)")
    p.add_argument("--models", default=",".join(model_cases.NETWORKS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(model_cases.NETWORKS)}, each at its default preset or at "
                        "NAME:PRESET (interir:small) (default: all)")
    p.add_argument("--dtypes", default="fp32,bf16", metavar="LIST", help="comma-separated fp32,bf16 (default: both)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes and presets, one repetition: every code path in seconds (CI)")
    p.add_argument("--full-shapes", action="store_true",
                   help="on CPU too, the GPU shapes and cases (no scaling down, no CPU skips)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="the torch.compile model modes: auto = on for cuda, off for cpu (default: auto)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per method (default: as many as fit a per-case time budget)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="folder for the JSON and markdown (default: bench/results)")
    p.add_argument("--no-save", action="store_true", help="print the summary, write no files")
    p.add_argument("--jsonl", default=None, metavar="PATH",
                   help="also append every finished case to PATH as one JSON line, flushed at once (a run that is "
                        "cut short keeps what finished; the first line describes the machine)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _items(value: str) -> list[str]:
    return [v.strip().lower() for v in value.split(",") if v.strip()]


def _csv(value: str, allowed, what: str) -> list[str]:
    items = _items(value)
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise BenchError(f"--{what}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _network_list(value: str) -> list[str]:
    items = _items(value)
    if not items:
        raise BenchError(f"--models: empty; choose from {', '.join(model_cases.NETWORKS)}")
    for item in items:
        try:
            model_cases.parse_network(item)
        except ValueError as exc:
            raise BenchError(f"--models: {exc}") from None
    return list(dict.fromkeys(items))


def backend_status(device: torch.device, requested: list[str] | None) -> dict[str, str | None]:
    """backend → None when it is timed, else why not (the same reason for every case).

    Backends excluded up front are not even imported (on CPU, loading the `cuda` backend's host emulation
    would compile csrc/).
    """
    status: dict[str, str | None] = {}
    for name in ops.BACKENDS:
        if requested is not None and name not in requested:
            status[name] = "not requested (--backends)"
        elif device.type == "cpu" and name == "triton":
            status[name] = ("excluded on CPU: Triton runs there only under its interpreter (TRITON_INTERPRET=1), "
                            "whose timings mean nothing")
        elif device.type == "cpu" and name == "cuda":
            status[name] = "excluded on CPU: the CUDA extension needs an NVIDIA GPU (its host emulation is no timing)"
        elif name == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
            status[name] = "excluded: TRITON_INTERPRET=1 is set, the Triton interpreter's timings mean nothing"
        elif name == "cuda" and os.environ.get("INTERIR_CUDA_EMULATE") == "1":
            status[name] = "excluded: INTERIR_CUDA_EMULATE=1 is set (the CUDA kernels' host emulation)"
        else:
            status[name] = None
    candidates = [name for name, why in status.items() if why is None]
    if candidates:
        loaded = ops.available_backends()
        for name in candidates:
            if loaded[name]:
                status[name] = f"unavailable: {loaded[name]}"
    return status


# ------------------------------------------------------------------------------------------------ ops
def _method_figures(t: Timing, case_bytes: int, case_flops: int, copy: float | None, peak: float | None) -> dict:
    med = t.median_s
    gbps = case_bytes / med / 1e9 if med > 0 else None
    tflops = case_flops / med / 1e12 if med > 0 else None
    return {"median_ms": med * 1e3, "min_ms": t.min_s * 1e3, "repeats": len(t.times_s),
            "first_call_ms": None if t.first_call_s is None else t.first_call_s * 1e3,
            "gbps": gbps, "tflops": tflops, "frac_copy": gbps / copy if copy and gbps else None,
            "frac_matmul": tflops / peak if peak and tflops else None}


def run_op_case(case: op_cases.OpCase, dtype_name: str, direction: str, device: torch.device,
                backends: dict[str, str | None], ceilings: dict, timing: dict) -> dict:
    """One (case, dtype, direction): every method timed in turns; the record of op_cases' figures."""
    dtype = op_cases.DTYPES[dtype_name]
    case_bytes, case_flops = op_cases.bytes_moved(case, direction, dtype), op_cases.flops(case, direction)
    record = {**case.to_dict(), "dtype": dtype_name, "direction": direction, "bytes": case_bytes,
              "flops": case_flops, "methods": {}}
    record.pop("skip")
    if case.skip:
        record["skipped"] = case.skip
        return record
    methods = case.methods(list(backends))
    runnable = [m for m in methods if backends.get(m) is None]
    try:
        inputs = op_cases.make_inputs(case, dtype, device, requires_grad=direction == "fwd+bwd")
        grad = op_cases.output_gradient(case, inputs) if direction == "fwd+bwd" else None
        calls = {m: op_cases.make_call(case, direction, m, inputs, grad) for m in runnable}
    except Exception as exc:  # e.g. the inputs alone do not fit
        record["error"] = describe_error(exc)
        return record
    timings = time_in_turns(calls, device, **timing)
    copy, peak = copy_gbps(ceilings), matmul_tflops(ceilings, dtype_name)
    for m in methods:
        if m not in timings:
            record["methods"][m] = {"skipped": backends[m]}
        elif not timings[m].ok:
            record["methods"][m] = {"error": timings[m].error or "no timed call"}
        else:
            record["methods"][m] = _method_figures(timings[m], case_bytes, case_flops, copy, peak)
            try:  # one more call, alone: the extra memory it needs beyond its inputs
                record["methods"][m]["peak_bytes"] = measure_peak(calls[m], device)["bytes"]
            except Exception as exc:
                record["methods"][m]["memory_error"] = describe_error(exc)
    del calls, inputs, grad
    ref = record["methods"].get("reference", {}).get("median_ms")
    floor = record["methods"].get(op_cases.FLOOR, {}).get("median_ms")
    for m, r in record["methods"].items():
        if "median_ms" in r and m != op_cases.FLOOR:
            r["speedup_vs_reference"] = ref / r["median_ms"] if ref else None
            if case.op == "explainable_conv":
                r["ratio_to_floor"] = r["median_ms"] / floor if floor else None
    return record


def run_ops(args, device: torch.device, backends: dict, ceilings: dict, log) -> dict:
    cases = op_cases.op_cases(device.type, smoke=args.smoke, full_shapes=args.full_shapes, op_names=tuple(args.ops))
    timing = _timing("ops", device, args)
    records = []
    groups = [(c, d, r) for c in cases for d in args.dtypes for r in op_cases.DIRECTIONS]
    for i, (case, dtype_name, direction) in enumerate(groups, 1):
        record = run_op_case(case, dtype_name, direction, device, backends, ceilings, timing)
        records.append(record)
        args.stream.write({"suite": "ops", **record})
        log(f"[ops {i}/{len(groups)}] {case.op} {case.regime} {case.label} {dtype_name} {direction}: "
            + _summary(record))
        _release(device)
    notes = sorted({c.note for c in cases if c.note})
    return {"notes": notes, "memory_method": memory_method(device), "cases": records}


def _summary(record: dict) -> str:
    if record.get("skipped"):
        return "skipped (" + record["skipped"] + ")"
    if record.get("error"):
        return "error (" + record["error"] + ")"
    parts = []
    for m, r in record["methods"].items():
        if "median_ms" in r:
            parts.append(f"{m} {r['median_ms']:.3f} ms")
        elif "error" in r:
            parts.append(f"{m} error")
    return ", ".join(parts) or "nothing timed"


# ------------------------------------------------------------------------------------------------ model
def _compile_reason(args, device: torch.device) -> str | None:
    if args.compile == "off":
        return "torch.compile off (--compile off)"
    if args.compile == "auto" and device.type == "cpu":
        return "CPU: torch.compile is off by default (compiling the training step takes minutes); --compile on runs it"
    return None


def _mode_reason(backend: str, compiled: bool, dtype_name: str, plan, backends: dict, compile_reason) -> str | None:
    if dtype_name == "bf16" and plan.fp32_only:
        return plan.fp32_only
    runs = model_cases.ops_backend(backend)
    if runs is not None and backends.get(runs):
        return f"backend {runs}: {backends[runs]}"
    if compiled and compile_reason:
        return compile_reason
    return None


def run_train(network: str, base, plan, args, device, backends, compile_reason, log) -> list[dict]:
    timing = _timing("train", device, args)
    gen = torch.Generator().manual_seed(1)
    shape = (plan.train_batch, 3, plan.train_size, plan.train_size)
    x, y = torch.rand(shape, generator=gen).to(device), torch.rand(shape, generator=gen).to(device)
    records = []
    for dtype_name in args.dtypes:
        group, steps = [], {}
        for backend, compiled in model_cases.modes(network):
            name = model_cases.mode_name(backend, compiled)
            rec = {"mode": name, "backend": backend, "compiled": compiled, "dtype": dtype_name,
                   "batch": plan.train_batch, "size": plan.train_size}
            group.append(rec)
            reason = _mode_reason(backend, compiled, dtype_name, plan, backends, compile_reason)
            if reason:
                rec["skipped"] = reason
                continue
            try:
                steps[name] = model_cases.make_train_step(base, network, x, y, dtype_name, backend, compiled)
            except Exception as exc:
                rec["error"] = describe_error(exc)
        timings = time_in_turns({k: s.run for k, s in steps.items()}, device, **timing)
        for rec in group:
            t = timings.get(rec["mode"])
            if t is None:
                continue
            if not t.ok:
                rec["error"] = t.error or "no timed step"
                continue
            step = steps[rec["mode"]]
            rec.update(step_ms=t.median_s * 1e3, min_ms=t.min_s * 1e3, repeats=len(t.times_s),
                       first_call_s=t.first_call_s, images_per_s=plan.train_batch / t.median_s)
            try:
                peak = measure_peak(step.run, device)
                state = training_state_bytes(step.model, step.optimizer)
                rec.update(transient_bytes=peak["bytes"], state_bytes=state, peak_bytes=peak["bytes"] + state,
                           memory_method=peak["method"])
            except Exception as exc:
                rec["memory_error"] = describe_error(exc)
        for rec in group:
            log(f"[model] {network} train {rec['mode']} {dtype_name}: " + (
                f"{rec['step_ms']:.1f} ms/step, {rec['images_per_s']:.2f} img/s" if "step_ms" in rec else
                ("skipped" if "skipped" in rec else f"error ({rec.get('error')})")))
        records += group
        del steps, timings
        _release(device)
    return records


def run_inference(network: str, base, static: dict, plan, args, device, backends, log) -> list[dict]:
    timing = _timing("infer", device, args)
    records = []
    try:
        model = copy.deepcopy(base).to(device).eval()
    except Exception as exc:
        return [{"size": s, "dtype": d, "backend": "-", "batch": 1, "error": describe_error(exc)}
                for s in plan.infer_sizes for d in args.dtypes]
    mode_backends = [b for b, compiled in model_cases.modes(network) if not compiled]
    for size in plan.infer_sizes:
        macs = (static.get("macs_all_by_size") or {}).get(str(size))
        for dtype_name in args.dtypes:
            group, calls = [], {}
            x = None
            for backend in mode_backends:
                rec = {"backend": backend, "dtype": dtype_name, "size": size, "batch": 1, "macs_all": macs}
                group.append(rec)
                reason = _mode_reason(backend, False, dtype_name, plan, backends, None)
                if reason is None and plan.max_forward_macs and macs and macs > plan.max_forward_macs:
                    reason = (f"CPU: a forward of {macs / 1e12:.2f} TMAC is over the CPU limit of "
                              f"{plan.max_forward_macs / 1e12:g} TMAC (--full-shapes runs it)")
                if reason:
                    rec["skipped"] = reason
                    continue
                try:
                    if x is None:
                        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2)).to(device)
                    calls[backend] = model_cases.make_inference(model, x, dtype_name, backend)
                except Exception as exc:
                    rec["error"] = describe_error(exc)
            timings = time_in_turns(calls, device, **timing)
            for rec in group:
                t = timings.get(rec["backend"])
                if t is None:
                    continue
                if t.ok:
                    rec.update(latency_ms=t.median_s * 1e3, min_ms=t.min_s * 1e3, repeats=len(t.times_s),
                               first_call_s=t.first_call_s)
                else:
                    rec["error"] = t.error or "no timed forward"
                log(f"[model] {network} inference {rec['backend']} {dtype_name} {size}²: "
                    + (f"{rec['latency_ms']:.1f} ms" if "latency_ms" in rec else f"error ({rec['error']})"))
            records += group
            del calls, x
            _release(device)
    return records


def run_model(args, device: torch.device, backends: dict, log) -> dict:
    plan = model_cases.model_plan(device.type, smoke=args.smoke, full_shapes=args.full_shapes,
                                  networks=tuple(args.models))
    compile_reason = _compile_reason(args, device)
    out = {"plan": {"train_batch": plan.train_batch, "train_size": plan.train_size,
                    "infer_sizes": list(plan.infer_sizes), "max_forward_macs": plan.max_forward_macs,
                    "notes": plan.notes}, "networks": []}
    for network, preset in plan.networks:
        entry: dict = {"network": network, "preset": preset}
        out["networks"].append(entry)
        try:
            base = model_cases.build_network(network, preset)
        except Exception as exc:
            entry["error"] = describe_error(exc)
            continue
        try:
            entry["static"] = model_cases.static_figures(base, plan.infer_sizes)
            log(f"[model] {network} ({preset}): {entry['static']['parameters']:,} parameters, "
                f"{entry['static']['macs_all'] / 1e9:.2f} GMAC at {entry['static']['macs_at']}²")
        except Exception as exc:  # the timings do not depend on it
            entry["static"], entry["static_error"] = {}, describe_error(exc)
        entry["train"] = run_train(network, base, plan, args, device, backends, compile_reason, log)
        args.stream.write({"suite": "train", "network": network, "preset": preset, "records": entry["train"]})
        entry["inference"] = run_inference(network, base, entry["static"], plan, args, device, backends, log)
        args.stream.write({"suite": "infer", "network": network, "preset": preset, "records": entry["inference"]})
        del base
        _release(device)
    return out


# ------------------------------------------------------------------------------------------------ main
def _timing(suite: str, device: torch.device, args) -> dict:
    if args.smoke:
        return dict(SMOKE_TIMING, repeats=args.repeats or 1)
    settings = dict(TIMING[(suite, device.type)])
    if args.repeats is not None:
        settings["repeats"] = args.repeats
    return settings


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Parse `argv`, run the suites, save and print the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "python -m bench"
    args = build_parser(prog).parse_args(argv)
    args.ops = _csv(args.ops, op_cases.OPS, "ops")
    args.models = _network_list(args.models)
    args.dtypes = _csv(args.dtypes, tuple(op_cases.DTYPES), "dtypes")
    requested = _csv(args.backends, ops.BACKENDS, "backends") if args.backends else None
    if args.repeats is not None and args.repeats < 1:
        raise BenchError("--repeats must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise BenchError("--threads must be at least 1")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise BenchError(f"--out {args.out} is a file; give a folder for the results")
    if args.jsonl and not Path(args.jsonl).resolve().parent.is_dir():
        raise BenchError(f"--jsonl {args.jsonl}: its folder does not exist")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    device_type = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device("cuda", torch.cuda.current_device()) if device_type == "cuda" else torch.device("cpu")
    malloc_tuned = cpu_malloc.keep_freed_memory()  # before the first big tensor
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    started = time.time()
    report: dict = {"schema": "interir-bench/1", "started_unix": started,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "command": " ".join([prog, *map(shlex.quote, argv)]), "argv": argv,
                    "options": {k: v for k, v in vars(args).items() if k not in ("out", "quiet")}}
    report.update(machine.describe(device))
    report["backends"] = backend_status(device, requested)
    if requested is not None and args.suite in ("ops", "all") and all(report["backends"][n] for n in requested):
        raise BenchError(f"--backends {args.backends}: none of them can be timed on {device.type} ("
                         + "; ".join(f"{n}: {report['backends'][n]}" for n in requested) + ")")
    report["notes"] = []
    report["malloc"] = {"choice": cpu_malloc.choice(), "tuned_here": malloc_tuned}
    if device.type == "cpu" and cpu_malloc.choice() == "system":
        report["notes"].append(f"CPU timings with glibc's default malloc ({cpu_malloc.ENV_VAR}=system)")
    log(f"bench: {report['device']['name']} ({device}), backends: "
        + ", ".join(b for b, why in report["backends"].items() if why is None))
    args.stream = CaseStream(args.jsonl)
    args.stream.write({"suite": "machine", **{k: report[k] for k in report if k not in ("options", "notes")}})
    report["ceilings"] = measure_ceilings(device, smoke=args.smoke, repeats=1 if args.smoke else args.repeats)
    log("bench: ceilings " + ", ".join(
        [f"copy {report['ceilings'].get('copy', {}).get('gbps', float('nan')):.1f} GB/s"]
        + [f"matmul {k} {v.get('tflops', float('nan')):.3f} TFLOP/s" for k, v in report["ceilings"]["matmul"].items()]))
    gc.collect()
    gc.freeze()  # the objects alive now stay: the many collections between cases then take microseconds
    try:
        if args.suite in ("ops", "all"):
            report["ops"] = run_ops(args, device, report["backends"], report["ceilings"], log)
        if args.suite in ("model", "all"):
            report["model"] = run_model(args, device, report["backends"], log)
    finally:
        gc.unfreeze()
        args.stream.close()
    report["duration_s"] = time.time() - started
    if not args.no_save:
        json_path, md_path = save(report, args.out)
        log(f"bench: wrote {json_path} and {md_path}")
    print(markdown(report), end="", flush=True)
    return 0
