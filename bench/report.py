"""A run's record: JSON (every figure) and a markdown summary, written side by side into bench/results/."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from interir.atomic import atomic_write_text

from bench.machine import device_slug


def file_stem(report: dict) -> str:
    """<date>_<device-slug>_<commit-short>, plus _smoke for smoke runs."""
    date = time.strftime("%Y-%m-%d", time.gmtime(report["started_unix"]))
    commit = (report["git"].get("commit") or "nogit")[:7]
    stem = f"{date}_{device_slug(report['device'])}_{commit}"
    return stem + ("_smoke" if report["options"].get("smoke") else "")


def finite(value):
    """`value` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write <stem>.json and <stem>.md atomically into `out_dir` (never over an earlier run: _2, _3, …)."""
    out_dir = Path(out_dir)
    stem = file_stem(report)
    candidate, n = stem, 1
    while (out_dir / f"{candidate}.json").exists() or (out_dir / f"{candidate}.md").exists():
        n += 1
        candidate = f"{stem}_{n}"
    json_path, md_path = out_dir / f"{candidate}.json", out_dir / f"{candidate}.md"
    atomic_write_text(json_path, json.dumps(finite(report), indent=1, allow_nan=False) + "\n")
    atomic_write_text(md_path, markdown(report))
    return json_path, md_path


# ------------------------------------------------------------------------------------------------ markdown
def fmt(value, digits: int = 3) -> str:
    """A number with about `digits` significant digits and no exponent; '—' for missing ones."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _giga(n) -> str:
    return "—" if n is None else f"{n / 1e9:,.2f} G"


def _mib(n) -> str:
    return "—" if n is None else fmt(n / 2**20)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _header(report: dict) -> list[str]:
    dev, ver, git = report["device"], report["versions"], report["git"]
    commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
    lines = [f"# interir benchmarks: {dev['name']}", "",
             f"- run: {report['created']}, {report['duration_s']:.0f} s, `{report['command']}`",
             f"- commit {commit}; python {ver['python']}, torch {ver['torch']}, triton {ver['triton']}, "
             f"CUDA {ver['cuda']}; {dev['cpu_count']} CPUs, torch threads: {dev['threads']}"]
    c = report.get("ceilings") or {}
    if c:
        mm = c.get("matmul", {})
        parts = [f"copy {fmt(c.get('copy', {}).get('gbps'))} GB/s"]
        parts += [f"matmul {k} {fmt(v.get('tflops'))} TFLOP/s (n = {v.get('n')})" for k, v in mm.items()]
        notes = f" ({'; '.join(c['notes'])})" if c.get("notes") else ""
        lines.append("- measured ceilings: " + "; ".join(parts) + notes)
    used = [b for b, why in report["backends"].items() if why is None]
    lines.append(f"- backends timed: {', '.join(used) or 'none'}")
    lines += [f"- {b} not timed: {why}" for b, why in report["backends"].items() if why is not None]
    lines += [f"- {note}" for note in report.get("notes", [])]
    return lines


def _ops_section(report: dict, problems: list) -> list[str]:
    cases = report.get("ops", {}).get("cases", [])
    if not cases:
        return []
    rows = []
    for case in cases:
        shape = "×".join(map(str, case["shape"]))
        where = f"{case['op']} {case['regime']} {shape} {case['dtype']} {case['direction']}"
        if case.get("skipped") or case.get("error"):
            kind = "skipped" if case.get("skipped") else "error"
            problems.append((kind, case[kind], where))
            continue
        for method, r in case["methods"].items():
            if "skipped" in r:
                if method in report["backends"] and report["backends"][method] is not None:
                    continue  # a backend excluded for the whole run is said once, in the header
                problems.append(("skipped", r["skipped"], f"{where} {method}"))
                continue
            if "error" in r:
                problems.append(("error", r["error"], f"{where} {method}"))
                continue
            name = "floor (conv2d)" if method == "floor" else method
            rows.append([case["op"], case["regime"], shape, case["dtype"], case["direction"],
                         name, fmt(r["median_ms"]), fmt(r.get("speedup_vs_reference")), fmt(r.get("gbps")),
                         fmt(r.get("tflops")), _pct(r.get("frac_copy")), _pct(r.get("frac_matmul")),
                         fmt(r.get("ratio_to_floor")), _mib(r.get("peak_bytes"))])
    header = ["op", "case", "shape B×C×H×W", "dtype", "pass", "method", "median ms", "× ref", "GB/s", "TFLOP/s",
              "% copy", "% matmul", "÷ floor", "peak MiB"]
    return ["", "## Ops", "",
            "× ref: speed-up over the reference backend; GB/s and TFLOP/s from the minimum bytes and useful flops "
            "(bench/op_cases.py); % of the measured ceilings; ÷ floor: time over a plain shared-weight conv of the "
            f"same shape; peak MiB: memory one call needs beyond its inputs ({report['ops'].get('memory_method')}).",
            ""] + _table(header, rows)


def _problem(report: dict, record: dict, where: str, problems: list) -> bool:
    """Note a skipped or failed model record (unless its backend is excluded for the whole run); True if it is one."""
    if "skipped" in record:
        if report["backends"].get(record.get("backend")) is None:
            problems.append(("skipped", record["skipped"], where))
        return True
    if "error" in record:
        problems.append(("error", record["error"], where))
        return True
    return False


def _model_section(report: dict, problems: list) -> list[str]:
    model = report.get("model")
    if not model:
        return []
    lines = ["", "## Model"]
    lines += [f"- {note}" for note in model.get("plan", {}).get("notes", [])]
    size_rows, train_rows, infer_rows = [], [], []
    for net in model["networks"]:
        title = f"{net['network']} ({net['preset']})"
        if net.get("error"):
            problems.append(("error", net["error"], title))
            continue
        if net.get("static_error"):
            problems.append(("error", net["static_error"], f"{title} parameters and MACs"))
        s = net.get("static") or {}
        if s:
            size_rows.append([title, fmt(s["parameters"]), _giga(s["macs_all"]), _giga(s["macs_hooks"])])
        memory_method = None
        for r in net.get("train", []):
            if _problem(report, r, f"{title} train {r['mode']} {r['dtype']}", problems):
                continue
            memory_method = r.get("memory_method") or memory_method
            train_rows.append([title, r["mode"], r["dtype"], f"{r['batch']}×{r['size']}²", fmt(r["step_ms"]),
                               fmt(r["images_per_s"]), _mib(r.get("peak_bytes")), fmt(r.get("first_call_s"))])
        for r in net.get("inference", []):
            if _problem(report, r, f"{title} inference {r['backend']} {r['dtype']} {r['size']}²", problems):
                continue
            infer_rows.append([title, r["backend"], r["dtype"], f"{r['size']}²", fmt(r["latency_ms"]),
                               _giga(r.get("macs_all"))])
    if size_rows:
        lines += ["", "### Size (one image, " + f"{model['networks'][0].get('static', {}).get('macs_at', 256)}²)", ""]
        lines += _table(["network", "parameters", "MACs, all products", "MACs, module hooks"], size_rows)
    if train_rows:
        lines += ["", "### Training step", "",
                  "forward + loss + backward + clipping + Adam; peak MiB = the step's extra peak memory + "
                  f"parameters, gradients and optimizer state ({memory_method})", ""]
        lines += _table(["network", "mode", "dtype", "batch×size", "step ms", "images/s", "peak MiB", "first call s"],
                        train_rows)
    if infer_rows:
        lines += ["", "### Inference latency (batch 1, eager)", ""]
        lines += _table(["network", "backend", "dtype", "size", "median ms", "MACs"], infer_rows)
    return lines


def markdown(report: dict) -> str:
    """The summary: header, op table, model tables, then everything skipped or failed with its reason."""
    problems: list[tuple[str, str, str]] = []  # (skipped | error, reason, which case)
    lines = _header(report) + _ops_section(report, problems) + _model_section(report, problems)
    if problems:
        grouped: dict[tuple[str, str], list[str]] = {}
        for kind, reason, where in problems:
            grouped.setdefault((kind, reason), []).append(where)
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- {kind}: {reason} — {'; '.join(where)}" for (kind, reason), where in grouped.items()]
    return "\n".join(lines) + "\n"
