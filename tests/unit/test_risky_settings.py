"""Warnings for settings that give a container power over the host or show a secret in a
label (issue 15): each names the service and the key path, the risk, and what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan

Load = Callable[..., LoadedPlan]
Refuse = Callable[..., PlanError]


def _warnings(load: Load, service: str, environ: dict[str, str] | None = None,
              top: str = "") -> tuple[str, ...]:
    return load(f"""
        project: p
        {top}
        services:
          a: {service}
        phases: [{{name: one, services: [a]}}]
    """, environ).warnings


@pytest.mark.parametrize(("volume", "what"), [
    ("/var/run/docker.sock:/var/run/docker.sock", "/var/run/docker.sock is the Docker engine's "
                                                  "socket"),
    ("/run/docker.sock:/sock:ro", "/run/docker.sock is the Docker engine's socket"),
    ("/var/run:/host-run", "/var/run holds the Docker engine's socket"),
    ("/:/host", "binds the host's root directory"),
    ("//:/host", "binds the host's root directory"),
    ("/var/../:/host", "binds the host's root directory"),
])
def test_binding_the_engine_socket_or_the_root_warns(load: Load, volume: str, what: str) -> None:
    (warning,) = _warnings(load, f'{{image: x, volumes: ["{volume}"]}}')
    assert warning.startswith(f"services.a.volumes[0]: {what}")
    assert "bind" in warning.partition(":")[2]  # and what to do


def test_a_relative_bind_that_reaches_the_root_warns(load: Load, tmp_path: Path) -> None:
    up = "/".join([".."] * len(tmp_path.parts))
    (warning,) = _warnings(load, f'{{image: x, volumes: ["./{up}:/host"]}}')
    assert "binds the host's root directory" in warning


@pytest.mark.parametrize("volume", ["./data:/data", "/var/lib/app:/data", "/run/user:/r",
                                    "docker.sock:/data", "/var/run/docker.sock.d:/d"])
def test_other_mounts_do_not_warn(load: Load, volume: str) -> None:
    top = "volumes: {docker.sock: {}}"
    assert _warnings(load, f'{{image: x, volumes: ["{volume}"]}}', top=top) == ()


@pytest.mark.parametrize("capability", ["ALL", "all", "CAP_ALL"])
def test_adding_every_capability_warns(load: Load, capability: str) -> None:
    (warning,) = _warnings(load, f"{{image: x, cap_add: [NET_ADMIN, {capability}]}}")
    assert warning.startswith("services.a.cap_add[1]: ALL gives the container every capability")
    assert "add only the ones it needs" in warning


def test_dropping_every_capability_does_not_warn(load: Load) -> None:
    assert _warnings(load, "{image: x, cap_drop: [ALL], cap_add: [NET_BIND_SERVICE]}") == ()


@pytest.mark.parametrize(("option", "what"), [
    ("seccomp=unconfined", "seccomp filter"),
    ("seccomp:unconfined", "seccomp filter"),
    ("apparmor=unconfined", "AppArmor profile"),
    ("apparmor:unconfined", "AppArmor profile"),
])
def test_turning_confinement_off_warns(load: Load, option: str, what: str) -> None:
    (warning,) = _warnings(load, f'{{image: x, security_opt: ["no-new-privileges:true", '
                                 f'"{option}"]}}')
    assert warning.startswith(f"services.a.security_opt[1]: {option} turns off the "
                              f"container's {what}")
    assert "remove it" in warning


def test_a_confinement_profile_does_not_warn(load: Load) -> None:
    assert _warnings(load, '{image: x, security_opt: ["seccomp=./profile.json", '
                           '"apparmor=docker-default"]}') == ()


def test_privileged_warns(load: Load) -> None:
    """Allowed, as compose allows it, and `plan` says what it gives away."""
    (warning,) = _warnings(load, "{image: x, privileged: true}")
    assert warning.startswith("services.a.privileged: true gives the container every "
                              "capability")


def test_a_label_named_like_a_secret_warns_without_its_value(load: Load) -> None:
    warnings = _warnings(load, '{image: x, labels: {com.example.api-token: "tok-93f1c2", '
                               'team: data}}',
                         top="networks: {n: {labels: {db.password: hunter22}}}")
    assert warnings == (
        "services.a.labels.com.example.api-token: this label is named like a secret; labels "
        "are shown to anyone who may list containers, networks or volumes (docker inspect): "
        "pass it to the service in its environment instead",
        "networks.n.labels.db.password: this label is named like a secret; labels are shown to "
        "anyone who may list containers, networks or volumes (docker inspect): pass it to the "
        "service in its environment instead")


def test_a_label_holding_a_secret_of_the_plan_warns_without_its_value(load: Load,
                                                                      tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("API_KEY=from-env-file-91\n", encoding="utf-8")
    (tmp_path / "a.env").chmod(0o600)
    loaded = load("""
        project: p
        volumes: {data: {labels: {owner: "${DB_PASSWORD}"}}}
        services:
          a:
            image: x
            env_file: a.env
            environment: {POSTGRES_PASSWORD: "${DB_PASSWORD}"}
            labels: {build: from-env-file-91, team: data}
        phases: [{name: one, services: [a]}]
    """, {"DB_PASSWORD": "s3cret-value"})
    assert [warning.partition(":")[0] for warning in loaded.warnings] == [
        "services.a.labels.build", "volumes.data.labels.owner"]
    assert all("the value of this label is a secret of the plan" in warning
               for warning in loaded.warnings)
    assert not any("s3cret-value" in warning or "from-env-file-91" in warning
                   for warning in loaded.warnings)


def test_replicas_warn_once_for_their_service(load: Load) -> None:
    loaded = load("""
        project: p
        services:
          a: {image: x, replicas: 3, cap_add: [ALL]}
        phases: [{name: one, services: [a]}]
    """)
    assert [warning.partition(":")[0] for warning in loaded.warnings] == ["services.a.cap_add[0]"]


def test_a_plan_without_risks_has_no_warnings(load: Load) -> None:
    assert _warnings(load, '{image: x, volumes: ["./init:/init:ro"], cap_add: [NET_ADMIN], '
                           'security_opt: ["no-new-privileges:true"], labels: {team: data}}') == ()


def test_the_plan_command_shows_the_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import structlog

    from ollamatopo.cli._main import main

    monkeypatch.setenv("OLLAMATOPO_STATE_DIR", str(tmp_path / "state"))
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nservices:\n  a: {image: x, cap_add: [ALL]}\n", encoding="utf-8")
    try:
        assert main(["plan", "--plan", str(plan), "--log-format", "json"]) == 0
    finally:
        structlog.reset_defaults()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()
              if line.startswith('{"')]
    assert [event["detail"].partition(":")[0] for event in events
            if event.get("event") == "plan warning"] == ["services.a.cap_add[0]"]
