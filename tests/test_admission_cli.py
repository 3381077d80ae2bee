"""Resource admission on the real engine: refused with a table, or clamped to fit."""

from __future__ import annotations

from tests.conftest import Project

GREEDY = """
project: PROJECT
services:
  greedy:
    image: ollamatopo-standin:latest
    deploy: {resources: {limits: {cpus: "512", memory: 64M},
                         reservations: {cpus: "256", memory: 16M}}}
    ready: {log: standin ready, timeout: 20s}
phases:
  - {name: one, services: [greedy]}
"""


def test_a_plan_that_asks_too_much_is_refused_then_clamped(project: Project) -> None:
    project.write(GREEDY)
    refused = project.run("up")
    assert refused.code == 2
    assert "does not fit this host" in refused.stderr
    assert "greedy cpu limit" in refused.stderr and "host has" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert project.containers() == {} and project.networks() == []

    clamped = project.run("up", "--clamp-resources")
    assert clamped.code == 0, clamped.stderr
    changes = [e["change"] for e in clamped.named("resources clamped")]
    assert any(change.startswith("greedy limits.cpus: 512 -> ") for change in changes)
    host_cpus = project.client.info()["NCPU"]
    nano = project.containers()["greedy"].attrs["HostConfig"]["NanoCpus"]
    assert nano == host_cpus * 10**9
