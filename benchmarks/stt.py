"""Local transcription benchmark: ``python -m benchmarks.stt`` (needs requirements-local.txt).

With the bundled tiny.en model (int8, CPU): the real-time factor on a 32 s clip
(tests/fixtures/long.ogg, espeak-ng speech), the transcribing process's peak RSS, and the event loop's worst
stall while three notes transcribe. The stall is measured by a ticker task that should run every
5 ms; the baseline is the same three notes transcribed by calling faster-whisper directly in the
event loop, which is what a naive bot does.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import time
from pathlib import Path

from botcore.stt_local import LocalWhisperTranscriber, resolve_model

CLIP = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "long.ogg"
TICK_S = 0.005


async def worst_stall(work: asyncio.Future[object] | asyncio.Task[object]) -> float:
    """Largest lateness of a 5 ms ticker while ``work`` runs."""
    worst = 0.0
    loop = asyncio.get_running_loop()
    while not work.done():
        before = loop.time()
        await asyncio.sleep(TICK_S)
        worst = max(worst, loop.time() - before - TICK_S)
    await work
    return worst


def child_peak_rss_mb(stt: LocalWhisperTranscriber) -> float:
    """The transcribing child's peak resident set so far (``VmHWM``; Linux /proc)."""
    status = Path(f"/proc/{stt.child_pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


async def amain(args: argparse.Namespace) -> None:
    audio = CLIP.read_bytes()
    model = resolve_model(None)
    stt = LocalWhisperTranscriber(model=model, threads=args.threads, language="en")
    t0 = time.perf_counter()
    await stt.transcribe(audio[:20_000], filename="warm.ogg", mime="audio/ogg")  # loads the model
    load_s = time.perf_counter() - t0

    seconds = 32.3
    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = await stt.transcribe(audio, filename="long.ogg", mime="audio/ogg")
        runs.append(time.perf_counter() - t0)
    rtf = seconds / statistics.median(runs)

    async def three_in_the_child() -> None:
        await asyncio.gather(*(stt.transcribe(audio, filename="v.ogg", mime="audio/ogg") for _ in range(3)))

    ours = await worst_stall(asyncio.ensure_future(three_in_the_child()))
    peak_mb = child_peak_rss_mb(stt)  # read while the child lives: killed, it is not in RUSAGE_CHILDREN
    await stt.aclose()

    from faster_whisper import WhisperModel

    whisper = WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=args.threads)

    async def three_in_the_loop() -> None:  # the naive way: the model called in the event loop
        for _ in range(3):
            segments, _info = whisper.transcribe(io.BytesIO(audio), vad_filter=True, beam_size=1)
            " ".join(s.text for s in segments)
            await asyncio.sleep(0)

    naive = await worst_stall(asyncio.ensure_future(three_in_the_loop()))

    print(
        f"Local transcription, faster-whisper tiny.en int8, cpu_threads={args.threads}; Python"
        f" {platform.python_version()}, {os.cpu_count()} cores; median of {args.repeat} runs"
    )
    print()
    print("| measure | ours | baseline | target |")
    print("|---|---|---|---|")
    print(f"| real-time factor, 32 s clip | {rtf:.1f}× ({statistics.median(runs):.2f} s) | — | ≥ 15× |")
    print(f"| model load | {load_s:.2f} s | — | — |")
    print(
        f"| worst event-loop stall, 3 notes | {ours * 1000:.0f} ms (child process)"
        f" | {naive * 1000:.0f} ms (in the loop) | ≤ 50 ms |"
    )
    print(f"| peak RSS of the transcribing process | {peak_mb:.0f} MB | — | — |")
    print()
    ok = lambda good: "met" if good else "MISSED"  # noqa: E731
    print(
        f"Targets: real-time factor {rtf:.1f}× (≥ 15×: {ok(rtf >= 15)});"
        f" stall {ours * 1000:.0f} ms (≤ 50 ms: {ok(ours <= 0.05)})."
    )
    print(f"Transcript starts: {result.text[:80]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
