"""Image files that must not turn into silent wrong results: EXIF orientation at every bit depth, colour models
the readers do not convert, decompression bombs, several frames in one file (issue 17, item 4)."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from interir.data.imageio import load_image, write_image
from interir.errors import InterIRError


def _photo(h=23, w=31):
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png16_with_chunks(tmp_path, arr16: np.ndarray, *chunks: tuple[bytes, bytes]) -> bytes:
    """A 16-bit PNG as write_image makes it, with extra chunks inserted right after IHDR."""
    write_image(tmp_path / "plain16.png", arr16)
    png = (tmp_path / "plain16.png").read_bytes()
    ihdr_end = 8 + 12 + 13
    return png[:ihdr_end] + b"".join(_chunk(kind, body) for kind, body in chunks) + png[ihdr_end:]


def _tiff(arr: np.ndarray, photometric: int, extra_tags=(), pages: int = 1) -> bytes:
    """A minimal little-endian, uncompressed, one-strip TIFF of uint8/uint16 H×W×C; `pages` copies of it."""
    h, w, c = arr.shape
    bits = 8 * arr.dtype.itemsize
    pixels = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    out = bytearray(b"II*\0" + struct.pack("<I", 8))
    for page in range(pages):
        entries = sorted([(256, 4, w), (257, 4, h), (259, 3, 1), (262, 3, photometric), (273, 4, 0),
                          (277, 3, c), (278, 4, h), (279, 4, len(pixels)), (284, 3, 1), *extra_tags])
        bits_offset = len(out) + 2 + 12 * (len(entries) + 1) + 4
        strip_offset = bits_offset + 2 * c
        entries = sorted(entries + [(258, 3, None)])
        ifd = bytearray(struct.pack("<H", len(entries)))
        for tag, typ, value in entries:
            if tag == 258:
                ifd += struct.pack("<HHII", 258, 3, c, bits_offset) if c > 2 else \
                    struct.pack("<HHI", 258, 3, c) + struct.pack("<" + "H" * c, *[bits] * c).ljust(4, b"\0")
                continue
            if tag == 273:
                value = strip_offset
            packed = struct.pack("<" + ("H" if typ == 3 else "I"), value).ljust(4, b"\0")
            ifd += struct.pack("<HHI", tag, typ, 1) + packed
        last = page == pages - 1
        next_ifd = 0 if last else strip_offset + len(pixels)
        out += ifd + struct.pack("<I", next_ifd) + struct.pack("<" + "H" * c, *[bits] * c) + pixels
    return bytes(out)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_png_and_tiff_apply_exif_orientation_like_8_bit(tmp_path, orientation):
    rgb = _photo()
    Image.fromarray(rgb).save(tmp_path / "ref8.png", exif=_exif(orientation))
    want, bits8 = load_image(tmp_path / "ref8.png")
    assert bits8 == 8
    raw_exif = _exif(orientation).tobytes()[6:]  # the TIFF structure without the "Exif\0\0" header
    (tmp_path / "p16.png").write_bytes(_png16_with_chunks(tmp_path, rgb.astype(np.uint16) * 257, (b"eXIf", raw_exif)))
    (tmp_path / "t16.tif").write_bytes(_tiff(rgb.astype(np.uint16) * 257, 2, [(274, 3, orientation)]))
    for name in ("p16.png", "t16.tif"):
        got, bits = load_image(tmp_path / name)
        assert bits == 16
        assert got.shape == want.shape, (name, orientation)
        assert np.array_equal(got.numpy(), want.numpy()), (name, orientation)
    if orientation in (5, 6, 7, 8):
        assert want.shape[1:] == (rgb.shape[1], rgb.shape[0])  # the test does rotate


def test_16_bit_cmyk_tiff_is_refused_not_read_as_rgba(tmp_path):
    cmyk = np.random.default_rng(0).integers(0, 65536, size=(9, 11, 4), dtype=np.uint16)
    (tmp_path / "cmyk.tif").write_bytes(_tiff(cmyk, 5))
    with pytest.raises(InterIRError, match=r"cmyk\.tif.*CMYK"):
        load_image(tmp_path / "cmyk.tif", channels=None)


def test_16_bit_rgba_tiff_without_photometric_tag_oddities_still_reads(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 65536, size=(7, 5, 4), dtype=np.uint16)
    (tmp_path / "rgba.tif").write_bytes(_tiff(rgba, 2, [(338, 3, 2)]))
    img, bits = load_image(tmp_path / "rgba.tif", channels=None)
    assert bits == 16 and np.array_equal((img.permute(1, 2, 0).numpy() * 65535).round().astype(np.uint16), rgba)


def test_decompression_bomb_16_bit_png_is_refused_before_decoding(tmp_path):
    side = 13400  # 179.6 M pixels > 2 × Pillow's 89.5 M
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)
    row = b"\0" * (1 + 6 * side)
    body = zlib.compress(row * 8, 9)  # a small file that would expand to 5 GB if fully decoded
    png = PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(InterIRError, match=r"bomb\.png.*decompression-bomb"):
        load_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("kind", ["png16", "tiff16", "png8"])
def test_pixel_limit_applies_to_every_reader(tmp_path, monkeypatch, kind):
    rgb = _photo(20, 20)
    path = tmp_path / ("img.tif" if kind == "tiff16" else "img.png")
    if kind == "png8":
        Image.fromarray(rgb).save(path)
    else:
        write_image(path, rgb.astype(np.uint16) * 257)
    load_image(path)  # fine under the default limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 2 × 150 < 400 pixels
    with pytest.raises(InterIRError, match="img"):
        load_image(path)


def test_multi_frame_files_are_refused_not_cut_to_their_first_frame(tmp_path):
    a, b = _photo(), _photo()[::-1].copy()
    frames = [Image.fromarray(a), Image.fromarray(b)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    (tmp_path / "pages16.tif").write_bytes(_tiff(a.astype(np.uint16) * 257, 2, pages=3))
    (tmp_path / "anim16.png").write_bytes(_png16_with_chunks(tmp_path, a.astype(np.uint16) * 257,
                                                             (b"acTL", struct.pack(">II", 2, 0))))
    for name, frames_held in (("anim.gif", 2), ("pages.tif", 2), ("anim.png", 2), ("pages16.tif", 3),
                              ("anim16.png", 2)):
        with pytest.raises(InterIRError, match=rf"{name.replace('.', '[.]')}.*{frames_held} frames"):
            load_image(tmp_path / name)
    # one frame in a multi-frame-capable format is fine
    frames[0].save(tmp_path / "single.gif")
    frames[0].save(tmp_path / "single.tif")
    assert load_image(tmp_path / "single.gif")[0].shape == (3, *a.shape[:2])
    assert load_image(tmp_path / "single.tif")[0].shape == (3, *a.shape[:2])


def test_image_writes_keep_a_replaced_files_mode(tmp_path):
    import os
    import stat

    path = tmp_path / "private.png"
    write_image(path, _photo())
    os.chmod(path, 0o600)
    write_image(path, _photo()[::-1].copy())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_image(tmp_path / "private16.tif", _photo().astype(np.uint16))
    os.chmod(tmp_path / "private16.tif", 0o640)
    write_image(tmp_path / "private16.tif", _photo().astype(np.uint16))
    assert stat.S_IMODE((tmp_path / "private16.tif").stat().st_mode) == 0o640
