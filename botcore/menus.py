"""The inline keyboards of /settings, /model and /persona, and the data their buttons carry
(at most 64 bytes, Telegram's limit): what each screen says and offers, nothing else. Pure: no
I/O, no storage; the ``prefs`` service decides what a press does."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from botcore import texts
from botcore.i18n import gettext
from botcore.personas import Persona

Keyboard = list[list[tuple[str, str]]]  # rows of (label, callback data)
Screen = tuple[str, Keyboard]  # a menu message's text and its buttons

MAX_DATA_BYTES = 64  # Telegram's limit on a button's callback data
PAGE = 8  # models per page of the /model menu
_LABEL_CHARS = 48  # a button's label, cut (the data keeps the whole name)
_TEXT_CHARS = 3500  # a menu's text stays well inside Telegram's 4096
_PAGE_NUMBER = re.compile(r"[0-9]{1,5}")  # ASCII digits only: "²".isdigit() is true

# Verbs of the callback data "<verb>:<argument>"
MODEL = "m"  # m:<name>, or m#<digest> for a name too long to carry
MODELS = "ml"  # ml:<page>: a page of the model list
PERSONA = "p"  # p:<name>
PERSONAS = "pl"  # pl: the persona list
SETTINGS = "s"  # s: the settings screen
TOGGLE = "t"  # t:stream=1, t:memory=0: the state to set (a press run twice sets it twice)
TOGGLES = ("stream=1", "stream=0", "memory=1", "memory=0")


@dataclass(frozen=True, slots=True)
class Press:
    verb: str
    argument: str
    hashed: bool = False  # the argument is a digest of a model name, not the name


def parse_press(data: str) -> Press | None:
    """The press a button's data stands for; None for data we never made (an older version's
    buttons, or a forged press: callback data comes from the client)."""
    if data.startswith(MODEL + "#"):
        return Press(MODEL, data[2:], hashed=True)
    verb, sep, argument = data.partition(":")
    if not sep or verb not in (MODEL, MODELS, PERSONA, PERSONAS, SETTINGS, TOGGLE):
        return None
    if verb == TOGGLE and argument not in TOGGLES:
        return None
    if verb == MODELS and not _PAGE_NUMBER.fullmatch(argument):
        return None
    return Press(verb, argument)


def navigates(press: Press) -> bool:
    """A press that only shows another menu (changes nothing): it need not wait its turn."""
    return press.verb in (MODELS, PERSONAS, SETTINGS)


def model_data(name: str) -> str:
    data = f"{MODEL}:{name}"
    return data if len(data.encode()) <= MAX_DATA_BYTES else f"{MODEL}#{digest(name)}"


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def find_hashed(argument: str, names: Sequence[str]) -> str | None:
    """The model among ``names`` whose digest a long name's button carries."""
    return next((name for name in names if digest(name) == argument), None)


@dataclass(frozen=True, slots=True)
class View:
    """One chat's settings as they apply now."""

    model: str
    default_model: str
    persona: Persona
    stream: bool
    memory: bool
    history_messages: int
    history_days: float
    voice: str = "off"  # voice replies: off, on or auto


def settings_screen(view: View, note: str = "") -> Screen:
    model = view.model + (texts.DEFAULT_MARK if view.model == view.default_model else "")
    if view.history_messages <= 0:
        memory = texts.MEMORY_DISABLED
    elif view.memory:
        memory = texts.MEMORY_ON.format(count=view.history_messages, days=f"{view.history_days:g}")
    else:
        memory = texts.OFF
    text = texts.SETTINGS.format(
        model=model,
        persona=view.persona.name,
        description=gettext(view.persona.description),  # a built-in one's is translated
        stream=_state(view.stream),
        memory=memory,
        voice=view.voice,
    )
    stream = texts.BUTTON_STREAM_OFF if view.stream else texts.BUTTON_STREAM_ON
    toggles = [(stream, f"{TOGGLE}:stream={int(not view.stream)}")]
    if view.history_messages > 0:  # else the owner turned memory off for every chat
        memory_button = texts.BUTTON_MEMORY_OFF if view.memory else texts.BUTTON_MEMORY_ON
        toggles.append((memory_button, f"{TOGGLE}:memory={int(not view.memory)}"))
    keyboard = [[(texts.BUTTON_MODEL, f"{MODELS}:0"), (texts.BUTTON_PERSONA, f"{PERSONAS}:")], toggles]
    return _noted(note, text), keyboard


def models_screen(names: Sequence[str], view: View, page: int, *, caveat: str = "", note: str = "") -> Screen:
    """A page of the models to choose from; ``caveat`` says why the list is short, if it is (the
    server lists no models, or could not be asked: a name can be typed)."""
    pages = max(1, -(-len(names) // PAGE))
    page = min(max(page, 0), pages - 1)
    shown = names[page * PAGE : (page + 1) * PAGE]
    keyboard: Keyboard = [[(_model_label(name, view), model_data(name))] for name in shown]
    nav = []
    if page > 0:
        nav.append((texts.BUTTON_PREVIOUS, f"{MODELS}:{page - 1}"))
    if page + 1 < pages:
        nav.append((texts.BUTTON_NEXT.format(page=page + 2, pages=pages), f"{MODELS}:{page + 1}"))
    keyboard += [nav] if nav else []
    keyboard.append([(texts.BUTTON_BACK, f"{SETTINGS}:")])
    text = texts.MODELS.format(model=view.model) + caveat
    return _noted(note, text), keyboard


def personas_screen(personas: Sequence[Persona], view: View, note: str = "") -> Screen:
    keyboard: Keyboard = [
        [(("✅ " if p.name == view.persona.name else "") + p.name, f"{PERSONA}:{p.name}")] for p in personas
    ]
    keyboard.append([(texts.BUTTON_BACK, f"{SETTINGS}:")])
    lines = "\n".join(f"• {p.name} — {gettext(p.description)}" for p in personas)
    if len(lines) > _TEXT_CHARS:  # many personas with long descriptions: the buttons name them
        lines = ""
    return _noted(note, texts.PERSONAS.format(persona=view.persona.name, lines=lines).rstrip()), keyboard


def _model_label(name: str, view: View) -> str:
    label = name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"
    return ("✅ " if name == view.model else "") + label


def _state(on: bool) -> str:
    return texts.ON if on else texts.OFF


def _noted(note: str, text: str) -> str:
    return f"{note}\n\n{text}" if note else text
