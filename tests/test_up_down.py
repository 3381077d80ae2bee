"""`up`, `status` and `down` against a real Docker engine, with busybox stand-ins."""

from __future__ import annotations

from tests.conftest import Project

IMAGE = "ollamatopo-standin:latest"

# Three phases, every probe kind; probed ports are published on loopback only.
ALL_PROBES = f"""
project: PROJECT
networks:
  back: {{}}
volumes:
  data: {{}}
services:
  db:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "0.3"}}
    volumes: ["data:/data"]
    networks: [back]
    ready: {{exec: [test, -f, /tmp/ready], timeout: 20s}}
  cache:
    image: {IMAGE}
    networks: [back]
    ready: {{log: "standin ready", timeout: 20s}}
  node:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "NODE_DELAY"}}
    ports: ["127.0.0.1::8080"]
    networks: [back]
    ready: {{http: {{port: 8080, path: /health, status: 200}}, timeout: 20s}}
  worker:
    image: {IMAGE}
    after: {{node: started}}
    ports: ["127.0.0.1::8080"]
    networks: [back]
    ready: {{tcp: {{port: 8080}}, timeout: 20s}}
  lb:
    image: {IMAGE}
    networks: [back]
    ready: {{docker: healthy, timeout: 20s}}
  idle:
    image: {IMAGE}
    networks: [back]
    ready: {{none: true}}
phases:
  - {{name: foundation, services: [db, cache]}}
  - {{name: core, services: [node]}}
  - {{name: edge, services: [worker, lb, idle]}}
"""


def all_probes(delay: str = "0.2") -> str:
    return ALL_PROBES.replace("NODE_DELAY", delay)


def test_three_phases_every_probe_kind_come_up_and_status_shows_them(project: Project) -> None:
    project.write(all_probes())
    result = project.run("up")
    assert result.code == 0, result.stderr
    report = project.report(result)
    assert report["outcome"] == "succeeded"
    assert {name: t["status"] for name, t in report["services"].items()} == dict.fromkeys(
        ["db", "cache", "node", "worker", "lb", "idle"], "ready")
    probes = {name: t["probe"] for name, t in report["services"].items()}
    assert probes["node"].startswith("GET http://127.0.0.1:")
    assert probes["worker"].startswith("TCP 127.0.0.1:")
    assert probes["db"] == "exec test -f /tmp/ready"
    assert probes["lb"] == "docker HEALTHCHECK"
    # node waits for the foundation phase to be healthy (the phase default)
    assert report["services"]["node"]["started_s"] >= report["services"]["db"]["ready_s"]
    for event in result.named("service healthy"):
        assert {"service", "phase", "elapsed_s"} <= event.keys()

    status = project.run("status", "--json")
    assert status.code == 0, status.stderr
    assert '"ready": true' in status.stdout and '"ready": false' not in status.stdout


def test_after_override_starts_before_the_previous_phase_is_ready(project: Project) -> None:
    project.write(all_probes(delay="2"))
    result = project.run("up")
    assert result.code == 0, result.stderr
    services = project.report(result)["services"]
    # worker waits only for node to have started, not for the core phase to be healthy
    assert services["worker"]["started_s"] < services["node"]["ready_s"]
    assert services["lb"]["started_s"] >= services["node"]["ready_s"]


def test_second_up_recreates_nothing_and_a_changed_service_alone_is_recreated(
        project: Project) -> None:
    project.write(all_probes())
    assert project.run("up").code == 0
    first = {name: c.id for name, c in project.containers().items()}

    again = project.run("up")
    assert again.code == 0, again.stderr
    assert {name: c.id for name, c in project.containers().items()} == first
    assert not again.named("container created")

    project.write(all_probes().replace('STANDIN_DELAY: "0.3"', 'STANDIN_DELAY: "0.4"'))
    changed = project.run("up")
    assert changed.code == 0, changed.stderr
    after = {name: c.id for name, c in project.containers().items()}
    assert [name for name in first if after[name] != first[name]] == ["db"]
    assert changed.named("container created", "db")[0]["cause"] == "config changed"


def test_down_keeps_named_volumes_and_down_volumes_removes_them(project: Project) -> None:
    project.write(all_probes())
    assert project.run("up").code == 0
    assert len(project.volumes()) == 1

    down = project.run("down")
    assert down.code == 0, down.stderr
    assert project.containers() == {} and project.networks() == []
    assert [v.name for v in project.volumes()] == [f"{project.name}_data"]
    # dependents stop before what they depend on
    order = [e["service"] for e in down.named("container removed")]
    assert order.index("node") < order.index("db")

    assert project.run("up").code == 0
    gone = project.run("down", "--volumes")
    assert gone.code == 0, gone.stderr
    assert project.volumes() == []
    assert gone.named("volume removed")[0]["volume"] == f"{project.name}_data"
