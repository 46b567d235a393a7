"""Builds the services (chat, voice, the update jobs and what they share) from ``build.Base``,
and the table of job kinds the worker runs them by. Only ``app.run`` (and tests) call these."""

from __future__ import annotations

from dataclasses import dataclass

from botcore import __version__
from botcore.acks import Acks
from botcore.admin import AdminCommands
from botcore.alerts import Alerts
from botcore.build import Base, build_breaker, llm_breakers
from botcore.cancels import Cancels
from botcore.catalog import ModelCatalog
from botcore.chat import ChatService
from botcore.cleanup import Cleanup
from botcore.clock import Clock
from botcore.commands import Commands
from botcore.concurrency import LlmLimits
from botcore.config import Settings
from botcore.drawing import DrawingService
from botcore.exporting import Exporter
from botcore.i18n import Languages
from botcore.imagegen import ImageGenerator
from botcore.llm import ChatModel
from botcore.media import MediaService
from botcore.metrics import Metrics
from botcore.models import Prices
from botcore.notices import Notices
from botcore.prefs import ChatSettings
from botcore.receipts import Receipts
from botcore.routing import UpdateJobs
from botcore.speaking import Speaker
from botcore.spending import Spending
from botcore.storage import Storage
from botcore.stt import SpeechToText
from botcore.tts import Synth
from botcore.vision import Vision
from botcore.voice import VoiceService


def build_spending(
    settings: Settings, storage: Storage, alerts: Alerts, metrics: Metrics, clock: Clock
) -> Spending:
    return Spending(
        storage.usage,
        storage.kv,
        alerts,
        prices=Prices(
            settings.price_input_per_1m,
            settings.price_output_per_1m,
            settings.price_transcription_per_min,
            per_model=settings.model_prices,
            image_each=settings.price_image,
            speech_per_1m_chars=settings.price_tts_per_1m_chars,
        ),
        clock=clock,
        admin_ids=settings.admin_user_ids,
        user_daily_usd=settings.user_daily_budget_usd,
        user_monthly_usd=settings.user_monthly_budget_usd,
        global_daily_usd=settings.global_daily_budget_usd,
        daily_alert_usd=settings.daily_cost_alert_usd,
        on_recorded=metrics.spent,
        # Other processes' spending is seen within seconds (a sum of today's rows, not per message).
        reread_s=5.0 if storage.shared else None,
    )


@dataclass(frozen=True, slots=True)
class Shared:
    """What the services share besides ``Base``."""

    alerts: Alerts
    llm_limit: LlmLimits  # per model
    spending: Spending
    notices: Notices
    cancels: Cancels
    settings: ChatSettings  # each chat's model, persona, streaming and memory
    acks: Acks  # of voice notes, photos and documents


def build_speaker(base: Base, shared: Shared, speech: Synth | None) -> Speaker | None:
    if speech is None:
        return None
    base.breakers["speech"] = build_breaker("speech", base.settings, base.metrics, base.clock)
    return Speaker(
        synth=speech,
        queue=base.queue,
        messenger=base.messenger,
        spending=shared.spending,
        breaker=base.breakers["speech"],
        cancels=shared.cancels,
        files=base.settings.data_dir / "speech",
        max_chars=base.settings.tts_max_chars,
    )


def build_chat(
    base: Base,
    shared: Shared,
    model: ChatModel,
    speech: Synth | None = None,
    receipts: Receipts | None = None,
) -> ChatService:
    settings = base.settings
    return ChatService(
        queue=base.queue,
        conversations=base.storage.conversations,
        model=model,
        messenger=base.messenger,
        breakers=llm_breakers(base),
        notices=shared.notices,
        cancels=shared.cancels,
        spending=shared.spending,
        clock=base.clock,
        settings=shared.settings,
        history_ttl_days=settings.history_ttl_days,
        bot_username=base.bot.username,
        stream_interval_s=settings.stream_edit_interval_s,
        show_reasoning=settings.show_reasoning,
        llm_limit=shared.llm_limit,
        vision=None
        if settings.vision == "off"
        else Vision(base.messenger, max_side=settings.image_max_side, history_images=settings.history_images),
        speaker=build_speaker(base, shared, speech),
        receipts=receipts,
    )


def build_voice(base: Base, shared: Shared, chat: ChatService, stt: SpeechToText | None) -> VoiceService:
    return VoiceService(
        chat=chat,
        queue=base.queue,
        spending=shared.spending,
        notices=shared.notices,
        cancels=shared.cancels,
        acks=shared.acks,
        messenger=base.messenger,
        stt=stt,
        breaker=base.breakers["transcription"],
        max_download_mb=base.settings.telegram_max_download_mb,
        max_seconds=base.settings.max_voice_seconds,
        reply=base.settings.voice_reply,
    )


def build_update_jobs(base: Base, shared: Shared, chat: ChatService, cleanup: Cleanup) -> UpdateJobs:
    """The ``tg-update``/``tg-command`` jobs, with the commands they run."""
    admin = AdminCommands(
        queue=base.queue,
        usage=base.storage.usage,
        breakers=base.breakers,
        llm_limit=shared.llm_limit,
        clock=base.clock,
        version=__version__,
        cleanup=cleanup.run_once,
    )
    commands = Commands(
        chat=chat,
        conversations=base.storage.conversations,
        spending=shared.spending,
        cancels=shared.cancels,
        queue=base.queue,
        admin=admin,
        settings=shared.settings,
        exporter=Exporter(
            conversations=base.storage.conversations,
            settings=shared.settings,
            messenger=base.messenger,
            queue=base.queue,
            clock=base.clock,
            history_ttl_days=base.settings.history_ttl_days,
        ),
    )
    return UpdateJobs(
        chat=chat,
        commands=commands,
        settings=shared.settings,
        notices=shared.notices,
        queue=base.queue,
        bot_username=base.bot.username,
        admin_ids=base.settings.admin_user_ids,
    )


def build_media(base: Base, shared: Shared, chat: ChatService) -> MediaService:
    settings = base.settings
    return MediaService(
        chat=chat,
        queue=base.queue,
        acks=shared.acks,
        notices=shared.notices,
        messenger=base.messenger,
        kv=base.storage.kv,
        spending=shared.spending,
        vision=settings.vision != "off",
        image_max_side=settings.image_max_side,
        max_images=settings.max_images_per_message,
        # The cloud Bot API serves files up to 20 MB: a larger one could not be fetched at all.
        document_max_mb=min(settings.document_max_mb, settings.telegram_max_download_mb),
        document_max_chars=settings.document_max_chars,
    )


def build_drawing(base: Base, shared: Shared, images: ImageGenerator | None) -> DrawingService:
    settings = base.settings
    base.breakers["images"] = build_breaker("images", settings, base.metrics, base.clock)
    return DrawingService(
        generator=images,
        queue=base.queue,
        messenger=base.messenger,
        notices=shared.notices,
        spending=shared.spending,
        breaker=base.breakers["images"],
        cancels=shared.cancels,
        conversations=base.storage.conversations,
        settings=shared.settings,
        files=settings.data_dir / "images",
        per_chat=settings.image_concurrency,
    )


@dataclass(frozen=True, slots=True)
class Services:
    shared: Shared
    chat: ChatService
    voice: VoiceService
    media: MediaService
    drawing: DrawingService
    updates: UpdateJobs


def build_settings(base: Base, model: ChatModel) -> ChatSettings:
    settings = base.settings
    return ChatSettings(
        store=base.storage.prefs,
        conversations=base.storage.conversations,
        catalog=ModelCatalog(model, base.clock, allowed=settings.allowed_models),
        messenger=base.messenger,
        queue=base.queue,
        clock=base.clock,
        personas=settings.personas,
        stream=settings.stream,
        history_messages=settings.history_messages,
        history_ttl_days=settings.history_ttl_days,
        admin_ids=settings.admin_user_ids,
        voice_default=settings.voice_reply_default,
        voice_available=settings.tts_mode != "off",
    )


def build_services(
    base: Base,
    model: ChatModel,
    stt: SpeechToText | None,
    cleanup: Cleanup,
    images: ImageGenerator | None = None,
    speech: Synth | None = None,
    receipts: Receipts | None = None,
) -> Services:
    language = Languages(base.settings.bot_language).default
    alerts = Alerts(base.messenger, base.settings.admin_user_ids, clock=base.clock, language=language)
    notices = Notices(queue=base.queue, messenger=base.messenger, alerts=alerts)
    shared = Shared(
        alerts=alerts,
        llm_limit=LlmLimits(
            clock=base.clock,
            fixed=base.settings.llm_concurrency,
            maximum=base.settings.llm_max_concurrency,
            default=base.settings.openai_model,
        ),
        spending=build_spending(base.settings, base.storage, alerts, base.metrics, base.clock),
        notices=notices,
        cancels=Cancels(),
        settings=build_settings(base, model),
        acks=Acks(queue=base.queue, kv=base.storage.kv, messenger=base.messenger, notices=notices),
    )
    chat = build_chat(base, shared, model, speech, receipts)
    return Services(
        shared,
        chat,
        build_voice(base, shared, chat, stt),
        build_media(base, shared, chat),
        build_drawing(base, shared, images),
        build_update_jobs(base, shared, chat, cleanup),
    )
