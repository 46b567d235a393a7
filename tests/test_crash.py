"""Crash behaviour with real processes: SIGKILL mid-job, restart, and nothing is lost."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from botcore.clock import SystemClock
from botcore.jobqueue import JobQueue
from botcore.models import JobState
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore

from .conftest import ROOT

SCRIPT = Path(__file__).with_name("crash_worker.py")


def start(data_dir: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(data_dir), mode], env=env)


async def enqueue_work(data_dir: Path, count: int) -> None:
    db = await Database.open(data_dir / "bot.db")
    try:
        queue = JobQueue(SqliteJobStore(db), clock=SystemClock())
        for n in range(1, count + 1):
            await queue.enqueue("work", {"n": n}, dedup_key=f"work:{n}", group_key=f"g{n % 2}")
    finally:
        await db.close()


async def job_states(data_dir: Path) -> dict[int, tuple[JobState, int]]:
    db = await Database.open(data_dir / "bot.db")
    queue = JobQueue(SqliteJobStore(db), clock=SystemClock())
    try:
        return {i: ((j := await queue.get(i)).state, j.attempts) for i in range(1, 7)}
    finally:
        await db.close()


async def test_sigkill_mid_job_then_restart_completes_every_job(tmp_path: Path) -> None:
    await enqueue_work(tmp_path, 6)
    proc = start(tmp_path, "hang-on-3")
    try:
        for _ in range(1000):  # bounded: 20 s
            if (tmp_path / "hanging").exists():
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the worker never reached job 3")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    restarted = start(tmp_path, "normal")
    assert restarted.wait(timeout=60) == 0

    states = await job_states(tmp_path)
    assert all(state is JobState.DONE for state, _ in states.values()), states
    assert states[3][1] == 2  # the interrupted attempt counted
    trace = (tmp_path / "trace.log").read_text().split("\n")
    ends = [line for line in trace if line.startswith("end ")]
    assert sorted(ends) == sorted(f"end {i}" for i in range(1, 7))  # each job finished exactly once
    assert "start 3 1" in trace and "start 3 2" in trace


async def test_a_job_that_keeps_killing_the_process_ends_dead(tmp_path: Path) -> None:
    await enqueue_work(tmp_path, 6)
    codes = []
    for _ in range(8):  # bounded: the job has 4 attempts, so 5 runs are enough
        proc = start(tmp_path, "kill-on-3")
        codes.append(proc.wait(timeout=60))
        if codes[-1] == 0:
            break
    assert codes == [-signal.SIGKILL] * 4 + [0]
    states = await job_states(tmp_path)
    assert states[3] == (JobState.DEAD, 4)
    assert all(state is JobState.DONE for i, (state, _) in states.items() if i != 3), states
