"""Running a command as a child: its wall time, CPU seconds and peak RSS (from `wait4`),
and its output lines, each with the wall-clock time it arrived.

Used for `python -m ollamatopo up/down/--help` and for docker-compose. On Ctrl-C or
SIGTERM the child gets SIGTERM; we wait for it to finish its own rollback before the
caller sweeps by label.
"""

from __future__ import annotations

import compileall
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
# Settings the benchmark chooses itself, so the caller's environment does not leak in.
_OWN_SETTINGS = ("OLLAMATOPO_PLAN", "OLLAMATOPO_PROJECT", "OLLAMATOPO_LOG_FORMAT",
                 "OLLAMATOPO_LOG_LEVEL", "OLLAMATOPO_STATE_DIR")


@dataclass
class ChildRun:
    argv: list[str]
    exit_code: int
    launched_at: float  # epoch seconds, just before the fork
    exited_at: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    stdout: list[tuple[float, str]] = field(default_factory=list)
    stderr: str = ""

    @property
    def wall_s(self) -> float:
        return self.exited_at - self.launched_at

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def lines(self) -> list[str]:
        return [line for _, line in self.stdout]

    def tail(self, count: int = 8, width: int = 300) -> str:
        """The last lines of stderr (or of stdout when stderr is empty), each cut short."""
        lines = self.stderr.strip().splitlines() or self.lines()
        return "\n".join(line if len(line) <= width else line[:width] + " ..."
                         for line in lines[-count:])


def compile_package() -> None:
    """Write the package's bytecode, as installing a wheel does: the children measured here
    are the installed tool, not an editable checkout that PYTHONDONTWRITEBYTECODE=1 (this
    machine's environment) makes compile every module again at each start (0.24 s)."""
    compileall.compile_dir(str(REPO / "ollamatopo"), quiet=1)


def ollamatopo_argv(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "ollamatopo", *arguments]


def ollamatopo_env(state_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _OWN_SETTINGS}
    env["OLLAMATOPO_STATE_DIR"] = str(state_dir)
    return env


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
        timeout_s: float = 600.0, cwd: Path = REPO) -> ChildRun:
    """Run `argv` to its end (killed after `timeout_s`), with its resource usage."""
    stdout: list[tuple[float, str]] = []
    stderr: list[str] = []
    launched = time.time()
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=None if env is None else dict(env),
                               cwd=cwd, text=True, errors="replace")
    assert process.stdout is not None and process.stderr is not None
    readers = [threading.Thread(target=_read_lines, args=(process.stdout, stdout), daemon=True),
               threading.Thread(target=_read_text, args=(process.stderr, stderr), daemon=True)]
    for reader in readers:
        reader.start()
    watchdog = threading.Timer(timeout_s, _kill, args=(process,))
    watchdog.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
        exited = time.time()
    except BaseException:
        _finish_interrupted(process)
        raise
    finally:
        watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout=5)
    return ChildRun(argv=list(argv), exit_code=process.returncode, launched_at=launched,
                    exited_at=exited, user_s=usage.ru_utime, sys_s=usage.ru_stime,
                    max_rss_mb=usage.ru_maxrss / 1024, stdout=stdout,
                    stderr="".join(stderr))


def _read_lines(stream: IO[str], into: list[tuple[float, str]]) -> None:
    for line in stream:
        into.append((time.time(), line.rstrip("\n")))


def _read_text(stream: IO[str], into: list[str]) -> None:
    into.append(stream.read())


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()


def _finish_interrupted(process: subprocess.Popen[str], grace_s: float = 30.0) -> None:
    """Ctrl-C or SIGTERM reached us: the child gets SIGTERM (it may not see a SIGINT that
    reached only us, or may ignore SIGINT when started in the background), rolls back
    what it created, and is killed if it takes longer than `grace_s`."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except KeyboardInterrupt:
        process.kill()
        process.wait()


def startup_times(repeats: int = 5) -> list[float]:
    """Wall seconds of `python -m ollamatopo --help`, `repeats` times."""
    return [run(ollamatopo_argv("--help"), timeout_s=60).wall_s for _ in range(repeats)]
