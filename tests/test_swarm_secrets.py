"""Compose's secrets and configs on the real two-node swarm of tests/swarm_bed.py (issue
14): swarm secrets and configs a task reads at its targets with their modes, never its
environment; a changed secret is a new one and updates the service, the old one removed;
`down` removes them; a failed run removes those it made; a missing external one is
refused before anything is made. No value in any output."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.swarm_bed import SwarmBed
from tests.test_swarm_up import SwarmProject
from tests.test_swarm_up import on_swarm as on_swarm  # the fixture, made here too

pytest_plugins = ["tests.swarm_bed"]
pytestmark = pytest.mark.swarm

PASSWORD, NEW_PASSWORD, API_KEY = "pw-Secret-61d0", "pw-Secret-new-2a7c", "key-Secret-e4b9"
PLAN = """
services:
  app:
    image: ollamatopo-standin:latest
    healthcheck: {disable: true}
    x-ollamatopo: {ready: {exec: [test, -f, /tmp/ready], timeout: 30s}}
    secrets:
      - db_password
      - {source: api_key, target: keys/api, uid: "1000", mode: 0400}
    configs:
      - {source: site, target: /etc/site.conf, mode: 0440}
    deploy:
      placement: {constraints: [node.labels.role == data]}  # the manager: docker exec
secrets:
  db_password: {file: ./db_password.txt}
  api_key: {environment: API_KEY}
configs:
  site: {content: "listen 8080"}
"""
BROKEN = """
services:
  never:
    image: ollamatopo-standin:latest
    environment: {STANDIN_MODE: never}
    healthcheck: {disable: true}
    x-ollamatopo: {ready: {exec: [test, -f, /tmp/ready], timeout: 3s}}
    secrets: [db_password]
    deploy:  # the manager: an exec probe reaches only its tasks (elsewhere `running` counts)
      placement: {constraints: [node.labels.role == data]}
secrets:
  db_password: {file: ./db_password.txt}
"""


@pytest.fixture
def project(on_swarm: SwarmProject, monkeypatch: pytest.MonkeyPatch) -> Iterator[SwarmProject]:
    """`on_swarm`, whose secrets and configs are removed by label too (after its services:
    a swarm keeps those a service refers to)."""
    monkeypatch.setenv("API_KEY", API_KEY)
    (on_swarm.folder / "db_password.txt").write_text(PASSWORD, encoding="utf-8")
    try:
        yield on_swarm
    finally:
        for service in on_swarm.services().values():
            service.remove()
        for found in objects(on_swarm):
            found.remove()


def objects(project: SwarmProject) -> list[Any]:
    client = project.bed.client(project.bed.manager)
    label = {"label": f"ollamatopo.project={project.name}"}
    return [*client.secrets.list(filters=label), *client.configs.list(filters=label)]


def names(project: SwarmProject) -> set[str]:
    return {found.name for found in objects(project)}


def in_task(bed: SwarmBed, service: Any, *command: str) -> str:
    """`command`'s output in the service's running task's container (on the manager)."""
    client = bed.client(bed.manager)
    (task,) = service.tasks(filters={"desired-state": "running"})
    container = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
    code, output = container.exec_run(list(command))
    assert code == 0, output
    return str(output.decode())


def test_a_task_reads_them_at_their_targets_a_change_updates_it_and_down_removes_them(
        project: SwarmProject) -> None:
    first = project.run("up", plan=PLAN)
    assert first.code == 0, first.stderr
    prefix = project.name
    assert names(project) == {f"{prefix}_db_password", f"{prefix}_api_key", f"{prefix}_site"}
    app = project.services()["app"]
    assert in_task(project.bed, app, "cat", "/run/secrets/db_password") == PASSWORD
    assert in_task(project.bed, app, "cat", "/run/secrets/keys/api") == API_KEY
    assert in_task(project.bed, app, "cat", "/etc/site.conf") == "listen 8080"
    modes = in_task(project.bed, app, "stat", "-L", "-c", "%a %u %g",
                    "/run/secrets/db_password", "/run/secrets/keys/api", "/etc/site.conf")
    assert modes.split("\n")[:3] == ["444 0 0", "400 1000 0", "440 0 0"]
    environment = in_task(project.bed, app, "env")
    assert API_KEY not in environment and PASSWORD not in environment  # files only
    assert first.named("secret created") and PASSWORD not in first.stdout + first.stderr

    again = project.run("up", plan=PLAN)
    assert again.code == 0, again.stderr
    assert not again.named("container created") and not again.named("secret created")

    version = app.attrs["Version"]["Index"]
    (project.folder / "db_password.txt").write_text(NEW_PASSWORD, encoding="utf-8")
    changed = project.run("up", plan=PLAN)
    assert changed.code == 0, changed.stderr
    app = project.services()["app"]
    assert app.attrs["Version"]["Index"] > version  # updated: its spec names the new one
    (rotated,) = [n for n in names(project) if n.startswith(f"{prefix}_db_password")]
    assert rotated != f"{prefix}_db_password"  # the old one removed, the new beside it
    assert rotated.startswith(f"{prefix}_db_password-")
    assert changed.named("secret removed")[0]["name"] == f"{prefix}_db_password"
    for _ in range(100):  # the swarm replaces the task after `up` saw the update through
        try:
            if in_task(project.bed, app, "cat", "/run/secrets/db_password") == NEW_PASSWORD:
                break
        except (ValueError, AssertionError):  # between two tasks
            pass
        time.sleep(0.2)
    assert in_task(project.bed, app, "cat", "/run/secrets/db_password") == NEW_PASSWORD
    assert NEW_PASSWORD not in changed.stdout + changed.stderr

    down = project.run("down", plan=PLAN)
    assert down.code == 0, down.stderr
    assert project.services() == {} and objects(project) == [], down.stdout


def test_a_failed_run_removes_what_it_made_and_a_missing_external_one_is_refused(
        project: SwarmProject) -> None:
    failed = project.run("up", plan=BROKEN)
    assert failed.code == 1, failed.stderr
    assert failed.named("secret created")  # made, then rolled back
    assert project.services() == {} and objects(project) == []

    missing = f"{project.name}_nowhere"
    external = PLAN.replace("db_password: {file: ./db_password.txt}",
                            f"db_password: {{external: true, name: {missing}}}")
    refused = project.run("up", plan=external)
    assert refused.code == 2, refused.stderr
    assert f"docker secret create {missing}" in refused.stderr
    assert project.services() == {} and objects(project) == []  # nothing made


TEMPLATED = PLAN[:PLAN.index("    secrets:")] + """\
    secrets: [{source: db_password, target: templated}]
    configs: [{source: site, target: /etc/site.conf}]
    deploy:
      placement: {constraints: [node.labels.role == data]}  # the manager: docker exec
secrets:
  db_password: {file: ./db_password.txt, template_driver: golang, labels: [team=db]}
configs:
  site:
    content: "served by {{ .Service.Name }}"
    template_driver: golang
    labels: {team: web}
"""


def test_templated_ones_are_rendered_in_the_task_and_carry_their_labels(
        project: SwarmProject) -> None:
    """template_driver: golang, for a config and a secret: the swarm renders each in the
    task; the plan's labels are on the objects; a labels change is a new object."""
    (project.folder / "db_password.txt").write_text("pw-{{ .Service.Name }}", encoding="utf-8")
    first = project.run("up", plan=TEMPLATED)
    assert first.code == 0, first.stderr
    app = project.services()["app"]
    service = app.attrs["Spec"]["Name"]
    assert in_task(project.bed, app, "cat", "/etc/site.conf") == f"served by {service}"
    assert in_task(project.bed, app, "cat", "/run/secrets/templated") == f"pw-{service}"
    made = {found.name: found.attrs["Spec"] for found in objects(project)}
    secret, config = made[f"{project.name}_db_password"], made[f"{project.name}_site"]
    assert secret["Templating"]["Name"] == config["Templating"]["Name"] == "golang"
    assert (secret["Labels"]["team"], config["Labels"]["team"]) == ("db", "web")
    assert config["Labels"]["ollamatopo.project"] == project.name

    again = project.run("up", plan=TEMPLATED)
    assert again.code == 0 and not again.named("config created"), again.stderr
    relabelled = project.run("up", plan=TEMPLATED.replace("team: web", "team: ops"))
    assert relabelled.code == 0, relabelled.stderr
    (site,) = [found.attrs["Spec"] for found in objects(project)
               if found.name.startswith(f"{project.name}_site")]
    assert site["Name"].startswith(f"{project.name}_site-") and site["Labels"]["team"] == "ops"
    assert relabelled.named("config removed")[0]["name"] == f"{project.name}_site"
    assert f"{project.name}_db_password" in names(project)  # unchanged: kept as it is
