"""ollamatopo acts only on what carries its project's label, against a real engine.

A container or network that holds one of the project's names but is not the project's
(made by hand, or by another project) makes `up` fail with a message naming it, and
neither `up`'s rollback nor `down` touches it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Project

IMAGE = "ollamatopo-standin:latest"
TEST_LABEL = "ollamatopo-test.foreign"  # what this test made by hand, not ollamatopo's label

PLAN = f"""
project: PROJECT
networks:
  back: {{}}
services:
  SERVICE:
    image: {IMAGE}
    networks: [back]
  mine:
    image: {IMAGE}
    networks: [back]
phases: [{{name: one, services: [SERVICE, mine]}}]
"""


@pytest.fixture
def foreign(project: Project) -> Iterator[dict[str, Any]]:
    """Objects made by hand with the project's names; removed by the test's own label."""
    made: dict[str, Any] = {}
    try:
        yield made
    finally:
        selector = {"label": f"{TEST_LABEL}={project.name}"}
        for container in project.client.containers.list(all=True, filters=selector):
            container.remove(force=True)
        for network in project.client.networks.list(filters=selector):
            network.remove()


def _container(project: Project, name: str, labels: dict[str, str]) -> Any:
    return project.client.containers.create(
        IMAGE, name=name, labels={TEST_LABEL: project.name, **labels})


@pytest.mark.parametrize("owner", ["nobody", "another project"])
def test_a_foreign_container_with_the_projects_name_is_named_and_left_alone(
        project: Project, foreign: dict[str, Any], owner: str) -> None:
    other = f"{project.name}x"
    labels = {} if owner == "nobody" else {"ollamatopo.project": other,
                                           "ollamatopo.service": "taken"}
    stranger = _container(project, f"{project.name}-taken", labels)
    project.write(PLAN.replace("SERVICE", "taken"))

    result = project.run("up")
    assert result.code == 1, result.stderr
    whose = ("was not made by ollamatopo (it has no ollamatopo.project label)"
             if owner == "nobody" else f"belongs to ollamatopo project {other!r}")
    assert (f"the container {project.name}-taken ({stranger.id[:12]}) already exists and "
            f"{whose}") in result.stderr
    assert "rolled back" in result.stderr
    assert project.containers() == {}  # `mine` was rolled back; the stranger is not ours

    assert project.run("down").code == 0
    stranger.reload()
    assert stranger.status == "created"
    assert stranger.labels.items() >= {TEST_LABEL: project.name, **labels}.items()
    assert project.networks() == []


def test_a_foreign_network_with_the_projects_name_is_named_and_left_alone(
        project: Project, foreign: dict[str, Any]) -> None:
    """This engine (API 1.41) would make a second network of the same name; then the
    containers would join whichever the engine picks."""
    name = f"{project.name}_back"
    stranger = project.client.networks.create(name, labels={TEST_LABEL: project.name})
    project.write(PLAN.replace("SERVICE", "other"))

    result = project.run("up")
    assert result.code == 1, result.stderr
    assert (f"the network {name} ({stranger.id[:12]}) already exists and was not made by "
            "ollamatopo") in result.stderr
    assert project.containers() == {}
    assert project.run("down").code == 0
    same_name = project.client.networks.list(names=[name])
    assert [network.id for network in same_name] == [stranger.id]


VOLUME_PLAN = f"""
project: PROJECT
volumes:
  data: {{}}
services:
  db:
    image: {IMAGE}
    volumes: ["data:/data"]
  mine:
    image: {IMAGE}
phases: [{{name: one, services: [db, mine]}}]
"""


@pytest.mark.parametrize("owner", ["nobody", "another project"])
def test_a_foreign_volume_with_the_projects_name_is_refused_not_adopted(
        project: Project, owner: str) -> None:
    """Issue 15, defect 6: the engine answers a create of an existing volume with that
    volume, so `up` mounted a stranger's volume and `down --volumes` then left it."""
    name = f"{project.name}_data"
    labels = {TEST_LABEL: project.name}
    if owner == "another project":
        labels["ollamatopo.project"] = f"{project.name}x"
    stranger = project.client.volumes.create(name, labels=labels)
    try:
        project.write(VOLUME_PLAN)
        result = project.run("up")
        assert result.code == 1, result.stderr
        whose = ("was not made by ollamatopo" if owner == "nobody"
                 else f"belongs to ollamatopo project '{project.name}x'")
        assert f"the volume {name} already exists and {whose}" in result.stderr
        assert project.containers() == {}  # rolled back; nothing mounted it
        assert project.run("down", "--volumes").code == 0
        stranger.reload()
        assert stranger.attrs["Labels"] == labels  # untouched
    finally:
        stranger.remove(force=True)
