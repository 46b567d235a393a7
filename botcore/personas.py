"""Personas: named system prompts a chat may pick with ``/persona``. Owns the four built-ins and
``PERSONAS_FILE`` (TOML or YAML), which adds personas or replaces built-ins; parsed once, at
startup. It knows nothing of chats or of which persona a chat has chosen."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from botcore.errors import ConfigError
from botcore.i18n import N_


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    description: str  # shown in the /persona menu
    prompt: str  # the system prompt; may be empty (then no system message is sent)


DEFAULT_PERSONA = "assistant"
MAX_PERSONAS = 40  # one Telegram keyboard must hold them all
MAX_PROMPT_CHARS = 8000
MAX_DESCRIPTION_CHARS = 100
# Names go into 64-byte callback data and into "/persona <name>": short, lower-case ASCII.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_KEYS = frozenset({"prompt", "description"})

_TRANSLATOR = (
    "You are a translator in a Telegram chat. Translate whatever the user sends into English, or "
    "into the language they name (for example 'into German: ...'), keeping its meaning, tone and "
    "formatting. Reply with the translation only, without notes or explanations."
)
_CODER = (
    "You are a programming assistant in a Telegram chat. Help the user write, fix and understand "
    "code. Put code in fenced blocks marked with its language (```python). Keep explanations "
    "brief, in the language the user writes in."
)
_CONCISE = (
    "You are a helpful assistant in a Telegram chat. Answer in as few words as possible: no "
    "greeting, no restating the question, no filler. Use a sentence only when a word will not do."
)


def built_in(system_prompt: str) -> dict[str, Persona]:
    """The built-in personas, in menu order; ``assistant`` speaks with the SYSTEM_PROMPT setting."""
    personas = (
        Persona(DEFAULT_PERSONA, N_("a helpful general assistant"), system_prompt),
        Persona("translator", N_("translates into English, or the language you name"), _TRANSLATOR),
        Persona("coder", N_("programming help, code in fenced blocks"), _CODER),
        Persona("concise", N_("answers in as few words as possible"), _CONCISE),
    )
    return {persona.name: persona for persona in personas}


def load_personas(value: str, system_prompt: str) -> dict[str, Persona]:
    """The built-ins with ``value``'s file (the PERSONAS_FILE setting) laid over them: a replaced
    built-in keeps its place, new personas follow in file order. ConfigError when it is malformed."""
    personas = built_in(system_prompt)
    if not value.strip():
        return personas
    path = Path(value.strip()).expanduser()
    seen: dict[str, object] = {}  # lower-cased name -> the name as written
    for raw, entry in _read(path).items():
        name = _name(raw, path)
        if name in seen:
            _fail("each name once (upper and lower case are the same)", path, f"{seen[name]} and {raw}")
        seen[name] = raw
        personas[name] = _persona(name, entry, path)
    if len(personas) > MAX_PERSONAS:
        _fail(f"at most {MAX_PERSONAS} personas, built-ins included", path, f"{len(personas)} personas")
    return personas


def _read(path: Path) -> dict[Any, Any]:
    """The file's top-level mapping, whichever format its extension names."""
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError("PERSONAS_FILE", "the path of a .toml, .yaml or .yml file", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("PERSONAS_FILE", "a readable file", f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("PERSONAS_FILE", "a UTF-8 text file", str(path)) from None
    if suffix == ".toml":
        try:
            data: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("PERSONAS_FILE", "a valid TOML file", f"{path}: {exc}") from None
    else:
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.MarkedYAMLError as exc:  # its str spans lines; the operator gets one
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(
                "PERSONAS_FILE", "a valid YAML file", f"{path}: {exc.problem or exc.context}{where}"
            ) from None
        except yaml.YAMLError as exc:  # a ReaderError (a control character), also multi-line
            raise ConfigError(
                "PERSONAS_FILE", "a valid YAML file", f"{path}: {' '.join(str(exc).split())}"
            ) from None
    if data is None:  # an empty YAML file (or one of comments only) adds nothing
        return {}
    if not isinstance(data, dict):
        _fail("a mapping of persona names to personas", path, f"a {type(data).__name__}")
    return data


def _name(raw: object, path: Path) -> str:
    name = raw.lower() if isinstance(raw, str) and raw.isascii() else ""
    if not _NAME_RE.fullmatch(name):
        _fail("persona names of 1-32 letters, digits, - or _, starting with a letter or digit", path, raw)
    return name


def _persona(name: str, entry: object, path: Path) -> Persona:
    if not isinstance(entry, dict):
        _fail("a table with a prompt for each persona", path, f"[{name}] is a {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in _KEYS)
    if unknown:
        _fail("only prompt and description in a persona", path, f"[{name}] has {', '.join(unknown)}")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        _fail("a non-empty prompt (a string) for each persona", path, f"[{name}] prompt = {prompt!r}")
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_CHARS:
        _fail(f"prompts of at most {MAX_PROMPT_CHARS} characters", path, f"[{name}] has {len(prompt)}")
    description = entry.get("description", "")
    if not isinstance(description, str) or len(description.strip()) > MAX_DESCRIPTION_CHARS:
        _fail(
            f"a description of at most {MAX_DESCRIPTION_CHARS} characters",
            path,
            f"[{name}] description = {description!r}",
        )
    return Persona(name, " ".join(description.split()) or _summary(prompt), prompt)


def _summary(prompt: str, width: int = 50) -> str:
    """A description made from the prompt's start, cut at a word where one is near."""
    text = " ".join(prompt.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut[width // 2 :]:
        cut = cut.rpartition(" ")[0]
    return cut.rstrip(" ,.;:") + "…"


def _fail(expected: str, path: Path, got: object) -> NoReturn:
    """Stop with a ConfigError naming the file; ``got`` says which persona and what it has."""
    raise ConfigError("PERSONAS_FILE", f"{expected} in {path}", str(got))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice (plain PyYAML keeps the last silently,
    so a persona defined twice would vanish without a word); merge keys (``<<``) still work."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: list[object] = []
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark
                )
            seen.append(key)
        return super().construct_mapping(node, deep=deep)
