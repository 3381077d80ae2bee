"""A plan service as a swarm service, and what `up --backend swarm` decides (pure: no
engine). tests/test_swarm_up.py runs them on a real two-node swarm."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from ollamatopo._errors import PlanError
from ollamatopo.engine._swarm import ObservedObject, ObservedService, ServiceConfig, Swarm
from ollamatopo.engine._swarm_objects import (
    ObjectKey,
    SwarmObject,
    contents,
    placed,
    stale,
    with_ids,
    with_objects,
)
from ollamatopo.engine._swarm_payloads import (
    overlay_networks,
    service_config,
    swarm_healthcheck,
    swarm_problems,
)
from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import HealthcheckSpec
from ollamatopo.run._reconcile import Verb
from ollamatopo.run._swarm import one_service_each, reconcile_services

FILE = """
name: shop
services:
  db:
    image: postgres:16
    environment: {POSTGRES_DB: shop}
    healthcheck: {test: [CMD, pg_isready], interval: 2s, retries: 5, start_period: 10s}
    volumes: [data:/var/lib/postgresql/data]
    deploy:
      placement: {constraints: [node.labels.role == data]}
      resources: {limits: {cpus: "1.5", memory: 1g}}
  node:
    image: ollama:1
    command: [serve, --port, "8080"]
    ports: ["8080"]
    depends_on: {db: {condition: service_healthy}}
    networks: {training: {aliases: [model]}}
    gpus: [{count: 2, capabilities: [gpu]}]
    restart: on-failure:3
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      placement:
        constraints: [node.labels.role == gpu]
        preferences: [{spread: node.labels.zone}]
      update_config: {parallelism: 1, delay: 5s, order: start-first, failure_action: rollback}
networks:
  training: {ipam: {config: [{subnet: 10.97.80.0/24}]}}
volumes:
  data: {}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedPlan:
    path = tmp_path / "compose.yaml"
    path.write_text(FILE, encoding="utf-8")
    return one_service_each(load_plan(path, environ={}))


def test_one_swarm_service_per_declared_service_with_its_replicas(loaded: LoadedPlan) -> None:
    assert set(loaded.plan.services) == {"db", "node"}
    assert loaded.graph.dependencies["node"] == {"db": "healthy"}
    config = service_config(loaded.plan, "node", loaded.path.parent)
    assert (config.name, config.replicas) == ("shop_node", 3)
    assert config.create_kwargs["mode"] == {"Replicated": {"Replicas": 3}}


def test_the_task_template_carries_the_compose_keys(loaded: LoadedPlan) -> None:
    node = service_config(loaded.plan, "node", loaded.path.parent).create_kwargs
    task = node["task_template"]
    assert task["ContainerSpec"]["Args"] == ["serve", "--port", "8080"]
    assert "Labels" not in task["ContainerSpec"] or "ollamatopo.project" not in \
        task["ContainerSpec"]["Labels"]  # the project's labels are the service's only
    assert task["Placement"] == {"Constraints": ["node.labels.role == gpu"],
                                 "Preferences": [{"Spread": {
                                     "SpreadDescriptor": "node.labels.zone"}}]}
    assert task["Resources"]["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}}]
    assert task["RestartPolicy"] == {"Condition": "on-failure", "MaxAttempts": 3}
    assert task["Networks"] == [{"Target": "shop_training", "Aliases": ["node", "model"]}]
    assert node["endpoint_spec"] == {"Mode": "dnsrr", "Ports": [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishMode": "ingress"}]}
    assert node["update_config"] == {"Parallelism": 1, "Delay": 5_000_000_000,
                                     "FailureAction": "rollback", "Order": "start-first"}
    db = service_config(loaded.plan, "db", loaded.path.parent).create_kwargs["task_template"]
    assert db["ContainerSpec"]["Healthcheck"] == {  # checked every second (below)
        "Test": ["CMD", "pg_isready"], "Interval": 1_000_000_000, "Retries": 10,
        "StartPeriod": 10_000_000_000}
    assert db["ContainerSpec"]["Mounts"][0]["Source"] == "shop_data"
    assert db["Resources"]["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2**30}


def test_networks_are_attachable_overlays_with_their_subnets(loaded: LoadedPlan) -> None:
    (training,) = [n for n in overlay_networks(loaded.plan) if n.key == "training"]
    assert training.create_kwargs["driver"] == "overlay"
    assert training.create_kwargs["attachable"] is True
    assert training.create_kwargs["ipam"]["Config"] == [{"Subnet": "10.97.80.0/24"}]


def test_the_hash_changes_with_the_spec_and_reconcile_updates_only_that(
        loaded: LoadedPlan) -> None:
    configs = {name: service_config(loaded.plan, name, loaded.path.parent)
               for name in loaded.plan.services}
    observed = [ObservedService(f"id-{name}", c.name, name, c.config_hash, 7, "run")
                for name, c in configs.items()]
    actions, orphans = reconcile_services(configs, observed)
    assert {a.verb for a in actions.values()} == {Verb.KEEP} and orphans == []
    changed = [ObservedService("id-db", "shop_db", "db", "old", 7, "run"),
               ObservedService("id-old", "shop_old", "old", "x", 1, "run")]
    actions, orphans = reconcile_services(configs, changed)
    assert (actions["db"].verb, actions["node"].verb) == (Verb.RECREATE, Verb.CREATE)
    assert str(actions["db"]) == "update service db: spec changed"
    assert [o.service for o in orphans] == ["old"]


def test_keys_not_carried_out_on_a_swarm_are_named(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  a: {image: a:1, privileged: true, shm_size: 64m,\n"
                    "       build: ., networks: {n: {ipv4_address: 10.97.90.5,\n"
                    "         link_local_ips: [169.254.8.8], driver_opts: {o: v},\n"
                    "         priority: 3}}}\n"
                    "networks:\n  n: {ipam: {config: [{subnet: 10.97.90.0/24}]}}\n",
                    encoding="utf-8")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    problems = {p.path for p in swarm_problems(load_plan(path, environ={}).plan)}
    assert problems == {"services.a.privileged", "services.a.shm_size", "services.a.build",
                        "services.a.networks.n.ipv4_address",
                        "services.a.networks.n.link_local_ips",
                        "services.a.networks.n.driver_opts"}  # priority: the order, taken


PORTS = """
services:
  api:
    image: api:1
    ports:
      - "8080:8080"
      - {target: 9100, published: "9100", mode: host}
      - {target: 9200, mode: host}
    deploy: {replicas: 3, placement: {constraints: [node.labels.role == gpu]}}
"""


def swarm_plan(tmp_path: Path, text: str) -> LoadedPlan:
    path = tmp_path / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    return one_service_each(load_plan(path, environ={}, on_swarm=True))


def test_ports_are_published_in_their_mode(tmp_path: Path) -> None:
    loaded = swarm_plan(tmp_path, PORTS.replace("constraints:", "max_replicas_per_node: 1, "
                                                "constraints:"))
    assert swarm_problems(loaded.plan) == []
    endpoint = service_config(loaded.plan, "api", tmp_path).create_kwargs["endpoint_spec"]
    assert endpoint == {"Mode": "vip", "Ports": [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 8080,
         "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 9100, "PublishedPort": 9100, "PublishMode": "host"},
        {"Protocol": "tcp", "TargetPort": 9200, "PublishMode": "host"}]}


def test_replicas_share_a_fixed_port_on_a_swarm_but_not_a_nodes_host_port(
        tmp_path: Path) -> None:
    """An ingress port is the service's, whatever its replicas (so the load for a swarm
    does not refuse it, as one engine's does); a fixed host-mode port is each node's."""
    loaded = swarm_plan(tmp_path, PORTS)
    assert loaded.plan.services["api"].replicas == 3
    with pytest.raises(PlanError, match="3 replicas cannot all publish host port 8080"):
        load_plan(loaded.path, environ={})  # for one engine
    (problem,) = swarm_problems(loaded.plan)
    assert problem.path == "services.api.ports[1]"
    assert "host-mode port 9100" in problem.message
    assert "deploy.placement.max_replicas_per_node: 1" in problem.message
    assert "deploy.mode: global" in problem.message
    for deploy in ("{replicas: 3, placement: {max_replicas_per_node: 1}}",
                   "{mode: global}", "{replicas: 1}"):
        fixed = swarm_plan(tmp_path, PORTS.replace(PORTS.splitlines()[-1],
                                                   f"    deploy: {deploy}"))
        assert swarm_problems(fixed.plan) == [], deploy
    # the file now says replicas: 1, and scale 2
    scaled = one_service_each(load_plan(loaded.path, environ={}, replicas={"api": 2},
                                        on_swarm=True))
    assert [p.path for p in swarm_problems(scaled.plan)] == ["services.api.ports[1]"]


def test_a_port_on_one_address_is_refused_on_a_swarm(tmp_path: Path) -> None:
    loaded = swarm_plan(tmp_path, "services:\n  a: {image: a:1, ports: "
                                  "[\"127.0.0.1:8080:80\", \"9000:9000\"]}\n")
    (problem,) = swarm_problems(loaded.plan)
    assert problem.path == "services.a.ports[0]"
    assert "not on 127.0.0.1 alone" in problem.message


def test_a_relabelled_bind_is_refused_on_a_swarm_and_binds_make_no_folder(
        tmp_path: Path) -> None:
    """A swarm service's mounts have no relabel (stack deploy drops it) and make no
    missing folder: the relabel is refused by name; a bind is a mount of an existing
    path, whatever its create_host_path."""
    loaded = swarm_plan(tmp_path, "services:\n  a: {image: a:1, volumes: "
                                  "[\"./data:/data:z\", \"./logs:/logs\"]}\n")
    (problem,) = swarm_problems(loaded.plan)
    assert problem.path == "services.a.volumes[0]"
    assert "SELinux relabel 'z': not supported on a swarm" in problem.message
    mounts = service_config(loaded.plan, "a", tmp_path).create_kwargs["task_template"][
        "ContainerSpec"]["Mounts"]
    assert mounts[1] == {"Type": "bind", "Source": str(tmp_path / "logs"),
                         "Target": "/logs", "ReadOnly": False}


def test_a_relabelled_named_volume_is_refused_on_a_swarm(tmp_path: Path) -> None:
    """One engine relabels a named volume through its binds, as compose v2 does; a
    swarm service's volume mounts have no relabel either: refused by name, with what to
    relabel instead."""
    loaded = swarm_plan(tmp_path, "services:\n  a: {image: a:1, volumes: [\"logs:/logs\", "
                                  "{type: volume, source: data, target: /data, "
                                  "bind: {selinux: Z}}]}\nvolumes: {data: {}, logs: {}}\n")
    (problem,) = swarm_problems(loaded.plan)
    assert problem.path == "services.a.volumes[1]"
    assert "SELinux relabel 'Z': not supported on a swarm" in problem.message
    assert "the volume's folder on each node" in problem.message


def test_a_range_of_host_ports_is_refused_on_a_swarm(tmp_path: Path) -> None:
    loaded = swarm_plan(tmp_path, "services:\n  a: {image: a:1, ports: "
                                  "[\"7000-7002:80\", \"9000:9000\"]}\n")
    (problem,) = swarm_problems(loaded.plan)
    assert problem.path == "services.a.ports[0]"
    assert "a range of host ports (7000-7002) for one container port: not supported on a " \
           "swarm" in problem.message


def test_scales_counts_are_the_swarms_replicas(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(FILE, encoding="utf-8")
    scaled = one_service_each(load_plan(path, environ={}, replicas={"node": 5}))
    assert scaled.plan.services["node"].replicas == 5
    assert service_config(scaled.plan, "node", tmp_path).replicas == 5
    numbered = tmp_path / "numbered.yaml"  # replicas of node-1 would be named node-2...
    numbered.write_text("services:\n  node-1: {image: a:1}\n  node-2: {image: a:1}\n",
                        encoding="utf-8")
    plain = one_service_each(load_plan(numbered, environ={}))
    assert {n: s.replicas for n, s in plain.plan.services.items()} == {"node-1": 1, "node-2": 1}


S = 1_000_000_000
SEED_CHECK = HealthcheckSpec(test=["CMD-SHELL", "curl -f localhost:8080/health"],
                             interval=15, timeout=5, retries=3, start_period=20)


def test_an_engine_with_start_interval_checks_the_start_every_second_as_written() -> None:
    check = swarm_healthcheck(SEED_CHECK, has_start_interval=True)
    assert check == {"Test": ["CMD-SHELL", "curl -f localhost:8080/health"],
                     "Interval": 15 * S, "Timeout": 5 * S, "Retries": 3,
                     "StartPeriod": 20 * S, "StartInterval": 1 * S}
    # Without a start period the start interval would never apply: one interval of it,
    # the time before which the file's own timing had no check to count.
    bare = swarm_healthcheck(SEED_CHECK.model_copy(update={"start_period": None}),
                             has_start_interval=True)
    assert bare["StartPeriod"] == 15 * S


def test_an_older_engine_checks_every_second_with_the_same_time_to_unhealthy() -> None:
    check = swarm_healthcheck(SEED_CHECK, has_start_interval=False)
    assert check["Interval"] == 1 * S and check["Retries"] == 45  # 3 x 15 s
    assert check["Interval"] * check["Retries"] == SEED_CHECK.interval * SEED_CHECK.retries * S
    assert check["Timeout"] == 5 * S and check["StartPeriod"] == 20 * S
    # The engine's defaults (30 s, 3 retries) when the file gives neither.
    bare = swarm_healthcheck(HealthcheckSpec(test=["CMD", "true"]), has_start_interval=False)
    assert (bare["Interval"], bare["Retries"]) == (1 * S, 90)


def test_the_files_start_interval_is_the_cadence_and_can_keep_the_check_as_written() -> None:
    every_2s = swarm_healthcheck(SEED_CHECK.model_copy(update={"start_interval": 2}),
                                 has_start_interval=False)
    assert (every_2s["Interval"], every_2s["Retries"]) == (2 * S, 23)  # ceil(45 / 2)
    as_written = SEED_CHECK.model_copy(update={"start_interval": 15})
    for has in (True, False):
        check = swarm_healthcheck(as_written, has_start_interval=has)
        assert (check["Interval"], check["Retries"]) == (15 * S, 3)
        assert "StartInterval" not in check
    off = swarm_healthcheck(HealthcheckSpec(test=["NONE"]), has_start_interval=False)
    assert off == {"Test": ["NONE"]}


def test_plan_with_the_swarm_backend_names_what_a_swarm_does_not_carry_out(
        tmp_path: Path) -> None:
    """`plan --backend swarm` refuses as `up --backend swarm` would, without an engine."""
    path = tmp_path / "compose.yaml"
    path.write_text(FILE.replace("    gpus:", "    shm_size: 64m\n    gpus:"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "ollamatopo", "plan", "--backend", "swarm",
                           "-f", str(path)], capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 2, done.stderr
    assert "services.node.shm_size" in done.stderr and "not supported yet on a swarm" in \
        done.stderr and "Traceback" not in done.stderr
    path.write_text(FILE, encoding="utf-8")
    fine = subprocess.run([sys.executable, "-m", "ollamatopo", "plan", "--backend", "swarm",
                           "-f", str(path)], capture_output=True, text=True, check=False,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert fine.returncode == 0, fine.stderr


# --- compose's secrets and configs as swarm objects (engine/_swarm_objects.py) -------------

PASSWORD, API_KEY = "pw-Secret-5b1e", "key-Secret-93ac"
OBJECTS = """
name: shop
services:
  api:
    image: api:1
    secrets:
      - db_password
      - {source: api_key, target: keys/api, uid: "1000", gid: "1001", mode: 0400}
    configs:
      - site
      - {source: flags, target: /etc/flags.ini, mode: 0440}
  worker:
    image: worker:1
    secrets: [db_password]
  plain:
    image: plain:1
secrets:
  db_password: {file: ./db_password.txt}
  api_key: {environment: API_KEY, name: shop-api-key}
configs:
  site: {file: ./site.conf}
  flags: {content: "beta=${BETA}"}
"""


def objects_plan(tmp_path: Path, password: str = PASSWORD, text: str = OBJECTS,
                 environ: dict[str, str] | None = None) -> LoadedPlan:
    (tmp_path / "db_password.txt").write_text(password, encoding="utf-8")
    (tmp_path / "site.conf").write_text("listen 80\n", encoding="utf-8")
    path = tmp_path / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    environ = {"API_KEY": API_KEY, "BETA": "on"} if environ is None else environ
    return one_service_each(load_plan(path, environ=environ))


def on_the_swarm(loaded: LoadedPlan,
                 have: Sequence[ObservedObject] = ()) -> dict[ObjectKey, SwarmObject]:
    read, problems = contents(loaded.plan, loaded.path.parent)
    objects, more = placed(loaded.plan, read, have)
    assert problems == more == []
    return objects


def deployed(objects: dict[ObjectKey, SwarmObject]) -> list[ObservedObject]:
    """What the swarm has once they are made (ids by their plan name)."""
    return [ObservedObject(item.kind, item.id or f"id-{item.key}", item.name, item.digest,
                           "shop") for item in objects.values()]


def swarm_service(loaded: LoadedPlan, name: str,
                  objects: dict[ObjectKey, SwarmObject]) -> ServiceConfig:
    return with_objects(service_config(loaded.plan, name, loaded.path.parent), loaded.plan,
                        objects)


def test_secrets_and_configs_are_swarm_objects_the_task_refers_to(tmp_path: Path) -> None:
    loaded = objects_plan(tmp_path)
    assert swarm_problems(loaded.plan) == []  # no longer refused
    objects = on_the_swarm(loaded)
    assert {key: item.name for key, item in objects.items()} == {
        ("configs", "flags"): "shop_flags", ("configs", "site"): "shop_site",
        ("secrets", "api_key"): "shop-api-key",  # its name: as written
        ("secrets", "db_password"): "shop_db_password"}
    assert objects["secrets", "db_password"].content == PASSWORD.encode()
    assert objects["configs", "flags"].content == b"beta=on"
    api = swarm_service(loaded, "api", objects)
    container = api.create_kwargs["task_template"]["ContainerSpec"]
    assert container["Secrets"] == [
        {"File": {"Name": "/run/secrets/db_password", "UID": "0", "GID": "0", "Mode": 0o444},
         "SecretName": "shop_db_password"},
        {"File": {"Name": "/run/secrets/keys/api", "UID": "1000", "GID": "1001",
                  "Mode": 0o400}, "SecretName": "shop-api-key"}]
    assert container["Configs"] == [
        {"File": {"Name": "/site", "UID": "0", "GID": "0", "Mode": 0o444},
         "ConfigName": "shop_site"},
        {"File": {"Name": "/etc/flags.ini", "UID": "0", "GID": "0", "Mode": 0o440},
         "ConfigName": "shop_flags"}]
    assert "Env" not in container  # never the environment
    without = service_config(loaded.plan, "api", tmp_path)
    assert api.config_hash != without.config_hash
    assert api.labels["ollamatopo.config-hash"] == api.config_hash
    # The swarm's ids once made: what the services API wants; the hash is by name.
    made = with_ids(api, {(item.kind, item.name): f"id-{item.key}"
                          for item in objects.values()})
    references = made.create_kwargs["task_template"]["ContainerSpec"]
    assert [r["SecretID"] for r in references["Secrets"]] == ["id-db_password", "id-api_key"]
    assert [r["ConfigID"] for r in references["Configs"]] == ["id-site", "id-flags"]
    assert made.config_hash == api.config_hash
    plain = service_config(loaded.plan, "plain", tmp_path)
    assert with_objects(plain, loaded.plan, objects) is plain  # its hash as before


def test_a_changed_secret_is_a_new_object_and_updates_its_services(tmp_path: Path) -> None:
    loaded = objects_plan(tmp_path)
    first = on_the_swarm(loaded)
    have = deployed(first)
    again = on_the_swarm(loaded, have)
    assert {key: item.id for key, item in again.items()} == {
        key: f"id-{key[1]}" for key in first}  # the swarm's as they are: nothing to make
    hashes = {name: swarm_service(loaded, name, again).config_hash for name in ("api", "worker")}
    assert hashes == {name: swarm_service(loaded, name, first).config_hash
                      for name in ("api", "worker")}

    changed = objects_plan(tmp_path, password="pw-Secret-new")
    rotated = on_the_swarm(changed, have)
    new = rotated["secrets", "db_password"]
    assert new.name == f"shop_db_password-{new.digest[:8]}" and new.id == ""
    assert new.digest != first["secrets", "db_password"].digest
    assert rotated["configs", "site"].id == "id-site"  # the others stay as they are
    for name in ("api", "worker"):  # both get the new one: both are updated
        assert swarm_service(changed, name, rotated).config_hash != hashes[name]
    assert [item.name for item in stale(have, rotated)] == ["shop_db_password"]
    # Back to the first content while the old one is still there: it is used again.
    back = on_the_swarm(loaded, [*have, *deployed({("secrets", "db_password"): new})])
    assert back["secrets", "db_password"].id == "id-db_password"
    # Both names held by other contents (a digest's first 8 hex alike): said, not guessed.
    taken = [ObservedObject("secrets", "x", name, "other", "shop") for name in
             ("shop_db_password", new.name)]
    read, _ = contents(changed.plan, tmp_path)
    _, problems = placed(changed.plan, read, taken)
    assert [p.path for p in problems] == ["secrets.db_password"]
    assert "docker secret rm" in problems[0].message


def test_an_external_one_is_only_looked_up_by_its_name(tmp_path: Path) -> None:
    loaded = objects_plan(tmp_path, text="""
services:
  app: {image: app:1, secrets: [token], configs: [{source: site, target: /etc/site}]}
secrets:
  token: {external: true}
configs:
  site: {external: true, name: shared_site}
""")
    assert swarm_problems(loaded.plan) == []
    read, problems = contents(loaded.plan, tmp_path)
    assert read == {} and problems == []
    _, missing = placed(loaded.plan, read, [])
    assert [str(p) for p in missing] == [
        "configs.site: it is external and the swarm has no config shared_site: make it with "
        "docker config create shared_site FILE",
        "secrets.token: it is external and the swarm has no secret token: make it with "
        "docker secret create token FILE"]
    have = [ObservedObject("secrets", "id-t", "token", "", ""),
            ObservedObject("configs", "id-s", "shared_site", "", "")]
    objects, problems = placed(loaded.plan, read, have)
    assert problems == []
    assert [(o.name, o.id, o.external) for o in objects.values()] == [
        ("shared_site", "id-s", True), ("token", "id-t", True)]
    assert stale([], objects) == []  # never removed: not the project's


def test_an_empty_one_is_refused_on_a_swarm(tmp_path: Path) -> None:
    loaded = objects_plan(tmp_path, environ={"API_KEY": "", "BETA": "on"})
    assert [p.path for p in swarm_problems(loaded.plan)] == ["secrets.api_key"]


def test_no_value_is_in_what_is_sent_shown_or_labelled(tmp_path: Path) -> None:
    loaded = objects_plan(tmp_path)
    objects = on_the_swarm(loaded)
    api = with_ids(swarm_service(loaded, "api", objects),
                   {(item.kind, item.name): "id" for item in objects.values()})
    labels = [item.labels("shop", "run-1") for item in objects.values()]
    shown = repr((objects, api, labels))
    assert PASSWORD not in shown and API_KEY not in shown
    assert labels[0].keys() == {"ollamatopo.project", "ollamatopo.run",
                                "ollamatopo.content-digest"}


SHAPED = OBJECTS.replace("site: {file: ./site.conf}", """site:
    file: ./site.conf
    labels: [team=web]
    template_driver: golang""").replace(
    "db_password: {file: ./db_password.txt}",
    "db_password: {file: ./db_password.txt, labels: {team: db}}")


def test_labels_and_a_template_driver_make_the_object_and_count_in_its_digest(
        tmp_path: Path) -> None:
    plain = on_the_swarm(objects_plan(tmp_path))
    loaded = objects_plan(tmp_path, text=SHAPED)
    objects = on_the_swarm(loaded)
    site, flags = objects["configs", "site"], objects["configs", "flags"]
    assert (site.template_driver, dict(site.given)) == ("golang", {"team": "web"})
    assert site.labels("shop", "run-1") == {
        "team": "web", "ollamatopo.project": "shop", "ollamatopo.run": "run-1",
        "ollamatopo.content-digest": site.digest}
    # Nothing else than the content: its SHA-256, as before (the swarm's objects stay).
    assert flags.digest == plain["configs", "flags"].digest == file_objects.digest(b"beta=on")
    assert site.digest != plain["configs", "site"].digest
    assert objects["secrets", "db_password"].digest != plain["secrets", "db_password"].digest
    have = deployed(objects)
    hashes = {name: swarm_service(loaded, name, objects).config_hash
              for name in ("api", "worker")}

    relabelled = objects_plan(tmp_path, text=SHAPED.replace("team=web", "team=ops"))
    moved = on_the_swarm(relabelled, have)
    assert moved["configs", "site"].name == f"shop_site-{moved['configs', 'site'].digest[:8]}"
    assert moved["configs", "site"].id == ""  # a new object: labels are its identity too
    assert moved["secrets", "db_password"].id == "id-db_password"
    assert swarm_service(relabelled, "api", moved).config_hash != hashes["api"]
    assert swarm_service(relabelled, "worker", moved).config_hash == hashes["worker"]
    untemplated = objects_plan(tmp_path, text=SHAPED.replace("template_driver: golang", ""))
    assert on_the_swarm(untemplated, have)["configs", "site"].id == ""
    assert on_the_swarm(loaded, have)["configs", "site"].id == "id-site"  # as it is


class _Client:
    """The SDK's calls the swarm makes to create an object, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def create_config(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create_config", kwargs))
        return {"ID": "c1"}

    def create_secret(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create_secret", kwargs))
        return {"ID": "s1"}

    def _url(self, path: str) -> str:
        return path

    def _post_json(self, url: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.calls.append(("post", (url, data)))
        return url, data

    def _result(self, response: Any, as_json: bool) -> dict[str, str]:
        return {"ID": "s2"}


def test_a_templated_object_is_made_with_the_engines_templating() -> None:
    """A config through the SDK's create_config(templating=...); a secret, which the SDK's
    create_secret cannot template, as the same body posted to secrets/create."""
    client = _Client()

    async def call(what: str, function: Any, **kwargs: Any) -> Any:
        return function(**kwargs)

    swarm = Swarm(SimpleNamespace(_client=client, _call=call))  # type: ignore[arg-type]

    async def make() -> list[str]:
        return [await swarm.create_object("configs", "c", b"{{ .Service.Name }}", {"a": "b"},
                                          "golang"),
                await swarm.create_object("secrets", "s", b"pw", {}, "golang"),
                await swarm.create_object("secrets", "plain", b"pw", {})]

    assert anyio.run(make) == ["c1", "s2", "s1"]
    assert client.calls == [
        ("create_config", {"name": "c", "data": b"{{ .Service.Name }}", "labels": {"a": "b"},
                           "templating": {"Name": "golang"}}),
        ("post", ("/secrets/create", {"Name": "s", "Labels": {}, "Templating": {
            "Name": "golang"}, "Data": base64.b64encode(b"pw").decode()})),
        ("create_secret", {"name": "plain", "data": b"pw", "labels": {}})]


def test_a_service_without_restart_gets_the_swarms_default_as_with_stack_deploy(
        tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  a: {image: x}\n  b: {image: x, restart: 'no'}\n",
                    encoding="utf-8")
    loaded = load_plan(path, environ={})
    policies = {name: service_config(loaded.plan, name, tmp_path).create_kwargs[
        "task_template"].get("RestartPolicy") for name in ("a", "b")}
    assert policies == {"a": None, "b": {"Condition": "none"}}  # None: the swarm's `any`


def test_scale_changes_only_the_replicas_of_a_swarm_service(tmp_path: Path) -> None:
    """One engine names each replica's host after it; on a swarm the tasks keep the
    swarm's hostnames, so `scale` changes no more than the replica count (a changed task
    template would roll the running tasks)."""
    path = tmp_path / "compose.yaml"
    path.write_text("name: shop\nservices:\n  api: {image: api:1}\n", encoding="utf-8")

    def config(replicas: dict[str, int]) -> ServiceConfig:
        plan = one_service_each(load_plan(path, environ={}, replicas=replicas,
                                          on_swarm=True)).plan
        return service_config(plan, "api", tmp_path)

    one, three = config({}), config({"api": 3})
    assert (one.replicas, three.replicas) == (1, 3)
    assert three.create_kwargs["task_template"]["ContainerSpec"].get("Hostname") is None
    # the swarm rolls the tasks when the task template changes, not for the count alone
    assert one.create_kwargs["task_template"] == three.create_kwargs["task_template"]


def test_the_replica_token_is_refused_on_a_swarm(tmp_path: Path) -> None:
    plan = swarm_plan(tmp_path, "name: shop\nservices:\n  api:\n    image: api:1\n"
                      "    deploy: {replicas: 2}\n    environment: {NODE_ID: 'node-{{replica}}',"
                      " SLOT: '{{.Task.Slot}}'}\n").plan
    problems = swarm_problems(plan)
    assert [p.path for p in problems] == ["services.api.environment.NODE_ID"]
    assert "{{.Task.Slot}}" in problems[0].message
