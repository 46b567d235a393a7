"""What a document says, as text: text files decoded in a worker thread, PDFs read by pypdf in a
child process (botcore.pdf_child) that a timeout, a memory cap or cancellation ends. It never
imports pypdf here, and every unreadable document ends as PermanentError(BAD_FILE or NO_TEXT)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from botcore.errors import Cause, PermanentError
from botcore.i18n import N_

SUPPORTED = N_(  # in the reply to a file of another kind, in the user's language
    "PDF, plain text, Markdown, CSV, JSON, source code files (.py, .js, …) "
    "and images (JPEG, PNG, WebP, GIF, BMP)"
)


def _words(*groups: str) -> frozenset[str]:
    return frozenset(" ".join(groups).split())


# Text by extension: prose and settings, data, then source code.
_TEXT_EXTENSIONS = _words(
    "txt text md markdown rst adoc org tex log ini cfg conf toml env properties srt vtt diff patch",
    "csv tsv json jsonl ndjson yaml yml xml html htm xhtml svg",
    "py pyi ipy js mjs cjs jsx ts tsx vue svelte css scss sass less java kt kts scala groovy gradle",
    "c h cc cpp cxx hh hpp m mm cs fs go rs rb php pl pm swift dart lua r jl ex exs erl hs ml clj",
    "el lisp zig nim sql sh bash zsh fish ps1 bat cmd proto graphql tf hcl nix vim",
)
_TEXT_NAMES = _words("makefile dockerfile readme license changelog gemfile procfile")
_TEXT_MIMES = _words(
    "application/json application/ld+json application/xml application/yaml application/x-yaml",
    "application/toml application/javascript application/x-javascript application/x-sh",
    "application/x-python application/x-python-code application/sql application/x-tex application/csv",
)
_IMAGE_EXTENSIONS = _words("jpg jpeg jpe jfif png webp gif bmp heic heif avif")
_IMAGE_MIMES = _words(
    "image/jpeg image/jpg image/pjpeg image/png image/webp image/gif image/bmp image/x-ms-bmp",
    "image/heic image/heif image/avif",
)

# Byte-order marks, the longer UTF-32 ones before UTF-16's (FF FE starts both little-endian marks).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SAMPLE = 65_536  # characters looked at to tell text from binary
# Control characters that do not occur in text (tab, newlines, form feed, backspace and escape do).
_CONTROLS = tuple(chr(c) for c in [*range(32), 127] if chr(c) not in "\t\n\r\f\b\x1b")
_ROOT = Path(__file__).resolve().parent.parent  # where `python -m botcore.pdf_child` finds the package
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONPATH")  # no API keys or tokens


@dataclass(frozen=True, slots=True)
class Extracted:
    text: str
    truncated: bool  # cut at max_chars
    pages: int | None  # PDFs: pages in the file; else None


def document_kind(filename: str, mime: str) -> str | None:
    """The document's kind: "pdf", "text", "image" (an image sent as a file) or None (not
    supported), from its file name or its MIME type (a name's extension is looked at first)."""
    name = filename.rsplit("/", 1)[-1].lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    mime = mime.split(";", 1)[0].strip().lower()
    if extension == "pdf" or mime == "application/pdf":
        return "pdf"
    if extension in _IMAGE_EXTENSIONS or mime in _IMAGE_MIMES:
        return "image"
    if mime.startswith(("video/", "audio/")):  # e.g. an MPEG transport stream named .ts
        return None
    if extension in _TEXT_EXTENSIONS or name in _TEXT_NAMES or _is_text_mime(mime):
        return "text"
    return None


def _is_text_mime(mime: str) -> bool:
    return mime.startswith("text/") or mime in _TEXT_MIMES or mime.endswith(("+json", "+xml"))


async def extract_text(
    data: bytes, *, kind: str, max_chars: int = 60_000, timeout_s: float = 30.0, max_memory_mb: int = 512
) -> Extracted:
    """The document's text, at most ``max_chars`` characters, for ``kind`` "text" or "pdf"."""
    if kind == "text":
        return await asyncio.to_thread(_from_text, data, max_chars)
    if kind == "pdf":
        return await _from_pdf(data, max_chars, timeout_s, max_memory_mb)
    raise ValueError(f"extract_text: no text to extract from a {kind!r} document")


def _from_text(data: bytes, max_chars: int) -> Extracted:
    text = _decoded(data)
    if _looks_binary(text[:_SAMPLE]):
        raise PermanentError("document: binary data, not text", cause=Cause.BAD_FILE)
    return _extracted(text, max_chars, pages=None)


def _decoded(data: bytes) -> str:
    """By the byte-order mark if there is one, else UTF-8. Bytes that are not UTF-8 are read as
    Windows-1252 (a superset of Latin-1 for text), unless most of their non-ASCII characters are
    valid UTF-8: then it is UTF-8 with a few damaged bytes, each shown as U+FFFD."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    damaged = text.count("\ufffd")
    valid = len(text) - len(text.encode("ascii", errors="ignore")) - damaged
    return text if valid > damaged else data.decode("cp1252", errors="replace")


def _looks_binary(sample: str) -> bool:
    """More than 2% control characters: text has next to none, compressed data about 10%."""
    controls = sum(sample.count(c) for c in _CONTROLS)
    return controls > len(sample) // 50


async def _from_pdf(data: bytes, max_chars: int, timeout_s: float, max_memory_mb: int) -> Extracted:
    reply = await _run_child(data, [str(max_chars), str(max_memory_mb)], timeout_s)
    if reply.get("error") == "encrypted":
        raise PermanentError("PDF: protected by a password", cause=Cause.BAD_FILE)
    if reply.get("error") == "too-large":
        raise _too_large(f"it needed more than {max_memory_mb} MB")
    text, pages = reply.get("text"), reply.get("pages")
    if not isinstance(text, str) or not isinstance(pages, int):
        detail = reply.get("detail")
        raise PermanentError(
            "PDF: it could not be read" + (f" ({detail})" if isinstance(detail, str) else ""),
            cause=Cause.BAD_FILE,
        )
    return _extracted(text, max_chars, pages=pages)


def _too_large(reason: str) -> PermanentError:
    return PermanentError(f"PDF: too large or too complex to read ({reason})", cause=Cause.BAD_FILE)


async def _run_child(data: bytes, args: list[str], timeout_s: float) -> dict[str, object]:
    """Runs botcore.pdf_child on ``data`` and returns its answer. However this ends (an answer, a
    timeout, a crash, the caller's cancellation), the child is dead and reaped afterwards."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "botcore.pdf_child", *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=_ROOT,
        env={name: os.environ[name] for name in _CHILD_ENV if name in os.environ},
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await process.communicate(data)
    except TimeoutError:
        raise _too_large(f"it took more than {timeout_s:g} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                process.kill()
            await process.wait()
    if process.returncode != 0:
        raise _too_large(f"the reader stopped with status {process.returncode}")
    try:
        reply = json.loads(out)
    except ValueError:
        raise _too_large("the reader gave no answer") from None
    return reply if isinstance(reply, dict) else {}


def _extracted(text: str, max_chars: int, *, pages: int | None) -> Extracted:
    text = _clean(text)
    if not text.strip():
        raise PermanentError("document: no text in it (a scan or an empty file?)", cause=Cause.NO_TEXT)
    cut, truncated = _cut(text, max_chars)
    return Extracted(text=cut, truncated=truncated, pages=pages)


def _clean(text: str) -> str:
    """One kind of newline, no NULs, no lone surrogates (a PDF's broken font maps can yield
    them, and SQLite cannot store them)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _cut(text: str, max_chars: int) -> tuple[str, bool]:
    """At most ``max_chars``, ending at a line or word break within the last 5% if there is one."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    start = max(0, max_chars - max(100, max_chars // 20))
    for separator in ("\n", " "):
        at = head.rfind(separator, start)
        if at > 0:
            return head[:at].rstrip(), True
    return head, True
