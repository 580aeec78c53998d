"""Image files ↔ float32 C×H×W tensors in [0, 1] (PNG, JPEG, TIFF, BMP, WebP; 8/16-bit; grey/RGB/RGBA).

    img = read_image("a.png")                   # 3×H×W float32 (grey repeated, alpha dropped)
    img, bits = load_image("a.tif", channels=None)  # native channels (1, 2, 3 or 4) and bit depth (8 or 16)
    write_image("out/b.png", img, bits=16)      # atomic: temp file in the same folder, then os.replace

Pillow reads and writes everything except 16-bit colour (RGB/RGBA/grey+alpha), which it truncates to 8 bits:
those PNGs go through the small numpy PNG codec below, and 16-bit colour TIFFs through a minimal baseline
TIFF reader/writer (strips, uncompressed or deflate, horizontal predictor). Every failure to read is one
InterIRError naming the file.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from interir.atomic import atomic_path
from interir.errors import InterIRError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
            ".webp": "WEBP"}


def natural_key(name: str) -> list:
    """Sort key that orders 'img2' before 'img10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (by extension) directly in `folder`, in natural order; hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InterIRError(f"not a folder: {folder}")
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


# ------------------------------------------------------------------------------------------- reading


def load_image(path: str | os.PathLike, channels: int | None = 3) -> tuple[torch.Tensor, int]:
    """Read an image as float32 C×H×W in [0, 1] and its bit depth (8 or 16).

    channels=3: grey is repeated to RGB, alpha is dropped. channels=None: the file's own channels
    (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA). EXIF orientation is applied.
    """
    path = Path(path)
    if channels not in (None, 3):
        raise ValueError("channels must be 3 or None")
    try:
        arr = _read_array(path)
    except InterIRError:
        raise
    except FileNotFoundError:
        raise InterIRError(f"cannot read image {path}: no such file") from None
    except Exception as exc:  # Pillow raises many types for broken files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InterIRError(f"cannot read image {path}: {reason}") from None
    bits = 16 if arr.dtype == np.uint16 else 8
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels == 3:
        arr = arr[:, :, :3] if arr.shape[2] >= 3 else arr[:, :, :1]
    # One float32 buffer: planar integers first (a quarter or half of its size), then scaled in place. The values
    # are those of arr.astype(np.float32) / 255.0 (or / 65535.0), bit for bit.
    planar = np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32)
    del arr
    np.divide(planar, np.float32(65535.0 if bits == 16 else 255.0), out=planar)
    img = torch.from_numpy(planar)
    if channels == 3 and img.shape[0] == 1:
        img = img.expand(3, -1, -1).contiguous()
    return img, bits


def read_image(path: str | os.PathLike, channels: int | None = 3) -> torch.Tensor:
    """Read an image as float32 C×H×W in [0, 1] (see load_image)."""
    return load_image(path, channels)[0]


def _read_array(path: Path) -> np.ndarray:
    """H×W or H×W×C uint8/uint16 array of the file's own channels, EXIF orientation applied.

    Refused, each with a reason: more pixels than Pillow's decompression-bomb limit (2 × Image.MAX_IMAGE_PIXELS),
    several frames or pages (GIF/APNG/WebP animations, multi-page TIFF; a camera JPEG's embedded previews are
    ignored), floating-point pixels, and colour models other than grey/RGB at 16 bits (e.g. CMYK).
    """
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:8] == _PNG_SIG and len(head) >= 26 and head[24] == 16 and head[25] in (2, 4, 6):
        arr, orientation = _read_png16(path)
        return _orient(arr, orientation)
    if head[:4] in (b"II*\0", b"MM\0*"):
        tags, _, pages = _tiff_tags(path.read_bytes(), path)
        if tags.get(258, (8,))[0] == 16 and tags.get(277, (1,))[0] > 1:
            _check_frames(path, pages)
            arr = _read_tiff16(path)
            return _orient(arr, tags.get(274, (1,))[0])
    with Image.open(path) as im:  # reads the header; Pillow's decompression-bomb check runs here
        if im.format not in ("JPEG", "MPO"):  # a camera JPEG's extra frames are previews of the same photo
            _check_frames(path, getattr(im, "n_frames", 1))
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            return np.asarray(im).astype(np.uint16)
        if mode == "I":
            a = np.asarray(im)
            if a.min() < 0 or a.max() > 65535:
                raise InterIRError(f"cannot read image {path}: 32-bit integer values outside 0–65535")
            return a.astype(np.uint16)
        if mode == "F":
            raise InterIRError(f"cannot read image {path}: floating-point images are not supported")
        if mode == "1":
            im = im.convert("L")
        elif mode in ("P", "PA"):
            im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        elif mode == "La":
            im = im.convert("LA")
        elif mode == "RGBa":
            im = im.convert("RGBA")
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            im = im.convert("RGB")
        return np.asarray(im).copy()


def _check_frames(path: Path, frames: int) -> None:
    if frames > 1:
        raise InterIRError(f"cannot read image {path}: it holds {frames} frames or pages (an animation or a "
                           f"multi-page file); save the frame you want as an image of its own")


def _check_pixels(path: Path, width: int, height: int) -> None:
    """Pillow's decompression-bomb rule for the readers below that bypass Pillow: refuse more than twice
    Image.MAX_IMAGE_PIXELS (None disables it, as in Pillow)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > 2 * limit:
        raise InterIRError(f"cannot read image {path}: {width}×{height} = {width * height:,} pixels exceeds the "
                           f"decompression-bomb limit of {2 * limit:,} (PIL.Image.MAX_IMAGE_PIXELS × 2)")
    if width < 1 or height < 1:
        raise InterIRError(f"cannot read image {path}: empty image ({width}×{height})")


def _inflate(path: Path, data: bytes, size: int) -> bytes:
    """zlib-decompress at most `size` bytes (a stream that would expand further is not decoded further)."""
    try:
        return zlib.decompressobj().decompress(data, size)
    except zlib.error as exc:
        raise InterIRError(f"cannot read image {path}: corrupt compressed data ({exc})") from None


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to an H×W(×C) array as Pillow's ImageOps.exif_transpose does."""
    t = (1, 0) + tuple(range(2, arr.ndim))
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.transpose(t),
           6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a.transpose(t), 2), 8: lambda a: np.rot90(a, 1)}
    op = ops.get(int(orientation))
    return np.ascontiguousarray(op(arr)) if op else arr


# ------------------------------------------------------------------------------------------- writing


_QUANTIZE_BAND_VALUES = 1 << 20  # float values quantize() converts at a time


def quantize(img: torch.Tensor, bits: int = 8) -> np.ndarray:
    """C×H×W (or H×W) float in [0, 1] → H×W×C uint8/uint16: clamp, scale, round (as BasicSR's tensor2img)."""
    if bits not in (8, 16):
        raise ValueError("bits must be 8 or 16")
    top = 255.0 if bits == 8 else 65535.0
    t = img.detach()
    t = t[None] if t.dim() == 2 else t
    c, h = t.shape[0], t.shape[1]
    out = np.empty((h, t.shape[2], c), np.uint8 if bits == 8 else np.uint16)
    # In bands of rows, so that a 12-megapixel photo needs no full-size float temporaries (docs/performance.md).
    step = max(1, _QUANTIZE_BAND_VALUES // max(1, t.shape[2] * c))
    for r0 in range(0, h, step):
        band = t[:, r0:r0 + step].to("cpu", torch.float32).clamp(0, 1).mul_(top).round_()
        out[r0:r0 + step] = band.permute(1, 2, 0).numpy()
    return out


def write_image(path: str | os.PathLike, img, bits: int = 8, quality: int = 95) -> Path:
    """Write an image atomically (temp file in the same folder, then os.replace); parents are created.

    img: float tensor C×H×W / H×W in [0, 1] (C = 1, 2, 3, 4), a uint8/uint16 numpy array H×W(×C), or a
    PIL image (saved as it is, e.g. a palette image). bits: 8 or 16 for tensors (arrays keep their dtype).
    JPEG, BMP and WebP are 8-bit only.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InterIRError(f"cannot write {path}: unknown image extension (use {', '.join(IMAGE_EXTENSIONS)})")
    if isinstance(img, Image.Image):
        return _atomic(path, lambda f: img.save(f, format=fmt, optimize=fmt == "PNG"))
    arr = quantize(img, bits) if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InterIRError(f"cannot write {path}: arrays must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise InterIRError(f"cannot write {path}: unsupported image shape {arr.shape}")
    if arr.dtype == np.uint16 and fmt not in ("PNG", "TIFF"):
        raise InterIRError(f"cannot write {path}: {fmt} has no 16-bit mode; use .png or .tif")
    if fmt == "JPEG" and arr.ndim == 3 and arr.shape[2] in (2, 4):
        raise InterIRError(f"cannot write {path}: JPEG has no alpha channel; use .png")

    def save(f):
        if arr.dtype == np.uint16 and fmt == "PNG":
            f.write(_encode_png16(arr))
        elif arr.dtype == np.uint16 and arr.ndim == 3:
            f.write(_encode_tiff16(arr))
        elif arr.dtype == np.uint16:
            Image.fromarray(arr.astype("<u2")).save(f, format=fmt)
        else:
            opts = {"quality": quality, "subsampling": 0} if fmt == "JPEG" else {}
            Image.fromarray(arr).save(f, format=fmt, **opts)

    return _atomic(path, save)


def _atomic(path: Path, save) -> Path:
    """Run save(file) on a temporary file next to `path`, then move it into place (interir.atomic)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            save(f)
    return path


# --------------------------------------------------------------------------- 16-bit colour PNG codec

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _encode_png16(arr: np.ndarray) -> bytes:
    """uint16 H×W(×C) → PNG bytes (non-interlaced, every row filtered with 'Sub')."""
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = arr.astype(">u2").reshape(h, w, c).view(np.uint8).reshape(h, w, 2 * c)
    sub = raw.copy()
    sub[:, 1:] = raw[:, 1:] - raw[:, :-1]  # uint8 wrap-around = mod 256
    rows = np.concatenate([np.ones((h, 1), np.uint8), sub.reshape(h, -1)], axis=1)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    return (_PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _png_chunk(b"IEND", b""))


def _read_png16(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit colour PNG: (H×W×C uint16 array, EXIF orientation from its eXIf chunk, 1 when absent)."""
    data = path.read_bytes()
    if data[:8] != _PNG_SIG:
        raise InterIRError(f"cannot read image {path}: not a PNG file")
    pos, idat, ihdr, exif = 8, [], None, None
    while pos + 8 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if len(body) != n:
            raise InterIRError(f"cannot read image {path}: truncated PNG")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
            _check_pixels(path, ihdr[0], ihdr[1])
        elif kind == b"acTL":
            _check_frames(path, struct.unpack(">I", body[:4])[0])
        elif kind == b"eXIf":
            exif = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    if ihdr is None or not idat:
        raise InterIRError(f"cannot read image {path}: PNG without IHDR or IDAT")
    w, h, depth, ctype, _, _, interlace = ihdr
    if interlace:
        raise InterIRError(f"cannot read image {path}: interlaced 16-bit colour PNG is not supported")
    c = _PNG_CHANNELS[ctype]
    bpp = 2 * c
    raw = np.frombuffer(_inflate(path, b"".join(idat), h * (1 + w * bpp)), np.uint8)
    if raw.size < h * (1 + w * bpp):
        raise InterIRError(f"cannot read image {path}: truncated PNG data")
    raw = raw.reshape(h, 1 + w * bpp)
    filters = raw[:, 0].astype(np.int64)
    if filters.max(initial=0) > 4:
        raise InterIRError(f"cannot read image {path}: bad PNG filter type")
    out = _png_unfilter(raw[:, 1:].reshape(h, w, bpp), filters)
    arr = out.reshape(h, w, bpp).view(">u2").reshape(h, w, c).astype(np.uint16)
    return (arr[..., 0] if c == 1 else arr), _exif_orientation(exif)


def _exif_orientation(exif: bytes | None) -> int:
    """The Orientation tag (0x0112) of raw EXIF bytes, 1 when absent or unreadable."""
    if not exif:
        return 1
    try:
        info = Image.Exif()
        info.load(exif if exif.startswith(b"Exif") else b"Exif\x00\x00" + exif)
        return int(info.get(0x0112, 1))
    except Exception:  # a broken EXIF block leaves the image as stored
        return 1


def _png_unfilter(f: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Undo PNG row filters (h×w×bpp bytes). Each pixel depends on its left, upper and upper-left
    neighbours, so pixels on one anti-diagonal y + x = d are independent: sweep d, vectorised along it."""
    h, w, bpp = f.shape
    if not filters.any():
        return f.copy()
    r = np.zeros((h + 1, w + 1, bpp), np.int32)  # reconstructed, with a zero row on top and column on left
    fi = f.astype(np.int32)
    for d in range(h + w - 1):
        ys = np.arange(max(0, d - w + 1), min(d, h - 1) + 1)
        xs = d - ys
        a, b, c = r[ys + 1, xs], r[ys, xs + 1], r[ys, xs]  # left, up, upper-left
        ft = filters[ys][:, None]
        pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([ft == 1, ft == 2, ft == 3, ft == 4], [a, b, (a + b) >> 1, paeth], 0)
        r[ys + 1, xs + 1] = (fi[ys, xs] + pred) & 0xFF
    return r[1:, 1:].astype(np.uint8)


# ------------------------------------------------------------------------- 16-bit colour TIFF codec

_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}


def _tiff_tags(data: bytes, path: Path) -> tuple[dict[int, tuple], str, int]:
    """Integer tags of the first IFD of a classic TIFF, its byte-order prefix and its number of IFDs (pages)."""
    end = {b"II": "<", b"MM": ">"}.get(data[:2])
    if end is None or struct.unpack(end + "H", data[2:4])[0] != 42:
        raise InterIRError(f"cannot read image {path}: not a classic TIFF file")
    (ifd,) = struct.unpack(end + "I", data[4:8])
    (n,) = struct.unpack(end + "H", data[ifd:ifd + 2])
    tags = {}
    for i in range(n):
        tag, typ, count, value = struct.unpack(end + "HHI4s", data[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
        code = _TIFF_TYPES.get(typ)
        if code is None:
            continue
        size = struct.calcsize(code) * count
        raw = value[:size] if size <= 4 else data[struct.unpack(end + "I", value)[0]:][:size]
        tags[tag] = struct.unpack(end + code * count, raw)
    pages, seen = 1, {ifd}
    (nxt,) = struct.unpack(end + "I", data[ifd + 2 + 12 * n:ifd + 6 + 12 * n] or b"\0\0\0\0")
    while nxt and nxt not in seen and nxt + 2 <= len(data) and pages < 10_000:
        seen.add(nxt)
        pages += 1
        (m,) = struct.unpack(end + "H", data[nxt:nxt + 2])
        (nxt,) = struct.unpack(end + "I", data[nxt + 2 + 12 * m:nxt + 6 + 12 * m].ljust(4, b"\0"))
    return tags, end, pages


# TIFF PhotometricInterpretation values, for the refusal message of colour models the reader does not convert
_PHOTOMETRIC = {0: "WhiteIsZero grey", 3: "palette", 4: "transparency mask", 5: "CMYK (separated)",
                6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab", 32844: "LogL", 32845: "LogLuv"}


def _read_tiff16(path: Path) -> np.ndarray:
    """Baseline TIFF, first image: 16-bit grey+alpha or RGB(A), chunky, strips, no/deflate compression,
    predictor 1/2."""
    data = path.read_bytes()
    tags, end, _ = _tiff_tags(data, path)
    w, h = tags[256][0], tags[257][0]
    _check_pixels(path, w, h)
    spp = tags.get(277, (1,))[0]
    photometric = tags.get(262, (2 if spp >= 3 else 1,))[0]
    if (photometric, spp) not in ((1, 2), (2, 3), (2, 4)):
        kind = _PHOTOMETRIC.get(photometric, f"photometric {photometric}")
        raise InterIRError(f"cannot read image {path}: 16-bit {kind} TIFF with {spp} samples per pixel is not "
                           f"supported (grey+alpha, RGB or RGBA only); convert it to 16-bit RGB first")
    comp, pred, planar = tags.get(259, (1,))[0], tags.get(317, (1,))[0], tags.get(284, (1,))[0]
    if 322 in tags or planar != 1 or comp not in (1, 8, 32946) or pred not in (1, 2) or 273 not in tags:
        raise InterIRError(f"cannot read image {path}: 16-bit colour TIFF must be striped, chunky, "
                           f"uncompressed or deflate (got compression {comp}); re-save it as 16-bit PNG")
    size = 2 * h * w * spp
    chunks, have = [], 0
    for o, c in zip(tags[273], tags[279]):
        chunk = data[o:o + c] if comp == 1 else _inflate(path, data[o:o + c], size - have)
        chunks.append(chunk)
        have += len(chunk)
        if have >= size:
            break
    if have < size:
        raise InterIRError(f"cannot read image {path}: truncated TIFF data")
    arr = np.frombuffer(b"".join(chunks)[:size], end + "u2").reshape(h, w, spp)
    if pred == 2:
        arr = np.cumsum(arr, axis=1, dtype=np.uint16)  # wraps mod 2**16 like the predictor
    return arr.astype(np.uint16)


def _encode_tiff16(arr: np.ndarray) -> bytes:
    """uint16 H×W×C → little-endian baseline TIFF (one deflate strip, horizontal predictor)."""
    h, w, c = arr.shape
    diff = arr.astype(np.uint16).copy()
    diff[:, 1:] -= arr[:, :-1]
    strip = zlib.compress(diff.astype("<u2").tobytes(), 6)
    entries = [(256, 4, [w]), (257, 4, [h]), (258, 3, [16] * c), (259, 3, [8]), (262, 3, [1 if c == 2 else 2]),
               (273, 4, [0]), (277, 3, [c]), (278, 4, [h]), (279, 4, [len(strip)]), (284, 3, [1]),
               (317, 3, [2])]
    if c in (2, 4):
        entries.append((338, 3, [2]))  # ExtraSamples: unassociated alpha
    entries.sort()
    ifd_size = 2 + 12 * len(entries) + 4
    extra_off = 8 + ifd_size
    blobs, ifd = b"", struct.pack("<H", len(entries))
    for tag, typ, vals in entries:
        code = _TIFF_TYPES[typ]
        payload = struct.pack("<" + code * len(vals), *vals)
        if tag == 273:
            strip_entry = len(ifd)
        if len(payload) <= 4:
            ifd += struct.pack("<HHI", tag, typ, len(vals)) + payload.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, len(vals), extra_off + len(blobs))
            blobs += payload
    ifd += b"\0\0\0\0"
    strip_off = extra_off + len(blobs)
    ifd = ifd[:strip_entry + 8] + struct.pack("<I", strip_off) + ifd[strip_entry + 12:]
    return b"II*\0" + struct.pack("<I", 8) + ifd + blobs + strip
