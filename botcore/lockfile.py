"""One bot process per data directory: an exclusive advisory lock on ``DATA_DIR/bot.lock``.
It is what lets startup treat every 'running' job as orphaned by a crash."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from botcore.errors import AlreadyRunningError, StartupError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; run one process per data directory by hand
    fcntl = None  # type: ignore[assignment]


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "bot.lock"
        self._fd: int | None = None

    def __enter__(self) -> DataDirLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(
                f"DATA_DIR: cannot use {self.path.parent} ({exc.strerror or exc}); "
                "set DATA_DIR to a writable directory"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise AlreadyRunningError(
                    f"another bot process is already using {self.path.parent}; stop it first"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
