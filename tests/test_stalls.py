"""Signals and a hung or stalled engine (issue 15): a command never waits on an engine that
does not answer. `SilentEngine` accepts and never answers; `FaultProxy.pause()` freezes a
working engine's connection mid-run. The daemon's stall is in test_supervise.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Project
from tests.engine_proxy import SilentEngine

PLAN = """
project: PROJECT
services:
  a:
    image: ollamatopo-standin:latest
    environment: {STANDIN_DELAY: "5"}
    ready: {log: "standin ready", timeout: 20s}
  b:
    image: ollamatopo-standin:latest
    ready: {log: "standin ready", timeout: 20s}
phases:
  - {name: one, services: [a]}
  - {name: two, services: [b]}
"""
# The interpreter's own start (about 40 ms here) comes before any handler can exist.
INTERPRETER_START_S = 0.15


def launch(project: Project, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ollamatopo", "up", "--plan",
               str(project.folder / "plan.yaml"), "--log-format", "json"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT),
                   "OLLAMATOPO_STATE_DIR": str(project.folder / "state"), **(env or {})}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment, cwd=project.folder)


def wait_for_connection(engine: SilentEngine, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while not engine.connections:
        assert process.poll() is None and time.monotonic() < deadline, "never connected"
        time.sleep(0.01)


def test_an_engine_that_never_answers_exits_3_after_the_connect_timeout(
        project: Project, tmp_path: Path) -> None:
    """Was: 60.7 s, the SDK's read timeout."""
    project.write(PLAN)
    with SilentEngine(tmp_path / "silent.sock") as engine:
        began = time.monotonic()
        process = launch(project, {"OLLAMATOPO_DOCKER_HOST": engine.url})
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - began
    print(f"measured: exit {process.returncode} after {took:.2f} s")
    assert process.returncode == 3, stderr
    assert f"cannot reach the Docker engine at {engine.url}" in stderr
    assert "Traceback" not in stderr
    assert took < 5.0 + 1.0 + 3.0, took  # OLLAMATOPO_CONNECT_TIMEOUT, its margin, start-up


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_engine_hangs_ends_up_within_2_s_with_130(
        project: Project, tmp_path: Path, stop: signal.Signals) -> None:
    """Was: "SIGINT received, stopping", then 58 s more and exit 3."""
    project.write(PLAN)
    with SilentEngine(tmp_path / "silent.sock") as engine:
        process = launch(project, {"OLLAMATOPO_DOCKER_HOST": engine.url})
        try:
            wait_for_connection(engine, process)
            time.sleep(1.0)  # well inside the call that will never be answered
            signalled = time.monotonic()
            process.send_signal(stop)
            _, stderr = process.communicate(timeout=60)
            took = time.monotonic() - signalled
        finally:
            process.kill()
            process.wait()
    print(f"measured: {stop.name} -> exit {process.returncode} {took:.2f} s after the signal")
    assert process.returncode == 130, stderr
    assert took < 2.0, took
    assert "Traceback" not in stderr


@pytest.mark.parametrize("after_s", [INTERPRETER_START_S, 0.4, 0.8])
def test_sigterm_in_the_first_second_exits_130_and_leaves_nothing(
        project: Project, after_s: float) -> None:
    """Was: 143 (killed by the default action) until the event loop took the signal over."""
    project.write(PLAN)
    process = launch(project)
    time.sleep(after_s)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (process.returncode, stderr)
    assert "Traceback" not in stderr
    assert project.containers() == {} and project.networks() == []
