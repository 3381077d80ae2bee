"""A service's container settings (plan/_container's `ContainerSettings`) as Engine API
create parameters, the way compose v2 maps them (`pkg/compose/create.go`).

Each key goes into the payload only when the plan uses it: a container made before these
settings existed keeps its config hash. Another service named by `service:NAME` (network,
pid and ipc namespaces), `volumes_from` or `links` is its container's name: the engine
looks the name up when it creates the container (and keeps the id it found), which is why
such a container is created after the other one and made again when that one is
(see `ContainerConfig.joins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ollamatopo.plan._container import (
    CONTAINER_PREFIX,
    SERVICE_PREFIX,
    DeviceRequest,
)
from ollamatopo.plan._model import Plan, ServiceSpec

ContainerOf = Callable[[str], str]  # a service's container name


def host_config(plan: Plan, spec: ServiceSpec, container_of: ContainerOf) -> dict[str, Any]:
    """The HostConfig keys of the settings the service uses. deploy.resources, where it
    sets the same value, is applied over these (it wins in compose too)."""
    limits = spec.deploy.resources.limits
    pids = limits.pids if limits.pids is not None else spec.pids_limit
    config: dict[str, Any] = {
        "Memory": spec.mem_limit,
        "MemoryReservation": spec.mem_reservation,
        "MemorySwap": spec.memswap_limit,
        "NanoCpus": None if spec.cpus is None else round(spec.cpus * 1e9),
        "CpuShares": spec.cpu_shares,
        "CpusetCpus": spec.cpuset,
        "CpuPeriod": spec.cpu_period,
        "CpuCount": spec.cpu_count,
        "CpuPercent": spec.cpu_percent,
        "CpuQuota": spec.cpu_quota,
        "CpuRealtimePeriod": spec.cpu_rt_period,
        "CpuRealtimeRuntime": spec.cpu_rt_runtime,
        "MemorySwappiness": spec.mem_swappiness,
        "OomKillDisable": spec.oom_kill_disable or None,
        **blkio(spec),
        "PidsLimit": pids,
        "OomScoreAdj": spec.oom_score_adj,
        "ShmSize": spec.shm_size,
        "Ulimits": [{"Name": name, "Soft": limit.soft, "Hard": limit.hard}
                    for name, limit in sorted(spec.ulimits.items())] or None,
        "StorageOpt": dict(spec.storage_opt) or None,
        "Sysctls": dict(spec.sysctls) or None,
        "Privileged": spec.privileged or None,
        "PidMode": _mode(spec.pid, container_of),
        "IpcMode": _mode(spec.ipc, container_of),
        "UTSMode": spec.uts,
        "CgroupnsMode": spec.cgroup,
        "UsernsMode": spec.userns_mode,
        "CgroupParent": spec.cgroup_parent,
        "Runtime": spec.runtime,
        "Isolation": spec.isolation,
        "Devices": [{"PathOnHost": device.source, "PathInContainer": device.target,
                     "CgroupPermissions": device.permissions}
                    for device in spec.devices] or None,
        "DeviceCgroupRules": list(spec.device_cgroup_rules) or None,
        "DeviceRequests": device_requests(spec) or None,
        "GroupAdd": list(spec.group_add) or None,
        "Dns": list(spec.dns) or None,
        "DnsSearch": list(spec.dns_search) or None,
        "DnsOptions": list(spec.dns_opt) or None,
        "LogConfig": None if spec.logging is None else {
            "Type": spec.logging.driver or "", "Config": dict(spec.logging.options)},
        "VolumesFrom": [_volumes_from(item, container_of) for item in spec.volumes_from]
        or None,
        "Links": links(spec, container_of) or None,
    }
    return {key: value for key, value in config.items() if value is not None}


def blkio(spec: ServiceSpec) -> dict[str, Any]:
    """blkio_config as the engine's Blkio* keys, the ones it sets."""
    config = spec.blkio_config
    if config is None:
        return {}
    throttles = {"BlkioDeviceReadBps": config.device_read_bps,
                 "BlkioDeviceWriteBps": config.device_write_bps,
                 "BlkioDeviceReadIOps": config.device_read_iops,
                 "BlkioDeviceWriteIOps": config.device_write_iops}
    found: dict[str, Any] = {key: [{"Path": device.path, "Rate": device.rate}
                                   for device in devices]
                             for key, devices in throttles.items() if devices}
    if config.weight is not None:
        found["BlkioWeight"] = config.weight
    if config.weight_device:
        found["BlkioWeightDevice"] = [{"Path": device.path, "Weight": device.weight}
                                      for device in config.weight_device]
    return found


def create_kwargs(spec: ServiceSpec) -> dict[str, Any]:
    """The docker SDK's create_container arguments of the settings the service uses."""
    kwargs: dict[str, Any] = {
        "domainname": spec.domainname,
        "mac_address": spec.mac_address,
        "stop_signal": spec.stop_signal,
        "tty": spec.tty or None,
        "platform": spec.platform,
    }
    if spec.stdin_open:
        # Detached, as compose creates it for `up`: stdin open, nothing attached, and not
        # closed after a first client detaches (the SDK's attached form sets StdinOnce).
        kwargs.update(stdin_open=True, detach=True)
    return {key: value for key, value in kwargs.items() if value is not None}


def network_mode(spec: ServiceSpec, container_of: ContainerOf) -> str | None:
    """The engine's NetworkMode of `network_mode` (None: the plan's networks)."""
    return _mode(spec.network_mode, container_of)


def device_requests(spec: ServiceSpec) -> list[dict[str, Any]]:
    """`gpus:` (compose adds the capability `gpu`) and deploy.resources.reservations.devices,
    as the Engine API's DeviceRequests."""
    gpus = [_request(request, [*request.capabilities, "gpu"]) for request in spec.gpus]
    reserved = [_request(request, list(request.capabilities))
                for request in spec.deploy.resources.reservations.devices or ()]
    return gpus + reserved


def _request(request: DeviceRequest, capabilities: list[str]) -> dict[str, Any]:
    return {"Driver": request.driver or "", "Count": request.engine_count,
            "DeviceIDs": list(request.device_ids) or None, "Capabilities": [capabilities],
            "Options": dict(request.options)}


def links(spec: ServiceSpec, container_of: ContainerOf) -> list[str]:
    """`CONTAINER:ALIAS` for each link: a service's container by its name, under the link's
    alias (the service's name without one); external links as written."""
    found = []
    for link in spec.links:
        service, _, alias = link.partition(":")
        found.append(f"{container_of(service)}:{alias or service}")
    for link in spec.external_links:
        container, _, alias = link.partition(":")
        found.append(f"{container}:{alias or container}")
    return found


def _volumes_from(item: str, container_of: ContainerOf) -> str:
    """`SERVICE[:ro|rw]` as its container's name; `container:NAME[:ro|rw]` as NAME."""
    if item.startswith(CONTAINER_PREFIX):
        return item.removeprefix(CONTAINER_PREFIX)
    service, sep, mode = item.partition(":")
    return f"{container_of(service)}{sep}{mode}"


def _mode(mode: str | None, container_of: ContainerOf) -> str | None:
    """A namespace mode; `service:NAME` is that service's container (`container:NAME`)."""
    if mode is not None and mode.startswith(SERVICE_PREFIX):
        return CONTAINER_PREFIX + container_of(mode.removeprefix(SERVICE_PREFIX))
    return mode
