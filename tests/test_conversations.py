import pytest

from botcore.clock import day_start, month_start
from botcore.models import Prices, Usage


def test_prices_and_periods_are_utc() -> None:
    prices = Prices(input_per_1m=0.15, output_per_1m=0.60, transcription_per_min=0.006)
    assert prices.cost(
        Usage("chat", "m", prompt_tokens=1_000_000, completion_tokens=500_000)
    ) == pytest.approx(0.45)
    assert prices.cost(Usage("transcription", "w", audio_seconds=30)) == pytest.approx(0.003)
    now = 1_764_340_000.0  # 2025-11-28 14:26:40 UTC
    assert day_start(now) == 1_764_288_000.0  # 2025-11-28 00:00 UTC
    assert month_start(now) == 1_761_955_200.0  # 2025-11-01 00:00 UTC
