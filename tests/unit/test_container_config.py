"""Plan specs translated into Engine API payloads, and the config hash over them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ollamatopo.engine._payloads import (
    DEFAULT_NETWORK,
    LABEL_DEPENDS,
    LABEL_HASH,
    LABEL_NETWORK,
    LABEL_PROJECT,
    LABEL_SERVICE,
    ContainerConfig,
    Endpoint,
    container_config,
    missing_folder,
    network_config,
    plan_networks,
    volume_config,
)
from ollamatopo.plan._model import NetworkSpec, Plan, VolumeSpec

Build = Callable[..., Plan]
BASE = Path("/srv/plans")


def config_of(build_plan: Build, spec: dict[str, Any], **plan: Any) -> ContainerConfig:
    """The container config of a service `app` with `spec`, alone in a plan."""
    return container_config(build_plan({"app": spec}, **plan), "app", BASE)


# --- names and labels -----------------------------------------------------------------------


def test_names_and_labels(build_plan: Build) -> None:
    plan = build_plan({"db": {"image": "postgres:16"},
                       "api": {"image": "api:1", "labels": {"team": "core"}, "after": ["db"]}})
    config = container_config(plan, "api", BASE)
    assert config.name == "shop-api"
    assert config.image == "api:1"
    assert config.labels[LABEL_PROJECT] == "shop"
    assert config.labels[LABEL_SERVICE] == "api"
    assert config.labels[LABEL_HASH] == config.config_hash
    assert config.labels[LABEL_DEPENDS] == "db"
    assert config.labels["team"] == "core"
    assert len(config.config_hash) == 16
    assert int(config.config_hash, 16) >= 0  # hexadecimal


def test_environment_is_sorted_key_value_text(build_plan: Build) -> None:
    config = config_of(build_plan, {"image": "x", "environment": {"B": "2", "A": "1"}})
    assert config.create_kwargs["environment"] == ["A=1", "B=2"]


# --- the config hash ------------------------------------------------------------------------


def test_hash_is_stable(build_plan: Build) -> None:
    spec = {"image": "x", "environment": {"A": "1"}, "ports": ["80:80"]}
    assert config_of(build_plan, spec).config_hash == config_of(build_plan, spec).config_hash


@pytest.mark.parametrize(
    "change",
    [
        {"environment": {"A": "2"}},
        {"environment": {"A": "1", "B": "1"}},
        {"image": "y"},
        {"command": ["serve"]},
        {"ports": ["81:80"]},
        {"labels": {"team": "core"}},
        {"deploy": {"resources": {"limits": {"memory": "1G"}}}},
        {"volumes": ["./data:/data"]},
        {"restart": "always"},
    ],
)
def test_hash_changes_with_what_the_container_gets(build_plan: Build,
                                                   change: dict[str, Any]) -> None:
    before = {"image": "x", "environment": {"A": "1"}, "ports": ["80:80"]}
    after = {**before, **change}
    assert config_of(build_plan, before).config_hash != config_of(build_plan, after).config_hash


@pytest.mark.parametrize(
    "change",
    [
        {"environment": {"B": "2", "A": "1"}},  # same variables, another order
        {"ready": {"http": {"port": 80}, "timeout": "1m"}},  # orchestration only
        {"optional": True},
    ],
)
def test_hash_ignores_what_the_container_does_not_get(build_plan: Build,
                                                      change: dict[str, Any]) -> None:
    before = {"image": "x", "environment": {"A": "1", "B": "2"}}
    after = {**before, **change}
    assert config_of(build_plan, before).config_hash == config_of(build_plan, after).config_hash


def test_hash_of_one_service_ignores_another_service(build_plan: Build) -> None:
    first = build_plan({"app": {"image": "x"}, "other": {"image": "y", "environment": {"A": "1"}}})
    second = build_plan({"app": {"image": "x"}, "other": {"image": "y", "environment": {"A": "2"}}})
    assert (container_config(first, "app", BASE).config_hash
            == container_config(second, "app", BASE).config_hash)
    assert (container_config(first, "other", BASE).config_hash
            != container_config(second, "other", BASE).config_hash)


# --- ports, resources, mounts ---------------------------------------------------------------


def test_ports_become_port_bindings(build_plan: Build) -> None:
    config = config_of(build_plan, {"image": "x", "ports": [
        "8080:80", "127.0.0.1::9090", "6831:6831/udp", "443", "127.0.0.2:8081:80"]})
    assert config.create_kwargs["ports"] == [
        (80, "tcp"), (9090, "tcp"), (6831, "udp"), (443, "tcp"), (80, "tcp")]
    assert config.create_kwargs["host_config"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.2", "HostPort": "8081"}],
        "9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "6831/udp": [{"HostIp": "", "HostPort": "6831"}],
        "443/tcp": [{"HostIp": "", "HostPort": ""}],
    }


def test_a_range_of_host_ports_is_the_engines_to_choose_from(build_plan: Build) -> None:
    """compose v2 passes the range as written (PortBindings HostPort "7000-7002"): the
    engine binds the first free port of it when the container starts."""
    config = config_of(build_plan, {"image": "x", "ports": [
        "7000-7002:7000", "127.0.0.1:7100-7101:71/udp"]})
    assert config.create_kwargs["host_config"]["PortBindings"] == {
        "7000/tcp": [{"HostIp": "", "HostPort": "7000-7002"}],
        "71/udp": [{"HostIp": "127.0.0.1", "HostPort": "7100-7101"}]}


def test_resources(build_plan: Build) -> None:
    config = config_of(build_plan, {"image": "x", "deploy": {"resources": {
        "limits": {"cpus": "1.5", "memory": "1G"},
        "reservations": {"cpus": 0.5, "memory": "512M"}}}})
    host = config.create_kwargs["host_config"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 1024**3
    assert host["MemoryReservation"] == 512 * 1024**2
    assert host["CpuShares"] == 512


def test_nano_cpus_are_exact(build_plan: Build) -> None:
    # 4.1 * 1e9 is 4099999999.9999995 in floating point; the engine must get 4.1 CPUs.
    config = config_of(build_plan, {"image": "x",
                                    "deploy": {"resources": {"limits": {"cpus": "4.1"}}}})
    assert config.create_kwargs["host_config"]["NanoCpus"] == 4_100_000_000


def test_no_resources_means_no_limits(build_plan: Build) -> None:
    host = config_of(build_plan, {"image": "x"}).create_kwargs["host_config"]
    assert not {"NanoCpus", "Memory", "MemoryReservation", "CpuShares"} & host.keys()


def test_named_volume_and_bind_mount(build_plan: Build) -> None:
    """A short-syntax bind goes through the engine's legacy binds, as compose v2 makes it
    (the engine makes a missing host folder at the start; the mount API refuses one)."""
    config = config_of(build_plan, {"image": "x", "volumes": [
        "pgdata:/var/lib/postgresql/data", "./init:/init:ro", "/etc/hosts:/hosts"]},
        volumes={"pgdata": {}})
    host = config.create_kwargs["host_config"]
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "shop_pgdata", "Target": "/var/lib/postgresql/data",
         "ReadOnly": False}]
    assert host["Binds"] == [f"{(BASE / 'init').resolve()}:/init:ro", "/etc/hosts:/hosts:rw"]
    assert config.unmade_folders == ()


def test_a_relabelled_named_volume_goes_through_the_binds(build_plan: Build) -> None:
    """compose v2 (pkg/compose create.go) relabels a named volume through the engine's
    binds, under the volume's engine name (the mount API has no relabel); one without a
    relabel stays on the mount API. Either is made before the container."""
    config = config_of(build_plan, {"image": "x", "volumes": [
        {"source": "data", "target": "/a", "named": True, "selinux": "z"},
        {"source": "data", "target": "/b", "named": True, "selinux": "Z", "read_only": True},
        {"source": "outside", "target": "/c", "named": True, "selinux": "z"},
        {"source": "data", "target": "/d", "named": True}]},
        volumes={"data": {}, "outside": {"external": True, "name": "theirs"}})
    host = config.create_kwargs["host_config"]
    assert host["Binds"] == ["shop_data:/a:rw,z", "shop_data:/b:ro,Z", "theirs:/c:rw,z"]
    assert host["Mounts"] == [{"Type": "volume", "Source": "shop_data", "Target": "/d",
                               "ReadOnly": False}]
    assert config.volumes == ("shop_data", "theirs")
    assert config.unmade_folders == ()


@pytest.mark.parametrize(("mount", "bind", "options"), [
    # compose v2 (pkg/compose create.go): the legacy binds for a bind that creates its
    # folder and has no propagation; the mount API, which makes none, otherwise.
    ({"source": "./d", "target": "/d", "named": False}, None, None),
    ({"source": "./d", "target": "/d", "named": False, "create_host_path": True},
     "/srv/plans/d:/d:rw", None),
    ({"source": "./d", "target": "/d", "named": False, "create_host_path": True,
      "selinux": "Z", "read_only": True}, "/srv/plans/d:/d:ro,Z", None),
    ({"source": "./d", "target": "/d", "named": False, "propagation": "rslave"}, None,
     {"Propagation": "rslave"}),
    ({"source": "./d", "target": "/d", "named": False, "propagation": "rslave",
      "create_host_path": True}, None, {"Propagation": "rslave", "CreateMountpoint": True}),
])
def test_a_bind_goes_where_compose_sends_it(build_plan: Build, mount: dict[str, Any],
                                            bind: str | None,
                                            options: dict[str, Any] | None) -> None:
    config = config_of(build_plan, {"image": "x", "volumes": [mount]})
    host = config.create_kwargs["host_config"]
    assert host.get("Binds") == ([bind] if bind else None)
    mounts = host["Mounts"]
    assert mounts == ([] if bind else [{"Type": "bind", "Source": "/srv/plans/d",
                                        "Target": "/d", "ReadOnly": False,
                                        **({"BindOptions": options} if options else {})}])
    assert [folder.source for folder in config.unmade_folders] == (
        [] if bind else ["/srv/plans/d"])


def test_a_missing_folder_the_engine_refuses_is_said_with_its_fix(build_plan: Build) -> None:
    config = config_of(build_plan, {"image": "x", "volumes": [
        {"source": "./d", "target": "/d", "named": False},
        {"source": "./p", "target": "/p", "named": False, "propagation": "rslave",
         "create_host_path": True}]})
    refusal = ('create container shop-app: invalid mount config for type "bind": bind '
               "source path does not exist: {}")
    said = missing_folder(config, refusal.format("/srv/plans/d"))
    assert said is not None
    assert "/srv/plans/d" in said and "at /d" in said and "services.app.volumes" in said
    assert "set bind.create_host_path: true" in said
    propagated = missing_folder(config, refusal.format("/srv/plans/p"))
    assert propagated is not None and "drop the propagation" in propagated
    assert missing_folder(config, refusal.format("/elsewhere")) is None
    assert missing_folder(config, "create container shop-app: no such image") is None


def test_restart_policy(build_plan: Build) -> None:
    def policy(restart: str) -> dict[str, Any]:
        config = config_of(build_plan, {"image": "x", "restart": restart})
        return dict(config.create_kwargs["host_config"]["RestartPolicy"])

    assert policy("no") == {"Name": "", "MaximumRetryCount": 0}
    assert policy("always") == {"Name": "always", "MaximumRetryCount": 0}
    assert policy("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}


# --- networks -------------------------------------------------------------------------------


def test_service_without_networks_joins_the_default_network(build_plan: Build) -> None:
    plan = build_plan({"app": {"image": "x"}, "db": {"image": "y", "networks": ["back"]}},
                      networks={"back": {}})
    assert set(plan_networks(plan)) == {"back", DEFAULT_NETWORK}
    config = container_config(plan, "app", BASE)
    assert [e.network for e in config.endpoints] == ["shop_default"]
    assert config.endpoints[0].aliases == ("app",)
    assert config.create_kwargs["host_config"]["NetworkMode"] == "shop_default"


def test_no_default_network_when_every_service_declares_one(build_plan: Build) -> None:
    plan = build_plan({"app": {"image": "x", "networks": ["back"]}}, networks={"back": {}})
    assert set(plan_networks(plan)) == {"back"}


def test_endpoints_carry_aliases_and_addresses(build_plan: Build) -> None:
    plan = build_plan(
        {"app": {"image": "x", "networks": {
            "front": None,
            "back": {"aliases": ["api"], "ipv4_address": "172.22.0.10"}}}},
        networks={"front": {}, "back": {"subnet": "172.22.0.0/24"}})
    config = container_config(plan, "app", BASE)
    # compose's order, not the file's: by name when no priority is given
    assert [(e.network, e.aliases, e.ipv4_address) for e in config.endpoints] == [
        ("shop_back", ("app", "api"), "172.22.0.10"),
        ("shop_front", ("app",), None),
    ]
    assert config.create_kwargs["host_config"]["NetworkMode"] == "shop_back"


def test_the_highest_priority_network_is_the_primary_one_ties_by_name(
        build_plan: Build) -> None:
    plan = build_plan(
        {"app": {"image": "x", "networks": {
            "a": None, "c": {"priority": 10}, "b": {"priority": 10}, "d": {"priority": -1}}}},
        networks={key: {} for key in "abcd"})
    config = container_config(plan, "app", BASE)
    assert [e.network for e in config.endpoints] == ["shop_b", "shop_c", "shop_a", "shop_d"]
    assert config.create_kwargs["host_config"]["NetworkMode"] == "shop_b"


def test_link_local_ips_and_driver_opts_go_to_the_endpoint_and_its_hash(
        build_plan: Build) -> None:
    def endpoint_and_hash(attachment: dict[str, object] | None) -> tuple[Endpoint, str]:
        plan = build_plan({"app": {"image": "x", "networks": {"back": attachment}}},
                          networks={"back": {}})
        config = container_config(plan, "app", BASE)
        return config.endpoints[0], config.config_hash

    plain, plain_hash = endpoint_and_hash(None)
    assert plain.hashed() == {
        "network": "shop_back", "aliases": ("app",), "ipv4_address": None}
    made, made_hash = endpoint_and_hash({"link_local_ips": ["169.254.8.8"],
                                         "driver_opts": {"com.example.mtu": 1400}})
    assert (made.link_local_ips, made.driver_opts) == (
        ("169.254.8.8",), (("com.example.mtu", "1400"),))
    assert made_hash != plain_hash


def test_network_config() -> None:
    spec = NetworkSpec(subnet="172.22.0.0/24", gateway="172.22.0.1", mtu=1400, internal=True)
    config = network_config("shop", "back", spec)
    assert config.name == "shop_back"
    assert config.create_kwargs["ipam"]["Config"] == [
        {"Subnet": "172.22.0.0/24", "Gateway": "172.22.0.1"}]
    assert config.create_kwargs["options"] == {"com.docker.network.driver.mtu": "1400"}
    assert config.create_kwargs["internal"] is True
    assert config.create_kwargs["labels"][LABEL_NETWORK] == "back"
    assert config.create_kwargs["labels"][LABEL_HASH] == config.config_hash
    assert network_config("shop", "back", NetworkSpec()).config_hash != config.config_hash
    assert network_config("shop", "back", spec).config_hash == config.config_hash


def test_volume_config() -> None:
    config = volume_config("shop", "pgdata", VolumeSpec(labels={"keep": "yes"}))
    assert config.name == "shop_pgdata"
    assert config.create_kwargs["driver"] == "local"
    assert config.create_kwargs["labels"] == {"keep": "yes", LABEL_PROJECT: "shop",
                                              "ollamatopo.volume": "pgdata"}
