"""The child process that reads a PDF's text with pypdf: the PDF on stdin, one JSON line on stdout,
nothing else. It caps its own memory first and reads page by page, stopping once it has enough.
It knows nothing of the bot: botcore.documents starts it, bounds its time and kills it."""

from __future__ import annotations

import io
import json
import logging
import resource
import sys
import warnings
from typing import Any


def main(argv: list[str]) -> int:
    """``argv``: the most characters wanted, and the memory cap in MB."""
    max_chars, max_memory_mb = int(argv[0]), int(argv[1])
    cap = max_memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # before pypdf is even imported
    logging.disable(logging.CRITICAL)  # pypdf reports damaged files through logging
    warnings.simplefilter("ignore")  # this process's own filters: the parent's are untouched
    data = sys.stdin.buffer.read()
    answer, sys.stdout = sys.stdout, sys.stderr  # a stray print cannot corrupt the answer
    answer.write(json.dumps(_reply(data, max_chars)) + "\n")
    answer.flush()
    return 0


def _reply(data: bytes, max_chars: int) -> dict[str, Any]:
    try:
        return _read(data, max_chars)
    except MemoryError:
        return {"error": "too-large"}
    # This process exists to contain untrusted bytes: whatever pypdf raises on them (PdfReadError,
    # but also KeyError, RecursionError, NotImplementedError… on malformed files) means "unreadable".
    except Exception as exc:
        return {"error": "unreadable", "detail": type(exc).__name__}


def _read(data: bytes, max_chars: int) -> dict[str, Any]:
    """The text of the first pages, up to just past ``max_chars`` (the parent cuts it)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not _opens_without_password(reader):
        return {"error": "encrypted"}
    parts: list[str] = []
    length = 0
    for page in reader.pages:
        if length > max_chars:
            break
        text = page.extract_text() or ""
        length += len(text) + (2 if parts else 0)  # exactly the length of the joined text
        parts.append(text)
    return {"text": "\n\n".join(parts)[: max_chars + 1], "pages": len(reader.pages)}


def _opens_without_password(reader: Any) -> bool:
    from pypdf.errors import DependencyError

    try:
        return bool(reader.decrypt(""))  # PasswordType.NOT_DECRYPTED is 0
    except DependencyError:  # AES without the optional `cryptography` package
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
