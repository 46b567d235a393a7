"""How long a recording really is, read from its container (Ogg, MP3, MP4/M4A, WAV…) with
mutagen, without decoding it: a sender's declared duration is only a claim. A leaf: it imports
nothing of ours, and mutagen's errors never leave it."""

from __future__ import annotations

import io
import math

import mutagen
from loguru import logger


def measure_seconds(data: bytes) -> float | None:
    """The audio's length in seconds, or None when the container cannot tell (unknown format,
    damaged, no length). CPU work on up to the download limit: call it in a thread."""
    try:
        found = mutagen.File(io.BytesIO(data))
        length = getattr(getattr(found, "info", None), "length", None)
    # Untrusted bytes: besides MutagenError its parsers leak IndexError, struct.error and the like
    # (found by fuzzing); each means only "cannot tell".
    except Exception as exc:
        logger.bind(component="audio").debug("could not measure the audio: {}", type(exc).__name__)
        return None
    return usable_seconds(length)


def usable_seconds(value: object) -> float | None:
    """``value`` as a duration in seconds if it is a finite, positive number; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
