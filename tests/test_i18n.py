"""The user's language: the catalogs are complete and sound (every message translated, the same
placeholders, the same edges, the compiled .mo in step with its .po, the template in step with
the code), a language_code picks the right one, BOT_LANGUAGE forces one, and through the real
bot.py a Spanish-speaking user gets /help in Spanish and the command menu in every language."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from botcore import texts
from botcore.build import menus
from botcore.config import parse_settings
from botcore.errors import ConfigError
from botcore.i18n import ENGLISH, LOCALE_DIR, SHIPPED, Languages, current, shipped, speaking
from botcore.routing import help_text

from .botproc import BotProcess
from .conftest import eventually
from .fakes import FakeOpenAI, FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [language for language in SHIPPED if language != ENGLISH]


def catalog(language: str) -> Catalog:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "bot.po").open("rb") as po:
        return read_po(po, locale=language)


def template() -> set[str]:
    with (LOCALE_DIR / "bot.pot").open("rb") as pot:
        return {message.id for message in read_po(pot) if message.id}


def fields(text: str) -> list[tuple[str, str]]:
    """The placeholders of a str.format text, with their format specs ("{size:.0f}")."""
    return sorted(
        (name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None
    )


def test_the_template_holds_every_text_the_code_marks() -> None:
    marked = {
        message
        for _, _, message, *_ in extract_from_dir(str(ROOT / "botcore"), [("**.py", "python")])
        if isinstance(message, str)
    }
    assert marked == template(), "run the pybabel extract and update commands in the README"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_catalog_translates_every_message_with_the_same_placeholders(language: str) -> None:
    messages = {message.id: message for message in catalog(language) if message.id}
    assert set(messages) == template(), f"{language}: run pybabel update (README)"
    problems = []
    for english, message in messages.items():
        translated = message.string
        if not translated or message.fuzzy:
            problems.append(f"not translated: {english!r}")
            continue
        try:
            if fields(translated) != fields(english):
                problems.append(f"placeholders differ: {english!r} -> {translated!r}")
        except ValueError as exc:  # a stray or unclosed brace
            problems.append(f"broken {exc}: {translated!r}")
        for edge in (" ", "\n"):  # concatenated with other texts: the joins must stay
            if english.startswith(edge) != translated.startswith(edge) or english.endswith(
                edge
            ) != translated.endswith(edge):
                problems.append(f"{edge!r} at an edge differs: {english!r} -> {translated!r}")
    assert problems == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_one_its_po_file_makes(language: str) -> None:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "bot.mo").open("rb") as mo:
        compiled = {message.id: message.string for message in read_mo(mo) if message.id}
    written = {message.id: message.string for message in catalog(language) if message.id}
    assert compiled == written, "run pybabel compile (README)"


def test_a_language_code_picks_the_catalog_of_its_language() -> None:
    assert shipped("es") == "es" and shipped("es-419") == "es" and shipped("es-ES") == "es"
    assert shipped("pt-br") == "pt_BR" and shipped("PT-BR") == "pt_BR" and shipped("pt") == "pt_BR"
    assert shipped("uk") == "uk" and shipped("en-GB") == "en"
    assert shipped("zh-hans") is None and shipped("") is None and shipped(None) is None
    assert shipped("e") is None and shipped("../../etc") is None
    anyone = Languages()
    assert anyone.of("de-AT") == "de" and anyone.of("ja") == ENGLISH and anyone.of(None) == ENGLISH
    forced = Languages("fr")
    assert forced.of("es") == "fr" and forced.of(None) == "fr"


def test_bot_language_is_checked_when_the_bot_starts() -> None:
    base = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "OPENAI_API_KEY": "k"}
    assert parse_settings({**base, "BOT_LANGUAGE": "pt-BR"}).bot_language == "pt_BR"
    assert parse_settings(base).bot_language is None
    with pytest.raises(ConfigError, match="BOT_LANGUAGE"):
        parse_settings({**base, "BOT_LANGUAGE": "klingon"})


def test_texts_and_help_are_said_in_the_language_in_force_and_back_after() -> None:
    english_stop, english_failed, english_help = texts.NOTHING_TO_STOP, texts.failed(None), _english_help()
    with speaking("es"):
        assert current() == "es"
        assert english_stop != texts.NOTHING_TO_STOP
        assert english_failed != texts.failed(None) == texts.FAILED  # the table by cause too
        spanish_help = help_text(admin=False)
        assert "/reset" in spanish_help and spanish_help != english_help
        assert "3" in texts.RESET.format(count=3)  # its placeholder survives the translation
    assert english_stop == texts.NOTHING_TO_STOP and current() == ENGLISH


def _english_help() -> str:
    with speaking(ENGLISH):
        return help_text(admin=False)


def test_the_command_menu_is_made_in_every_shipped_language() -> None:
    by_code = menus(Languages())
    assert set(by_code) == {None, "en", "es", "pt", "de", "fr", "ru", "uk"}
    assert by_code[None] == by_code["en"]
    assert [name for name, _ in by_code["ru"]] == [name for name, _ in by_code[None]]  # same commands
    assert all(by_code[code] != by_code[None] for code in ("es", "pt", "de", "fr", "ru", "uk"))
    forced = menus(Languages("de"))
    assert all(menu == forced["de"] for menu in forced.values())  # every user gets German


async def test_a_spanish_speaking_user_gets_help_in_spanish_and_others_in_theirs(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    with speaking("es"):
        spanish_help = help_text(admin=False)
        spanish_unknown = texts.UNKNOWN_COMMAND
    process = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        tg.add_message(10, "/help", language_code="es")
        tg.add_message(11, "/help", language_code="en-US")
        tg.add_message(12, "/nosuch", language_code="es-419")
        await eventually(lambda: all(tg.texts_to(c) for c in (10, 11, 12)), timeout=20, what="the replies")
    finally:
        await process.stop_clean()
    assert tg.texts_to(10) == [spanish_help]
    assert tg.texts_to(11) == [_english_help()]
    assert tg.texts_to(12) == [spanish_unknown]
    registered = {p.get("language_code"): p for m, p in tg.calls if m == "setMyCommands"}
    assert set(registered) == {None, "en", "es", "pt", "de", "fr", "ru", "uk"}
    assert registered["es"]["commands"] != registered[None]["commands"]
