"""The stand-in's STANDIN_NEEDS (images/standin/standin.sh): at start, before its delay, it
checks each `host:port` with busybox nc and exits 1 with a log line naming the one that
does not answer, as the real nodes exit when postgres is not there. The swarm benchmark
relies on it to show a deploy without ordering as restarts. Everything a test makes
carries its run's label and is removed by it, also when the test fails."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

LABEL = "ollamatopo.test-standin-needs"


@pytest.fixture
def lab(docker_client: Any, standin: str) -> Iterator[tuple[Any, str, dict[str, str]]]:
    run = uuid.uuid4().hex[:8]
    labels = {LABEL: run}
    network = docker_client.networks.create(f"ot-needs-{run}", driver="bridge", labels=labels)
    try:
        yield docker_client, network.name, labels
    finally:
        for container in docker_client.containers.list(all=True,
                                                       filters={"label": f"{LABEL}={run}"}):
            container.remove(force=True)
        network.remove()


def _run(lab: tuple[Any, str, dict[str, str]], name: str, **environment: str) -> Any:
    client, network, labels = lab
    return client.containers.run("ollamatopo-standin:latest", name=f"{network}-{name}",
                                 detach=True, network=network, labels=labels,
                                 environment=environment)


def _exit_code(container: Any, timeout: float = 10) -> int:
    return int(container.wait(timeout=timeout)["StatusCode"])


def test_a_need_that_does_not_answer_exits_1_before_the_delay_and_says_which(
        lab: tuple[Any, str, dict[str, str]]) -> None:
    started = time.monotonic()
    refused = _run(lab, "refused", STANDIN_NEEDS="127.0.0.1:9", STANDIN_DELAY="30")
    unknown = _run(lab, "unknown", STANDIN_NEEDS="no-such-service:8080")
    assert _exit_code(refused) == 1 and _exit_code(unknown) == 1
    assert time.monotonic() - started < 8  # not after the 30 s delay
    assert "standin needs 127.0.0.1:9, which does not answer" in refused.logs().decode()
    assert "standin needs no-such-service:8080" in unknown.logs().decode()
    assert "bad address" in unknown.logs().decode()


def test_needs_that_answer_let_it_become_ready(lab: tuple[Any, str, dict[str, str]]) -> None:
    _, network, _ = lab
    server = _run(lab, "server")
    deadline = time.monotonic() + 10
    while "standin ready" not in server.logs().decode():
        assert time.monotonic() < deadline, server.logs().decode()
        time.sleep(0.1)
    needy = _run(lab, "needy", STANDIN_NEEDS=f"{network}-server:8080 {network}-server:8080")
    deadline = time.monotonic() + 10
    while "standin ready" not in needy.logs().decode():
        needy.reload()
        assert needy.status == "running" and time.monotonic() < deadline, needy.logs().decode()
        time.sleep(0.1)
