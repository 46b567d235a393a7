"""How long a recording really is, read from its container (Ogg, MP3, MP4/M4A, WAV…) with
mutagen, without decoding it: a sender's declared duration is only a claim. mutagen's errors
never leave it."""

from __future__ import annotations

import io

import mutagen
from loguru import logger

from botcore.attachments import usable_seconds


def measure_seconds(data: bytes) -> float | None:
    """The audio's length in seconds, or None when the container cannot tell (unknown format,
    damaged, no length). CPU work on up to the download limit: call it in a thread."""
    try:
        found = mutagen.File(io.BytesIO(data))
        info = getattr(found, "info", None)
        length = _cross_checked(getattr(info, "length", None), getattr(info, "bitrate", None), len(data))
    # Untrusted bytes: besides MutagenError its parsers leak IndexError, struct.error and the like
    # (found by fuzzing); each means only "cannot tell".
    except Exception as exc:
        logger.bind(component="audio").debug("could not measure the audio: {}", type(exc).__name__)
        return None
    return usable_seconds(length)


def _cross_checked(length: object, bitrate: object, size: int) -> object:
    """A header can understate the length (an MP3's frame count, say, in front of far more
    frames): when the bytes at the stated bit rate would last more than twice as long, they are
    what counts. (Twice, so cover art or tags in a file do not make it look longer.)"""
    seconds, rate = usable_seconds(length), usable_seconds(bitrate)
    if seconds is None or rate is None:
        return length
    by_size = size * 8 / rate
    return by_size if by_size > 2 * seconds else seconds
