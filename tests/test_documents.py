"""Documents as text (botcore.documents): text files decoded for real, PDFs read by the real
pypdf child process, whose timeout, cancellation and memory cap are checked in /proc. The
fixtures come from tests/fixtures/make_media.py, which also builds the larger PDFs here."""

from __future__ import annotations

import asyncio
import io
import os
import random
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from botcore.documents import SUPPORTED, document_kind, extract_text
from botcore.errors import Cause, PermanentError

from .conftest import eventually
from .fixtures.make_media import SECRET, pdf

FIXTURES = Path(__file__).with_name("fixtures")
TWO_PAGES = (FIXTURES / "two_pages.pdf").read_bytes()
LINE = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."


def children() -> set[int]:
    """This process's child processes, read from /proc (zombies included: a child that was
    killed but never waited for is still listed)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it ended while we looked
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def many_pages(count: int, *, broken_last: bool = False) -> bytes:
    """``count`` pages of 13 lines each (about 1,000 characters); the last one unreadable if asked."""
    pages = [f"Page {n}.\n" + "\n".join([LINE] * 12) for n in range(1, count + 1)]
    return pdf(pages, broken={count - 1} if broken_last else ())


async def failure(data: bytes, **options: object) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        await extract_text(data, **options)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize(
    ("filename", "mime", "kind"),
    [
        ("report.pdf", "application/pdf", "pdf"),
        ("REPORT.PDF", "", "pdf"),
        ("", "application/pdf", "pdf"),
        ("scan", "application/pdf; charset=binary", "pdf"),
        ("notes.txt", "text/plain", "text"),
        ("notes.md", "application/octet-stream", "text"),
        ("data.csv", "text/csv", "text"),
        ("table.tsv", "", "text"),
        ("config.yaml", "application/x-yaml", "text"),
        ("main.py", "text/x-python", "text"),
        ("app.tsx", "", "text"),
        ("lib.rs", "", "text"),
        ("Makefile", "", "text"),
        ("page.html", "text/html", "text"),
        ("", "text/plain; charset=utf-8", "text"),
        ("", "application/json", "text"),
        ("", "application/vnd.api+json", "text"),
        ("photo.jpg", "image/jpeg", "image"),
        ("photo.JPEG", "", "image"),
        ("IMG_0001.HEIC", "image/heic", "image"),
        ("sticker.webp", "", "image"),
        ("anim.gif", "image/gif", "image"),
        ("", "image/png", "image"),
        ("scan.bmp", "image/x-ms-bmp", "image"),
        ("archive.zip", "application/zip", None),
        ("letter.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", None),
        ("song.mp3", "audio/mpeg", None),
        ("clip.ts", "video/mp2t", None),  # a video, despite TypeScript's extension
        ("program.exe", "application/x-msdownload", None),
        ("noextension", "application/octet-stream", None),
        ("", "", None),
    ],
)
def test_document_kind(filename: str, mime: str, kind: str | None) -> None:
    assert document_kind(filename, mime) == kind


def test_supported_is_a_short_list_for_users() -> None:
    assert "PDF" in SUPPORTED and "Markdown" in SUPPORTED and len(SUPPORTED) < 200


async def test_a_markdown_file_is_read_as_it_is() -> None:
    data = (FIXTURES / "notes.md").read_bytes()
    extracted = await extract_text(data, kind="text")
    assert extracted.text == data.decode()
    assert (extracted.truncated, extracted.pages) == (False, None)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\xef\xbb\xbfcaf\xc3\xa9", "café"),  # UTF-8 with a byte-order mark (Windows Notepad)
        ("\ufeffcafé\r\nnaïve".encode("utf-16-le"), "café\nnaïve"),  # PowerShell's `>`
        ("\ufeffcafé".encode("utf-16-be"), "café"),
        ("café naïve".encode("latin-1"), "café naïve"),  # not UTF-8: Latin-1…
        (b"\x93quoted\x94 \x80 5", "“quoted” € 5"),  # …or rather Windows-1252
        ("über straße ".encode() * 20 + b"\xff", "über straße " * 20 + "\ufffd"),  # UTF-8, one bad byte
        (b"one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
        (LINE.encode() + b" A few\x00 NULs\x00 in text.", LINE + " A few NULs in text."),
    ],
    ids=["utf8-bom", "utf16le-bom", "utf16be-bom", "latin1", "cp1252", "utf8-damaged", "newlines", "nuls"],
)
async def test_text_is_decoded_and_normalised(data: bytes, text: str) -> None:
    assert (await extract_text(data, kind="text")).text == text


@pytest.mark.parametrize(
    "data",
    [
        random.Random(3).randbytes(20_000),
        b"\x00" * 500 + b"hello" + b"\x00" * 500,
        (FIXTURES / "photo.jpg").read_bytes(),
        "no byte-order mark: UTF-16 looks binary".encode("utf-16-le"),
    ],
    ids=["random", "nuls", "jpeg", "utf16-without-bom"],
)
async def test_binary_data_with_a_text_name_is_a_bad_file(data: bytes) -> None:
    error = await failure(data, kind="text")
    assert error.cause is Cause.BAD_FILE


async def test_long_text_is_cut_at_a_word_and_flagged() -> None:
    data = " ".join(f"word{n}" for n in range(10_000)).encode()
    extracted = await extract_text(data, kind="text", max_chars=1_000)
    assert extracted.truncated
    assert 900 < len(extracted.text) <= 1_000
    assert data.decode().startswith(extracted.text + " ")  # ends at a whole word
    exact = await extract_text(data[:1_000], kind="text", max_chars=1_000)
    assert not exact.truncated and len(exact.text) == 1_000


async def test_long_text_is_cut_at_a_line_when_there_is_one() -> None:
    data = "\n".join([LINE] * 100).encode()
    extracted = await extract_text(data, kind="text", max_chars=1_000)
    assert extracted.truncated and extracted.text.endswith(LINE)
    assert extracted.text == "\n".join([LINE] * extracted.text.count("\n") + [LINE])


async def test_a_whole_megabytes_long_file_is_decoded() -> None:
    data = ("Ünïcödé line\n" * 800_000).encode()  # about 12 MB
    extracted = await extract_text(data, kind="text")
    assert extracted.truncated and extracted.text.startswith("Ünïcödé line\n")


@pytest.mark.parametrize("data", [b"", b"  \n\r\n\t "], ids=["empty", "blank"])
async def test_an_empty_text_file_has_no_text(data: bytes) -> None:
    assert (await failure(data, kind="text")).cause is Cause.NO_TEXT


async def test_only_text_and_pdf_have_text_to_extract() -> None:
    with pytest.raises(ValueError, match="image"):
        await extract_text(b"", kind="image")


async def test_a_pdf_s_text_is_found_on_its_second_page() -> None:
    extracted = await extract_text(TWO_PAGES, kind="pdf")
    assert SECRET in extracted.text and "page one" in extracted.text
    assert extracted.text.index("page one") < extracted.text.index(SECRET)
    assert (extracted.pages, extracted.truncated) == (2, False)


async def test_a_scanned_pdf_has_no_text() -> None:
    error = await failure((FIXTURES / "scan.pdf").read_bytes(), kind="pdf")
    assert error.cause is Cause.NO_TEXT


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\n" + random.Random(5).randbytes(3_000), b"", b"plain text, not a PDF"],
    ids=["junk", "empty", "text"],
)
async def test_a_corrupt_pdf_is_a_bad_file(data: bytes) -> None:
    error = await failure(data, kind="pdf")
    assert error.cause is Cause.BAD_FILE
    assert str(error).startswith("PDF: ")


async def test_reading_stops_once_max_chars_are_reached() -> None:
    """300 pages whose last one cannot be read: read to the end, the file fails; with a limit
    that the first pages meet, the reader never gets there."""
    data = many_pages(300, broken_last=True)
    assert (await failure(data, kind="pdf", max_chars=10_000_000)).cause is Cause.BAD_FILE
    extracted = await extract_text(data, kind="pdf", max_chars=5_000)
    assert extracted.truncated and extracted.pages == 300
    assert 4_500 < len(extracted.text) <= 5_000
    assert extracted.text.startswith("Page 1.\n" + LINE) and "Page 300." not in extracted.text


async def test_a_pdf_within_max_chars_is_not_truncated() -> None:
    extracted = await extract_text(many_pages(5), kind="pdf", max_chars=100_000)
    assert not extracted.truncated and "Page 5." in extracted.text


def encrypted(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(TWO_PAGES)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_a_pdf_encrypted_without_a_user_password_is_read() -> None:
    assert SECRET in (await extract_text(encrypted(""), kind="pdf")).text


async def test_a_password_protected_pdf_is_a_bad_file() -> None:
    error = await failure(encrypted("sesame"), kind="pdf")
    assert error.cause is Cause.BAD_FILE and "password" in str(error)


async def test_a_timeout_kills_the_child() -> None:
    before = children()
    error = await failure(TWO_PAGES, kind="pdf", timeout_s=0.001)
    assert error.cause is Cause.BAD_FILE and "too large or too complex to read" in str(error)
    assert children() - before == set()


async def test_cancellation_kills_the_child() -> None:
    before = children()
    task = asyncio.create_task(extract_text(many_pages(1_000), kind="pdf", max_chars=10_000_000))
    await eventually(lambda: children() - before, timeout=10, what="the child")  # seen while it runs…
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children() - before == set()  # …and is gone, reaped, once the call is cancelled


async def test_the_memory_cap_stops_the_child() -> None:
    """16 MB is less than pypdf needs to load at all (the same path as a PDF that needs more)."""
    error = await failure(TWO_PAGES, kind="pdf", max_memory_mb=16)
    assert error.cause is Cause.BAD_FILE and "too large or too complex to read" in str(error)
    assert SECRET in (await extract_text(TWO_PAGES, kind="pdf", max_memory_mb=64)).text
