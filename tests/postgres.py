"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary directory, started with
``pg_ctl`` on a free loopback port (fsync off: it is thrown away), stopped and removed afterwards.
``TEST_DATABASE_URL`` points at an existing server instead. Where neither is possible, the tests
that need it skip, with the reason. PostgreSQL refuses to run as root, so as root the server runs
as the ``postgres`` user that Debian's packages create."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SKIP_REASON = "PostgreSQL"  # every skip reason starts with it: .ci/run looks for it


@dataclass(frozen=True)
class Cluster:
    url: str  # postgresql://bot@127.0.0.1:<port>/postgres
    bin_dir: Path | None  # the server's programs (psql among them); None: an existing server
    directory: Path | None  # its data and log, removed afterwards; None: an existing server
    run_as: tuple[str, ...] = ()  # ("runuser", "-u", "postgres", "--") when we are root

    def psql(self, sql: str) -> str:
        """Run ``sql`` with psql (no driver needed); its output, unaligned, without headers."""
        psql = str(self.bin_dir / "psql") if self.bin_dir else shutil.which("psql") or "psql"
        done = subprocess.run(
            [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url, "-c", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()


def server_binaries() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, or Debian's versioned directory."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def unavailable() -> str | None:
    """Why a throwaway cluster cannot be started here (None: it can)."""
    if os.environ.get("TEST_DATABASE_URL"):
        return None
    if server_binaries() is None:
        return f"{SKIP_REASON}: no server binaries (initdb) and no TEST_DATABASE_URL; see the README"
    if os.geteuid() == 0 and not (_postgres_user() and shutil.which("runuser")):
        return f"{SKIP_REASON}: running as root, with no 'postgres' user (and runuser) to run the server as"
    return None


def start() -> Cluster:
    """A running cluster (or the one TEST_DATABASE_URL names). Call ``stop`` on it afterwards."""
    existing = os.environ.get("TEST_DATABASE_URL")
    if existing:
        return Cluster(existing, None, None)
    bin_dir = server_binaries()
    assert bin_dir is not None, unavailable()
    directory = Path(tempfile.mkdtemp(prefix="bot-pg-"))
    run_as: tuple[str, ...] = ()
    if os.geteuid() == 0:  # the server refuses root: its files and process are the postgres user's
        user = _postgres_user()
        assert user is not None, unavailable()
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = ("runuser", "-u", user.pw_name, "--")
    port = _free_port()
    data = directory / "data"
    initdb = [
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        "bot",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
    ]
    _run(run_as, initdb)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off -c full_page_writes=off"
    log = str(directory / "log")
    _run(run_as, [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start"])
    return Cluster(f"postgresql://bot@127.0.0.1:{port}/postgres", bin_dir, directory, run_as)


def stop(cluster: Cluster) -> None:
    if cluster.directory is None or cluster.bin_dir is None:
        return  # an existing server: not ours to stop
    pg_ctl = str(cluster.bin_dir / "pg_ctl")
    try:
        _run(cluster.run_as, [pg_ctl, "-D", str(cluster.directory / "data"), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(cluster.directory, ignore_errors=True)


def _postgres_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(run_as: tuple[str, ...], argv: list[str]) -> None:
    done = subprocess.run([*run_as, *argv], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
