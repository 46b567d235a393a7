"""Photos made ready for a vision model: decoded by Pillow in a worker thread (never on the event
loop), turned upright, flattened to RGB, shrunk and re-encoded as a JPEG under a byte cap. It
changes no global Pillow setting, and every unreadable input ends as PermanentError(BAD_FILE)."""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from botcore.errors import Cause, PermanentError

# The formats chat clients send. Pillow knows many more, but each decoder is attack surface, and
# EPS would even run Ghostscript; HEIF needs a plugin (pillow-heif) that we do not install.
FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "HEIF", "AVIF"})
_QUALITIES = (85, 70, 55, 40)  # tried in turn before the image is made smaller
_MAX_HALVINGS = 8
_RESIZABLE_MODES = ("RGB", "RGBA", "L", "CMYK")  # others (P, 1, LA, I;16…) are converted first


@dataclass(frozen=True, slots=True)
class PreparedImage:
    jpeg: bytes
    width: int
    height: int

    def data_url(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


def readable(filename: str, mime: str) -> bool:
    """Whether Pillow, as installed here, reads a picture of this name or type (one of FORMATS:
    HEIC, say, only where its plugin is installed)."""
    extension = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    known = Image.registered_extensions().get(extension)
    if known is None:
        known = next((name for name, its_mime in Image.MIME.items() if its_mime == mime.lower()), None)
    return known in FORMATS


async def prepare_image(
    data: bytes, *, max_side: int = 1568, max_bytes: int = 1_000_000, max_pixels: int = 40_000_000
) -> PreparedImage:
    """``data`` (any of FORMATS; an animation's first frame) as an upright RGB JPEG whose longer
    side is at most ``max_side`` (never enlarged) and whose size is at most ``max_bytes``. Images
    of more than ``max_pixels`` are refused from their header, before anything is decoded."""
    return await asyncio.to_thread(_prepare, data, max_side, max_bytes, max_pixels)


def _prepare(data: bytes, max_side: int, max_bytes: int, max_pixels: int) -> PreparedImage:
    return _encoded(_decoded(data, max_side, max_pixels), max_bytes)


def _bad(reason: str) -> PermanentError:
    return PermanentError(f"image: {reason}", cause=Cause.BAD_FILE)


def _decoded(data: bytes, max_side: int, max_pixels: int) -> Image.Image:
    """The picture, upright, in RGB, its longer side at most ``max_side``."""
    try:
        with Image.open(io.BytesIO(data)) as source:  # lazy: reads the header only
            _check_header(source, max_pixels)
            image = source if source.mode in _RESIZABLE_MODES else source.convert(_plain_mode(source))
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # a JPEG decodes scaled down
            ImageOps.exif_transpose(image, in_place=True)
            return _on_white(image)
    except PermanentError:
        raise
    # Pillow's own bomb check, at its (higher) limit; under `-W error` the warning is raised too.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad("it has too many pixels") from exc
    # Untrusted bytes: Pillow's decoders raise OSError (truncated, unidentified), SyntaxError,
    # ValueError, EOFError, struct.error, IndexError… depending on the format; each means "bad file".
    except Exception as exc:
        raise _bad(f"it could not be decoded ({type(exc).__name__})") from exc


def _check_header(image: Image.Image, max_pixels: int) -> None:
    if image.format not in FORMATS:
        raise _bad(f"{image.format or 'this'} images are not accepted")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise _bad("it has no pixels")
    if width * height > max_pixels:
        raise _bad(f"it has too many pixels ({width}×{height}, more than {max_pixels:,})")


def _plain_mode(image: Image.Image) -> str:
    has_alpha = image.mode in ("LA", "PA") or "transparency" in image.info
    return "RGBA" if has_alpha else "RGB"


def _on_white(image: Image.Image) -> Image.Image:
    """A new RGB image: transparent parts become white, as most viewers show them."""
    if image.mode not in ("RGBA", "LA", "PA"):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _encoded(image: Image.Image, max_bytes: int) -> PreparedImage:
    """The best JPEG under ``max_bytes``: lower quality first, then half the size each time."""
    for quality in _QUALITIES:
        jpeg = _jpeg(image, quality)
        if len(jpeg) <= max_bytes:
            return PreparedImage(jpeg, image.width, image.height)
    for _ in range(_MAX_HALVINGS):
        if min(image.size) < 2:
            break
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
        jpeg = _jpeg(image, _QUALITIES[-1])
        if len(jpeg) <= max_bytes:
            return PreparedImage(jpeg, image.width, image.height)
    raise _bad(f"it does not fit in {max_bytes:,} bytes even when made small")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)  # no EXIF is written: a photo's GPS position stays here
    return out.getvalue()
