"""End to end on the demo topology: real PostgreSQL, Redis, nginx and Prometheus from
Debian's packages, three demo nodes, and stand-ins; all on loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Project

DEMO_IMAGES = ("standin", "debian")  # the services' own: built by up (build: in demo.yaml)
BUILT = ("postgres", "redis", "nginx", "prometheus", "node")  # their recipes, under images/
# Subnets of their own, so the tests can run while `make demo` is up.
ENV = {"TRAINING_SUBNET": "172.31.121.0/24", "INFRA_SUBNET": "172.31.122.0/24",
       "MONITOR_SUBNET": "172.31.123.0/24", "LB_PORT": "", "POSTGRES_PORT": "",
       "REDIS_PORT": "", "PROMETHEUS_PORT": "", "GRAFANA_PORT": "", "JAEGER_PORT": ""}
NODES = ("ollama-node-1", "ollama-node-2", "ollama-node-3")


@pytest.fixture(scope="module")
def demo(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from build import ensure_image  # images/build.py

    for name in DEMO_IMAGES:
        ensure_image(name, docker_client)
    folder = tmp_path_factory.mktemp("demo")
    (folder / "config").mkdir()
    (folder / "nginx").mkdir()
    shutil.copy(ROOT / "config" / "prometheus.yml", folder / "config")
    shutil.copy(ROOT / "nginx" / "nginx.conf.template", folder / "nginx")
    for recipe in BUILT:
        shutil.copytree(ROOT / "images" / recipe, folder / "images" / recipe)
    text = (ROOT / "config" / "demo.yaml").read_text()
    project = Project(f"otdemo{uuid.uuid4().hex[:8]}", folder / "config", docker_client)
    project.write(text.replace("name: ollamademo", "name: PROJECT"))
    try:
        result = project.run("up", env=ENV, timeout=300)
        assert result.code == 0, result.stderr
        yield project
    finally:
        project.clean()


def published(project: Project, service: str, port: int) -> str:
    container = project.containers()[service]
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]
    return f"http://127.0.0.1:{binding['HostPort']}"


def test_all_ten_services_are_ready(demo: Project) -> None:
    status = demo.run("status", "--json", env=ENV)
    assert status.code == 0, status.stderr
    rows = {row["service"]: row for row in json.loads(status.stdout)["services"]}
    assert len(rows) == 10
    assert {name: row["ready"] for name, row in rows.items()} == dict.fromkeys(rows, True)


def test_requests_through_the_load_balancer_follow_the_weights(demo: Project) -> None:
    url = published(demo, "load-balancer", 80)
    served: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=10) as client:
        for index in range(350):
            response = client.get(f"/train/{index}")
            assert response.status_code == 200, response.text
            served[response.json()["node_id"]] += 1
    assert set(served) == set(NODES)
    expected = {"ollama-node-1": 150, "ollama-node-2": 100, "ollama-node-3": 100}
    for node, count in expected.items():
        assert abs(served[node] - count) <= count * 0.25, served


def test_prometheus_reports_the_nodes_targets_up(demo: Project) -> None:
    url = published(demo, "prometheus", 9090)
    deadline = time.monotonic() + 40
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["instance"]: t["health"] for t in targets
                  if t["labels"]["job"] == "ollama-nodes"}
        if len(health) == 3 and set(health.values()) == {"up"}:
            break
        time.sleep(1)
    assert health == {f"{node}:8080": "up" for node in NODES}


def psql(project: Project, sql: str) -> str:
    container = project.containers()["postgres"]
    code, output = container.exec_run(["psql", "-U", "ollama", "-d", "ollama", "-tAc", sql])
    assert code == 0, output
    return str(output.decode().strip())


def test_a_row_in_postgres_survives_down_and_up(demo: Project) -> None:
    mark = uuid.uuid4().hex
    psql(demo, "CREATE TABLE IF NOT EXISTS survival (mark text)")
    psql(demo, f"INSERT INTO survival VALUES ('{mark}')")
    assert demo.run("down", env=ENV).code == 0
    assert demo.containers() == {}
    again = demo.run("up", env=ENV, timeout=300)
    assert again.code == 0, again.stderr
    assert psql(demo, f"SELECT count(*) FROM survival WHERE mark = '{mark}'") == "1"


@contextlib.contextmanager
def steady_client(url: str) -> Iterator[tuple[Counter[str], list[str]]]:
    """A client sending requests through the load balancer, one after another, for the
    duration of the block: which nodes served them, and every failure."""
    failures: list[str] = []
    served: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        # A new connection per request: an idle keep-alive connection that an old nginx
        # worker closes at a reload is the client's to retry (RFC 9112 9.3.1), not a
        # request the balancer lost; this client counts only lost requests.
        with httpx.Client(base_url=url, timeout=10, headers={"Connection": "close"}) as session:
            while not stop.is_set():
                try:
                    response = session.get("/generate")
                    if response.status_code != 200:
                        failures.append(f"status {response.status_code}")
                    else:
                        served[response.json()["node_id"]] += 1
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    sender = threading.Thread(target=client)
    sender.start()
    try:
        yield served, failures
    finally:
        stop.set()
        sender.join(timeout=30)


def wait_until_served_by(served: Counter[str], node: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while served[node] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_fourth_node_is_added_to_the_balancer_without_a_failed_request(
        demo: Project) -> None:
    url = published(demo, "load-balancer", 80)
    text = (demo.folder / "plan.yaml").read_text()
    fourth = text.replace(
        "  load-balancer:\n",
        "  ollama-node-4:\n    <<: *node\n"
        "    environment: {NODE_ID: ollama-node-4, NODE_ROLE: worker, CLUSTER_SIZE: \"4\"}\n"
        "    depends_on: {ollama-node-1: {condition: service_started}}\n"
        "    x-ollamatopo: {<<: *node-ready, optional: true}\n\n  load-balancer:\n", 1)
    fourth = fourth.replace("ollama-node-2: 2}", "ollama-node-2: 2, ollama-node-4: 2}")
    fourth = fourth.replace("services: [ollama-node-2]}",
                            "services: [ollama-node-2, ollama-node-4]}")
    (demo.folder / "plan.yaml").write_text(fourth)
    try:
        with steady_client(url) as (served, failures):
            result = demo.run("up", env=ENV, timeout=300)
            wait_until_served_by(served, "ollama-node-4")
        assert result.code == 0, result.stderr
        assert not result.named("container created", "load-balancer")  # kept, only reloaded
        reloads = [e for e in result.named("load balancer configured") if e["reloaded"]]
        assert reloads and "ollama-node-4" in reloads[-1]["backends"]
        assert failures == []
        assert served["ollama-node-4"] > 0 and sum(served.values()) > 50
    finally:
        (demo.folder / "plan.yaml").write_text(text)


def test_scaling_workers_2_4_2_under_load_fails_no_request(demo: Project) -> None:
    url = published(demo, "load-balancer", 80)
    with steady_client(url) as (served, failures):
        # Back to the plan as written: node-4 of the test above is drained, then removed.
        assert demo.run("up", env=ENV, timeout=300).code == 0
        four = demo.run("scale", "ollama-node-2=4", env=ENV, timeout=300)
        wait_until_served_by(served, "ollama-node-5")
        two = demo.run("scale", "ollama-node-2=2", env=ENV, timeout=300)
        time.sleep(1)
    assert four.code == 0, four.stderr
    assert two.code == 0, two.stderr
    added = json.loads(four.stdout.splitlines()[-1])["added"]
    assert [row["service"] for row in added] == ["ollama-node-4", "ollama-node-5"]
    assert all(row["status"] == "ready" and 0 < row["create_to_ready_s"] < 45 for row in added)
    assert json.loads(two.stdout.splitlines()[-1])["removed"] == ["ollama-node-4",
                                                                  "ollama-node-5"]
    assert failures == []
    assert served["ollama-node-5"] > 0
    assert set(demo.containers()) >= {"ollama-node-2", "ollama-node-3"}
    assert not {"ollama-node-4", "ollama-node-5"} & set(demo.containers())


def test_the_demo_plan_mirrors_the_topology_shape() -> None:
    def shape(plan: str, **variables: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "ollamatopo", "plan", "--json", "--plan",
                              str(ROOT / "config" / plan)], capture_output=True, text=True,
                             cwd=ROOT, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), **variables})
        services = json.loads(out.stdout)["services"]
        return {name: (s["phase"], s["after"], s["optional"]) for name, s in services.items()}

    secrets = {"JWT_SECRET": "x", "MINIO_ROOT_USER": "x", "MINIO_ROOT_PASSWORD": "x"}
    assert shape("demo.yaml") == shape("topology.yaml", **secrets)
