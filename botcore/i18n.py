"""The language the bot speaks to a user in: the catalogs it ships (gettext ``.mo`` files
compiled with Babel from ``botcore/locale/<language>/LC_MESSAGES/bot.po``), which of them a
Telegram ``language_code`` picks, and the one in force while an update or a job is handled. That
one is a context variable, as in Django's ``translation.override``: every text said meanwhile,
wherever it is said (and in the tasks started meanwhile), is in that language."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from babel.support import NullTranslations, Translations

DOMAIN = "bot"
LOCALE_DIR = Path(__file__).parent / "locale"
ENGLISH = "en"  # the language the texts are written in, and the fallback
SHIPPED = ("en", "es", "pt_BR", "de", "fr", "ru", "uk")  # by their catalogs' names
_CODE_RE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_language: ContextVar[str] = ContextVar("language", default=ENGLISH)


def N_(message: str) -> str:
    """Marks a text for extraction (``pybabel extract -k N_``); translated where it is said."""
    return message


@functools.cache
def _catalog(language: str) -> NullTranslations:
    if language == ENGLISH:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [language], DOMAIN)


def gettext(message: str) -> str:
    """``message`` (English, as written) in the language in force."""
    return _catalog(_language.get()).gettext(message)


def current() -> str:
    return _language.get()


@contextlib.contextmanager
def speaking(language: str) -> Iterator[None]:
    """Texts said in this block (and in the tasks it starts) are in ``language``."""
    token = _language.set(language)
    try:
        yield
    finally:
        _language.reset(token)


def shipped(code: str | None) -> str | None:
    """The shipped catalog for a language tag ("es", "pt-br", "es-419", "pt"), or None: the
    exact one, else one of the same language ("es-419" is read as "es", "pt" as "pt_BR")."""
    if not code or not _CODE_RE.match(code):
        return None
    wanted = code.replace("-", "_").lower()
    by_name = {name.lower(): name for name in SHIPPED}
    base = wanted.split("_")[0]
    if wanted in by_name:
        return by_name[wanted]
    if base in by_name:
        return by_name[base]
    return next((name for name in SHIPPED if name.split("_")[0].lower() == base), None)


def telegram_code(language: str) -> str:
    """The two-letter code Telegram's setMyCommands takes for a catalog ("pt_BR" -> "pt")."""
    return language.split("_")[0]


class Languages:
    """Who is spoken to in which language: everyone in ``forced`` (BOT_LANGUAGE) if set, else
    each user in theirs (Telegram's ``language_code``) when it is shipped, else English."""

    def __init__(self, forced: str | None = None) -> None:
        self.default = forced or ENGLISH
        self._forced = forced is not None

    def of(self, language_code: str | None) -> str:
        if self._forced:
            return self.default
        return shipped(language_code) or self.default
