"""Photos for vision models (botcore.images): real image files in, checked JPEGs out. The
committed fixtures come from tests/fixtures/make_media.py; the bombs are made here, in tmp_path."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import pytest
from PIL import Image

from botcore.errors import Cause, PermanentError
from botcore.images import PreparedImage, prepare_image

from .fixtures.make_media import png_header_bomb

FIXTURES = Path(__file__).with_name("fixtures")
TINY = (FIXTURES / "tiny.png").read_bytes()  # 64×48, RGB (30, 144, 255)
PHOTO = (FIXTURES / "photo.jpg").read_bytes()  # 2000×1500 gradient


def decoded(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.jpeg))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size == (prepared.width, prepared.height)
    return image


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def close(pixel: tuple[int, ...], expected: tuple[int, int, int], slack: int = 12) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(pixel, expected, strict=True))


async def test_a_large_photo_is_downsized_to_max_side_keeping_its_aspect() -> None:
    prepared = await prepare_image(PHOTO)
    assert (prepared.width, prepared.height) == (1568, 1176)
    assert decoded(prepared).size == (1568, 1176)
    smaller = await prepare_image(PHOTO, max_side=100)
    assert (smaller.width, smaller.height) == (100, 75)


async def test_a_small_image_is_never_enlarged() -> None:
    prepared = await prepare_image(TINY)
    assert (prepared.width, prepared.height) == (64, 48)
    assert close(decoded(prepared).getpixel((32, 24)), (30, 144, 255))


async def test_the_data_url_carries_the_jpeg() -> None:
    prepared = await prepare_image(TINY)
    prefix = "data:image/jpeg;base64,"
    url = prepared.data_url()
    assert url.startswith(prefix)
    assert base64.b64decode(url[len(prefix) :]) == prepared.jpeg
    assert prepared.jpeg.startswith(b"\xff\xd8")


@pytest.mark.parametrize(
    ("kind", "options"),
    [("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {}), ("BMP", {}), ("JPEG", {"quality": 95})],
)
async def test_each_format_chat_clients_send_is_read(kind: str, options: dict[str, object]) -> None:
    prepared = await prepare_image(encoded(Image.new("RGB", (64, 48), (30, 144, 255)), kind, **options))
    assert (prepared.width, prepared.height) == (64, 48)
    assert close(decoded(prepared).getpixel((32, 24)), (30, 144, 255), slack=20)  # GIF's palette


async def test_an_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    prepared = await prepare_image(gif)
    assert close(decoded(prepared).getpixel((20, 15)), (255, 0, 0), slack=20)


async def test_exif_orientation_is_applied() -> None:
    """A phone's photo stored sideways with Orientation 6 ("turn 90° clockwise to view")."""
    stored = Image.new("RGB", (80, 40), (255, 0, 0))
    stored.paste((0, 0, 255), (40, 0, 80, 40))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    prepared = await prepare_image(encoded(stored, "JPEG", quality=95, exif=exif))
    assert (prepared.width, prepared.height) == (40, 80)
    upright = decoded(prepared)
    assert close(upright.getpixel((20, 10)), (255, 0, 0), slack=30)  # red on top
    assert close(upright.getpixel((20, 70)), (0, 0, 255), slack=30)
    assert 0x0112 not in upright.getexif()  # no metadata is passed on


async def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    image.paste((0, 128, 0, 255), (0, 0, 10, 20))  # an opaque green left half
    prepared = await prepare_image(encoded(image, "PNG"))
    flat = decoded(prepared)
    assert close(flat.getpixel((15, 10)), (255, 255, 255))
    assert close(flat.getpixel((4, 10)), (0, 128, 0))


async def test_a_palette_image_with_a_transparent_colour_is_flattened() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.paste(1, (0, 0, 10, 20))
    prepared = await prepare_image(encoded(image, "PNG", transparency=0))
    flat = decoded(prepared)
    assert close(flat.getpixel((15, 10)), (255, 255, 255))
    assert close(flat.getpixel((4, 10)), (255, 0, 0))


async def test_the_byte_cap_is_honoured_first_by_quality() -> None:
    full = await prepare_image(PHOTO)
    cap = len(full.jpeg) * 3 // 4  # at quality 70 the gradient takes about 60% of its size at 85
    capped = await prepare_image(PHOTO, max_bytes=cap)
    assert len(capped.jpeg) <= cap
    assert (capped.width, capped.height) == (1568, 1176)  # lower quality was enough


async def test_the_byte_cap_is_honoured_by_halving_when_quality_is_not_enough() -> None:
    noise = Image.frombytes("RGB", (400, 400), random.Random(7).randbytes(400 * 400 * 3))
    prepared = await prepare_image(encoded(noise, "PNG"), max_bytes=20_000)
    assert len(prepared.jpeg) <= 20_000
    assert prepared.width < 400 and prepared.width == prepared.height
    decoded(prepared)


async def test_a_cap_no_jpeg_can_meet_is_a_bad_file_not_a_loop() -> None:
    with pytest.raises(PermanentError) as caught:
        await prepare_image(TINY, max_bytes=10)
    assert caught.value.cause is Cause.BAD_FILE


@pytest.mark.parametrize(
    "data",
    [
        (FIXTURES / "corrupt.jpg").read_bytes(),
        PHOTO[: len(PHOTO) // 2],  # truncated
        b"",
        b"not an image at all",
        (FIXTURES / "two_pages.pdf").read_bytes(),
    ],
    ids=["corrupt", "truncated", "empty", "text", "pdf"],
)
async def test_unreadable_data_is_a_bad_file_in_our_words(data: bytes) -> None:
    with pytest.raises(PermanentError) as caught:
        await prepare_image(data)
    assert caught.value.cause is Cause.BAD_FILE
    assert str(caught.value).startswith("image: ")


async def test_formats_outside_the_list_are_refused_before_decoding() -> None:
    with pytest.raises(PermanentError, match="not accepted") as caught:
        await prepare_image(encoded(Image.open(io.BytesIO(TINY)), "PPM"))
    assert caught.value.cause is Cause.BAD_FILE


async def test_a_decompression_bomb_is_refused(tmp_path: Path) -> None:
    """20,000 × 20,000 pixels (400 M; about 50 KB of PNG): past Pillow's own limit too."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_bomb(20_000, 20_000))
    assert len(bomb.read_bytes()) < 200_000
    with pytest.raises(PermanentError, match="too many pixels") as caught:
        await prepare_image(bomb.read_bytes())
    assert caught.value.cause is Cause.BAD_FILE


async def test_the_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    """8,000 × 6,000 is under Pillow's limit but over ours. Its pixel data is junk, so a reader
    that decoded it would say "could not be decoded"; the header check answers first."""
    big = png_header_bomb(8_000, 6_000, valid_data=False)
    with pytest.raises(PermanentError, match=r"too many pixels \(8000×6000") as caught:
        await prepare_image(big)
    assert caught.value.cause is Cause.BAD_FILE
    with pytest.raises(PermanentError, match="could not be decoded"):  # the junk, when allowed
        await prepare_image(big, max_pixels=50_000_000)
    with pytest.raises(PermanentError, match="too many pixels"):
        await prepare_image(PHOTO, max_pixels=1_000_000)
