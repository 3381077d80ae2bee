"""One command that changes a project at a time, per engine: `up`, `down`, `scale` and the
daemon take an exclusive lock on a file named after the engine's address and the project;
a second one is told who holds it. Kept apart from the daemon so a plain `up` does not
import the supervisor to take it.

Where: `OLLAMATOPO_LOCK_DIR`, by default `/run/lock/ollamatopo` (the host's place for
lock files, shared by every user and state directory; a temporary folder where it cannot
be made). It used to be in the state directory, so two `up` with different
`OLLAMATOPO_STATE_DIR` both ran, and the loser blamed its own project's network on
"another project". What one host's lock cannot see (another host, or the same engine
reached through another address) the labels on the engine still refuse.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ollamatopo._errors import ProjectLocked, UsageError

DEFAULT_LOCK_DIR = Path("/run/lock/ollamatopo")
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def default_lock_dir() -> Path:
    """/run/lock/ollamatopo if it exists or can be made, else one in the temporary folder."""
    for candidate in (DEFAULT_LOCK_DIR, Path(tempfile.gettempdir()) / "ollamatopo-locks"):
        try:
            _shared_directory(candidate)
        except OSError:
            continue
        return candidate
    return DEFAULT_LOCK_DIR  # the error comes, with its fix, when the lock is taken


def _shared_directory(path: Path) -> None:
    """A folder every user of the engine can lock in, like /run/lock itself (sticky)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with_sticky = stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO | stat.S_ISVTX
        os.chmod(path, with_sticky)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable")


def engine_key(address: str | None) -> str:
    """The engine, as a file name: its address, with a socket's path resolved (so
    /var/run/docker.sock and /run/docker.sock are one engine)."""
    address = address or DEFAULT_ENGINE
    if address.startswith("unix://"):
        address = "unix://" + os.path.realpath(address[len("unix://"):])
    return hashlib.sha256(address.encode()).hexdigest()[:16]


class ProjectLock:
    """An exclusive, non-blocking lock per engine and project, released when the process
    ends."""

    def __init__(self, lock_dir: Path, engine_address: str | None, project: str) -> None:
        self.path = lock_dir / f"{engine_key(engine_address)}-{project}.lock"
        self.project = project
        self._file: IO[str] | None = None

    def acquire(self, command: str) -> None:
        handle = self._open()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ProjectLocked(
                f"project {self.project!r} is already being changed on this engine by "
                f"{holder}; wait for it, or stop it first (systemctl stop ollamatopo, or kill "
                f"its pid), or use another --project") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({command}, since "
                     f"{datetime.now(UTC).isoformat(timespec='seconds')})\n")
        handle.flush()
        self._file = handle

    def _open(self) -> IO[str]:
        try:
            _shared_directory(self.path.parent)
            # Readable and writable by every user of the engine: the lock guards against
            # accidents; the labels on the engine are what decides ownership.
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise UsageError(f"cannot take the project's lock {self.path}: {error.strerror}; "
                             "set OLLAMATOPO_LOCK_DIR to a folder every user of this engine "
                             "can write") from None
        if os.fstat(descriptor).st_uid == os.getuid():
            os.fchmod(descriptor, 0o666)  # past the umask
        return os.fdopen(descriptor, "r+", encoding="utf-8")

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
