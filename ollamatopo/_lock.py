"""One `up` per project: an exclusive lock on a file in the state directory, held for as
long as an `up` (or the daemon) runs; a second one is told who holds it. Kept apart from
the daemon so a plain `up` does not import the supervisor to take it."""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ollamatopo._errors import ProjectLocked


class ProjectLock:
    """An exclusive, non-blocking lock per project, released when the process ends."""

    def __init__(self, state_dir: Path, project: str) -> None:
        self.path = state_dir / project / "up.lock"
        self._file: IO[str] | None = None

    def acquire(self, command: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ProjectLocked(
                f"project {self.path.parent.name!r} is already being brought up or supervised "
                f"by {holder}; stop that one first (systemctl stop ollamatopo, or kill its "
                f"pid), or use another --project") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({command}, since "
                     f"{datetime.now(UTC).isoformat(timespec='seconds')})\n")
        handle.flush()
        self._file = handle

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it."""
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None
