"""srprior.data.io.read_image: lossless conversions succeed, every malformed case raises ImageError naming the file."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from srprior.data.io import ImageError, read_image


def _rand(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """Hand-written PNG (so 16-bit RGB can be made without Pillow, which cannot write it)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("suffix", [".png", ".bmp"])
def test_rgb_roundtrip_is_exact(tmp_path, suffix):
    img = _rand((7, 9, 3))
    path = tmp_path / f"a{suffix}"
    Image.fromarray(img).save(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


def test_jpeg_reads_as_rgb_uint8(tmp_path):
    img = _rand((16, 16, 3))
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    out = read_image(tmp_path / "a.jpg")
    np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "a.jpg")))
    assert out.shape == (16, 16, 3)


@pytest.mark.parametrize("suffix", [".png", ".PNG", ".bmp", ".tif"])
def test_jpeg_bytes_under_a_lossless_name_raise(tmp_path, suffix):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(_rand((16, 16, 3))).save(path, format="JPEG")
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert str(exc.value) == (f"{path}: JPEG data in a {suffix} file (lossy: compression artefacts would change PSNR "
                              "unnoticed); re-download or re-export the lossless original, or rename it .jpg to "
                              "use it as it is")
    path.rename(tmp_path / "img.jpg")
    assert read_image(tmp_path / "img.jpg").shape == (16, 16, 3)


def test_grey_becomes_rgb_with_equal_channels(tmp_path):
    grey = _rand((5, 6))
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_rgba_fully_opaque_drops_alpha(tmp_path):
    rgb = _rand((6, 4, 3))
    Image.fromarray(np.dstack([rgb, np.full((6, 4), 255, np.uint8)])).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


def test_la_fully_opaque_becomes_rgb(tmp_path):
    grey = _rand((4, 5))
    Image.fromarray(np.dstack([grey, np.full((4, 5), 255, np.uint8)]), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), np.repeat(grey[..., None], 3, axis=2))


def test_rgba_with_transparency_raises(tmp_path):
    rgba = np.dstack([_rand((4, 4, 3)), np.full((4, 4), 255, np.uint8)])
    rgba[1, 2, 3] = 10
    path = tmp_path / "t.png"
    Image.fromarray(rgba).save(path)
    with pytest.raises(ImageError, match=r"t\.png.*transparent.*1 with alpha < 255.*composite"):
        read_image(path)


def test_16bit_grey_png_raises(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(path)
    assert Image.open(path).mode.startswith("I;16")
    with pytest.raises(ImageError, match=r"g16\.png.*16/32-bit.*8-bit"):
        read_image(path)


def test_16bit_rgb_png_raises_instead_of_truncating(tmp_path):
    # Pillow opens 48-bit PNG as 8-bit "RGB" keeping only the high byte; read_image must notice.
    rows = b"".join(b"\x00" + b"\x12\x34" * 3 * 4 for _ in range(4))
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png_bytes(4, 4, 16, 2, rows))
    assert Image.open(path).mode == "RGB"
    with pytest.raises(ImageError, match=r"rgb16\.png.*16/32-bit"):
        read_image(path)


def test_cmyk_jpeg_raises(tmp_path):
    path = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(path)
    with pytest.raises(ImageError, match=r"c\.jpg.*CMYK.*sRGB"):
        read_image(path)


def test_palette_image_raises(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(_rand((8, 8, 3))).convert("P").save(path)
    assert Image.open(path).mode == "P"
    with pytest.raises(ImageError, match=r"p\.png.*mode P.*convert"):
        read_image(path)


def test_bilevel_image_raises(tmp_path):
    path = tmp_path / "b.png"
    Image.new("1", (8, 8)).save(path)
    with pytest.raises(ImageError, match=r"b\.png.*mode 1"):
        read_image(path)


def test_truncated_png_raises(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(_rand((64, 64, 3))).save(full)
    path = tmp_path / "cut.png"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageError, match=r"cut\.png.*truncated/corrupt.*re-download"):
        read_image(path)


def test_corrupt_png_data_raises(tmp_path):
    data = bytearray(_png_bytes(4, 4, 8, 2, b"".join(b"\x00" + bytes(12) for _ in range(4))))
    data[33 + 10] ^= 0xFF  # flip a byte of the compressed pixel data (IDAT payload starts at byte 41)
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"crc\.png.*truncated/corrupt"):
        read_image(path)


def test_text_file_named_png_raises(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match=r"notes\.png.*not a readable"):
        read_image(path)


def test_one_pixel_image_raises(tmp_path):
    path = tmp_path / "dot.png"
    Image.fromarray(_rand((1, 1, 3))).save(path)
    with pytest.raises(ImageError, match=r"dot\.png.*1x1 pixels.*>= 2"):
        read_image(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_image_error_is_value_error_with_path(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        read_image(path)
    assert isinstance(info.value, ImageError) and info.value.path == path
