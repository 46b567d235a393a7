"""Local speech benchmark: ``python -m benchmarks.tts`` (needs requirements-local.txt).

With the bundled piper voice (en_US-joe-medium, CPU): seconds of speech made per second of CPU
(synthesis and OGG/Opus encoding), and the event loop's worst stall while an answer of
``TTS_MAX_CHARS`` (1500) is read aloud. The stall is measured by a ticker task that should run
every 5 ms. Ours runs in LocalSpeechSynth's thread; the baseline is the same synthesis called
directly in the event loop, which is what a naive bot does. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable

import onnxruntime

from benchmarks.stt import worst_stall
from botcore.tts import spoken
from botcore.tts_local import LocalSpeechSynth, load_voice, resolve_voice, synthesize

ANSWER = (
    "Sourdough starts with a starter: flour and water left to ferment for about a week, fed "
    "once a day, until it doubles within a few hours of a feeding. Mix one part of it with "
    "five parts flour and three and a half parts water, rest the dough for an hour, then add "
    "salt. Over the next four hours, fold the dough every half hour; it should grow by about "
    "half and feel airy. Shape it into a tight round, let it rise overnight in the fridge, "
    "and bake it in a covered pot, very hot, for twenty minutes, then uncovered until the "
    "crust is deep brown. Let it cool for an hour before you cut it, or the crumb turns gummy. "
) * 3


def seconds_of(audio: bytes) -> float:
    import av

    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


async def measured(speak: Callable[[], Awaitable[bytes]]) -> tuple[float, float, float, bytes]:
    """CPU seconds (every thread of this process), wall seconds and the worst stall of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    task = asyncio.ensure_future(speak())
    stall = await worst_stall(task)
    return time.process_time() - cpu, time.perf_counter() - wall, stall, task.result()


async def amain(args: argparse.Namespace) -> None:
    text = spoken(ANSWER, 1500)
    voice = resolve_voice(None)
    synth = LocalSpeechSynth(voice=voice, threads=args.threads)
    t0 = time.perf_counter()
    await synth.speak("Warm up.")  # loads the voice
    load_s = time.perf_counter() - t0

    async def ours() -> bytes:
        return (await synth.speak(text)).audio

    baseline_voice = load_voice(voice, args.threads)

    async def in_the_loop() -> bytes:  # the naive way: the same work, called in the event loop
        return synthesize(baseline_voice, text)

    results: dict[str, list[tuple[float, float, float, bytes]]] = {"ours": [], "baseline": []}
    for _ in range(args.repeat):
        results["ours"].append(await measured(ours))
        results["baseline"].append(await measured(in_the_loop))
    await synth.aclose()

    speech_s = seconds_of(results["ours"][0][3])
    med = {k: [statistics.median(run[i] for run in runs) for i in range(3)] for k, runs in results.items()}
    (cpu, wall, stall), (b_cpu, b_wall, b_stall) = med["ours"], med["baseline"]

    print(
        f"Local speech, piper {voice.rsplit('/', 1)[-1]}, onnxruntime {onnxruntime.__version__},"
        f" threads={args.threads}; Python {platform.python_version()}, {os.cpu_count()} cores;"
        f" {len(text)} characters, {speech_s:.1f} s of speech; median of {args.repeat} runs"
    )
    print()
    print("| measure | ours (thread) | baseline (in the loop) | target |")
    print("|---|---|---|---|")
    print(f"| speech s per CPU s | {speech_s / cpu:.1f} | {speech_s / b_cpu:.1f} | — |")
    print(f"| speech s per wall s | {speech_s / wall:.1f} ({wall:.2f} s) | {speech_s / b_wall:.1f} | ≥ 5 |")
    print(f"| worst event-loop stall | {stall * 1000:.0f} ms | {b_stall * 1000:.0f} ms | ≤ 50 ms |")
    print(f"| voice load | {load_s:.2f} s | — | — |")
    print(f"| OGG/Opus size | {len(results['ours'][0][3]) / 1024:.0f} KiB | — | — |")
    print()
    ok = lambda good: "met" if good else "MISSED"  # noqa: E731
    print(
        f"Targets: {speech_s / wall:.1f} s of speech per s (≥ 5: {ok(speech_s / wall >= 5)});"
        f" stall {stall * 1000:.0f} ms (≤ 50 ms: {ok(stall <= 0.05)})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
