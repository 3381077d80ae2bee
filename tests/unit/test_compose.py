"""Compose files as plans, without an engine: what each compose form becomes, what is
refused and where, the project name, and the `x-ollamatopo` extension."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.engine._payloads import container_config
from ollamatopo.plan._compose import normalize_project_name
from ollamatopo.plan._compose_out import to_compose
from ollamatopo.plan._loading import LoadedPlan, load_plan, read_project_name
from ollamatopo.plan._model import Condition


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None,
         folder: str = "shop", project: str | None = None) -> LoadedPlan:
    directory = tmp_path / folder
    directory.mkdir(exist_ok=True)
    path = directory / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan(path, environ=env or {}, project=project)


def refused(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def test_depends_on_short_form_means_started_and_long_form_its_condition(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  db: {image: postgres:16}
  cache: {image: redis:7}
  api:
    image: api:1
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
  worker: {image: worker:1, depends_on: [api]}
""")
    plan = loaded.plan
    assert plan.dependencies("api") == {"db": Condition.HEALTHY, "cache": Condition.STARTED}
    assert plan.dependencies("worker") == {"api": Condition.STARTED}
    assert plan.dependencies("db") == {}
    assert [phase.name for phase in plan.phases] == ["services"]  # the graph alone


@pytest.mark.parametrize(("test", "argv"), [
    ('["CMD", "pg_isready", "-U", "ollama"]', ["pg_isready", "-U", "ollama"]),
    ('["CMD-SHELL", "redis-cli ping || exit 1"]', ["/bin/sh", "-c", "redis-cli ping || exit 1"]),
    ('"curl -f http://localhost/"', ["/bin/sh", "-c", "curl -f http://localhost/"]),
])
def test_a_healthcheck_becomes_ollamatopos_exec_probe(tmp_path: Path, test: str,
                                                      argv: list[str]) -> None:
    loaded = load(tmp_path, f"""
services:
  db:
    image: postgres:16
    healthcheck: {{test: {test}, interval: 10s, retries: 5, start_period: 20s}}
""")
    ready = loaded.plan.services["db"].ready
    assert ready.exec_ == argv
    assert ready.timeout == 20 + 10 * 5  # start_period + interval x retries


def test_healthcheck_defaults_and_disabling(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a: {image: a:1, healthcheck: {test: [CMD, check]}}
  b: {image: b:1, healthcheck: {test: [NONE]}}
  c: {image: c:1, healthcheck: {disable: true}}
""")
    services = loaded.plan.services
    assert services["a"].ready.timeout == 30 * 3  # compose's interval and retries
    assert services["b"].ready.none and services["c"].ready.none


def test_x_ollamatopo_ready_replaces_the_healthcheck_and_phases_add_defaults(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  db:
    image: postgres:16
    healthcheck: {test: [CMD, pg_isready]}
  api:
    image: api:1
    x-ollamatopo: {ready: {http: {port: 8080, path: /health}}, optional: true}
x-ollamatopo:
  phases:
    - {name: data, services: [db]}
    - {name: app, services: [api]}
""")
    plan = loaded.plan
    assert plan.services["api"].ready.http is not None and plan.services["api"].optional
    assert plan.dependencies("api") == {"db": Condition.HEALTHY}  # the phase default


def test_long_syntax_ports_and_volumes(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  web:
    image: web:1
    ports:
      - {target: 80, published: "8080", host_ip: 127.0.0.1}
      - {target: 53, protocol: udp}
    volumes:
      - {type: volume, source: data, target: /data, read_only: true}
      - {type: bind, source: ./site, target: /www}
      - {type: tmpfs, target: /scratch}
volumes:
  data: {}
""")
    web = loaded.plan.services["web"]
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in web.ports] == [
        ("127.0.0.1", 8080, 80, "tcp"), ("", None, 53, "udp")]
    assert [(m.source, m.target, m.read_only, m.named) for m in web.volumes] == [
        ("data", "/data", True, True), ("./site", "/www", False, False)]
    assert web.tmpfs == ["/scratch"]


def test_long_syntax_host_mode_ports_are_kept_and_one_engine_publishes_them_as_usual(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  web:
    image: web:1
    ports:
      - {target: 80, published: "8080", mode: host, name: web, app_protocol: http}
      - {target: 53, host_ip: 127.0.0.1, protocol: udp, mode: host}
      - {target: 81, published: 8081, mode: ingress}
""")
    web = loaded.plan.services["web"]
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol, p.mode)
            for p in web.ports] == [("", 8080, 80, "tcp", "host"),
                                    ("127.0.0.1", None, 53, "udp", "host"),
                                    ("", 8081, 81, "tcp", "ingress")]
    bindings = container_config(loaded.plan, "web", loaded.path.parent).create_kwargs[
        "host_config"]["PortBindings"]
    assert bindings == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                        "81/tcp": [{"HostIp": "", "HostPort": "8081"}]}
    assert to_compose(loaded.plan, loaded.path.parent)["services"]["web"]["ports"] == [
        {"mode": "host", "target": 80, "published": "8080", "protocol": "tcp"},
        {"mode": "host", "target": 53, "host_ip": "127.0.0.1", "protocol": "udp"},
        "8081:81/tcp"]
    problems = refused(tmp_path, """
services:
  web:
    image: web:1
    ports: [{target: 80, published: "8080", mode: bridge}]
    deploy: {replicas: 2}
""")
    assert problems == ["services.web.ports[0] (line 5): unknown port mode 'bridge': use "
                        "ingress or host"]
    problems = refused(tmp_path, """
services:
  web:
    image: web:1
    ports: [{target: 80, published: "8080", mode: host}]
    deploy: {replicas: 2}
""")  # one engine: its replicas are containers of one host
    assert problems[0].startswith("services.web.ports[0] (line 5): 2 replicas cannot all "
                                  "publish host port 8080")


def test_networks_with_ipam_and_deploy(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  node:
    image: node:1
    networks: {train: {aliases: [leader], ipv4_address: 172.21.0.10}}
    deploy:
      replicas: 2
      resources: {limits: {cpus: "3", memory: 6G}, reservations: {cpus: "2", memory: 4G}}
networks:
  train:
    ipam: {config: [{subnet: 172.21.0.0/24, gateway: 172.21.0.1}]}
""")
    plan = loaded.plan
    assert plan.networks["train"].subnet == "172.21.0.0/24"
    assert plan.networks["train"].gateway == "172.21.0.1"
    assert set(plan.services) == {"node", "node-2"}
    assert plan.services["node"].deploy.resources.limits.cpus == 3


DUAL = """
services:
  node:
    image: node:1
    networks: {dual: {ipv4_address: 172.21.0.10, ipv6_address: "fd00:21::10"}}
networks:
  dual:
    enable_ipv6: true
    ipam:
      config:
        - {subnet: "fd00:21::/64", gateway: "fd00:21::1"}
        - {subnet: 172.21.0.0/24}
"""


def test_an_ipv6_network_takes_one_pool_of_each_family(tmp_path: Path) -> None:
    from ollamatopo.engine._payloads import container_config, network_config

    plan = load(tmp_path, DUAL).plan
    dual = plan.networks["dual"]
    assert (dual.enable_ipv6, dual.subnet, dual.gateway, dual.ipv6_subnet,
            dual.ipv6_gateway) == (True, "172.21.0.0/24", None, "fd00:21::/64", "fd00:21::1")
    made = network_config("shop", "dual", dual).create_kwargs
    assert made["enable_ipv6"] is True
    assert made["ipam"]["Config"] == [{"Subnet": "172.21.0.0/24"},
                                      {"Subnet": "fd00:21::/64", "Gateway": "fd00:21::1"}]
    (endpoint,) = container_config(plan, "node", tmp_path).endpoints
    assert (endpoint.ipv4_address, endpoint.ipv6_address) == ("172.21.0.10", "fd00:21::10")


def test_what_an_ipv6_network_refuses_is_named_at_its_line(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  a:
    image: a:1
    networks: {plain: {ipv6_address: "fd00:22::10"}, twice: {}, late: {}, also: {}}
networks:
  plain: {}
  twice:
    ipam: {config: [{subnet: 172.23.0.0/24}, {subnet: 172.24.0.0/24}]}
  late:
    ipam: {config: [{subnet: "fd00:25::/64"}]}
  also: {}
""")
    text = "\n".join(problems)
    assert "services.a.networks.plain.ipv6_address (line 5): network 'plain' has no IPv6: " \
           "give it enable_ipv6: true" in text
    assert "networks.twice.ipam.config (line 9): not supported yet" in text
    assert "an IPv6 subnet (fd00:25::/64) needs enable_ipv6: true" in text


def test_overlapping_ipv6_subnets_are_refused_before_anything_is_made(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  a: {image: a:1, networks: [one, two]}
networks:
  one:
    enable_ipv6: true
    ipam: {config: [{subnet: "fd00:25::/64"}]}
  two:
    enable_ipv6: true
    ipam: {config: [{subnet: 172.26.0.0/24}, {subnet: "fd00:25::/80"}]}
""")
    assert any(problem.startswith("networks.two.ipv6_subnet") and "overlaps fd00:25::/64, the "
               "subnet of network 'one'" in problem for problem in problems), problems


def test_keys_not_carried_out_yet_and_unknown_keys_are_named_at_their_line(
        tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  api:
    image: api:1
    use_api_socket: true
    credential_spec: {file: spec.json}
    imagee: typo
    depends_on:
      migrate: {condition: service_completed_successfully}
  migrate: {image: migrate:1}
networks:
  back: {enable_ipv4: false}
""")
    assert any(p.startswith("services.api.use_api_socket (line 5): not supported yet")
               for p in problems)
    assert any(p.startswith("services.api.credential_spec (line 6): not supported yet")
               for p in problems)
    assert any(p.startswith("services.api.imagee (line 7): unknown key") for p in problems)
    assert any(p.startswith("networks.back.enable_ipv4 (line 12): not supported yet")
               for p in problems)
    assert len(problems) == 4  # every one at once


def test_translation_and_model_problems_come_together(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  api:
    image: api:1
    restart: sometimes
    credential_spec: {file: spec.json}
    depends_on: [ghost]
""")
    assert any("services.api.credential_spec" in p and "not supported yet" in p for p in problems)
    assert any("services.api.restart" in p for p in problems)
    assert any("ghost" in p for p in problems)


@pytest.mark.parametrize(("folder", "expected"), [
    ("My_Shop", "my_shop"), ("_Shop.v2", "shopv2"), ("--x", "x")])
def test_the_project_name_from_the_folder_is_normalized_as_compose_does(
        tmp_path: Path, folder: str, expected: str) -> None:
    assert normalize_project_name(folder) == expected
    loaded = load(tmp_path, "services:\n  a: {image: a:1}\n", folder=folder)
    assert loaded.plan.project == expected
    assert read_project_name(loaded.path) == expected


def test_the_project_name_precedence(tmp_path: Path) -> None:
    text = "name: from-file\nservices:\n  a: {image: a:1}\n"
    assert load(tmp_path, text).plan.project == "from-file"
    assert load(tmp_path, text, {"COMPOSE_PROJECT_NAME": "from-env"}).plan.project == \
        "from-env"
    assert load(tmp_path, text, {"COMPOSE_PROJECT_NAME": "from-env"},
                project="from-flag").plan.project == "from-flag"


def test_version_is_obsolete_with_a_warning(tmp_path: Path) -> None:
    loaded = load(tmp_path, "version: '3.8'\nservices:\n  a: {image: a:1}\n")
    assert any(warning.startswith("version: ") for warning in loaded.warnings)


def test_interpolation_forms_of_compose(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a:
    image: a:1
    environment:
      SET_PLUS: ${SET:+yes}
      UNSET_PLUS: ${NOPE:+yes}
      EMPTY_PLUS: ${EMPTY+present}
      EMPTY_COLON_PLUS: ${EMPTY:+present}
      DOLLAR: $$HOME
""", {"SET": "1", "EMPTY": ""})
    assert loaded.plan.services["a"].environment == {
        "SET_PLUS": "yes", "UNSET_PLUS": "", "EMPTY_PLUS": "present", "EMPTY_COLON_PLUS": "",
        "DOLLAR": "$HOME"}


def test_container_name_expose_and_the_containers_healthcheck(tmp_path: Path) -> None:
    from ollamatopo.engine._payloads import container_config

    loaded = load(tmp_path, """
services:
  db:
    image: postgres:16
    container_name: shop-postgres
    expose: ["5432", 9187/udp]
    healthcheck:
      test: [CMD-SHELL, pg_isready -U ollama]
      interval: 10s
      timeout: 5s
      retries: 5
      start_period: 30s
  web:
    image: web:1
    healthcheck: {test: [CMD, curl, -f, http://localhost/]}
""")
    db = container_config(loaded.plan, "db", loaded.path.parent)
    assert db.name == "shop-postgres"
    assert (5432, "tcp") in db.create_kwargs["ports"] and (9187, "udp") in \
        db.create_kwargs["ports"]
    assert db.create_kwargs["healthcheck"] == {
        "test": ["CMD-SHELL", "pg_isready -U ollama"], "interval": 10_000_000_000,
        "timeout": 5_000_000_000, "retries": 5, "start_period": 30_000_000_000}
    assert loaded.plan.services["db"].ready.exec_ == ["/bin/sh", "-c", "pg_isready -U ollama"]
    web = container_config(loaded.plan, "web", loaded.path.parent)
    assert web.create_kwargs["healthcheck"] == {"test": ["CMD", "curl", "-f",
                                                         "http://localhost/"]}
    assert web.name == f"{loaded.plan.project}-web"


def test_container_name_with_replicas_is_refused(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  db: {image: postgres:16, container_name: pg, deploy: {replicas: 2}}
""")
    assert any("container_name names one container" in p for p in problems)


def test_service_completed_successfully_makes_a_one_shot_job(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  migrate: {image: migrate:1}
  api:
    image: api:1
    depends_on:
      migrate: {condition: service_completed_successfully}
""")
    assert loaded.plan.dependencies("api") == {"migrate": Condition.COMPLETED}
    assert loaded.graph.jobs() == {"migrate"}
    assert Condition.COMPLETED.waits_for_the_end and not Condition.STARTED.waits_for_the_end


def test_external_and_named_networks_and_volumes(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  app: {image: a:1, networks: [shared, own], volumes: [data:/data]}
networks:
  shared: {external: true, name: common-net}
  own: {name: exact-name, attachable: true}
volumes:
  data: {external: {name: old-style}}
""")
    networks, volumes = loaded.plan.networks, loaded.plan.volumes
    assert (networks["shared"].external, networks["shared"].name) == (True, "common-net")
    assert (networks["own"].external, networks["own"].name) == (False, "exact-name")
    assert (volumes["data"].external, volumes["data"].name) == (True, "old-style")
    problems = refused(tmp_path, """
services:
  app: {image: a:1, networks: [shared]}
networks:
  shared: {external: true, driver: bridge}
""")
    assert problems == ["networks.shared (line 5): an external network is made outside the "
                        "project: remove driver (only `name` goes with `external`)"]


def test_port_ranges_mount_options_tmpfs_sizes_and_optional_env_files(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  app:
    image: a:1
    ports: ["127.0.0.1:8000-8001:80-81/udp", "9000-9001"]
    env_file: [{path: ./missing.env, required: false}]
    volumes:
      - ./src:/src:ro,rslave
      - data:/data:nocopy,cached
      - {type: tmpfs, target: /scratch, tmpfs: {size: 64m, mode: 1023}}
volumes:
  data: {}
""")
    spec = loaded.plan.services["app"]
    assert [str(port) for port in spec.ports] == [
        "127.0.0.1:8000:80/udp", "127.0.0.1:8001:81/udp", "9000/tcp", "9001/tcp"]
    assert [(m.read_only, m.propagation, m.nocopy) for m in spec.volumes] == [
        (True, "rslave", False), (False, None, True)]
    assert spec.tmpfs == [f"/scratch:size={64 * 2**20},mode=1777"]
    config = container_config(loaded.plan, "app", loaded.path.parent)
    mounts = config.create_kwargs["host_config"]["Mounts"]
    # compose-go gives a short-syntax bind create_host_path; with a propagation compose
    # uses the mount API and asks it to make the folder
    assert mounts[0]["BindOptions"] == {"Propagation": "rslave", "CreateMountpoint": True}
    assert mounts[1]["VolumeOptions"] == {"NoCopy": True}
    problems = refused(tmp_path, """
services:
  app:
    image: a:1
    volumes: ["./x:/x:bogus"]
""")
    assert "mount option 'bogus' is not one compose takes" in problems[0]


def test_a_range_of_host_ports_for_one_container_port_stays_one_mapping(
        tmp_path: Path) -> None:
    """compose-go reads `"7000-7002:7000"` as one port whose published is the range (its
    long form too); a range onto a range of the same length is written out one port each."""
    loaded = load(tmp_path, """
services:
  app:
    image: a:1
    ports:
      - "7000-7002:7000"
      - "127.0.0.1:7100-7101:71/udp"
      - {target: 80, published: "8000-8002"}
      - {target: 81, published: "8100-8101", mode: host}
      - "9000-9001:9000-9001"
""")
    ports = loaded.plan.services["app"].ports
    assert [(p.published, p.container_port, p.host_ip, p.mode) for p in ports] == [
        ("7000-7002", 7000, "", "ingress"), ("7100-7101", 71, "127.0.0.1", "ingress"),
        ("8000-8002", 80, "", "ingress"), ("8100-8101", 81, "", "host"),
        ("9000", 9000, "", "ingress"), ("9001", 9001, "", "ingress")]
    problems = refused(tmp_path, """
services:
  app:
    image: a:1
    ports: ["7002-7000:80", {target: 80, published: "80-"}]
""")
    assert problems[0].startswith("services.app.ports[0] (line 5)")
    assert "its first port is above its last" in problems[0]
    assert "'80-' is not a range of host ports" in problems[1]


def test_binds_create_their_folder_and_relabel_as_compose_v2_decides(tmp_path: Path) -> None:
    """compose-go 2.9 (compose v2.40): the short syntax gives every bind create_host_path,
    and its :z/:Z are bind.selinux; the long syntax creates the folder without `bind:`
    (compose then uses the engine's binds) or with bind.create_host_path: true."""
    loaded = load(tmp_path, """
services:
  app:
    image: a:1
    volumes:
      - ./a:/a
      - ./b:/b:z
      - ./c:/c:ro,Z
      - ./d:/d:rslave
      - {type: bind, source: ./e, target: /e}
      - {type: bind, source: ./f, target: /f, bind: {create_host_path: true, selinux: z}}
      - {type: bind, source: ./g, target: /g, bind: {}}
      - {type: bind, source: ./h, target: /h, bind: {create_host_path: false}}
      - {type: bind, source: ./i, target: /i, bind: {propagation: rshared}}
      - {type: bind, source: ./j, target: /j, bind: {create_host_path: "true"}}
""")
    volumes = loaded.plan.services["app"].volumes
    assert [(m.target, m.create_host_path, m.selinux, m.legacy_bind) for m in volumes] == [
        ("/a", True, None, True), ("/b", True, "z", True), ("/c", True, "Z", True),
        ("/d", True, None, False), ("/e", True, None, True), ("/f", True, "z", True),
        ("/g", False, None, False), ("/h", False, None, False), ("/i", False, None, False),
        ("/j", True, None, True)]
    assert [str(m) for m in volumes[:3]] == ["./a:/a", "./b:/b:z", "./c:/c:ro,Z"]
    # `config` writes a bind that makes no folder in the long syntax, the rest short
    assert volumes[7].compose_form() == {"type": "bind", "source": "./h", "target": "/h",
                                         "bind": {"create_host_path": False}}
    assert volumes[8].compose_form() == {"type": "bind", "source": "./i", "target": "/i",
                                         "bind": {"create_host_path": False,
                                                  "propagation": "rshared"}}
    assert volumes[5].compose_form() == "./f:/f:z"


def test_a_named_volume_keeps_its_relabel_as_compose_v2_reads_it(tmp_path: Path) -> None:
    """compose-go 2.9 reads `data:/x:z` as a volume mount with bind.selinux (the long
    syntax may say it so too, on type: volume), and compose v2 relabels the volume: the
    plan keeps it, `config` writes it back in the short syntax, and only a relabelled
    volume goes through the engine's binds, under the project's name of the volume."""
    loaded = load(tmp_path, """
services:
  app:
    image: a:1
    volumes: ["data:/a:z", "data:/b:ro,Z", "data:/e:ro",
              {type: volume, source: data, target: /c, read_only: true,
               bind: {selinux: Z}, volume: {}}]
volumes:
  data: {}
""")
    volumes = loaded.plan.services["app"].volumes
    assert [(m.named, m.selinux, m.legacy_bind) for m in volumes] == [
        (True, "z", True), (True, "Z", True), (True, None, False), (True, "Z", True)]
    written = ["data:/a:z", "data:/b:ro,Z", "data:/e:ro", "data:/c:ro,Z"]
    assert [m.compose_form() for m in volumes] == written
    service = to_compose(loaded.plan, loaded.path.parent)["services"]["app"]
    assert service["volumes"] == written


@pytest.mark.parametrize(("mount", "words"), [
    # compose drops a relabel it cannot carry through the mount API: ollamatopo refuses it
    ('"./a:/a:z,rslave"', "SELinux relabel 'z': compose v2 relabels only a bind"),
    ("{type: bind, source: ./a, target: /a, bind: {selinux: Z}}", "set bind.create_host_path"),
    # a named volume with nocopy goes through the mount API, and compose drops its relabel
    ('"data:/data:nocopy,z"', "SELinux relabel 'z' with nocopy: compose v2 makes a volume"),
    ("{type: volume, source: data, target: /data, bind: {selinux: Z}, volume: {nocopy: true}}",
     "remove nocopy or the relabel"),
    ('"data:/data:z,rslave"', "rslave is a bind mount's option: 'data' is a volume"),
    ('"./a:/a:z,Z"', "asks for both SELinux relabels"),
    ("{type: bind, source: ./a, target: /a, bind: {selinux: q, create_host_path: true}}",
     "selinux"),
])
def test_a_relabel_compose_would_not_carry_out_is_refused(tmp_path: Path, mount: str,
                                                          words: str) -> None:
    problems = refused(tmp_path, f"""
services:
  app:
    image: a:1
    volumes: [{mount}]
volumes:
  data: {{}}
""")
    assert len(problems) == 1 and problems[0].startswith("services.app.volumes[0]"), problems
    assert words in problems[0], problems


def test_keys_of_an_attached_or_watching_up_are_taken_as_compose_up_d_takes_them(
        tmp_path: Path) -> None:
    """ollamatopo's `up` is detached: `attach` changes nothing (no log is attached),
    `develop` is compose watch's and is said to be unwatched, not refused."""
    loaded = load(tmp_path, """
services:
  web:
    image: web:1
    develop:
      watch: [{action: sync, path: ./web, target: /app}]
  mail: {image: mail:1, attach: false}
""")
    assert sorted(loaded.plan.services) == ["mail", "web"]
    assert any(w.startswith("services.web.develop: compose watch's settings")
               for w in loaded.warnings), loaded.warnings
    assert not any("attach" in warning for warning in loaded.warnings)
    problems = refused(tmp_path, "services:\n  a: {image: a:1, attach: sometimes}\n")
    assert any("services.a.attach" in p and "true or false" in p for p in problems), problems
