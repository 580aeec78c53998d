"""`interir <command>`: one sub-command per module, imported only when that command runs.

Each command module exposes `add_arguments(parser)` and `run(args) -> int` (the exit code).
Errors that are the user's to fix (InterIRError, OSError, ValueError) print one line and exit non-zero;
`--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("interir.demo", "degrade a photo, restore it with the shipped model, show the gain and a picture"),
    "info": ("interir.profile", "parameters, MACs (two ways) and CPU latency of a preset"),
    "synth": ("interir.data.synth", "build a multi-degradation test set from a folder of clean images"),
    "prepare": ("interir.prepare", "put a downloaded benchmark (deraining, SOTS, denoising) into the paired layout"),
    "train": ("interir.train", "train a model from a YAML experiment (single process or torchrun)"),
    "eval": ("interir.evaluate", "Table-1 style PSNR/SSIM of one or more checkpoints per degradation combination"),
    "restore": ("interir.infer", "restore image files or folders (tiled for large images)"),
    "pack": ("interir.pack", "write a checkpoint's weights as a small file: int8 kernels (half of float16) or float16"),
    "export": ("interir.export", "write a trained network as ONNX (.onnx) or a torch.export program (.pt2)"),
    "explain": ("interir.explain", "interpretability views: stages, explainable-conv maps, step sizes, t-SNE"),
    "check": ("interir.check", "prove every ops backend of this device against the float64 reference (--static: "
                               "compile report for GPU targets, no GPU needed)"),
}
# Commands whose program parses its own arguments: everything after the name is passed on as it is. They live
# outside the installed package (a source checkout's bench/), so they are imported only when run.
FORWARDED: dict[str, tuple[str, str]] = {
    "bench": ("bench.runner", "benchmarks of the ops and models on every backend (python -m bench; "
              "`interir bench --help` for its options)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interir", description="InterIR image restoration toolkit")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            add_arguments = importlib.import_module(module).add_arguments
        except ModuleNotFoundError as exc:  # only a command module absent from this installation is left out
            if exc.name != module:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        add_arguments(p)
    for name, (_, help_text) in FORWARDED.items():
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=False, allow_abbrev=False)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def _forwarded_main(name: str):
    """The `main(argv, prog=...)` of a forwarded command; a one-line InterIRError when it is not installed."""
    from interir.errors import InterIRError

    module = FORWARDED[name][0]
    package = module.split(".")[0]
    root = Path(__file__).resolve().parents[1]
    for retry in (False, True):
        try:
            return importlib.import_module(module).main
        except ModuleNotFoundError as exc:
            if exc.name not in (module, package):
                raise  # something the command itself imports is missing: its own message says what
        # a source checkout used from another folder: the package sits beside interir/
        if retry or not (root / package / "__init__.py").is_file() or str(root) in sys.path:
            break
        sys.path.append(str(root))
    raise InterIRError(f"'{name}' needs the {package}/ folder of a source checkout of interir, which this "
                       f"installation does not have; run it from a clone of the repository (python -m {package})")


def _version() -> str:
    from interir import __version__

    return f"interir {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if rest and args.command not in FORWARDED:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        from interir import cpu_kernels, cpu_malloc, fast_paths

        fast_paths.enabled()  # a bad INTERIR_FAST_PATHS is a one-line error before any work
        cpu_kernels.mode()  # and so is a bad INTERIR_CPU_KERNELS
        cpu_malloc.keep_freed_memory()  # freed feature maps stay in the heap for the next layer (its doc)
        if args.command in FORWARDED:
            return int(_forwarded_main(args.command)(rest, prog=f"interir {args.command}") or 0)
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interir: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:  # InterIRError is a ValueError
        if getattr(args, "debug", False):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"interir {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
