"""`interir export`: a trained network out of PyTorch, as ONNX or as a torch.export ExportedProgram
(docs/export.md).

    interir export CHECKPOINT model.onnx                 # ONNX (opset 18), dynamic batch, height and width
    interir export CHECKPOINT model.pt2                  # torch.export: torch.export.load("model.pt2").module()
    python -c "from interir.export import export; export(model, 'model.onnx')"

The graph is the reference path of the three ops written as plain PyTorch (`EXPORT_TABLE`, run through
`interir.ops.backends.inline`): the Triton kernels and the CUDA extension are this package's custom ops, which
neither ONNX nor a deployed ExportedProgram can call. Three pieces are rewritten so that one graph serves every
batch and image size, each tested equal to the eager network to float round-off:

- the explainable attention's adaptive pooling (PyTorch's kernel exports as a gather with indices fixed at the
  traced size) is the product R_h·m·R_wᵀ with the pooling matrices built from the symbolic sizes;
- the modulated convolution is a depthwise convolution with one-hot kernels (the k² shifted copies), a scale by
  A and one 1×1 convolution (`modulated_conv`: ONNX's Conv takes no group count that follows the batch size,
  which the reference's batch-in-groups convolution needs);
- the network's reflect padding to its side multiple (`padding_multiple`) happens in `Deployable`, by an index
  gather computed from the symbolic sizes, so the network itself only sees sides that are multiples.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interir.atomic import atomic_path, check_new_file
from interir.errors import InterIRError
from interir.ops import backends
from interir.ops import reference as ref

FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
OPSET = 18  # the newest opset torch's exporter (torch.onnx, dynamo) targets by default; onnxruntime ≥ 1.14 runs it
MIN_SIDE = 8  # the smallest height/width the graphs accept: reflect padding by up to 7 needs a side above it


def pool_matrix(n, k: int, dtype: torch.dtype, device) -> Tensor:
    """k×n adaptive-average-pooling matrix (reference.adaptive_pool_matrix) for a possibly symbolic n:
    bin i covers [⌊i·n/k⌋, ⌈(i+1)·n/k⌉)."""
    i = torch.arange(k, device=device)
    start = (i * n) // k
    end = -((-(i + 1) * n) // k)
    j = torch.arange(n, device=device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def pool_by_matrices(m: Tensor, k: int) -> Tensor:
    """Adaptive average pooling of B×C×H×W to k×k as R_h·m·R_wᵀ, the matrices built from the (possibly
    symbolic) sizes: a traced or compiled graph does not specialise on H and W."""
    return pool_matrix(m.shape[-2], k, m.dtype, m.device) @ m @ pool_matrix(m.shape[-1], k, m.dtype, m.device).t()


def explainable_attention(x: Tensor, theta: Tensor, kernel_size: int, tau: float = 0.5) -> Tensor:
    """reference.explainable_attention, forward only, pooling by matrices: B×Cin×H×W → B×Cin×k×k."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    mask = ((x.to(acc) - theta.to(acc)) / tau > 0).to(acc)
    k = kernel_size
    pooled = pool_by_matrices(mask, k)
    b, c = x.shape[:2]
    return (torch.softmax(pooled.reshape(b, c, k * k), dim=-1) * k * k).reshape(b, c, k, k)


def modulated_conv(x: Tensor, weight: Tensor, bias: Tensor | None, attn: Tensor, groups: int = 1) -> Tensor:
    """reference.modulated_conv in three graph nodes: the k² shifted copies of every channel (a depthwise
    convolution with one-hot kernels, exact), scaled by A, then one 1×1 convolution with the weight reshaped.
    The reference folds the batch into the groups of one convolution, a group count that follows the batch
    size, which ONNX's Conv cannot take (its `group` is a constant).
    x: B×Cin×H×W, weight: Cout×Cin/groups×k×k, attn: B×Cin×k×k → B×Cout×H×W."""
    b, cin = x.shape[0], x.shape[1]
    cout, cin_g, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    one_hot = torch.eye(k * k, dtype=x.dtype, device=x.device).reshape(k * k, 1, k, k).repeat(cin, 1, 1, 1)
    taps = F.conv2d(x, one_hot, padding=k // 2, groups=cin)  # channel c·k² + t: x[c] shifted by tap t
    taps = taps * attn.to(x.dtype).reshape(b, cin * k * k, 1, 1)
    return F.conv2d(taps, weight.reshape(cout, cin_g * k * k, 1, 1), bias, groups=groups)


# The ops as an exported graph computes them (interir.ops.backends.inline): the reference, pooling rewritten.
EXPORT_TABLE = {
    "explainable_attention": explainable_attention,
    "modulated_conv": modulated_conv,
    "kron_apply": ref.kron_apply,
    "kron_step": ref.kron_step,
}


def reflect_pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad B×C×H×W at the bottom/right to multiples of `multiple` by an index gather whose indices
    follow the (possibly symbolic) sides; equals F.pad(..., mode="reflect") for sides ≥ `multiple`."""
    for dim in (2, 3):
        n = x.shape[dim]
        j = torch.arange((n + multiple - 1) // multiple * multiple, device=x.device)
        x = x.index_select(dim, torch.where(j < n, j, 2 * (n - 1) - j))
    return x


class Deployable(nn.Module):
    """A restoration network for export: any B×3×H×W (H, W ≥ MIN_SIDE) in, the network's output out, with the
    padding done in-graph (module doc) and the input checks of eager use left out (they read tensor values)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.multiple = int(getattr(net, "padding_multiple", 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        y = self.net(reflect_pad_to_multiple(x, self.multiple))
        # crop by gathers, not slices: a slice makes the trace branch on whether the side was already a multiple
        return y.index_select(2, torch.arange(h, device=y.device)).index_select(3, torch.arange(w, device=y.device))


@contextlib.contextmanager
def _prepared(net: nn.Module):
    """`net` wrapped for tracing, its input checks (which read tensor values) off for the block only."""
    checks = getattr(net, "validate_inputs", None)
    if checks is not None:
        net.validate_inputs = False
    try:
        yield Deployable(net.float().eval()).eval()
    finally:
        if checks is not None:
            net.validate_inputs = checks


def _example_and_dims(multiple: int):
    side = max(4 * multiple, 32)
    example = torch.rand(2, 3, side + 3, side + 5)  # odd sides: the trace must not specialise on a multiple
    dims = {"x": {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    return example, dims


def export_program(net: nn.Module) -> torch.export.ExportedProgram:
    """The network as an ExportedProgram with dynamic batch, height and width (float32, eval mode)."""
    with _prepared(net) as model, torch.no_grad(), backends.inline(EXPORT_TABLE):
        example, dims = _example_and_dims(model.multiple)
        return torch.export.export(model, (example,), dynamic_shapes=dims, strict=False)


def export(net: nn.Module, path: str | Path, *, opset: int = OPSET) -> Path:
    """Write `net` to `path` (.onnx or .pt2, module doc), atomically. Returns the path."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InterIRError(f"{path}: the file name must end in {' or '.join(FORMATS)}")
    program = export_program(net)
    with atomic_path(path, ".pt2" if kind == "pt2" else ".tmp") as tmp:
        if kind == "pt2":
            torch.export.save(program, str(tmp))
        else:
            if importlib.util.find_spec("onnxscript") is None:  # torch's ONNX exporter needs it
                raise InterIRError("ONNX export needs onnx and onnxscript: pip install -e .[export]")
            # optimize=False: onnxscript's rewriter took 3/4 of a 7-minute export of the `tiny` network and
            # changes nothing onnxruntime does not do itself when it loads the graph
            onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=["image"],
                                             output_names=["restored"], optimize=False, verbose=False)
            for node in onnx_program.model.graph.all_nodes():
                node.metadata_props.clear()  # the exporter's per-node stack traces: more bytes than the weights
            onnx_program.save(str(tmp))
            made = _onnx_opset(tmp)
            if made != opset:  # the exporter falls back to its own opset when converting fails
                raise InterIRError(f"torch's ONNX exporter could not make opset {opset} (it made {made}); nothing "
                                   f"was written; try --opset {OPSET}")
    return path


def _onnx_opset(path: Path) -> int | None:
    """The default-domain opset an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def max_opset() -> int | None:
    """The newest opset the installed onnx package knows (None without onnx)."""
    try:
        import onnx
    except ImportError:
        return None
    return onnx.defs.onnx_opset_version()


def load_exported(path: str | Path):
    """A function running an exported file on B×3×H×W float32 CPU tensors: onnxruntime for .onnx,
    torch.export.load(...).module() for .pt2."""
    path = Path(path)
    if FORMATS.get(path.suffix.lower()) == "pt2":
        module = torch.export.load(str(path)).module()

        def run_program(x: Tensor) -> Tensor:
            with torch.no_grad():
                return module(x)
        return run_program
    try:
        import onnxruntime
    except ImportError:
        raise InterIRError("checking an ONNX file needs onnxruntime: pip install -e .[export]") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its constant folder warns about every CastLike it skips
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run_onnx(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0])
    return run_onnx


def parity(net: nn.Module, path: str | Path, sizes=((61, 83), (96, 128))) -> list[dict]:
    """Max |exported − eager| at each H×W of `sizes` (random images, seed 0), with the eager output's range."""
    net = net.float().eval()
    run_file = load_exported(path)
    g = torch.Generator().manual_seed(0)
    rows = []
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad(), backends.use_backend("reference"):
            want = net(x)
        got = run_file(x)
        if got.shape != want.shape:
            raise InterIRError(f"{path}: output shape {tuple(got.shape)} at {h}×{w}, expected {tuple(want.shape)}")
        rows.append({"size": f"{h}x{w}", "max_abs_diff": float((got - want).abs().max()),
                     "output_range": float(want.abs().max())})
    return rows


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="weights file or experiment folder (`shipped`: the shipped model)")
    parser.add_argument("out", help="output file: .onnx (ONNX, opset 18) or .pt2 (torch.export)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}; at least 18)")
    parser.add_argument("--check", action="store_true",
                        help="run the exported file at two sizes (onnxruntime or torch) against the eager network")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from interir.checkpoint import load_model

    out = Path(args.out)
    if FORMATS.get(out.suffix.lower()) is None:
        raise InterIRError(f"{out}: the file name must end in {' or '.join(FORMATS)}")
    newest = max_opset()
    if args.opset < 18 or (newest is not None and args.opset > newest):
        top = f" and at most {newest} (the installed onnx)" if newest is not None else ""
        raise InterIRError(f"--opset must be at least 18 (torch's exporter){top}, got {args.opset}")
    if not out.parent.is_dir():
        raise InterIRError(f"folder {out.parent} does not exist")
    check_new_file(out, "output", overwrite=args.overwrite)
    net, _ = load_model(None if args.checkpoint == "shipped" else args.checkpoint)
    start = time.perf_counter()
    export(net, out, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    if args.check:
        for row in parity(net, out):
            print(f"  {row['size']}: max |exported − eager| {row['max_abs_diff']:.2e} "
                  f"(outputs up to {row['output_range']:.2f})")
    return 0


__all__ = ["export", "export_program", "Deployable", "EXPORT_TABLE", "parity", "load_exported", "pool_matrix", "pool_by_matrices"]
