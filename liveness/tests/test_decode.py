"""decode_image: every broken input becomes UnreadableImage with a reason; every mode ends RGB, upright."""

from __future__ import annotations

import resource
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from liveness.decode import DecodedImage, UnreadableImage, decode_image


def px(decoded: DecodedImage, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in decoded.image.getpixel((x, y)))


def close(a, b, tol=6) -> bool:
    return all(abs(int(u) - int(v)) <= tol for u, v in zip(a, b, strict=True))


# --- broken inputs -------------------------------------------------------------------------------


def test_it_refuses_a_zero_byte_file_with_a_reason():
    with pytest.raises(UnreadableImage, match="empty"):
        decode_image(b"")


def test_it_refuses_a_truncated_jpeg_as_truncated(encode, textured):
    data = encode(textured((200, 200)), "JPEG", quality=90)
    with pytest.raises(UnreadableImage, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_it_refuses_a_text_file_named_jpg(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("this is a note, not a photograph\n")
    with pytest.raises(UnreadableImage, match="not an image"):
        decode_image(path.read_bytes())


def test_it_refuses_a_jpeg_whose_body_is_garbage(encode, textured):
    data = bytearray(encode(textured((64, 64)), "JPEG"))
    sos = data.index(b"\xff\xda")
    data[sos + 20 :] = b"\x00" * (len(data) - sos - 20)
    with pytest.raises(UnreadableImage):
        decode_image(bytes(data))


# --- formats and modes ---------------------------------------------------------------------------


def test_it_decodes_a_png_named_jpg_by_its_content(tmp_path, encode):
    path = tmp_path / "face.jpg"
    path.write_bytes(encode(Image.new("RGB", (30, 20), (10, 200, 30)), "PNG"))
    d = decode_image(path.read_bytes())
    assert d.format == "PNG"
    assert (d.width, d.height) == (30, 20)
    assert px(d, 5, 5) == (10, 200, 30)  # PNG is lossless: exact colour


def test_it_converts_a_cmyk_jpeg_to_rgb_with_the_right_colour(encode):
    img = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # pure red in CMYK
    d = decode_image(encode(img, "JPEG", quality=95))
    assert d.image.mode == "RGB"
    assert close(px(d, 20, 20), (255, 0, 0), tol=10)


def test_it_converts_grayscale_to_rgb_with_equal_channels(encode):
    d = decode_image(encode(Image.new("L", (10, 10), 77), "PNG"))
    assert d.image.mode == "RGB"
    assert px(d, 3, 3) == (77, 77, 77)


@pytest.mark.parametrize(
    ("value16", "expected8"),
    [(32768, 128), (65535, 255), (0, 0), (256, 1), (200, 1)],
)
def test_it_maps_16bit_png_values_onto_8bit_without_clipping(encode, value16, expected8):
    img = Image.fromarray(np.full((8, 8), value16, dtype=np.uint16))
    data = encode(img, "PNG")
    assert Image.open(__import__("io").BytesIO(data)).mode.startswith("I")  # really 16-bit on disk
    d = decode_image(data)
    assert d.image.mode == "RGB"
    assert close(px(d, 4, 4), (expected8,) * 3, tol=1)


def test_it_keeps_a_16bit_gradient_ordered_and_spread(encode):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (4, 1))
    d = decode_image(encode(Image.fromarray(ramp), "PNG"))
    row = np.asarray(d.image)[0, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0)
    assert row[0] <= 1 and row[-1] >= 254


def test_it_composites_alpha_over_white(encode):
    img = Image.new("RGBA", (30, 10), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (10, 0, 20, 10))  # opaque blue
    img.paste((0, 0, 0, 128), (20, 0, 30, 10))  # half-transparent black
    d = decode_image(encode(img, "PNG"))
    assert d.image.mode == "RGB"
    assert px(d, 5, 5) == (255, 255, 255)
    assert px(d, 15, 5) == (0, 0, 255)
    assert close(px(d, 25, 5), (127, 127, 127), tol=2)


def test_it_decodes_a_palette_gif_into_its_colours(encode):
    img = Image.new("P", (20, 10))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (10, 0, 20, 10))
    d = decode_image(encode(img, "GIF"))
    assert d.format == "GIF"
    assert px(d, 2, 2) == (255, 0, 0)
    assert px(d, 15, 2) == (0, 255, 0)


def test_it_composites_a_transparent_gif_colour_over_white(encode):
    img = Image.new("P", (20, 10))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (10, 0, 20, 10))
    d = decode_image(encode(img, "GIF", transparency=0))
    assert px(d, 2, 2) == (255, 255, 255)
    assert px(d, 15, 2) == (0, 255, 0)


def test_it_decodes_a_1x1_image(encode):
    d = decode_image(encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"))
    assert (d.width, d.height, d.image.size) == (1, 1, (1, 1))
    assert px(d, 0, 0) == (9, 8, 7)


# --- EXIF orientation ------------------------------------------------------------------------------


def _oriented_jpeg(encode, size, orientation: int) -> bytes:
    """A grey image with a red marker in the stored image's top-left corner."""
    w, h = size
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, w // 4, h // 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def test_it_applies_exif_orientation_6_so_the_image_is_upright(encode):
    # stored 80 wide x 40 tall; orientation 6 = display rotated 90 degrees clockwise
    d = decode_image(_oriented_jpeg(encode, (80, 40), 6))
    assert (d.width, d.height) == (40, 80)
    assert d.image.size == (40, 80)
    # the stored top-left corner ends at the top-right
    assert close(px(d, 36, 3), (255, 0, 0), tol=30)
    assert close(px(d, 3, 3), (128, 128, 128), tol=30)
    assert close(px(d, 36, 76), (128, 128, 128), tol=30)


def test_it_leaves_an_image_with_orientation_1_as_stored(encode):
    d = decode_image(_oriented_jpeg(encode, (80, 40), 1))
    assert (d.width, d.height) == (80, 40)
    assert close(px(d, 3, 3), (255, 0, 0), tol=30)


# --- size limits -----------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of side x side black pixels, built without ever holding the pixels."""
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    rows_per_chunk = 1000
    idat = b"".join(comp.compress(row * rows_per_chunk) for _ in range(side // rows_per_chunk))
    idat += comp.compress(row * (side % rows_per_chunk)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_it_refuses_a_decompression_bomb_without_allocating_its_pixels():
    data = _bomb_png(30000)  # 900 megapixels in ~100 kB
    assert len(data) < 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(UnreadableImage, match="pixels") as exc:
        decode_image(data)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "bomb" in str(exc.value)
    assert after - before < 200_000  # decoding would need ~900 MB


def test_it_refuses_an_image_above_the_configured_pixel_limit(encode):
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(UnreadableImage, match=r"10000 pixels"):
        decode_image(data, max_pixels=9999)
    assert decode_image(data, max_pixels=10000).width == 100


# --- draft (reduced) JPEG decoding -----------------------------------------------------------------


def test_it_decodes_a_large_jpeg_reduced_but_reports_the_original_size(encode, textured):
    data = encode(textured((1920, 1080)), "JPEG", quality=80)
    d = decode_image(data, min_side=200)
    assert d.reduction > 1
    assert (d.width, d.height) == (1920, 1080)
    assert min(d.image.size) >= 200
    assert d.image.size == (1920 // d.reduction, 1080 // d.reduction)


def test_it_decodes_at_full_size_without_min_side_or_when_reduction_would_go_below_it(encode, textured):
    data = encode(textured((1920, 1080)), "JPEG", quality=80)
    assert decode_image(data).image.size == (1920, 1080)
    full = decode_image(data, min_side=600)  # 1080 / 2 = 540 < 600
    assert full.reduction == 1 and full.image.size == (1920, 1080)


def test_it_never_reduces_a_png(encode, textured):
    d = decode_image(encode(textured((800, 600)), "PNG"), min_side=100)
    assert d.reduction == 1 and d.image.size == (800, 600)


def test_it_reports_the_upright_original_size_for_a_reduced_rotated_jpeg(encode):
    img = Image.new("RGB", (1600, 800), (128, 128, 128))
    exif = Image.Exif()
    exif[0x0112] = 6
    d = decode_image(encode(img, "JPEG", exif=exif.tobytes()), min_side=200)
    assert d.reduction == 4
    assert (d.width, d.height) == (800, 1600)
    assert d.image.size == (200, 400)


def test_it_refuses_an_image_format_outside_the_supported_list(encode):
    with pytest.raises(UnreadableImage, match="unsupported image format PPM"):
        decode_image(encode(Image.new("RGB", (4, 4)), "PPM"))
