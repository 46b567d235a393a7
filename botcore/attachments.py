"""The file a Telegram message carries, parsed once: a voice note, audio, a video note, a photo
(all its sizes) or a document, with the sender's claims about it (length, size, name, type)
kept as claims. A leaf: imports nothing of ours, no I/O, never raises."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Telegram ids fit in 52 bits; anything outside a signed 64-bit integer cannot be stored anyway.
_MAX_ID = 2**63 - 1
# Audio we transcribe: field -> (file name to upload as, MIME type if the message gives none).
_SOUND = {
    "voice": ("voice.ogg", "audio/ogg"),
    "audio": ("audio.mp3", "audio/mpeg"),
    "video_note": ("video_note.mp4", "video/mp4"),
}
ATTACHMENT_FIELDS = (*_SOUND, "photo", "document")


def valid_id(value: object) -> bool:
    """A Telegram id we can store and address: an int (not a bool) within 64 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and -_MAX_ID <= value <= _MAX_ID


def usable_seconds(value: object) -> float | None:
    """``value`` as a duration in seconds if it is a finite, positive number; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


@dataclass(frozen=True, slots=True)
class PhotoSize:
    """One of the sizes Telegram keeps of a photo."""

    file_id: str
    width: int
    height: int
    size: int | None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the sender attached. ``seconds`` and ``size`` are the sender's claims, where they
    make sense at all (a duration or size that is no number is None). A photo has its sizes,
    smallest first, and ``file_id`` is the largest's."""

    kind: str  # "voice", "audio", "video_note", "photo", "document"
    file_id: str
    seconds: float | None
    size: int | None
    filename: str
    mime: str
    sizes: tuple[PhotoSize, ...] = ()

    def photo_within(self, max_side: int) -> PhotoSize | None:
        """The largest size whose longer side is at most ``max_side``, else the smallest."""
        fitting = [s for s in self.sizes if max(s.width, s.height) <= max_side]
        if fitting:
            return fitting[-1]
        return self.sizes[0] if self.sizes else None


def parse_attachment(message: Mapping[str, Any]) -> Attachment | None:
    """The file ``message`` carries, if it has one we could fetch (a usable file_id)."""
    for field, (filename, mime) in _SOUND.items():
        media = message.get(field)
        if _has_file(media):
            return _file(field, media, filename, mime)
    document = message.get("document")
    if _has_file(document):
        return _file("document", document, "document", "application/octet-stream")
    photo = message.get("photo")
    sizes = _sizes(photo) if isinstance(photo, list) else ()
    if sizes:
        largest = sizes[-1]
        return Attachment("photo", largest.file_id, None, largest.size, "photo.jpg", "image/jpeg", sizes)
    return None


def _has_file(media: object) -> bool:
    return isinstance(media, dict) and isinstance(media.get("file_id"), str) and bool(media["file_id"])


def _file(kind: str, media: Mapping[str, Any], filename: str, mime: str) -> Attachment:
    name, size, declared = media.get("file_name"), media.get("file_size"), media.get("mime_type")
    return Attachment(
        kind=kind,
        file_id=media["file_id"],
        seconds=usable_seconds(media.get("duration")),
        size=size if valid_id(size) else None,
        filename=name if isinstance(name, str) and name else filename,
        mime=declared if isinstance(declared, str) and declared else mime,
    )


def _sizes(photo: list[Any]) -> tuple[PhotoSize, ...]:
    """The photo's usable sizes, smallest first (by pixels: Telegram lists them so, usually)."""
    sizes = []
    for item in photo:
        if not _has_file(item):
            continue
        width, height, size = item.get("width"), item.get("height"), item.get("file_size")
        if valid_id(width) and valid_id(height) and width > 0 and height > 0:
            sizes.append(PhotoSize(item["file_id"], width, height, size if valid_id(size) else None))
    return tuple(sorted(sizes, key=lambda s: s.width * s.height))
