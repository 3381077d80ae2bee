"""Compose's engine-level service keys on the real engine (issue 12): what `up` gives the
container (docker inspect), the same as `docker compose create` gives its own from the same
file; and the settings this engine refuses (a GPU it does not have, privileged containers,
storage options, an image of another platform, an image that may not or cannot be pulled)
fail their service with a clear message, rolled back, nothing pulled that need not be."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.test_compose_referee import ENV, compose_binary

__all__ = ["compose_binary"]  # the session fixture, used by name

KEYS = """
name: PROJECT
services:
  db:
    image: ollamatopo-standin:latest
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    sysctls: [net.core.somaxconn=1024]
    shm_size: 64m
    dns: 9.9.9.9
    dns_search: [example.com]
    dns_opt: [ndots:2]
    domainname: example.com
    ipc: shareable
    stop_signal: SIGINT
    logging: {driver: json-file, options: {max-size: 1m, max-file: "2"}}
    devices: ["/dev/null:/dev/xnull:r"]
    labels: {com.example.team: data}
    mem_limit: 256m
    pids_limit: 100
    cpu_shares: 512
    cpu_period: 100000
    cpu_quota: 50000
    mem_swappiness: 10
    oom_kill_disable: true
    cpu_count: 2
    cpu_percent: 50
    isolation: default
    blkio_config: {weight: 300}
    device_cgroup_rules: ["c 1:3 mr", "b 8:* r"]
    oom_score_adj: 100
    group_add: ["1234"]
    tty: true
    stdin_open: true
    pull_policy: never
    platform: linux/amd64
  side:
    image: ollamatopo-standin:latest
    environment: {STANDIN_PORT: "8081"}  # the port of db's network namespace is taken
    network_mode: service:db
    pid: service:db
    ipc: service:db
    volumes_from: [db:ro]
  api:
    image: ollamatopo-standin:latest
    links: ["db:database"]
  hostnet:
    image: ollamatopo-standin:latest
    environment: {STANDIN_PORT: "HOSTPORT"}
    network_mode: host
"""
# What compose and ollamatopo must both have given the containers (inspect's keys).
HOST_KEYS = ("Sysctls", "ShmSize", "Dns", "DnsSearch", "DnsOptions", "LogConfig", "Devices",
             "IpcMode", "Memory", "PidsLimit", "CpuShares", "OomScoreAdj", "GroupAdd",
             "CpuPeriod", "CpuQuota", "MemorySwappiness", "OomKillDisable", "BlkioWeight",
             "DeviceCgroupRules", "CpuCount", "CpuPercent", "Isolation")
PERCENT_DISCARDED = "linux does not support CPU percent"  # the engine's warning
WEIGHT_DISCARDED = "Your kernel does not support Block I/O weight"  # the engine's warning
CONFIG_KEYS = ("StopSignal", "Domainname", "Tty", "OpenStdin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(attrs: dict[str, Any]) -> dict[str, Any]:
    host, config = attrs["HostConfig"], attrs["Config"]
    return {**{key: host[key] for key in HOST_KEYS}, **{key: config[key] for key in CONFIG_KEYS},
            "Ulimits": sorted((u["Name"], u["Soft"], u["Hard"]) for u in host["Ulimits"])}


@pytest.fixture
def compose_project(project: Project) -> Iterator[str]:
    """A compose project beside the test's (its own name: networks are named by project),
    removed by compose's label afterwards (its volumes once no container holds them)."""
    name = f"{project.name}c"
    yield name
    label = {"label": f"com.docker.compose.project={name}"}
    for container in project.client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in project.client.networks.list(filters=label):
        network.remove()
    for volume in project.client.volumes.list(filters=label):
        volume.remove(force=True)


def test_up_gives_the_containers_the_settings_compose_gives_them(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    path = project.write(KEYS.replace("HOSTPORT", str(free_port())), "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    containers = project.containers()
    db, side, api = (containers[name].attrs for name in ("db", "side", "api"))
    mine = _settings(db)
    assert mine["Ulimits"] == [("nofile", 1024, 2048), ("nproc", 512, 512)]
    assert mine["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert mine["ShmSize"] == 64 * 2**20
    assert (mine["Dns"], mine["DnsSearch"], mine["DnsOptions"]) == (
        ["9.9.9.9"], ["example.com"], ["ndots:2"])
    assert mine["LogConfig"] == {"Type": "json-file",
                                 "Config": {"max-size": "1m", "max-file": "2"}}
    assert mine["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull",
                                "CgroupPermissions": "r"}]
    assert (mine["StopSignal"], mine["Tty"], mine["OpenStdin"]) == ("SIGINT", True, True)
    assert (mine["CpuPeriod"], mine["CpuQuota"], mine["MemorySwappiness"],
            mine["OomKillDisable"], mine["DeviceCgroupRules"]) == (
        100000, 50000, 10, True, ["c 1:3 mr", "b 8:* r"])
    # A kernel without the weight controller: the engine drops the weight and says so only in
    # the create's answer, which `up` passes on; with it, the container has the weight.
    said = [e["detail"] for e in result.named("engine warning") if e["service"] == "db"]
    assert (mine["CpuCount"], mine["Isolation"]) == (2, "default")
    assert mine["CpuPercent"] == 0 and any(PERCENT_DISCARDED in words for words in said), said
    assert mine["BlkioWeight"] == 300 or (
        mine["BlkioWeight"] == 0 and any(WEIGHT_DISCARDED in words for words in said)), said
    assert db["Config"]["Labels"]["com.example.team"] == "data"
    # The engine keeps the id of the container it found by name at the create.
    shared = f"container:{db['Id']}"
    host = side["HostConfig"]
    assert (host["NetworkMode"], host["PidMode"], host["IpcMode"]) == (shared, shared, shared)
    assert host["VolumesFrom"] == [f"{project.name}-db:ro"]
    assert side["NetworkSettings"]["Networks"] == {}
    endpoint = api["NetworkSettings"]["Networks"][f"{project.name}_default"]
    assert endpoint["Links"] == [f"{project.name}-db:database"]
    assert containers["hostnet"].attrs["HostConfig"]["NetworkMode"] == "host"
    assert all(c.status == "running" for c in containers.values())
    # `up` again changes nothing: the keys are in the hash the same way each time.
    again = project.run("up", "--plan", str(path), "--project", project.name)
    assert again.code == 0, again.stderr
    (started,) = again.named("run started")
    assert all(line.startswith("keep ") for line in started["actions"]), started["actions"]
    assert {c.id for c in project.containers().values()} == {c.id for c in containers.values()}
    # db made again: side, which lives in its namespaces, is made again with it.
    path.write_text(path.read_text().replace("team: data", "team: other"))
    changed = project.run("up", "--plan", str(path), "--project", project.name)
    assert changed.code == 0, changed.stderr
    after = project.containers()
    assert after["side"].attrs["HostConfig"]["NetworkMode"] == f"container:{after['db'].id}"
    assert after["side"].status == "running" and after["api"].id == containers["api"].id

    # compose v2 creates its containers from the same file with the same settings.
    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=project.folder, check=False, timeout=120)
    assert created.returncode == 0, created.stderr
    theirs = {c.labels["com.docker.compose.service"]: c.attrs
              for c in project.client.containers.list(
                  all=True, filters={"label": f"com.docker.compose.project={compose_project}"})}
    assert _settings(theirs["db"]) == mine
    their_side = theirs["side"]["HostConfig"]
    assert their_side["NetworkMode"] == their_side["PidMode"] == their_side["IpcMode"] \
        == f"container:{theirs['db']['Id']}"


NETWORKS = """
name: PROJECT
services:
  app:
    image: ollamatopo-standin:latest
    networks: [zeta, alpha]
  ranked:
    image: ollamatopo-standin:latest
    networks:
      alpha: {link_local_ips: [169.254.8.8], driver_opts: {com.example.opt: 7}}
      zeta: {priority: 5}
networks:
  zeta: {}
  alpha: {}
"""


def _attached(attrs: dict[str, Any], project: str) -> tuple[str, dict[str, Any]]:
    """The container's primary network (the one it was created on) and, by network, its
    endpoint's link-local addresses and driver options; names without the project's."""
    def key(name: str) -> str:
        return name.removeprefix(f"{project}_")

    return key(attrs["HostConfig"]["NetworkMode"]), {
        key(name): ((endpoint.get("IPAMConfig") or {}).get("LinkLocalIPs"),
                    endpoint.get("DriverOpts"))
        for name, endpoint in attrs["NetworkSettings"]["Networks"].items()}


def test_networks_are_attached_in_compose_order_with_their_endpoint_settings(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    """The primary network is the highest `priority`, ties by name, as compose has it (not
    the file's order); link_local_ips and driver_opts reach the endpoint."""
    path = project.write(NETWORKS, "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    mine = {name: _attached(container.attrs, project.name)
            for name, container in project.containers().items()}
    assert mine["app"] == ("alpha", {"alpha": (None, None), "zeta": (None, None)})
    assert mine["ranked"] == ("zeta", {"alpha": (["169.254.8.8"], {"com.example.opt": "7"}),
                                       "zeta": (None, None)})
    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=project.folder, check=False, timeout=120)
    assert created.returncode == 0, created.stderr
    theirs = {c.labels["com.docker.compose.service"]: _attached(c.attrs, compose_project)
              for c in project.client.containers.list(
                  all=True, filters={"label": f"com.docker.compose.project={compose_project}"})}
    assert theirs == mine


DUAL_STACK = """
name: PROJECT
services:
  app:
    image: ollamatopo-standin:latest
    networks:
      dual: {ipv4_address: 172.30.98.10, ipv6_address: "fd00:98::10"}
networks:
  dual:
    enable_ipv6: true
    ipam:
      config:
        - {subnet: 172.30.98.0/24, gateway: 172.30.98.1}
        - {subnet: "fd00:98::/64", gateway: "fd00:98::1"}
"""


def _dual_stack(project: Project, name: str) -> tuple[Any, ...]:
    """What the engine made of DUAL_STACK for the project `name`: the network's IPv6 switch
    and pools, the container's addresses there."""
    network = project.client.networks.get(f"{name}_dual").attrs
    (container,) = project.client.containers.list(
        all=True, filters={"network": f"{name}_dual"})
    endpoint = container.attrs["NetworkSettings"]["Networks"][f"{name}_dual"]
    return (network["EnableIPv6"],
            sorted((pool["Subnet"], pool.get("Gateway")) for pool in network["IPAM"]["Config"]),
            endpoint["IPAMConfig"])


def test_an_ipv6_network_and_address_as_compose_makes_them(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    """One at a time: both projects' networks would have the same subnets."""
    path = project.write(DUAL_STACK, "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    mine = _dual_stack(project, project.name)
    assert mine == (True, [("172.30.98.0/24", "172.30.98.1"), ("fd00:98::/64", "fd00:98::1")],
                    {"IPv4Address": "172.30.98.10", "IPv6Address": "fd00:98::10"})
    code, output = project.containers()["app"].exec_run(["ip", "-6", "addr"])
    assert code == 0 and "fd00:98::10/64" in output.decode(), output
    assert project.run("down", "--plan", str(path), "--project", project.name).code == 0
    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=project.folder, check=False, timeout=120)
    assert created.returncode == 0, created.stderr
    assert _dual_stack(project, compose_project) == mine


@pytest.mark.parametrize(("service", "words"), [
    ("gpus: all", "the engine has no such device"),
    ("deploy: {resources: {reservations: {devices: [{capabilities: [gpu], count: 1}]}}}",
     "the engine has no such device"),
    ("privileged: true", "the engine cannot give this container the capabilities"),
    ("storage_opt: {size: 1G}", "--storage-opt is not supported"),
    ("cpu_rt_period: 1000000\n    cpu_rt_runtime: 950000",
     "the engine gives its containers no real-time CPU time"),
    ("blkio_config: {device_read_bps: [{path: /dev/null, rate: 1mb}]}",
     "a blkio_config device is no block device of this host"),
    ("isolation: hyperv", "linux only supports 'default'"),
    ("platform: linux/arm64", "image ollamatopo-standin:latest on the engine is linux/amd64, "
                              "not linux/arm64"),
    ("pull_policy: always", "could not be pulled (pull_policy always pulls it again"),
])
def test_what_the_engine_refuses_fails_the_service_clearly_and_is_rolled_back(
        project: Project, service: str, words: str) -> None:
    path = project.write(f"""
services:
  base: {{image: ollamatopo-standin:latest}}
  gpu:
    image: ollamatopo-standin:latest
    depends_on: [base]
    {service}
""", "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 1, result.stderr
    assert "service 'gpu' failed" in result.stderr and words in result.stderr, result.stderr
    assert project.containers() == {}  # rolled back, base too
    pulls = [e["image"] for e in result.named("image pull started")]
    assert pulls == (["ollamatopo-standin:latest"] if "always" in service else [])


def test_docker_default_platform_is_the_platform_of_a_service_without_one(
        project: Project) -> None:
    path = project.write("""
services:
  unnamed: {image: ollamatopo-standin:latest}
""", "compose.yaml")
    other = project.run("up", "--plan", str(path), "--project", project.name,
                        env={"DOCKER_DEFAULT_PLATFORM": "linux/arm64"})
    assert other.code == 1, other.stderr
    assert "service 'unnamed' failed" in other.stderr and "image ollamatopo-standin:latest " \
        "on the engine is linux/amd64, not linux/arm64" in other.stderr, other.stderr
    assert not other.named("image pull started")
    own = project.run("up", "--plan", str(path), "--project", project.name,
                      env={"DOCKER_DEFAULT_PLATFORM": "linux/amd64"})
    assert own.code == 0, own.stderr
    assert set(project.containers()) == {"unnamed"}


def test_pull_policy_never_pulls_nothing(project: Project) -> None:
    path = project.write("""
services:
  gone: {image: "ollamatopo-absent:never", pull_policy: never}
""", "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 1
    assert ("image ollamatopo-absent:never is not on the engine, and its pull_policy is "
            "never: nothing was pulled") in result.stderr
    assert not result.named("image pull started")
