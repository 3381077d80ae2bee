"""A load balancer on the real two-node swarm of tests/swarm_bed.py (issue 14): `scale`
via the swarm's replicas, with the load balancer following. The balancer is nginx (the
offline image of images/build.py) rendered from nginx/nginx-swarm.conf.template, which
follows the swarm's DNS (`tasks.<project>_<service>`: the running tasks); it is reached
through its host-mode port on the manager. The backends are stand-ins that answer `/`
with their container's hostname (the swarm's default, the container id: a plan's service
has no hostname of its own), so each answer names the task that gave it."""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.test_swarm_up import SwarmProject, roles_of
from tests.test_swarm_up import on_swarm as on_swarm  # the fixture, made here too

pytest_plugins = ["tests.swarm_bed"]
pytestmark = pytest.mark.swarm

NGINX = "ollamatopo-nginx:demo"
PLAN = """
services:
  backend:
    image: ollamatopo-standin:latest
    init: true  # a stopped task ends at once (sleep as PID 1 would ignore SIGTERM)
    entrypoint: [sh, -c]
    command: ["hostname > /www/index.html && httpd -p 8080 -h /www && touch /tmp/ready
               && exec sleep 2147483647"]
    deploy: {endpoint_mode: dnsrr}  # no virtual IPs here (no IPVS); the LB picks tasks
  lb:
    image: NGINX
    ports: [{target: 80, published: "LBPORT", mode: host}]
    depends_on:
      backend: {condition: service_healthy}
    deploy:
      endpoint_mode: dnsrr
      placement: {constraints: [node.labels.role == data]}  # the manager: 127.0.0.1
    x-ollamatopo:
      load_balance: {template: TEMPLATE, port: 8080, backends: {backend: 1}}
      ready: {http: {port: 80, path: /health}}
"""
PORT_RANGE = (20000, 29999)  # the manager's host-mode port: from the dynamic range
# How soon after `scale` returns the balancer follows: the swarm's DNS lists a task 0-0.4 s
# after it runs (bench swarm), nginx keeps an answer 1 s (DNS_VALID_S); a margin above.
FOLLOW_BOUND_S = 2.0
REQUESTS = 60  # 3 tasks picked at random: one missing from 60 answers has p < 1e-10


@pytest.fixture
def project(on_swarm: SwarmProject, docker_client: Any) -> Iterator[SwarmProject]:
    """`on_swarm` with the nginx image on the manager (the balancer is placed there), whose
    configs are removed by label too (after its services: a swarm keeps those in use)."""
    from build import ensure_image  # images/build.py

    ensure_image("nginx", docker_client)
    try:
        yield on_swarm
    finally:
        client = on_swarm.bed.client(on_swarm.bed.manager)
        for service in on_swarm.services().values():
            service.remove()
        for config in client.configs.list(filters={
                "label": f"ollamatopo.project={on_swarm.name}"}):
            config.remove()


def answer(port: int) -> str | None:
    """The hostname of the task that answered GET / through the balancer; None when the
    request failed."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/", timeout=5) as reply:
            return reply.read().decode().strip() if reply.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def answers(port: int, count: int) -> list[str | None]:
    return [answer(port) for _ in range(count)]


def running_tasks(project: SwarmProject) -> int:
    return len(project.services()["backend"].tasks(filters={"desired-state": "running"}))


def test_scale_via_replicas_and_the_balancer_follows(project: SwarmProject) -> None:
    port = random.randrange(*PORT_RANGE)
    plan = (PLAN.replace("NGINX", NGINX).replace("LBPORT", str(port))
            .replace("TEMPLATE", str(ROOT / "nginx" / "nginx-swarm.conf.template")))
    up = project.run("up", plan=plan)
    assert up.code == 0, up.stderr
    config = project.services()["lb"].attrs["Spec"]["TaskTemplate"]["ContainerSpec"][
        "Configs"]
    assert [c["File"]["Name"] for c in config] == ["/etc/nginx/nginx.conf"]
    first = answers(port, 10)
    assert None not in first and len(set(first)) == 1, first

    scaled = project.run("scale", "backend=3", plan=plan)
    assert scaled.code == 0, scaled.stderr
    returned = time.monotonic()
    seen: set[str | None] = set()
    while time.monotonic() - returned < FOLLOW_BOUND_S + 10 and len(seen - {None}) < 3:
        seen.add(answer(port))
    followed_s = time.monotonic() - returned
    assert len(seen - {None}) == 3, (seen, roles_of(project, "backend"))
    assert first[0] in seen, "scale replaced the running task instead of adding two"
    assert followed_s <= FOLLOW_BOUND_S, f"all 3 tasks answered only after {followed_s:.2f} s"
    assert None not in seen  # no request failed while the balancer followed
    spread = answers(port, REQUESTS)
    assert None not in spread and len(set(spread)) == 3, spread
    print(f"scale up: all 3 tasks answer {followed_s:.2f} s after scale returned "
          f"(nodes: {roles_of(project, 'backend')})")

    down = project.run("scale", "backend=1", plan=plan)
    assert down.code == 0, down.stderr
    returned = time.monotonic()
    # As compose's scale down, it returns once the extra replicas stopped (the swarm
    # calls the update done at once and stops them over the next seconds).
    still = [task["Status"]["State"] for task in project.services()["backend"].tasks()
             if task["Status"]["State"] in ("starting", "running")]
    assert still == ["running"], still
    during = []
    while time.monotonic() - returned < FOLLOW_BOUND_S:
        during.append(answer(port))
    after = answers(port, REQUESTS)
    assert None not in after, after  # no request fails after the bound
    assert len(set(after)) == 1 and running_tasks(project) == 1, after
    print(f"scale down: {during.count(None)} of {len(during)} requests failed within the "
          f"bound, 0 of {REQUESTS} after it")
    assert project.run("down").code == 0
