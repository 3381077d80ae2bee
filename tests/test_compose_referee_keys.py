"""Compose v2 as the referee of the engine-level service keys (issue 12): for the project's
own fixture (`tests/fixtures/compose/keys/`: ulimits, sysctls, shm_size, logging, dns,
devices, network_mode, pid, ipc, gpus and reserved devices, memory and CPU keys, links,
volumes_from, label_file, pull_policy, platform, deploy's restart_policy and swarm keys),
`docker compose config` and ollamatopo resolve the same settings; and what `ollamatopo
config` prints, compose reads back into the same settings. The helpers of
tests/test_compose_referee.py find and run compose v2 (no engine needed).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

from ollamatopo.plan._container import ALL_DEVICES, ContainerSettings, DeviceRequest
from ollamatopo.plan._loading import load_plan
from ollamatopo.plan._model import ServiceSpec
from ollamatopo.plan._quantities import parse_bytes
from tests.conftest import ROOT
from tests.test_compose_referee import ENV, FIXTURES, compose_binary, our_model, their_model, theirs

__all__ = ["compose_binary"]  # the session fixture, used by name

KEYS = FIXTURES / "keys" / "compose.yaml"
SIZES = ("mem_limit", "mem_reservation", "memswap_limit", "shm_size")
AS_WRITTEN = ("sysctls", "dns", "dns_search", "dns_opt", "domainname", "privileged",
              "network_mode", "pid", "ipc", "uts", "cgroup", "userns_mode", "cgroup_parent",
              "runtime", "stop_signal", "platform", "cpus", "cpu_shares", "cpuset",
              "pids_limit", "oom_score_adj", "group_add", "tty", "stdin_open", "mac_address",
              "storage_opt", "links", "external_links", "volumes_from", "labels",
              "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "oom_kill_disable",
              "device_cgroup_rules", "cpu_count", "cpu_percent", "isolation")
BLKIO_LISTS = ("weight_device", "device_read_bps", "device_write_bps", "device_read_iops",
               "device_write_iops")
RESTART = {"none": "no", "on-failure": "on-failure", "any": "always"}


def _requests(items: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
    """Device requests as the engine gets them: compose-go's count -1 without count or ids."""
    found = []
    for item in items or []:
        count = item.get("count", None if item.get("device_ids") else ALL_DEVICES)
        found.append((item.get("driver"), ALL_DEVICES if count == "all" else count,
                      tuple(item.get("device_ids") or ()), tuple(item.get("capabilities") or ()),
                      tuple(sorted((item.get("options") or {}).items()))))
    return found


def _our_requests(requests: list[DeviceRequest] | list[Any]) -> list[tuple[Any, ...]]:
    return _requests([request.model_dump(exclude_none=True) for request in requests])


def _restart(spec: dict[str, Any]) -> str:
    """The engine's policy: deploy.restart_policy over restart, as compose v2 maps it."""
    policy = (spec.get("deploy") or {}).get("restart_policy")
    if policy is None:
        return str(spec.get("restart", "no"))
    name = RESTART.get(policy.get("condition", "none"), policy.get("condition"))
    attempts = policy.get("max_attempts")
    return f"{name}:{attempts}" if attempts is not None else str(name)


def _blkio(config: dict[str, Any]) -> dict[str, Any]:
    """blkio_config as numbers: the weight, and (path, weight or rate) per list. compose's
    JSON names a device's fields as compose-go's Go fields (`Path`, `Rate`)."""
    devices = {key: [{name.lower(): value for name, value in item.items()}
                     for item in config.get(key) or []] for key in BLKIO_LISTS}
    found: dict[str, Any] = {key: [(item["path"], int(item.get("weight", item.get("rate", 0))))
                                   for item in items]
                             for key, items in devices.items() if items}
    if config.get("weight") is not None:
        found["weight"] = int(config["weight"])
    return found


def their_keys(document: dict[str, Any]) -> dict[str, Any]:
    services = {}
    for name, spec in document["services"].items():
        resources = (spec.get("deploy") or {}).get("resources") or {}
        kept: dict[str, Any] = {key: spec.get(key) for key in AS_WRITTEN if key in spec}
        kept.update({key: parse_bytes(spec[key]) if spec[key] != "-1" else -1
                     for key in SIZES if key in spec})
        kept["ulimits"] = {key: (value, value) if isinstance(value, int)
                           else (value["soft"], value["hard"])
                           for key, value in (spec.get("ulimits") or {}).items()}
        kept["logging"] = spec.get("logging")
        # compose-go writes these as strings of a number (its UnitBytes).
        kept["mem_swappiness"] = None if "mem_swappiness" not in spec \
            else int(spec["mem_swappiness"])
        kept["blkio"] = _blkio(spec.get("blkio_config") or {})
        kept["devices"] = [(d["source"], d["target"], d.get("permissions", "rwm"))
                           for d in spec.get("devices") or []]
        kept["gpus"] = _requests(spec.get("gpus"))
        kept["reserved"] = _requests((resources.get("reservations") or {}).get("devices"))
        kept["limits_pids"] = (resources.get("limits") or {}).get("pids")
        kept["pull_policy"] = spec.get("pull_policy", "missing")
        kept["restart"] = _restart(spec)
        services[name] = {key: value for key, value in kept.items()
                          if value not in ({}, [], None)}
    return services


def our_keys(path: Path) -> dict[str, Any]:
    plan = load_plan(path, environ={}).plan
    services = {}
    for name, spec in plan.services.items():
        written = spec.model_dump(include=set(AS_WRITTEN) | set(SIZES), exclude_defaults=True)
        kept: dict[str, Any] = {**written, "labels": dict(spec.labels)}
        kept["ulimits"] = {key: (limit.soft, limit.hard) for key, limit in spec.ulimits.items()}
        kept["logging"] = None if spec.logging is None else spec.logging.model_dump(
            exclude_defaults=True)
        kept["mem_swappiness"] = spec.mem_swappiness
        kept["blkio"] = _blkio(spec.blkio_config.model_dump() if spec.blkio_config else {})
        kept["devices"] = [(d.source, d.target, d.permissions) for d in spec.devices]
        kept["gpus"] = _our_requests(spec.gpus)
        kept["reserved"] = _our_requests(spec.deploy.resources.reservations.devices or [])
        kept["limits_pids"] = spec.deploy.resources.limits.pids
        kept["pull_policy"] = spec.pull_policy or "missing"
        kept["restart"] = spec.restart
        services[name] = {key: value for key, value in kept.items()
                          if value not in ({}, [], None)}
    return services


def _general(path: Path, document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The referee's general model of both (images, mounts, dependencies with their
    conditions...), without what this file compares itself: compose's deploy devices and
    pids, the restart policy, and the networks of a service with a network_mode."""
    stripped = copy.deepcopy(document)
    for spec in stripped["services"].values():
        resources = (spec.get("deploy") or {}).get("resources") or {}
        (resources.get("reservations") or {}).pop("devices", None)
        (resources.get("limits") or {}).pop("pids", None)
    ours, theirs_ = our_model(path, {}), their_model(stripped)
    plan = load_plan(path, environ={}).plan
    for name, spec in plan.services.items():
        for model in (ours, theirs_):
            model["services"][name].pop("restart")
            if spec.network_mode is not None:
                model["services"][name].pop("networks")
        for kind in ("limits", "reservations"):
            ours["services"][name][kind].pop("devices", None)
            ours["services"][name][kind].pop("pids", None)
    return ours, theirs_


def test_the_service_keys_resolve_as_compose_resolves_them(compose_binary: Path) -> None:
    document = theirs(compose_binary, KEYS, {})
    assert our_keys(KEYS) == their_keys(document)
    ours, theirs_ = _general(KEYS, document)
    assert ours == theirs_  # and images, dependencies (network_mode, links...) the same


def test_every_key_of_the_settings_is_in_the_fixture() -> None:
    """The fixture covers each key ollamatopo carries out for the engine."""
    written = set().union(*(set(spec) for spec in
                            __import__("yaml").safe_load(KEYS.read_text())["services"].values()))
    assert set(ContainerSettings.model_fields) - written == set()
    assert set(ContainerSettings.model_fields) < set(ServiceSpec.model_fields)


def test_config_output_means_the_same_to_compose(compose_binary: Path, tmp_path: Path) -> None:
    """`ollamatopo config` writes the keys so that compose reads the same settings (the
    swarm-only keys, which neither carries out on one engine, are left out)."""
    environment = {**ENV, "PYTHONPATH": str(ROOT), "OLLAMATOPO_STATE_DIR": str(tmp_path / "s")}
    done = subprocess.run([sys.executable, "-m", "ollamatopo", "config", "--plan", str(KEYS)],
                          capture_output=True, text=True, env=environment, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    converted = tmp_path / "compose.yaml"
    converted.write_text(done.stdout, encoding="utf-8")
    again = theirs(compose_binary, converted, {})
    assert their_keys(again) == their_keys(theirs(compose_binary, KEYS, {}))
    assert our_keys(converted) == our_keys(KEYS)
