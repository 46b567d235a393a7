"""Spending: prices each recorded call (prices are configuration), enforces the optional budgets
(per user per UTC day and month, and for everyone per day: a hard stop) right before a call
would spend money, and alerts the admins once a day when the day's cost crosses a threshold.
Admins are exempt from the per-user budgets."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import replace

from botcore import texts
from botcore.alerts import Alerts
from botcore.clock import Clock, day_start, month_start, utc_date
from botcore.models import Job, Prices, Usage, UsageSummary
from botcore.storage import KeyValueStore, UsageStore, cost_alert_key


def billing_key(job: Job, kind: str) -> str:
    """The key of a job's one billed call of ``kind``. From the dedup key when the job has one, so
    a dead job revived by ``/retry <id>`` (a new row, the same dedup key) is not billed twice."""
    return f"{job.dedup_key or f'job:{job.id}'}:{kind}"


def failed_call_key() -> str:
    """A call that failed but was billed is recorded once, when it fails; a retry is another call."""
    return f"call:{uuid.uuid4().hex}"


class Spending:
    def __init__(
        self,
        usage: UsageStore,
        kv: KeyValueStore,
        alerts: Alerts,
        *,
        prices: Prices,
        clock: Clock,
        admin_ids: Collection[int] = (),
        user_daily_usd: float | None = None,
        user_monthly_usd: float | None = None,
        global_daily_usd: float | None = None,
        daily_alert_usd: float | None = None,
        on_recorded: Callable[[Usage], None] | None = None,
        reread_s: float | None = None,  # other processes spend too: read today's total this often
    ) -> None:
        self._reread_s = reread_s
        self._read_at = 0.0  # monotonic time of the last read of today's total
        self._usage = usage
        self._prices = prices
        self._kv = kv
        self._alerts = alerts
        self._clock = clock
        self._admin_ids = frozenset(admin_ids)
        self._user_daily = user_daily_usd
        self._user_monthly = user_monthly_usd
        self._global_daily = global_daily_usd
        self._daily_alert = daily_alert_usd
        self._on_recorded = on_recorded  # told of each call recorded (once), e.g. for metrics
        # Today's total cost, read from the table once a day and then kept up to date here, so
        # the global budget and the daily alert do not add up the day's rows for every message.
        self._today: tuple[float, float] | None = None  # (start of the UTC day, cost so far)

    async def record(
        self, usage: Usage, *, key: str, job_id: int, chat_id: int | None, user_id: int | None
    ) -> None:
        """Record one billed call at the configured prices, once per ``key`` however often the job
        runs (``billing_key`` for a job's own call, ``failed_call_key`` for a failed one)."""
        priced = replace(usage, cost_usd=self._prices.cost(usage))
        now = self._clock.now()
        recorded = await self._usage.record(
            priced, key=key, job_id=job_id, chat_id=chat_id, user_id=user_id, now=now
        )
        if recorded:
            if self._today is not None and self._today[0] == day_start(now):
                self._today = (self._today[0], self._today[1] + priced.cost_usd)
            if self._on_recorded is not None:
                self._on_recorded(priced)
            await self._alert_daily_cost()

    async def _spent_today(self, now: float) -> float:
        today = day_start(now)
        stale = self._reread_s is not None and self._clock.monotonic() - self._read_at >= self._reread_s
        if self._today is None or self._today[0] != today or stale:
            self._today = (today, (await self._usage.summary(since=today)).cost_usd)
            self._read_at = self._clock.monotonic()
        return self._today[1]

    async def of_user(self, user_id: int) -> tuple[UsageSummary, UsageSummary]:
        """This user's usage today and this month."""
        now = self._clock.now()
        return (
            await self._usage.summary(since=day_start(now), user_id=user_id),
            await self._usage.summary(since=month_start(now), user_id=user_id),
        )

    async def refusal(self, user_id: int | None) -> str | None:
        """The text that says why this user may not spend now, or None when they may."""
        now = self._clock.now()
        today = day_start(now)
        if self._global_daily is not None and await self._spent_today(now) >= self._global_daily:
            return texts.BUDGET_GLOBAL
        if user_id is None or user_id in self._admin_ids:
            return None
        if self._user_daily is not None:
            spent = (await self._usage.summary(since=today, user_id=user_id)).cost_usd
            if spent >= self._user_daily:
                return texts.BUDGET_USER_DAY.format(limit=self._user_daily)
        if self._user_monthly is not None:
            spent = (await self._usage.summary(since=month_start(now), user_id=user_id)).cost_usd
            if spent >= self._user_monthly:
                return texts.BUDGET_USER_MONTH.format(limit=self._user_monthly)
        return None

    async def _alert_daily_cost(self) -> None:
        """Alert the admins once per UTC day when the day's cost has crossed the threshold."""
        if self._daily_alert is None:
            return
        now = self._clock.now()
        spent = await self._spent_today(now)
        if spent < self._daily_alert:
            return
        key = cost_alert_key(utc_date(now))
        if await self._kv.add(key, f"{spent:.4f}"):  # once a day, even across restarts
            with self._alerts.speaking():
                text = texts.ALERT_DAILY_COST.format(spent=spent, limit=self._daily_alert)
            if not await self._alerts.send(text, repeat_guard=False):  # the key makes it once a day
                await self._kv.delete(key)  # not delivered: the next call tries again
