import os
import subprocess
import sys
from pathlib import Path

import pytest

from botcore.config import load_settings, parse_settings
from botcore.errors import ConfigError
from botcore.models import Prices, Usage

from .conftest import ROOT, TOKEN

BASE = {"TELEGRAM_BOT_TOKEN": TOKEN, "OPENAI_API_KEY": "sk-test-key-0123456789"}


def test_defaults() -> None:
    s = parse_settings(BASE)
    assert s.telegram_api_url == "https://api.telegram.org"
    assert (s.openai_base_url, s.openai_model, s.openai_timeout_s) == (
        "https://api.openai.com/v1",
        "gpt-4o-mini",
        30.0,
    )
    assert (s.history_messages, s.history_ttl_days, s.max_reply_tokens) == (10, 7.0, 1000)
    assert s.system_prompt.startswith("You are a helpful assistant")
    assert s.data_dir == Path("./data")
    assert s.db_path == Path("./data/bot.db")
    assert s.sqlite_synchronous == "NORMAL"
    assert (s.job_lease_s, s.job_max_attempts, s.shutdown_grace_s) == (60.0, 4, 10.0)
    assert (s.job_retention_done_s, s.job_retention_dead_s) == (300.0, 3600.0)
    assert (s.worker_concurrency, s.llm_concurrency, s.transcription_concurrency) == (32, None, 3)  # auto
    assert s.llm_max_concurrency == 64
    assert parse_settings({**BASE, "LLM_CONCURRENCY": "8"}).llm_concurrency == 8
    assert parse_settings({**BASE, "LLM_CONCURRENCY": "AUTO"}).llm_concurrency is None
    assert s.admin_user_ids == frozenset()
    assert (s.stream, s.stream_edit_interval_s) == (True, 1.0)
    assert s.allowed_user_ids == frozenset() and s.allowed_chat_ids == frozenset()  # admins only
    assert parse_settings({**BASE, "ALLOWED_USER_IDS": "*"}).allowed_user_ids is None  # everyone
    assert parse_settings({**BASE, "ALLOWED_CHAT_IDS": "-1001, -1002"}).allowed_chat_ids == {-1001, -1002}
    assert (s.rate_limit_user_per_min, s.rate_limit_global_per_min, s.rate_limit_exempt_admins) == (
        10,
        100,
        True,
    )
    assert (s.price_input_per_1m, s.price_output_per_1m, s.price_transcription_per_min) == (0.15, 0.60, 0.006)
    assert (s.user_daily_budget_usd, s.user_monthly_budget_usd, s.global_daily_budget_usd) == (
        None,
        None,
        None,
    )
    assert s.daily_cost_alert_usd == 50.0
    assert parse_settings({**BASE, "DAILY_COST_ALERT_USD": "off"}).daily_cost_alert_usd is None
    assert parse_settings({**BASE, "USER_DAILY_BUDGET_USD": "0.5"}).user_daily_budget_usd == 0.5
    assert (s.telegram_rate_per_s, s.telegram_group_rate_per_min) == (30.0, 20.0)
    assert parse_settings({**BASE, "ADMIN_USER_IDS": " 12345, 67890 "}).admin_user_ids == {12345, 67890}
    assert s.secrets() == (TOKEN, "sk-test-key-0123456789")
    assert TOKEN not in repr(s) and "sk-test" not in repr(s)


def test_voice_defaults() -> None:
    s = parse_settings(BASE)
    assert (s.transcription_mode, s.transcription_model, s.transcription_language) == (
        "openai",
        "whisper-1",
        None,
    )
    assert s.transcription_base_url == s.openai_base_url
    assert (s.telegram_max_download_mb, s.max_voice_seconds, s.voice_reply) == (20.0, 600.0, "answer")
    # Without an OpenAI key (e.g. Ollama for chat) voice is off unless a provider is chosen.
    assert (
        parse_settings({"TELEGRAM_BOT_TOKEN": TOKEN, "OPENAI_BASE_URL": "http://x:1/v1"}).transcription_mode
        == "off"
    )
    s = parse_settings({**BASE, "TRANSCRIPTION_MODE": "whisper-api", "WHISPER_API_KEY": "wk-123456"})
    assert s.transcription_mode == "whisper-api" and "wk-123456" in s.secrets() and "wk-123456" not in repr(s)


def test_any_openai_compatible_server_and_model() -> None:
    s = parse_settings(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "OPENAI_BASE_URL": "http://localhost:11434/v1/",
            "OPENAI_MODEL": "llama3.2:3b-instruct-q4_K_M",
            "TELEGRAM_API_URL": "http://127.0.0.1:8081",
            "SYSTEM_PROMPT": "",
        }
    )
    assert s.openai_api_key == ""  # not needed for Ollama
    assert s.openai_base_url == "http://localhost:11434/v1"
    assert s.openai_model == "llama3.2:3b-instruct-q4_K_M"
    assert s.telegram_api_url == "http://127.0.0.1:8081"
    assert s.system_prompt == ""  # set and empty: no system message


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "   "}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN}, "OPENAI_API_KEY"),
        ({**BASE, "OPENAI_BASE_URL": "localhost:11434"}, "OPENAI_BASE_URL"),
        ({**BASE, "TELEGRAM_API_URL": "ftp://example.org"}, "TELEGRAM_API_URL"),
        ({**BASE, "OPENAI_TIMEOUT": "0"}, "OPENAI_TIMEOUT"),
        ({**BASE, "HISTORY_MESSAGES": "-1"}, "HISTORY_MESSAGES"),
        ({**BASE, "MAX_REPLY_TOKENS": "lots"}, "MAX_REPLY_TOKENS"),
        ({**BASE, "TRANSCRIPTION_MODE": "whisper-api"}, "WHISPER_API_KEY"),
        ({**BASE, "TRANSCRIPTION_MODE": "speech-api"}, "SPEECH_API_URL"),
        ({**BASE, "TRANSCRIPTION_MODE": "carrier-pigeon"}, "TRANSCRIPTION_MODE"),
        ({**BASE, "VOICE_REPLY": "sing"}, "VOICE_REPLY"),
        ({**BASE, "MAX_VOICE_SECONDS": "0"}, "MAX_VOICE_SECONDS"),
        ({**BASE, "SQLITE_SYNCHRONOUS": "OFF"}, "SQLITE_SYNCHRONOUS"),
        ({**BASE, "JOB_LEASE_S": "soon"}, "JOB_LEASE_S"),
        ({**BASE, "JOB_LEASE_S": "nan"}, "JOB_LEASE_S"),
        ({**BASE, "JOB_LEASE_S": "1"}, "JOB_LEASE_S"),
        ({**BASE, "WORKER_CONCURRENCY": "2.5"}, "WORKER_CONCURRENCY"),
        ({**BASE, "JOB_MAX_ATTEMPTS": "0"}, "JOB_MAX_ATTEMPTS"),
        ({**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({**BASE, "ADMIN_USER_IDS": "me"}, "ADMIN_USER_IDS"),
        ({**BASE, "ALLOWED_USER_IDS": "everyone"}, "ALLOWED_USER_IDS"),
        ({**BASE, "RATE_LIMIT_EXEMPT_ADMINS": "maybe"}, "RATE_LIMIT_EXEMPT_ADMINS"),
        ({**BASE, "USER_DAILY_BUDGET_USD": "-3"}, "USER_DAILY_BUDGET_USD"),
        ({**BASE, "PRICE_INPUT_PER_1M": "free"}, "PRICE_INPUT_PER_1M"),
        ({**BASE, "TELEGRAM_RATE_PER_S": "-1"}, "TELEGRAM_RATE_PER_S"),
        ({**BASE, "OUTAGE_MAX_WAIT_S": "0"}, "OUTAGE_MAX_WAIT_S"),  # at least 30: a wait worth the name
        ({**BASE, "OUTAGE_MAX_WAIT_S": "29"}, "OUTAGE_MAX_WAIT_S"),
        ({**BASE, "TELEGRAM_LOCAL_MODE": "sometimes"}, "TELEGRAM_LOCAL_MODE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(env)
    assert err.value.variable == variable
    assert str(err.value).startswith(f"{variable}: expected ")


def test_secret_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"TELEGRAM_BOT_TOKEN": "12345:short"})
    assert "short" not in str(err.value)


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nDATA_DIR=/from/dotenv\nWORKER_CONCURRENCY=3\n")
    monkeypatch.setenv("WORKER_CONCURRENCY", "5")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-0123456789")
    s = load_settings(env_file)
    assert (s.telegram_bot_token, str(s.data_dir), s.worker_concurrency) == (TOKEN, "/from/dotenv", 5)


def _run_bot(env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_", "DATA_DIR", "JOB_"))
    }
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py")], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "bot.py: TELEGRAM_BOT_TOKEN: expected to be set (see .env.example)\n"),
        (
            {**BASE, "JOB_MAX_ATTEMPTS": "many"},
            "bot.py: JOB_MAX_ATTEMPTS: expected a whole number ≥ 1 (got 'many')\n",
        ),
    ],
)
def test_bot_py_exits_2_with_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    done = _run_bot(env, tmp_path)
    assert done.returncode == 2
    assert done.stderr == expected
    assert "Traceback" not in done.stdout + done.stderr


def test_model_prices_inline_or_from_a_toml_file(tmp_path: Path) -> None:
    assert parse_settings(BASE).model_prices == {}
    inline = parse_settings({**BASE, "MODEL_PRICES": "gpt-4o=2.5/10, gpt-4o-mini = 0.15/0.6,qwen3:4b=0/0,"})
    assert inline.model_prices == {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6), "qwen3:4b": (0.0, 0.0)}
    file = tmp_path / "prices.toml"
    file.write_text(
        '["gpt-5"]\ninput = 1.25\noutput = 10\n\n["deepseek/deepseek-r1"]\ninput = 0.5\noutput = 2.18\n'
    )
    from_file = parse_settings({**BASE, "MODEL_PRICES": str(file)})
    assert from_file.model_prices == {"gpt-5": (1.25, 10.0), "deepseek/deepseek-r1": (0.5, 2.18)}
    for bad in (
        "gpt-4o=2.5",
        "gpt-4o=cheap/10",
        "=1/2",
        "gpt-4o=-1/2",
        "gpt-4o=nan/1",
        str(tmp_path / "none.toml"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_settings({**BASE, "MODEL_PRICES": bad})
        assert caught.value.variable == "MODEL_PRICES"


def test_a_model_with_its_own_price_is_billed_at_it() -> None:
    prices = Prices(0.15, 0.6, 0.006, per_model={"gpt-4o": (2.5, 10.0)})
    assert prices.cost(Usage("chat", "gpt-4o", prompt_tokens=1_000_000, completion_tokens=100_000)) == 3.5
    assert prices.cost(Usage("chat", "other", prompt_tokens=1_000_000, completion_tokens=100_000)) == 0.21
    dated = Usage("chat", "gpt-4o-2024-08-06", prompt_tokens=1_000_000, completion_tokens=100_000)
    assert prices.cost(dated) == 3.5  # OpenAI answers with the dated name of the model asked
    assert prices.cost(Usage("chat", "gpt-4omni", prompt_tokens=1_000_000)) == 0.15  # not an extension
    assert prices.cost(Usage("transcription", "whisper-1", audio_seconds=60)) == 0.006


def test_one_process_on_sqlite_by_default() -> None:
    scale = parse_settings(BASE).scale
    assert (scale.database_url, scale.role.value, scale.webhook) == (None, "all", None)
    assert scale.takes_updates and scale.works_jobs


def test_several_processes_settings() -> None:
    env = {
        **BASE,
        "DATABASE_URL": "postgresql://bot:s3cret-pw@db.internal:5432/bot",
        "BOT_ROLE": "worker",
        "WEBHOOK_URL": "https://bot.example.com/telegram-hook/",
        "WEBHOOK_SECRET": "a-long-enough_secret-123",
        "WEBHOOK_PORT": "8081",
    }
    settings = parse_settings(env)
    scale = settings.scale
    assert scale.role.value == "worker" and not scale.takes_updates and scale.works_jobs
    assert scale.webhook is not None and scale.webhook.path == "/telegram-hook"
    assert (scale.webhook.listen, scale.webhook.port, scale.webhook.max_connections) == (
        "127.0.0.1",
        8081,
        40,
    )
    # The password and the webhook's secret are secrets: never logged, never in a repr.
    assert {"s3cret-pw", "a-long-enough_secret-123"} <= set(settings.secrets())
    assert "s3cret-pw" not in repr(settings) and "a-long-enough_secret-123" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://bot:pw@db/bot"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql:///"}, "DATABASE_URL"),
        ({"BOT_ROLE": "worker"}, "BOT_ROLE"),  # apart from the intake only with PostgreSQL
        ({"BOT_ROLE": "poller"}, "BOT_ROLE"),
        ({"WEBHOOK_URL": "https://bot.example.com/hook"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_URL": "https://bot.example.com/hook", "WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET"),
        (
            {"WEBHOOK_URL": "https://bot.example.com/hook", "WEBHOOK_SECRET": "has spaces in it, so no"},
            "WEBHOOK_SECRET",
        ),
        (
            {"WEBHOOK_URL": "http://bot.example.com/hook", "WEBHOOK_SECRET": "x" * 20},
            "WEBHOOK_URL",
        ),  # Telegram's: https
        ({"WEBHOOK_URL": "bot.example.com/hook", "WEBHOOK_SECRET": "x" * 20}, "WEBHOOK_URL"),
        ({"WEBHOOK_URL": "https://bot.example.com/hook?x=1", "WEBHOOK_SECRET": "x" * 20}, "WEBHOOK_URL"),
    ],
)
def test_bad_scale_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings({**BASE, **env})
    assert refused.value.variable == variable
    assert "pw@" not in str(refused.value)  # a database URL is never echoed: it may hold a password


def test_a_self_hosted_bot_api_server_may_post_to_http() -> None:
    env = {
        **BASE,
        "TELEGRAM_API_URL": "http://127.0.0.1:8081",
        "WEBHOOK_URL": "http://10.0.0.5:8080/hook",
        "WEBHOOK_SECRET": "x" * 20,
    }
    assert parse_settings(env).scale.webhook is not None


def test_a_database_password_is_a_secret_wherever_the_url_puts_it() -> None:
    from botcore.pg_db import redacted

    for url, password in (
        ("postgresql://bot:p%40ss-word@db/bot", "p@ss-word"),
        ("postgresql:///bot?host=/run/postgresql&password=s3cr%21t-pw", "s3cr!t-pw"),
        ("postgresql://bot@db/bot?sslmode=require&sslpassword=key-pass-1", "key-pass-1"),
    ):
        settings = parse_settings({**BASE, "DATABASE_URL": url})
        assert password in settings.secrets()  # decoded, as a driver error might show it
        shown = redacted(url)
        assert password not in shown and password.replace("@", "%40").replace("!", "%21") not in shown
        assert shown.startswith("postgresql://") and "***" in shown
