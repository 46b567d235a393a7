"""``MODEL_PRICES``: what each model costs per million input and output tokens, so costs stay
right when a chat uses another model than ``OPENAI_MODEL``. Written inline
(``gpt-4o=2.5/10, gpt-4o-mini=0.15/0.6``) or as the path of a TOML file
(``["gpt-4o"]`` tables with ``input`` and ``output``). Parsed once, at startup."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from botcore.errors import ConfigError

ModelPrices = dict[str, tuple[float, float]]  # model -> (input, output) USD per 1M tokens
_INLINE = "model=input/output pairs, like gpt-4o=2.5/10, gpt-4o-mini=0.15/0.6, or a .toml file's path"


def parse_model_prices(value: str) -> ModelPrices:
    """The prices ``value`` gives; ConfigError naming MODEL_PRICES when it is malformed."""
    value = value.strip()
    if not value:
        return {}
    if value.endswith(".toml"):
        return _from_file(Path(value).expanduser())
    prices: ModelPrices = {}
    for pair in value.split(","):
        if not pair.strip():
            continue  # a trailing comma
        model, sep, costs = pair.strip().rpartition("=")
        given, slash, output = costs.partition("/")
        if not (model.strip() and sep and slash):
            raise ConfigError("MODEL_PRICES", _INLINE, pair.strip())
        prices[model.strip()] = (_price(given, pair), _price(output, pair))
    return prices


def _from_file(path: Path) -> ModelPrices:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("MODEL_PRICES", "a readable TOML file", f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("MODEL_PRICES", "a valid TOML file", f"{path}: {exc}") from None
    prices: ModelPrices = {}
    for model, table in data.items():
        if not isinstance(table, dict) or not {"input", "output"} <= set(table):
            raise ConfigError(
                "MODEL_PRICES", f"a table with input and output for each model in {path}", model
            )
        prices[model] = (_price(table["input"], model), _price(table["output"], model))
    return prices


def _price(value: object, where: str) -> float:
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError("MODEL_PRICES", "prices in USD per million tokens", where.strip()) from None
    if not math.isfinite(price) or price < 0:
        raise ConfigError("MODEL_PRICES", "prices of 0 or more", where.strip())
    return price
