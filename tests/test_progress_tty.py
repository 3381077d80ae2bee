"""`up` on a terminal shows the live board: run under a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time

from tests.conftest import ROOT, Project

PLAN = """
project: PROJECT
services:
  db:
    image: ollamatopo-standin:latest
    environment: {STANDIN_DELAY: "1"}
    ready: {exec: [test, -f, /tmp/ready], timeout: 20s}
  api:
    image: ollamatopo-standin:latest
    ready: {log: "standin ready", timeout: 20s}
phases:
  - {name: base, services: [db]}
  - {name: app, services: [api]}
"""
ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_on_a_terminal(project: Project, *args: str, timeout: float = 60) -> tuple[int, str]:
    controller, terminal = pty.openpty()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100",
                   "OLLAMATOPO_STATE_DIR": str(project.folder / "state")}
    environment.pop("OLLAMATOPO_LOG_FORMAT", None)
    process = subprocess.Popen([sys.executable, "-m", "ollamatopo", *args, "--plan",
                                str(project.folder / "plan.yaml")], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=environment,
                               cwd=project.folder)
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def test_up_on_a_terminal_draws_a_board_that_ends_with_every_service_ready(
        project: Project) -> None:
    project.write(PLAN)
    code, screen = run_on_a_terminal(project, "up")
    assert code == 0, screen
    assert "\x1b[J" in screen  # frames were redrawn in place
    text = ESCAPES.sub("", screen)
    header = f"up {project.name}"
    frames = [i for i, line in enumerate(text.splitlines()) if line.startswith(header)]
    assert len(frames) >= 5  # the seconds moved while db took 1 s to be ready
    last = text.splitlines()[frames[-1]:]
    assert "2/2 ready" in last[0]
    assert any(re.search(r"db\s+ready\s+at \d", line) for line in last)
    assert any(re.search(r"api\s+ready\s+at \d", line) for line in last)
    assert any("waiting for db" in line for line in text.splitlines())
    assert '"event"' not in text and "container created" not in text  # no info log lines


def test_plain_progress_keeps_the_log_lines(project: Project) -> None:
    project.write(PLAN)
    code, screen = run_on_a_terminal(project, "up", "--progress", "plain")
    assert code == 0, screen
    assert "container created" in screen and "\x1b[J" not in screen
