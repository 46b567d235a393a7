"""Settings: read once from the environment (and ``.env``), validated, frozen.
Every variable the bot reads is parsed here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

from botcore.config_reader import EnvReader
from botcore.config_scale import Scale, parse_scale
from botcore.errors import ConfigError, StartupError
from botcore.personas import Persona, load_personas
from botcore.prices import ModelPrices, parse_model_prices

T = TypeVar("T")

_TOKEN_RE = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{20,}$")
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Telegram chat. Answer clearly and concisely, "
    "in the language the user writes in."
)
_MODES = ("OPENAI", "WHISPER-API", "SPEECH-API", "LOCAL", "OFF")
_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class Settings:
    telegram_bot_token: str = field(repr=False)
    telegram_api_url: str
    telegram_local_mode: bool  # a self-hosted Bot API server in --local mode: files are local paths
    openai_api_key: str = field(repr=False)
    openai_base_url: str
    openai_model: str
    allowed_models: tuple[str, ...]  # what /model offers, openai_model first if added; empty: any
    openai_timeout_s: float
    max_reply_tokens: int
    system_prompt: str  # may be empty: then no system message is sent at all
    personas: dict[str, Persona]  # the built-ins and PERSONAS_FILE's, in menu order
    history_messages: int
    history_ttl_days: float
    stream: bool
    stream_edit_interval_s: float
    show_reasoning: bool  # a reasoning model's thinking above its answer, collapsed
    transcription_mode: str  # openai, local, whisper-api, speech-api or off
    transcription_base_url: str
    transcription_model: str
    transcription_language: str | None
    local_whisper_model: str | None
    local_whisper_threads: int
    whisper_api_url: str
    whisper_api_key: str = field(repr=False)
    speech_api_url: str
    telegram_max_download_mb: float
    max_voice_seconds: float
    voice_reply: str  # answer or transcript
    vision: str  # auto, on or off
    image_max_side: int  # pixels: the photo size asked of Telegram, and the most sent on
    max_images_per_message: int  # of an album
    history_images: int  # later questions that see a photo again
    document_max_mb: float
    document_max_chars: int
    image_mode: str  # openai or off: /image
    image_base_url: str
    image_model: str
    image_size: str  # WxH, or auto
    image_concurrency: int  # generations running at once in one chat
    reactions: str  # private (the default), on (groups too) or off: the 👀 receipt
    bot_language: str | None  # a catalog every user is spoken to in; None: each user's own
    voice_reply_default: str  # off, on or auto: a chat's voice replies until it chooses (/voice)
    tts_mode: str  # openai, local or off
    local_tts_voice: str | None  # a piper .onnx voice; None: the bundled one
    local_tts_threads: int
    tts_base_url: str
    tts_model: str
    tts_voice: str
    tts_max_chars: int
    data_dir: Path
    sqlite_synchronous: str  # NORMAL or FULL
    log_level: str
    log_format: str  # text or json
    log_file: Path | None
    log_file_max_mb: float
    log_file_backups: int
    sentry_dsn: str = field(repr=False)
    metrics_port: int | None  # None: no health or metrics endpoint
    metrics_host: str
    worker_concurrency: int
    llm_concurrency: int | None  # None: auto, found out per server (concurrency.LlmLimit)
    llm_max_concurrency: int
    transcription_concurrency: int
    job_lease_s: float
    job_max_attempts: int
    outage_max_wait_s: float
    breaker_fail_max: int
    breaker_reset_s: float
    breaker_success_threshold: int
    shutdown_grace_s: float
    job_retention_done_s: float
    job_retention_dead_s: float
    cleanup_interval_hours: float
    usage_retention_days: float
    admin_user_ids: frozenset[int]
    allowed_user_ids: frozenset[int] | None  # None: everyone ("*"); empty: admins only
    allowed_chat_ids: frozenset[int] | None  # group chats served; None: every group
    rate_limit_user_per_min: int  # 0: no limit
    rate_limit_global_per_min: int
    rate_limit_exempt_admins: bool
    price_input_per_1m: float
    price_output_per_1m: float
    price_transcription_per_min: float
    price_image: float  # USD per generated image
    price_tts_per_1m_chars: float
    model_prices: ModelPrices  # per model, beside the defaults above
    user_daily_budget_usd: float | None
    user_monthly_budget_usd: float | None
    global_daily_budget_usd: float | None
    daily_cost_alert_usd: float | None
    telegram_rate_per_s: float  # outgoing messages per second overall; 0 turns the limiter off
    telegram_group_rate_per_min: float
    scale: Scale = field(default_factory=Scale)  # DATABASE_URL, BOT_ROLE, WEBHOOK_*: several processes

    @property
    def db_path(self) -> Path:
        return self.data_dir / "bot.db"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        sentry_key = urlsplit(self.sentry_dsn).username if self.sentry_dsn else None
        values = (
            self.telegram_bot_token,
            self.openai_api_key,
            self.whisper_api_key,
            self.sentry_dsn,
            sentry_key,
            *self.scale.secrets(),
        )
        return tuple(s for s in values if s)


def load_settings(env_file: str | os.PathLike[str] | None = ".env") -> Settings:
    """Process environment over ``.env`` (the environment wins), then parse."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        try:
            values = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise StartupError(f"{env_file}: cannot read it ({exc})") from None
        merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(os.environ)
    return parse_settings(merged)


def parse_settings(env: Mapping[str, str]) -> Settings:
    reader = EnvReader(env)
    token = reader.required("TELEGRAM_BOT_TOKEN")
    if not _TOKEN_RE.match(token):
        raise ConfigError("TELEGRAM_BOT_TOKEN", "a bot token from @BotFather, like 123456:ABC-DEF…")
    openai_base_url = reader.url("OPENAI_BASE_URL", OPENAI_DEFAULT_URL)
    openai_api_key = reader.get("OPENAI_API_KEY", "")
    if not openai_api_key and urlsplit(openai_base_url).hostname == "api.openai.com":
        raise ConfigError(
            "OPENAI_API_KEY",
            "to be set for OpenAI (or OPENAI_BASE_URL pointing at another server, such as Ollama)",
        )
    mode = reader.choice("TRANSCRIPTION_MODE", "OPENAI" if openai_api_key else "OFF", _MODES).lower()
    whisper_api_key = reader.get("WHISPER_API_KEY", "")
    if mode == "whisper-api" and not whisper_api_key:
        raise ConfigError(
            "WHISPER_API_KEY", "to be set for TRANSCRIPTION_MODE=whisper-api (your whisperapi.com key)"
        )
    if mode == "speech-api" and not reader.get("SPEECH_API_URL", ""):
        raise ConfigError(
            "SPEECH_API_URL", "to be set for TRANSCRIPTION_MODE=speech-api (e.g. http://localhost:3000)"
        )
    model = reader.get("OPENAI_MODEL", "gpt-4o-mini")
    tts_modes = ("OPENAI", "LOCAL", "OFF")
    tts_mode = reader.choice("TTS_MODE", "OPENAI" if openai_api_key else "OFF", tts_modes).lower()
    system_prompt = reader.text("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)
    return Settings(
        telegram_bot_token=token,
        telegram_api_url=reader.url("TELEGRAM_API_URL", "https://api.telegram.org"),
        telegram_local_mode=reader.flag("TELEGRAM_LOCAL_MODE", False),
        openai_api_key=openai_api_key,
        openai_base_url=openai_base_url,
        openai_model=model,
        allowed_models=reader.models("ALLOWED_MODELS", model),
        openai_timeout_s=reader.number("OPENAI_TIMEOUT", 30.0, float, minimum=1),
        max_reply_tokens=reader.number("MAX_REPLY_TOKENS", 1000, int, minimum=16),
        system_prompt=system_prompt,
        personas=load_personas(reader.get("PERSONAS_FILE", ""), system_prompt),
        history_messages=reader.number("HISTORY_MESSAGES", 10, int, minimum=0),
        history_ttl_days=reader.number("HISTORY_TTL_DAYS", 7.0, float, minimum=0),
        stream=reader.flag("STREAM", True),
        stream_edit_interval_s=reader.number("STREAM_EDIT_INTERVAL_S", 1.0, float, minimum=0.5),
        show_reasoning=reader.flag("SHOW_REASONING", False),
        transcription_mode=mode,
        transcription_base_url=reader.url("TRANSCRIPTION_BASE_URL", openai_base_url),
        transcription_model=reader.get("TRANSCRIPTION_MODEL", "whisper-1"),
        transcription_language=reader.get("TRANSCRIPTION_LANGUAGE", "") or None,
        local_whisper_model=reader.get("LOCAL_WHISPER_MODEL", "") or None,
        local_whisper_threads=reader.number("LOCAL_WHISPER_THREADS", 1, int, minimum=1),
        whisper_api_url=reader.url("WHISPER_API_URL", "https://transcribe.whisperapi.com"),
        whisper_api_key=whisper_api_key,
        speech_api_url=reader.url("SPEECH_API_URL", "http://localhost:3000"),
        telegram_max_download_mb=reader.number("TELEGRAM_MAX_DOWNLOAD_MB", 20.0, float, minimum=1),
        max_voice_seconds=reader.number("MAX_VOICE_SECONDS", 600.0, float, minimum=1),
        voice_reply=reader.choice("VOICE_REPLY", "ANSWER", ("ANSWER", "TRANSCRIPT")).lower(),
        vision=reader.choice("VISION", "AUTO", ("AUTO", "ON", "OFF")).lower(),
        image_max_side=reader.number("IMAGE_MAX_SIDE", 1568, int, minimum=64),
        max_images_per_message=reader.number("MAX_IMAGES_PER_MESSAGE", 4, int, minimum=1),
        history_images=reader.number("HISTORY_IMAGES", 1, int, minimum=0),
        document_max_mb=reader.number("DOCUMENT_MAX_MB", 10.0, float, minimum=0.01),
        document_max_chars=reader.number("DOCUMENT_MAX_CHARS", 60_000, int, minimum=1000),
        image_mode=reader.choice(
            "IMAGE_MODE", "OPENAI" if openai_api_key else "OFF", ("OPENAI", "OFF")
        ).lower(),
        image_base_url=reader.url("IMAGE_BASE_URL", openai_base_url),
        image_model=reader.get("IMAGE_MODEL", "gpt-image-1"),
        image_size=_image_size(reader.get("IMAGE_SIZE", "1024x1024")),
        image_concurrency=reader.number("IMAGE_CONCURRENCY", 2, int, minimum=1),
        reactions=reader.choice("REACTIONS", "PRIVATE", ("PRIVATE", "ON", "OFF")).lower(),
        bot_language=reader.language("BOT_LANGUAGE"),
        voice_reply_default=reader.choice("VOICE_REPLY_DEFAULT", "OFF", ("OFF", "ON", "AUTO")).lower(),
        tts_mode=tts_mode,
        local_tts_voice=reader.get("LOCAL_TTS_VOICE", "") or None,
        local_tts_threads=reader.number("LOCAL_TTS_THREADS", 1, int, minimum=1),
        tts_base_url=reader.url("TTS_BASE_URL", openai_base_url),
        tts_model=reader.get("TTS_MODEL", "gpt-4o-mini-tts"),
        tts_voice=reader.get("TTS_VOICE", "alloy"),
        tts_max_chars=reader.number("TTS_MAX_CHARS", 1500, int, minimum=100),
        data_dir=Path(reader.get("DATA_DIR", "./data")),
        sqlite_synchronous=reader.choice("SQLITE_SYNCHRONOUS", "NORMAL", ("NORMAL", "FULL")),
        log_level=reader.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
        log_format=reader.choice("LOG_FORMAT", "TEXT", ("TEXT", "JSON")).lower(),
        log_file=Path(reader.get("LOG_FILE", "")) if reader.get("LOG_FILE", "") else None,
        log_file_max_mb=reader.number("LOG_FILE_MAX_MB", 10.0, float, minimum=0.01),
        log_file_backups=reader.number("LOG_FILE_BACKUPS", 5, int, minimum=0),
        sentry_dsn=reader.get("SENTRY_DSN", ""),
        metrics_port=reader.number("METRICS_PORT", 0, int, minimum=0) or None,
        metrics_host=reader.get("METRICS_HOST", "127.0.0.1"),
        worker_concurrency=reader.number("WORKER_CONCURRENCY", 32, int, minimum=1),
        llm_concurrency=None
        if reader.get("LLM_CONCURRENCY", "auto").lower() == "auto"
        else reader.number("LLM_CONCURRENCY", 8, int, minimum=1),
        llm_max_concurrency=reader.number("LLM_MAX_CONCURRENCY", 64, int, minimum=1),
        transcription_concurrency=reader.number("TRANSCRIPTION_CONCURRENCY", 3, int, minimum=1),
        job_lease_s=reader.number("JOB_LEASE_S", 60.0, float, minimum=3),
        job_max_attempts=reader.number("JOB_MAX_ATTEMPTS", 4, int, minimum=1),
        outage_max_wait_s=reader.number("OUTAGE_MAX_WAIT_S", 600.0, float, minimum=30),
        breaker_fail_max=reader.number("BREAKER_FAIL_MAX", 5, int, minimum=1),
        breaker_reset_s=reader.number("BREAKER_RESET_S", 60.0, float, minimum=0.1),
        breaker_success_threshold=reader.number("BREAKER_SUCCESS_THRESHOLD", 2, int, minimum=1),
        shutdown_grace_s=reader.number("SHUTDOWN_GRACE_S", 10.0, float, minimum=0),
        job_retention_done_s=reader.number("JOB_RETENTION_DONE_S", 300.0, float, minimum=0),
        job_retention_dead_s=reader.number("JOB_RETENTION_DEAD_S", 3600.0, float, minimum=0),
        cleanup_interval_hours=reader.number("CLEANUP_INTERVAL_HOURS", 24.0, float, minimum=0.01),
        # Monthly budgets and /usage add up this month's records: keep at least a month.
        usage_retention_days=reader.number("USAGE_RETENTION_DAYS", 90.0, float, minimum=31),
        admin_user_ids=reader.ids("ADMIN_USER_IDS"),
        allowed_user_ids=reader.ids_or_all("ALLOWED_USER_IDS"),
        allowed_chat_ids=reader.ids_or_all("ALLOWED_CHAT_IDS"),
        rate_limit_user_per_min=reader.number("RATE_LIMIT_USER_PER_MIN", 10, int, minimum=0),
        rate_limit_global_per_min=reader.number("RATE_LIMIT_GLOBAL_PER_MIN", 100, int, minimum=0),
        rate_limit_exempt_admins=reader.flag("RATE_LIMIT_EXEMPT_ADMINS", True),
        # gpt-4o-mini and whisper-1 list prices (USD) as of 2024-2026; set your model's.
        price_input_per_1m=reader.number("PRICE_INPUT_PER_1M", 0.15, float, minimum=0),
        price_output_per_1m=reader.number("PRICE_OUTPUT_PER_1M", 0.60, float, minimum=0),
        price_transcription_per_min=reader.number("PRICE_TRANSCRIPTION_PER_MIN", 0.006, float, minimum=0),
        price_image=reader.number("PRICE_IMAGE", 0.04, float, minimum=0),  # gpt-image-1, medium, 1024²
        # OpenAI's tts-1 list price; speaking on this machine costs nothing.
        price_tts_per_1m_chars=reader.number(
            "PRICE_TTS_PER_1M_CHARS", 0.0 if tts_mode == "local" else 15.0, float, minimum=0
        ),
        model_prices=parse_model_prices(reader.get("MODEL_PRICES", "")),
        user_daily_budget_usd=reader.optional_number("USER_DAILY_BUDGET_USD"),
        user_monthly_budget_usd=reader.optional_number("USER_MONTHLY_BUDGET_USD"),
        global_daily_budget_usd=reader.optional_number("GLOBAL_DAILY_BUDGET_USD"),
        daily_cost_alert_usd=reader.optional_number("DAILY_COST_ALERT_USD", 50.0),
        telegram_rate_per_s=reader.number("TELEGRAM_RATE_PER_S", 30.0, float, minimum=0),
        telegram_group_rate_per_min=reader.number("TELEGRAM_GROUP_RATE_PER_MIN", 20.0, float, minimum=1),
        scale=parse_scale(
            reader, telegram_api_url=reader.url("TELEGRAM_API_URL", "https://api.telegram.org")
        ),
    )


def _image_size(value: str) -> str:
    """``IMAGE_SIZE``: ``auto`` or width × height in pixels, like ``1024x1024``."""
    width, sep, height = value.lower().partition("x")
    if value.lower() == "auto" or (
        sep and width.isdigit() and height.isdigit() and 0 < int(width) <= 8192 >= int(height) > 0
    ):
        return value.lower()
    raise ConfigError("IMAGE_SIZE", "auto or a size like 1024x1024", value)
