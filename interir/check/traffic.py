"""Global-memory traffic of the modulated-convolution kernels, from their tile shapes (`interir check --static`).

The model counts the elements each kernel's code loads from global memory, summed over its grid, for one
problem (B, Cin, Cout, H, W, k, groups) and one launch config, and divides by what the kernel writes. It is
what the addresses in the code ask for, before any cache: it says how often the kernels go back to memory for
the same activation, which is what the Hopper kernels of docs/gpu.md set out to cut. Taps that fall outside
the image are counted as loads, so on small maps the figures are slightly high.

Per kernel (kernels/modulated_conv.py; Cg = channels per group, ⌈·⌉ = blocks of the tile side):
- conv_fwd, y tile BM pixels × BN out-channels: every tap loads its own shifted BM×BK x tile, so x is read
  k² times for each of the ⌈Cout_g/BN⌉ output-channel blocks; the weight tile once per pixel block.
- conv_dx, dx tile BM pixels × BN in-channels: dy is read k² times for each of the ⌈Cin_g/BN⌉ blocks.
- conv_dwa, one program per (tap, in-channel block, out-channel block, batch chunk): x is read k² times for
  each out-channel block, dy k² times for each in-channel block.
- conv_fwd_tma (kernels/modulated_conv_tma.py), y tile BH×BW pixels × BN out-channels: every tap loads its
  shifted 1×BH×BW×BK box of the channels-last copy (channels padded to BK), so x is still read k² times per
  output-channel block, by asynchronous copies; the copy itself reads x once and writes it once
  (`staging_written_bytes`). conv_dx_tma likewise reads dy k² times per input-channel block, and conv_dwa_tma
  x k² times per out-channel block and dy k² times per in-channel block, as conv_dwa.
"""
from __future__ import annotations

import math

ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
KERNELS = ("_conv_fwd_kernel", "_conv_dx_kernel", "_conv_dwa_kernel", "_conv_fwd_tma_kernel", "_conv_dx_tma_kernel",
           "_conv_dwa_tma_kernel")


def _blocks(n: int, tile: int) -> int:
    return math.ceil(n / tile)


def conv_traffic(kernel: str, tile: dict, shape: dict, element: str) -> dict | None:
    """The traffic of one launch of a modulated-conv kernel, or None for other kernels.

    tile: the launch's BM, BN, BK (and KS); shape: b, cin, cout, h, w, k, groups; element: "fp32", "bf16"
    or "fp16" (the activations' type; the attention is float32, the dW/dA partials float32).
    Returns activation reads per block (how many times each activation element is loaded for one block of
    the other side's channels), loaded bytes per operand, bytes loaded per byte written, and the compulsory
    bytes (every input once) per byte written, for comparison."""
    if kernel not in KERNELS:
        return None
    e = ELEMENT_BYTES[element]
    bm, bn = tile.get("BM", tile.get("BH", 1) * tile.get("BW", 1)), tile["BN"]
    b, cin, cout, k, g = shape["b"], shape["cin"], shape["cout"], shape["k"], shape["groups"]
    hw = shape["h"] * shape["w"]
    kk, cin_g, cout_g = k * k, cin // g, cout // g
    weights = cout * cin_g * kk * e
    attention = b * cin * kk * 4
    staging = 0
    if kernel == "_conv_dwa_tma_kernel":
        from interir.kernels.modulated_conv import _dwa_chunks

        cp, op = _blocks(cin, tile["BK"]) * tile["BK"], _blocks(cout, bn) * bn
        c_blocks, o_blocks = _blocks(cin, tile["BK"]), _blocks(cout, bn)
        other_blocks = o_blocks
        chunks = _dwa_chunks(b, kk * c_blocks * o_blocks)[1]
        loads = {"x": kk * o_blocks * b * hw * cp * e, "dy": kk * c_blocks * b * hw * op * e,
                 "weight": chunks * weights, "attention": o_blocks * attention,
                 "layout_copy": b * (cin + cout) * hw * e}
        staging = b * hw * (cp + op) * e
        written = (chunks * cout * cin * kk + o_blocks * b * cin * kk) * 4
        compulsory = b * (cin + cout) * hw * e + weights + attention
    elif kernel in ("_conv_fwd_tma_kernel", "_conv_dx_tma_kernel"):
        forward = kernel == "_conv_fwd_tma_kernel"
        c_in, c_out = (cin, cout) if forward else (cout, cin)  # the side the boxes read, the side written
        cp = _blocks(c_in, tile["BK"]) * tile["BK"]
        pixel_blocks = _blocks(shape["h"], tile["BH"]) * _blocks(shape["w"], tile["BW"])
        other_blocks = _blocks(c_out, bn)
        attention_loaded = kk * (cin if forward else bn * _blocks(cp, tile["BK"])) * 4
        loads = {"x" if forward else "dy": kk * other_blocks * b * hw * cp * e,
                 "weight": b * pixel_blocks * kk * cp * c_out * e,
                 "attention": b * pixel_blocks * other_blocks * attention_loaded,
                 "layout_copy": b * c_in * hw * e}
        staging = b * hw * cp * e + kk * cp * c_out * e  # the channels-last activations, the tap-major weight
        written = b * c_out * hw * e
        compulsory = b * c_in * hw * e + weights + attention
    elif kernel == "_conv_fwd_kernel":
        pixel_blocks, other_blocks = _blocks(hw, bm), _blocks(cout_g, bn)
        loads = {"x": kk * other_blocks * b * cin * hw * e,
                 "weight": b * pixel_blocks * weights,
                 "attention": b * g * pixel_blocks * other_blocks * kk * cin_g * 4}
        written = b * cout * hw * e
        compulsory = b * cin * hw * e + weights + attention
    elif kernel == "_conv_dx_kernel":
        pixel_blocks, other_blocks = _blocks(hw, bm), _blocks(cin_g, bn)
        loads = {"dy": kk * other_blocks * b * cout * hw * e,
                 "weight": b * pixel_blocks * weights,
                 "attention": b * g * pixel_blocks * other_blocks * kk * _blocks(cout_g, tile["BK"]) * min(bn, cin_g) * 4}
        written = b * cin * hw * e
        compulsory = b * cout * hw * e + weights + attention
    else:
        c_blocks, o_blocks = _blocks(cin_g, bm), _blocks(cout_g, bn)
        other_blocks = o_blocks
        from interir.kernels.modulated_conv import _dwa_chunks

        chunks = _dwa_chunks(b, kk * g * c_blocks * o_blocks)[1]
        loads = {"x": kk * o_blocks * b * cin * hw * e,
                 "dy": kk * c_blocks * b * cout * hw * e,
                 "weight": chunks * weights,  # one tile per program: every weight once per batch chunk
                 "attention": o_blocks * attention}
        written = (chunks * cout * cin_g * kk + o_blocks * b * cin * kk) * 4  # float32 partials of dW and dA
        compulsory = b * (cin + cout) * hw * e + weights + attention
    total = sum(loads.values())
    return {"activation_reads_per_block": kk, "blocks_of_the_other_side": other_blocks,
            "loaded_bytes": loads, "loaded_per_written": round(total / written, 3),
            "compulsory_per_written": round(compulsory / written, 3), "staging_written_bytes": staging}


# The CUDA extension's modulated-conv kernels (csrc/; the tile constants of explainable_conv.cuh, mma_gemm.cuh and
# conv_mma.cuh): (path, pass). Paths: "ffma" (one thread per 8 result channels × pixel), "gemm" (the implicit
# GEMM: a warp per 32×32 tile, operands gathered per tap), "halo" (a warp per 16 channels × 8×16 pixels, the input
# staged once per channel step with its one-pixel halo; 3×3 only). Passes: "fwd", "dx", "dk".
CUDA_KERNELS = tuple((path, kind) for path in ("ffma", "gemm", "halo") for kind in ("fwd", "dx", "dk"))
_FFMA_TILE, _GEMM_TILE, _HALO_BLOCK, _PATCH_H, _PATCH_W = 8, 32, 16, 8, 16


def cuda_conv_traffic(path: str, kind: str, shape: dict, element: str) -> dict:
    """The global-memory traffic of one CUDA-extension convolution pass, as conv_traffic reports a Triton one.

    shape: b, cin, cout, h, w, k, groups. The activation the pass gathers over taps (x for fwd and dK, dy for dx)
    is read `activation_reads_per_block` times for each block of the other side's channels (of
    `blocks_of_the_other_side`); dK's second operand (dy) is read once per block of input channels. Loads of
    taps outside the map count, as in conv_traffic."""
    e = ELEMENT_BYTES[element]
    mma_k = 8 if element == "fp32" else 16  # channels (or pixels) per tensor-core step
    b, cin, cout, k, g = shape["b"], shape["cin"], shape["cout"], shape["k"], shape["groups"]
    h, w = shape["h"], shape["w"]
    hw, kk, cin_g, cout_g = h * w, k * k, cin // g, cout // g
    if path == "halo" and k != 3:
        raise ValueError("the halo tiles are for 3×3 kernels")
    patches = _blocks(h, _PATCH_H) * _blocks(w, _PATCH_W)
    halo_reads = (_PATCH_H + 2) * (_PATCH_W + 2) * patches / hw  # per activation element, per channel block
    if kind in ("fwd", "dx"):
        c_sum, c_res = (cin_g, cout_g) if kind == "fwd" else (cout_g, cin_g)  # summed and result channels
        gathered = b * g * c_sum * hw * e  # the activation read over taps
        if path == "ffma":
            blocks = _blocks(c_res, _FFMA_TILE)
            reads, weight_elements = kk, b * g * blocks * hw * _FFMA_TILE * c_sum * kk
        elif path == "gemm":
            blocks = _blocks(c_res, _GEMM_TILE)
            reads = kk * _blocks(hw, _GEMM_TILE) * _GEMM_TILE / hw
            weight_elements = b * g * blocks * _blocks(hw, _GEMM_TILE) * _GEMM_TILE * c_sum * kk
        else:
            blocks = _blocks(c_res, _HALO_BLOCK)
            reads = halo_reads * _blocks(c_sum, mma_k) * mma_k / c_sum
            weight_elements = b * g * blocks * patches * _HALO_BLOCK * _blocks(c_sum, mma_k) * mma_k * kk
        loads = {"x" if kind == "fwd" else "dy": reads * blocks * gathered,
                 "weight": weight_elements * e, "attention": weight_elements * 4}  # W·A: one of each per element
        written = b * g * c_res * hw * e
        compulsory = gathered + cout * cin_g * kk * e + b * cin * kk * 4
    else:
        x_bytes, dy_bytes = b * cin * hw * e, b * cout * hw * e
        if path == "ffma":  # a block per (b, o, c): the dy plane once, the x plane once per tap
            blocks, reads, dy_reads = cout_g, kk, cin_g
        elif path == "gemm":  # M = Cout/g, N = Cin/g·k², K = pixels
            blocks, reads = _blocks(cout_g, _GEMM_TILE), kk
            dy_reads = _blocks(cin_g * kk, _GEMM_TILE)
        else:
            blocks, reads = _blocks(cout_g, _HALO_BLOCK), halo_reads
            dy_reads = _blocks(cin_g, _HALO_BLOCK) * patches * _PATCH_H * _PATCH_W / hw
        loads = {"x": reads * blocks * x_bytes, "dy": dy_reads * dy_bytes}
        written = b * cout * cin_g * kk * 4  # the float32 per-sample kernel gradient
        compulsory = x_bytes + dy_bytes
    total = sum(loads.values())
    return {"kernel": f"cuda {path} {kind}", "activation_reads_per_block": round(reads, 3),
            "blocks_of_the_other_side": blocks, "loaded_bytes": {n: round(v) for n, v in loads.items()},
            "loaded_per_written": round(total / written, 3), "compulsory_per_written": round(compulsory / written, 3)}


__all__ = ["conv_traffic", "cuda_conv_traffic", "CUDA_KERNELS", "KERNELS", "ELEMENT_BYTES"]
