"""The daemon's control socket against the real engine: the thin client's status, down that
leaves the daemon resident, up from the warm process, scale, daemon stop, the event stream,
and who may talk to it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, Project
from tests.test_supervise import PLAN, Daemon, daemons, named, start

__all__ = ["daemons"]  # the fixture, shared with test_supervise


def control_socket(project: Project) -> Path:
    return project.folder / "state" / project.name / "control.sock"


def ask(path: Path, request: dict[str, Any], until: str = "done",
        timeout: float = 30) -> list[dict[str, Any]]:
    """The messages the daemon sends for one request, up to the first with key `until`."""
    messages = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(path))
        connection.sendall((json.dumps(request) + "\n").encode())
        with connection.makefile("rb") as lines:
            for line in lines:
                messages.append(json.loads(line))
                if until in messages[-1] or "error" in messages[-1]:
                    break
    return messages


def running(project: Project) -> set[str]:
    return {name for name, c in project.containers().items() if c.status == "running"}


def test_status_answers_from_the_daemon_without_the_engine(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    path = control_socket(project)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The client reaches no engine (this address has none): the daemon's live view answers.
    result = project.run("status", "--json", env={"OLLAMATOPO_DOCKER_HOST": "unix:///nowhere"})
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["daemon"] == "supervising"
    rows = {row["service"]: row for row in answer["services"]}
    assert rows["db"]["ready"] and rows["api"]["ready"]
    assert rows["db"]["urls"] and rows["db"]["urls"][0].startswith("http://127.0.0.1:")
    text = project.run("status", env={"OLLAMATOPO_DOCKER_HOST": "unix:///nowhere"})
    assert f"daemon: supervising (pid {daemon.process.pid})" in text.stdout
    assert daemon.stop() == 0
    assert not path.exists()  # the daemon removes its socket


def test_down_leaves_the_daemon_resident_and_up_brings_the_plan_back(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    down = project.run("down")
    assert down.code == 0, down.stderr
    assert [e["event"] for e in down.events][-1] == "down completed"
    assert project.containers() == {}
    assert daemon.process.poll() is None  # resident
    idle = json.loads(project.run("status", "--json").stdout)
    assert idle["daemon"] == "idle"

    up = project.run("up")
    assert up.code == 0, up.stderr
    assert up.named("run completed") and running(project) == {"db", "api"}
    # Supervision is back: a killed service is restarted by the same daemon.
    project.containers()["db"].kill()
    daemon.wait_for(lambda ev: any(e.get("restarts") for e in named(ev, "service healthy", "db")),
                    what="db restarted after the up through the socket")
    assert daemon.stop() == 0


def test_daemon_stop_ends_it_and_later_commands_work_alone(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    plan = ("--plan", str(project.folder / "plan.yaml"))
    stopped = project.run("daemon", "stop", *plan)
    assert stopped.code == 0 and "stopping" in stopped.stdout
    assert daemon.process.wait(timeout=20) == 0
    assert running(project) == {"db", "api"}  # left running, as SIGTERM leaves them
    alone = project.run("status", "--json")
    assert alone.code == 0 and "daemon" not in json.loads(alone.stdout)
    assert project.run("daemon", "stop", *plan).code == 2  # nobody to stop


def test_scale_and_reconcile_answer_with_the_run_and_stream_its_events(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    messages = ask(control_socket(project), {"op": "scale", "replicas": {"api": 2}})
    done = messages[-1]["done"]
    assert done["outcome"] == "succeeded" and done["summary"]["scaled"] == {"api": 2}
    assert [row["service"] for row in done["summary"]["added"]] == ["api-2"]
    events = [m["event"]["event"] for m in messages if "event" in m]
    assert "run completed" in events and events.index("run completed") < len(messages)
    refused = ask(control_socket(project), {"op": "scale", "replicas": {"ghost": 2}})
    assert refused[-1]["error"]["exit_code"] == 2 and "ghost" in refused[-1]["error"]["message"]
    assert running(project) == {"db", "api", "api-2"}
    assert daemon.stop() == 0


SELECTABLE = """
name: PROJECT
services:
  db:
    image: ollamatopo-standin:latest
    restart: unless-stopped
    x-ollamatopo: {ready: {tcp: {port: 8080}, timeout: 20s}}
  api:
    image: ollamatopo-standin:latest
    depends_on: {db: {condition: service_healthy}}
    x-ollamatopo: {ready: {tcp: {port: 8080}, timeout: 20s}}
  web:
    image: ollamatopo-standin:latest
    x-ollamatopo: {ready: {tcp: {port: 8080}, timeout: 20s}}
"""


def test_up_services_through_the_daemon_brings_up_and_supervises_only_those(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(SELECTABLE)
    daemon = start(daemons, project)
    daemon.supervising()
    assert project.run("down").code == 0
    unknown = project.run("up", "ghost")
    assert unknown.code == 2 and "ghost" in unknown.stderr
    assert project.containers() == {}  # refused before anything was made

    up = project.run("up", "api")
    assert up.code == 0, up.stderr
    assert up.named("run completed")  # the daemon's run, streamed back
    assert running(project) == {"db", "api"}  # api and what it waits for, not web
    status = json.loads(project.run("status", "--json").stdout)
    assert status["daemon"] == "supervising"
    assert {row["service"] for row in status["services"]} == {"db", "api"}
    # What was brought up is supervised: a killed db comes back through the daemon.
    project.containers()["db"].kill()
    daemon.wait_for(lambda ev: any(e.get("restarts") for e in named(ev, "service healthy", "db")),
                    what="db restarted after up SERVICE through the socket")

    more = project.run("up", "web")
    assert more.code == 0, more.stderr
    assert running(project) == {"db", "api", "web"}
    status = json.loads(project.run("status", "--json").stdout)
    assert {row["service"] for row in status["services"]} == {"db", "api", "web"}
    assert daemon.stop() == 0


def test_the_event_stream_shows_a_restart_as_it_happens(
        project: Project, daemons: list[Daemon]) -> None:
    project.write(PLAN)
    daemon = start(daemons, project)
    daemon.supervising()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(str(control_socket(project)))
        connection.sendall(b'{"op": "events"}\n')
        time.sleep(0.2)
        project.containers()["db"].kill()
        seen = []
        with connection.makefile("rb") as lines:
            for line in lines:
                seen.append(json.loads(line)["event"])
                if seen[-1]["event"] == "service healthy" and seen[-1]["service"] == "db":
                    break
    assert [e["event"] for e in seen if e.get("service") == "db"][:2] == [
        "service unhealthy", "service restarting"]
    assert daemon.stop() == 0


def test_only_the_owner_may_talk_to_the_daemon(
        project: Project, daemons: list[Daemon]) -> None:
    # A state directory another user may pass through (pytest's own folders are 0700), so
    # that what stops the stranger is the socket's mode, then the daemon's own check.
    shared = Path(tempfile.mkdtemp(prefix="ollamatopo-test-"))
    try:
        shared.chmod(0o711)
        project.write(PLAN)
        daemon = start(daemons, project, {"OLLAMATOPO_STATE_DIR": str(shared)})
        daemon.supervising()
        path = shared / project.name / "control.sock"
        as_nobody = ["/usr/bin/python3", "-c",
                     "import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(5); "
                     "s.connect(sys.argv[1]); s.sendall(b'{\"op\": \"status\"}\\n'); "
                     "print(s.makefile().readline())", str(path)]

        def nobody() -> None:
            os.setgid(65534)
            os.setuid(65534)

        refused = subprocess.run(as_nobody, capture_output=True, text=True, preexec_fn=nobody,
                                 check=False, timeout=30)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr  # 0600
        path.chmod(0o666)  # past the file's mode, the daemon checks the peer's user itself
        answered = subprocess.run(as_nobody, capture_output=True, text=True,
                                  preexec_fn=nobody, check=False, timeout=30)
        assert json.loads(answered.stdout)["error"]["message"] == \
            "this daemon answers its owner only", answered.stderr
        assert daemon.stop() == 0
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_stale_socket_is_not_a_daemon(project: Project) -> None:
    """A daemon killed with SIGKILL leaves its socket: the next command does the work."""
    project.write(PLAN)
    path = control_socket(project)
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound, never listening: a connection is refused
    result = project.run("up")
    assert result.code == 0, result.stderr
    assert running(project) == {"db", "api"}
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "OLLAMATOPO_STATE_DIR": str(project.folder / "state")}
    status = subprocess.run([sys.executable, "-m", "ollamatopo", "status", "--json", "--plan",
                             str(project.folder / "plan.yaml"), "--project", project.name],
                            capture_output=True, text=True, env=env, check=False, timeout=60)
    assert status.returncode == 0 and "daemon" not in json.loads(status.stdout)
