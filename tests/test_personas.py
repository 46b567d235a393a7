"""Personas (the built-ins and PERSONAS_FILE) and ALLOWED_MODELS, parsed the way the bot parses
them: through ``parse_settings``, with real files in ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botcore.config import DEFAULT_SYSTEM_PROMPT, parse_settings
from botcore.errors import ConfigError
from botcore.personas import DEFAULT_PERSONA, Persona, built_in

from .conftest import KEY, TOKEN

BASE = {"TELEGRAM_BOT_TOKEN": TOKEN, "OPENAI_API_KEY": KEY}
BUILT_INS = ["assistant", "translator", "coder", "concise"]


def personas(tmp_path: Path, name: str, text: str) -> dict[str, Persona]:
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    return parse_settings({**BASE, "PERSONAS_FILE": str(file)}).personas


def test_the_built_ins_in_menu_order() -> None:
    found = parse_settings(BASE).personas
    assert list(found) == BUILT_INS
    assert DEFAULT_PERSONA == "assistant"
    assert found["assistant"].prompt == DEFAULT_SYSTEM_PROMPT
    for name, persona in found.items():
        assert persona.name == name
        assert 0 < len(persona.description) <= 60
        assert "Telegram chat" in persona.prompt
    assert "translation only" in found["translator"].prompt
    assert "fenced" in found["coder"].prompt
    assert "few words" in found["concise"].prompt
    assert len({p.prompt for p in found.values()}) == 4


def test_the_assistant_speaks_with_system_prompt() -> None:
    found = parse_settings({**BASE, "SYSTEM_PROMPT": "You are a cat. Meow."}).personas
    assert found["assistant"].prompt == "You are a cat. Meow."
    assert parse_settings({**BASE, "SYSTEM_PROMPT": ""}).personas["assistant"].prompt == ""
    assert built_in("x")["coder"] == parse_settings(BASE).personas["coder"]  # only assistant varies


def test_a_toml_file_adds_one_and_replaces_coder(tmp_path: Path) -> None:
    found = personas(
        tmp_path,
        "personas.toml",
        '[pirate]\ndescription = "talks like a pirate"\n'
        'prompt = "You are a pirate. Answer in pirate speak."\n'
        '\n[Coder]\nprompt = """\nYou write Rust only.\n"""\n',
    )
    assert list(found) == [*BUILT_INS, "pirate"]  # the replaced coder keeps its place
    assert found["pirate"] == Persona(
        "pirate", "talks like a pirate", "You are a pirate. Answer in pirate speak."
    )
    assert found["coder"] == Persona("coder", "You write Rust only.", "You write Rust only.")
    assert found["assistant"].prompt == DEFAULT_SYSTEM_PROMPT


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_a_yaml_file_adds_one_and_replaces_coder(tmp_path: Path, suffix: str) -> None:
    long_prompt = "You review code line by line and point out every bug, risk and unclear name you see."
    found = personas(
        tmp_path,
        "personas" + suffix,
        "# comments are fine\n"
        "reviewer:\n"
        "  prompt: >\n"
        f"    {long_prompt}\n"
        "coder:\n"
        "  description: Go only\n"
        "  prompt: |\n"
        "    You write Go.\n"
        "    Nothing else.\n",
    )
    assert list(found) == [*BUILT_INS, "reviewer"]
    assert found["coder"] == Persona("coder", "Go only", "You write Go.\nNothing else.")
    reviewer = found["reviewer"]
    assert reviewer.prompt == long_prompt
    assert reviewer.description.endswith("…") and len(reviewer.description) <= 50
    assert long_prompt.startswith(reviewer.description[:-1])


@pytest.mark.parametrize("name", ["empty.yaml", "comments.yml", "empty.toml"])
def test_an_empty_file_adds_nothing(tmp_path: Path, name: str) -> None:
    assert list(personas(tmp_path, name, "# nothing yet\n" if "comments" in name else "")) == BUILT_INS


def test_forty_personas_fit_and_a_forty_first_does_not(tmp_path: Path) -> None:
    def file(count: int) -> str:
        return "".join(f'[p{i}]\nprompt = "Persona {i}."\n' for i in range(count))

    assert len(personas(tmp_path, "forty.toml", file(36))) == 40
    assert len(personas(tmp_path, "replaced.toml", file(36) + '[coder]\nprompt = "x"\n')) == 40
    with pytest.raises(ConfigError) as err:
        personas(tmp_path, "many.toml", file(37))
    assert err.value.variable == "PERSONAS_FILE" and "41 personas" in str(err.value)


BAD_FILES = [
    ("syntax.toml", '[pirate]\nprompt = "unterminated\n', "line 2"),
    ("list.yaml", "- pirate\n- ninja\n", "a list"),
    ("empty-list.yaml", "[]\n", "a list"),
    ("space.toml", '["pi rate"]\nprompt = "x"\n', "pi rate"),
    ("dash.toml", '["-pirate"]\nprompt = "x"\n', "-pirate"),
    ("long.toml", f'[{"p" * 33}]\nprompt = "x"\n', "p" * 33),
    ("accent.toml", '["pirató"]\nprompt = "x"\n', "pirató"),
    ("kelvin.toml", '["\u212a"]\nprompt = "x"\n', "\u212a"),  # lower-cases to an ASCII k
    ("number.yaml", "42:\n  prompt: x\n", "42"),
    ("collide.toml", '[Pirate]\nprompt = "x"\n[pirate]\nprompt = "y"\n', "Pirate and pirate"),
    ("twice.yaml", "pirate:\n  prompt: x\npirate:\n  prompt: y\n", "line 3"),
    ("control.yaml", "pirate:\n  prompt: a\x01b\n", "unacceptable character"),
    ("twice-key.yml", "pirate:\n  prompt: x\n  prompt: y\n", "twice"),
    ("string.toml", 'pirate = "arr"\n', "[pirate] is a str"),
    ("none.yaml", "pirate:\n", "[pirate] is a NoneType"),
    ("no-prompt.toml", '[pirate]\ndescription = "arr"\n', "[pirate] prompt"),
    ("blank.toml", '[pirate]\nprompt = "   "\n', "[pirate] prompt"),
    ("int.yaml", "pirate:\n  prompt: 42\n", "[pirate] prompt = 42"),
    ("huge.toml", f'[pirate]\nprompt = "{"a" * 8001}"\n', "[pirate] has 8001"),
    ("desc-int.yaml", "pirate:\n  prompt: x\n  description: 5\n", "[pirate] description = 5"),
    ("desc-long.toml", f'[pirate]\nprompt = "x"\ndescription = "{"d" * 101}"\n', "[pirate] description"),
    ("unknown.toml", '[pirate]\nprompt = "x"\ntemperature = 0.2\nmodel = "o3"\n', "model, temperature"),
    ("personas.json", '{"pirate": {"prompt": "x"}}', ".json"),
]


@pytest.mark.parametrize(("name", "text", "fragment"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_bad_file_names_the_variable_the_file_and_the_fault(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        personas(tmp_path, name, text)
    message = str(err.value)
    assert err.value.variable == "PERSONAS_FILE"
    assert message.startswith("PERSONAS_FILE: expected ") and "\n" not in message
    assert name in message
    assert fragment in message


def test_the_longest_prompt_and_description_allowed_are_accepted(tmp_path: Path) -> None:
    found = personas(
        tmp_path, "edge.toml", f'[pirate]\nprompt = "{"a" * 8000}"\ndescription = "{"d" * 100}"\n'
    )
    assert (len(found["pirate"].prompt), len(found["pirate"].description)) == (8000, 100)
    assert "p" * 32 in personas(tmp_path, "name.toml", f'[{"p" * 32}]\nprompt = "x"\n')


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "latin1.yaml").write_bytes(b"pirate:\n  prompt: caf\xe9\n")
    for path in (tmp_path / "missing.toml", tmp_path / "dir.toml", tmp_path / "latin1.yaml"):
        with pytest.raises(ConfigError) as err:
            parse_settings({**BASE, "PERSONAS_FILE": str(path)})
        assert err.value.variable == "PERSONAS_FILE" and path.name in str(err.value)


def test_allowed_models() -> None:
    def allowed(value: str, model: str = "") -> tuple[str, ...]:
        return parse_settings({**BASE, "ALLOWED_MODELS": value, "OPENAI_MODEL": model}).allowed_models

    assert parse_settings(BASE).allowed_models == ()  # any model
    assert allowed("") == allowed(" , ,") == ()
    assert allowed(" gpt-4o , gpt-4o-mini,,gpt-4o, o3 ") == ("gpt-4o", "gpt-4o-mini", "o3")  # order kept
    assert allowed("gpt-4o, o3") == ("gpt-4o-mini", "gpt-4o", "o3")  # OPENAI_MODEL first
    assert allowed("qwen3:4b,deepseek/deepseek-r1", "llama3.2") == (
        "llama3.2",
        "qwen3:4b",
        "deepseek/deepseek-r1",
    )
    assert allowed("m" * 200) == ("gpt-4o-mini", "m" * 200)
    for bad in ("gpt 4o", "gpt-4o,o3 mini", "a\tb", "m" * 201):
        with pytest.raises(ConfigError) as err:
            allowed(bad)
        assert err.value.variable == "ALLOWED_MODELS"


@given(
    names=st.lists(st.sampled_from(["gpt-4o", "gpt-4o-mini", "o3", "llama3.2", "qwen3:4b"]), max_size=8),
    spaces=st.sampled_from(["", " ", "  "]),
)
def test_allowed_models_keep_each_name_once_in_order(names: list[str], spaces: str) -> None:
    value = ",".join(f"{spaces}{name}{spaces}" for name in names)
    found = parse_settings({**BASE, "ALLOWED_MODELS": value}).allowed_models
    if not names:
        assert found == ()
        return
    assert len(found) == len(set(found)) and set(found) == {*names, "gpt-4o-mini"}
    listed = [name for name in found if name in names]
    assert listed == list(dict.fromkeys(names))
    assert "gpt-4o-mini" in names or found[0] == "gpt-4o-mini"
