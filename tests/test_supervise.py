"""`up --supervise` against the real engine: restarts, backoff, sd_notify, signals, reload."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Project
from tests.engine_proxy import FaultProxy

PLAN = """
project: PROJECT
services:
  db:
    image: ollamatopo-standin:latest
    restart: unless-stopped
    ports: ["127.0.0.1::8080"]
    ready: {http: {port: 8080, path: /health}, timeout: 20s}
  api:
    image: ollamatopo-standin:latest
    restart: always
    environment: {API_VERSION: "1"}
    ready: {tcp: {port: 8080}, timeout: 20s}
phases:
  - {name: base, services: [db]}
  - {name: app, services: [api]}
"""
FAST = {"OLLAMATOPO_LIVENESS_INTERVAL": "1", "OLLAMATOPO_RESTART_BACKOFF_INITIAL": "0.2",
        "OLLAMATOPO_RESTART_BACKOFF_MAX": "1"}


class Daemon:
    """`up --supervise` running in the background, its JSON events read from a file."""

    def __init__(self, project: Project, env: dict[str, str], *extra: str) -> None:
        self.log = project.folder / f"daemon-{time.monotonic_ns()}.log"
        self.errors = self.log.with_suffix(".err")
        environment = {**os.environ, "PYTHONPATH": str(ROOT),
                       "OLLAMATOPO_STATE_DIR": str(project.folder / "state"), **FAST, **env}
        with self.log.open("w") as out, self.errors.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ollamatopo", "up", "--supervise", "--plan",
                 str(project.folder / "plan.yaml"), "--log-format", "json", *extra],
                stdout=out, stderr=err, env=environment, cwd=project.folder)

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 30,
                 what: str = "") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if check(events):
                return events
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; stderr: "
                             f"{self.errors.read_text()[-2000:]}")

    def supervising(self, count: int = 1) -> None:
        self.wait_for(lambda events: len(named(events, "supervising")) >= count,
                      what="supervising")

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def named(events: list[dict[str, Any]], event: str, service: str | None = None,
          ) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == event
            and (service is None or e.get("service") == service)]


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def start(daemons: list[Daemon], project: Project, env: dict[str, str] | None = None,
          *extra: str) -> Daemon:
    daemon = Daemon(project, env or {}, *extra)
    daemons.append(daemon)
    return daemon


def test_a_killed_service_is_restarted_and_ready_again_within_3_s(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    container = project.containers()["db"]
    container.reload()
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"  # owned by us
    killed_at = time.monotonic()
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
    events = daemon.wait_for(
        lambda ev: any(e.get("restarts") == 1 for e in named(ev, "service healthy", "db")),
        what="db healthy again")
    recovered = time.monotonic() - killed_at
    assert recovered < 3.0, recovered
    died = named(events, "service unhealthy", "db")[0]
    assert died["reason"] == "container died" and died["exit_code"] == 137
    assert named(events, "service restarting", "db")[0]["restarts"] == 1
    assert not named(events, "service unhealthy", "api")  # the dependent kept running
    assert daemon.stop() == 0
    container.reload()
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.status == "running"  # left running: the default on SIGTERM


RESTARTED_TWICE = """
project: PROJECT
services:
  a:
    image: ollamatopo-standin:latest
    ready: {tcp: {port: 8080}, timeout: 20s}
  b:
    image: ollamatopo-standin:latest
    restart: unless-stopped
    environment: {STANDIN_DELAY: "1.5"}
    ready: {tcp: {port: 8080}, timeout: 20s}
  c:
    image: ollamatopo-standin:latest
    ready: {tcp: {port: 8080}, timeout: 20s}
phases:
  - {name: one, services: [a]}
  - {name: two, services: [b, c]}
"""


def test_a_service_killed_again_while_it_restarts_is_restarted_at_once(
        project: Project, daemons: list[Daemon]) -> None:
    """Issue 15, defect 1: the guard used to wait out the global 60 s probe deadline for a
    container that died again while it was being probed."""
    project.write(RESTARTED_TWICE)
    daemon = start(daemons, project)
    daemon.supervising()
    container = project.containers()["b"]
    container.kill()
    daemon.wait_for(lambda ev: any(e.get("restarts") == 1
                                   for e in named(ev, "container started", "b")),
                    what="b started again")
    container.reload()
    assert container.status == "running"
    killed_again = time.monotonic()
    container.kill()  # inside its 1.5 s before readiness: the guard is probing it
    events = daemon.wait_for(
        lambda ev: any(e.get("restarts") == 2 for e in named(ev, "service healthy", "b")),
        timeout=30, what="b ready after the second restart")
    recovered = time.monotonic() - killed_again
    delay = [e["delay_s"] for e in named(events, "service restarting", "b")][1]
    started = next(e for e in named(events, "container started", "b") if e.get("restarts") == 2)
    healthy = next(e for e in named(events, "service healthy", "b") if e.get("restarts") == 2)
    start_to_ready = healthy["elapsed_s"] - started["elapsed_s"]
    print(f"measured: ready {recovered:.2f} s after the second kill (backoff {delay} s, "
          f"start to ready {start_to_ready:.2f} s)")
    assert recovered < delay + start_to_ready + 1.0, (recovered, delay, start_to_ready)
    second_death = named(events, "service unhealthy", "b")[1]
    assert second_death["reason"] == "container died" and second_death["exit_code"] == 137
    assert daemon.stop() == 0


def test_a_crash_loop_backs_off_up_to_the_cap_without_a_hot_loop(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN.replace('API_VERSION: "1"', 'STANDIN_LIFETIME: "0.3"'))
    daemon = start(daemons, project)
    daemon.supervising()
    began = time.monotonic()
    events = daemon.wait_for(lambda ev: len(named(ev, "service restarting", "api")) >= 6,
                             timeout=40, what="six restarts")
    elapsed = time.monotonic() - began
    delays = [e["delay_s"] for e in named(events, "service restarting", "api")]
    assert delays[:4] == [0.2, 0.4, 0.8, 1.0] and set(delays[4:]) == {1.0}, delays
    # Each round is the container's life (0.3 s plus its start) plus the delay: no hot loop.
    assert elapsed >= sum(delays[:5]), (elapsed, delays)
    assert daemon.stop() == 0


def test_sd_notify_status_ready_watchdog_stopping_in_order(
        project: Project, daemons: list[Daemon], tmp_path: Path) -> None:
    project.write(PLAN)
    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(30)
    try:
        daemon = start(daemons, project, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        messages: list[str] = []
        while not any(m.startswith("WATCHDOG=1") for m in messages):
            messages.append(receiver.recv(4096).decode())
        assert daemon.stop() == 0
        receiver.settimeout(2)
        try:
            while True:
                messages.append(receiver.recv(4096).decode())
        except TimeoutError:
            pass
    finally:
        receiver.close()
    kinds = [m.split("=", 1)[0] if not m.startswith("READY=1") else "READY" for m in messages]
    first_ready = kinds.index("READY")
    assert "STATUS" in kinds[:first_ready]  # progress while phases come up
    assert "WATCHDOG" in kinds[first_ready:]
    assert kinds[-1] == "STOPPING" and "STOPPING" not in kinds[:-1]


def test_a_second_daemon_for_the_same_project_is_refused_with_the_holder(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    second = project.run("up", "--supervise",
                         env={"OLLAMATOPO_STATE_DIR": str(project.folder / "state")})
    assert second.code == 2
    assert f"pid {daemon.process.pid}" in second.stderr and "up --supervise" in second.stderr
    assert daemon.stop() == 0


def test_the_lock_is_per_engine_not_per_state_directory_and_down_takes_it(
        project: Project, daemons: list[Daemon]) -> None:
    """Issue 15, defect 9: with another OLLAMATOPO_STATE_DIR a second `up` ran beside the
    daemon and blamed its own project's network on "another project"; `down` took no lock."""
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    elsewhere = {"OLLAMATOPO_STATE_DIR": str(project.folder / "elsewhere")}
    second = project.run("up", env=elsewhere)
    assert second.code == 2, second.stderr
    assert f"pid {daemon.process.pid}" in second.stderr and "up --supervise" in second.stderr
    assert "already being changed on this engine" in second.stderr
    refused = project.run("down", env=elsewhere)
    assert refused.code == 2 and f"pid {daemon.process.pid}" in refused.stderr
    assert {c.status for c in project.containers().values()} == {"running"}
    assert daemon.stop() == 0
    assert project.run("down", env=elsewhere).code == 0  # released with the daemon
    assert project.containers() == {}


def test_sighup_recreates_only_what_changed_and_refuses_a_broken_plan(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    before = {name: c.id for name, c in project.containers().items()}

    project.write(PLAN.replace('API_VERSION: "1"', 'API_VERSION: "2"'))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.supervising(count=2)
    after = {name: c.id for name, c in project.containers().items()}
    assert after["db"] == before["db"] and after["api"] != before["api"]

    project.write(PLAN.replace("restart: always", "restart: sometimes"))
    daemon.process.send_signal(signal.SIGHUP)
    events = daemon.wait_for(lambda ev: len(named(ev, "supervising")) >= 3, what="refusal")
    refused = named(events, "reload refused")
    assert refused and "services.api.restart" in refused[0]["error"]
    assert {name: c.id for name, c in project.containers().items()} == after
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_on_stop_stop_stops_the_containers_in_reverse_order(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project, None, "--on-stop", "stop")
    daemon.supervising()
    assert daemon.stop() == 0
    events = daemon.events()
    stopped = [e["service"] for e in named(events, "container stopped")]
    assert stopped == ["api", "db"]
    assert {c.status for c in project.containers().values()} == {"exited"}


def test_the_daemon_survives_the_engine_going_away_and_resynchronises(
        project: Project, daemons: list[Daemon], tmp_path: Path) -> None:
    project.write(PLAN)
    proxy = FaultProxy(tmp_path / "engine.sock")  # cut to make the engine vanish for the daemon
    proxy.open()
    try:
        daemon = start(daemons, project,
                       {"OLLAMATOPO_DOCKER_HOST": f"unix://{tmp_path / 'engine.sock'}"})
        daemon.supervising()
        proxy.close()
        daemon.wait_for(lambda ev: bool(named(ev, "engine lost")), what="engine lost")
        # While the daemon cannot see the engine, a service dies.
        project.containers()["api"].kill()
        time.sleep(1.5)
        assert daemon.process.poll() is None  # still alive, waiting
        proxy.open()
        events = daemon.wait_for(
            lambda ev: len(named(ev, "supervising")) >= 2
            and any(e.get("restarts") for e in named(ev, "service healthy", "api")),
            what="resynchronised and api restarted")
        assert named(events, "engine back")
        found = named(events, "service unhealthy", "api")
        assert found and found[-1]["reason"] == "found stopped"  # at once, not after checks
        assert project.containers()["api"].status == "running"
        assert daemon.stop() == 0
    finally:
        proxy.close()


def test_scale_asks_the_running_daemon_and_reports_each_new_replica(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    result = project.run("scale", "api=3",
                         env={"OLLAMATOPO_STATE_DIR": str(project.folder / "state")})
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert [row["service"] for row in summary["added"]] == ["api-2", "api-3"]
    assert all(row["status"] == "ready" for row in summary["added"])
    daemon.supervising(count=2)  # the daemon reloaded and supervises the new replicas
    assert set(project.containers()) == {"db", "api", "api-2", "api-3"}
    assert daemon.stop() == 0


def test_the_daemon_serves_prometheus_metrics(project: Project, daemons: list[Daemon]) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    def scrape(url: str) -> dict[tuple[str, str], float]:
        text = httpx.get(url, timeout=5).text
        return {(sample.name, sample.labels.get("service") or sample.labels.get("phase", "")):
                sample.value for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.labels.get("project") == project.name}

    project.write(PLAN)
    daemon = start(daemons, project, None, "--metrics-port", "0")
    daemon.supervising()
    url = named(daemon.events(), "metrics served")[0]["url"]
    assert url.startswith("http://127.0.0.1:")
    found = scrape(url)
    assert found[("ollamatopo_service_ready", "db")] == 1
    assert found[("ollamatopo_service_restarts_total", "db")] == 0
    assert found[("ollamatopo_phase_startup_seconds", "base")] > 0
    assert found[("ollamatopo_engine_up", "")] == 1

    project.containers()["db"].kill()
    daemon.wait_for(lambda ev: any(e.get("restarts") for e in named(ev, "service healthy", "db")),
                    what="db restarted")
    assert scrape(url)[("ollamatopo_service_restarts_total", "db")] == 1
    assert daemon.stop() == 0


def test_sigterm_ends_the_daemon_within_2_s_while_the_engine_stalls(
        project: Project, daemons: list[Daemon], tmp_path: Path) -> None:
    """Issue 15, defect 2: with its engine paused, a daemon outlived SIGTERM by minutes
    (its exit waited for worker threads stuck in engine calls)."""
    project.write(PLAN)
    proxy = FaultProxy(tmp_path / "engine.sock")
    proxy.open()
    try:
        daemon = start(daemons, project, {"OLLAMATOPO_DOCKER_HOST": proxy.url})
        daemon.supervising()
        proxy.pause()
        time.sleep(2.5)  # liveness checks every second: an inspect is stuck in flight
        signalled = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=60)
        took = time.monotonic() - signalled
    finally:
        proxy.close()
    print(f"measured: daemon exit {code} {took:.2f} s after SIGTERM")
    assert code == 0  # a daemon asked to stop after a good start
    assert took < 2.0, took
    events = daemon.events()
    stalled = named(events, "engine stalled")
    assert stalled and "restart policies" in stalled[0]["abandoned"]
    abandoned = named(events, "engine calls abandoned")
    assert abandoned and abandoned[0]["calls"] >= 1

