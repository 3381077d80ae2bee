"""What the engine is asked to create for each part of a plan, and its config hash.

Pure translation of plan specs into Engine API payloads (names, labels, host
config, endpoints). The hash is taken over exactly what is sent, so anything that
would change the container changes the hash and makes `up` recreate it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamatopo.engine import _container_settings as settings
from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._model import (
    HealthcheckSpec,
    NetworkSpec,
    Plan,
    ServiceSpec,
    VolumeMount,
    VolumeSpec,
)

LABEL_PROJECT = "ollamatopo.project"
LABEL_SERVICE = "ollamatopo.service"
LABEL_HASH = "ollamatopo.config-hash"
LABEL_DEPENDS = "ollamatopo.depends-on"
LABEL_NETWORK = "ollamatopo.network"
LABEL_VOLUME = "ollamatopo.volume"
LABEL_RUN = "ollamatopo.run"  # the `up` that created it; not part of the hash

DEFAULT_NETWORK = "default"
CPU_SHARES_PER_CPU = 1024


def container_name(project: str, service: str) -> str:
    return f"{project}-{service}"


def network_name(project: str, network: str) -> str:
    return f"{project}_{network}"


def volume_name(project: str, volume: str) -> str:
    return f"{project}_{volume}"


def named(spec: NetworkSpec | VolumeSpec | None, prefixed: str) -> str:
    """The engine's name of a network or volume: compose's `name:` as written, else the
    project-prefixed one."""
    return spec.name if spec is not None and spec.name else prefixed


def plan_network_name(plan: Plan, key: str) -> str:
    return named(plan.networks.get(key), network_name(plan.project, key))


def plan_volume_name(plan: Plan, key: str) -> str:
    return named(plan.volumes.get(key), volume_name(plan.project, key))


def config_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Endpoint:
    network: str  # engine name
    aliases: tuple[str, ...]
    ipv4_address: str | None = None
    link_local_ips: tuple[str, ...] = ()
    driver_opts: tuple[tuple[str, str], ...] = ()
    ipv6_address: str | None = None

    def hashed(self) -> dict[str, Any]:
        """What the container's hash takes of it: the keys added later only when set, so
        that an older container's hash stays."""
        return {"network": self.network, "aliases": self.aliases,
                "ipv4_address": self.ipv4_address,
                **({"link_local_ips": self.link_local_ips} if self.link_local_ips else {}),
                **({"driver_opts": self.driver_opts} if self.driver_opts else {}),
                **({"ipv6_address": self.ipv6_address} if self.ipv6_address else {})}


@dataclass(frozen=True)
class FileCopy:
    """A file copied into a container after its create, before its start: a compose
    secret or config from the environment or inline, as compose v2 copies it (a tar at /;
    the owner kept only when a uid or gid is given, else root)."""

    path: str
    content: bytes = field(repr=False)
    mode: int
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class UnmadeFolder:
    """A bind made through the engine's mount API, which refuses a missing host folder
    (compose v2 makes one only through the engine's binds): what to say when it does."""

    source: str  # the engine's path
    target: str
    fix: str


@dataclass(frozen=True)
class ContainerConfig:
    """Everything needed to create one service's container."""

    service: str
    name: str
    image: str
    create_kwargs: dict[str, Any]
    endpoints: tuple[Endpoint, ...]  # the first is given at create, the rest connected after
    labels: dict[str, str]
    config_hash: str
    copies: tuple[FileCopy, ...] = field(default=(), repr=False)  # between create and start
    # Services whose containers its create names (network_mode service:, volumes_from,
    # links), and of those the ones whose container the engine pins by id (see reconcile).
    joins: tuple[str, ...] = ()
    holds: tuple[str, ...] = ()
    pull_policy: str = "missing"  # compose's: missing, never, always, daily, every_12h...
    unmade_folders: tuple[UnmadeFolder, ...] = field(default=(), repr=False)
    # Engine names of the named volumes it mounts (through the mount API or, relabelled,
    # through the engine's binds): each is made before the container.
    volumes: tuple[str, ...] = ()

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(endpoint.network for endpoint in self.endpoints)


@dataclass(frozen=True)
class NetworkConfig:
    key: str  # name in the plan
    name: str
    create_kwargs: dict[str, Any]
    config_hash: str
    external: bool = False  # made elsewhere: looked up, never made or removed


@dataclass(frozen=True)
class VolumeConfig:
    key: str
    name: str
    create_kwargs: dict[str, Any] = field(default_factory=dict)
    external: bool = False


def service_networks(spec: ServiceSpec) -> list[str]:
    """The plan networks a service joins, in compose's order: the highest `priority`
    first, ties by name (compose-go's NetworksByPriority), not as the file lists them;
    none declared means the project's default one."""
    return sorted(spec.networks, key=lambda key: (-spec.networks[key].priority, key)) \
        or [DEFAULT_NETWORK]


def first_network(plan: Plan, service: str) -> str:
    """The engine name of the network a service's container is created on (a probe of a
    port that is not published goes to the container's address there)."""
    spec = plan.services[service]
    if spec.network_mode is not None:  # the engine's own network (host, bridge) or none
        return spec.network_mode
    return plan_network_name(plan, service_networks(spec)[0])


def plan_networks(plan: Plan) -> dict[str, NetworkSpec]:
    networks = dict(plan.networks)
    if any(not spec.networks and spec.network_mode is None for spec in plan.services.values()):
        networks.setdefault(DEFAULT_NETWORK, NetworkSpec())
    return networks


def network_config(project: str, key: str, spec: NetworkSpec) -> NetworkConfig:
    name = named(spec, network_name(project, key))
    if spec.external:
        return NetworkConfig(key, name, {}, "", external=True)
    options = dict(spec.driver_opts)
    if spec.mtu is not None:
        options["com.docker.network.driver.mtu"] = str(spec.mtu)
    pools = [{"Subnet": subnet, **({"Gateway": gateway} if gateway else {})}
             for subnet, gateway in spec.pools()]
    ipam = {"Driver": "default", "Config": pools, "Options": {}} if pools else None
    kwargs: dict[str, Any] = {
        "driver": spec.driver,
        "options": options,
        "ipam": ipam,
        "internal": spec.internal,
        "labels": dict(spec.labels),
    }
    if spec.attachable:  # only when set: an old network's hash stays
        kwargs["attachable"] = True
    if spec.enable_ipv6:  # the same
        kwargs["enable_ipv6"] = True
    digest = config_hash(kwargs)
    kwargs["labels"] = {**spec.labels, LABEL_PROJECT: project, LABEL_NETWORK: key,
                        LABEL_HASH: digest}
    return NetworkConfig(key, name, kwargs, digest)


def volume_config(project: str, key: str, spec: VolumeSpec) -> VolumeConfig:
    name = named(spec, volume_name(project, key))
    if spec.external:
        return VolumeConfig(key, name, external=True)
    labels = {**spec.labels, LABEL_PROJECT: project, LABEL_VOLUME: key}
    kwargs = {"driver": spec.driver, "driver_opts": dict(spec.driver_opts), "labels": labels}
    return VolumeConfig(key, name, kwargs)


def _endpoint(plan: Plan, service: str, key: str) -> Endpoint:
    attachment = plan.services[service].networks.get(key)
    if attachment is None:  # the project's default network
        return Endpoint(plan_network_name(plan, key), (service,))
    return Endpoint(plan_network_name(plan, key), (service, *attachment.aliases),
                    attachment.ipv4_address, tuple(attachment.link_local_ips),
                    tuple(sorted(attachment.driver_opts.items())), attachment.ipv6_address)


def container_config(plan: Plan, service: str, base_dir: Path) -> ContainerConfig:
    """The create payload of one service: compose's keys mapped to the Engine API."""
    spec = plan.services[service]
    project = plan.project
    def container_of(name: str) -> str:
        return plan.services[name].container_name or container_name(project, name)

    host_config = {**settings.host_config(plan, spec, container_of),
                   **_host_config(plan, spec, base_dir)}
    mode = settings.network_mode(spec, container_of)
    endpoints = () if mode is not None else tuple(
        _endpoint(plan, service, key) for key in service_networks(spec))
    host_config["NetworkMode"] = mode or endpoints[0].network
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "environment": [f"{key}={value}" for key, value in sorted(spec.environment.items())],
        "hostname": spec.hostname,
        "user": spec.user,
        "working_dir": spec.working_dir,
        "ports": [(port.container_port, port.protocol) for port in spec.ports]
        + [(int(port.split("/")[0]), port.split("/")[1]) for port in spec.expose],
        "stop_timeout": max(1, round(spec.stop_grace_period)),
        "host_config": host_config,
    }
    if spec.healthcheck is not None:  # only when set: an old container's hash stays
        kwargs["healthcheck"] = healthcheck_payload(spec.healthcheck)
    kwargs.update(settings.create_kwargs(spec))  # also only what is set
    granted = list(file_objects.granted(plan, spec))
    host_config["Mounts"] = [*host_config.get("Mounts", ()),
                             *(_bound(item, base_dir) for item in granted if item.bound)]
    hashed: dict[str, Any] = {"kwargs": kwargs, "labels": spec.labels,
                              "endpoints": [e.hashed() for e in endpoints]}
    if granted:  # only when used: an old container's hash stays
        hashed["files"] = [[item.kind, item.grant.model_dump(), item.spec.digest]
                           for item in granted]  # a digest of each content, never a value
    digest = config_hash(hashed)
    dependencies = ",".join(sorted(plan.dependencies(service)))
    labels = {**spec.labels, LABEL_PROJECT: project, LABEL_SERVICE: service,
              LABEL_HASH: digest, LABEL_DEPENDS: dependencies}
    copies = tuple(_copy(item) for item in granted if not item.bound and item.spec.value)
    return ContainerConfig(service, container_of(service), spec.image, kwargs, endpoints,
                           labels, digest, copies, tuple(spec.service_references()),
                           tuple(spec.held_services()), spec.pull_policy or "missing",
                           _unmade_folders(spec, base_dir),
                           tuple(dict.fromkeys(plan_volume_name(plan, mount.source)
                                               for mount in spec.volumes if mount.named)))


# The folder of a bind that has a propagation: compose asks the mount API to make it.
PROPAGATED_FIX = ("the engine's mount API, which a bind with a propagation needs, makes a "
                  "missing folder only from Engine API 1.42 (Docker 23), as compose asks "
                  "it to: create the folder on the engine's host, or drop the propagation")
UNMADE_FIX = ("a long-syntax bind with `bind:` but without create_host_path: true goes "
              "through the engine's mount API, which makes no missing folder (compose v2 "
              "does the same): create the folder on the engine's host, or set "
              "bind.create_host_path: true (the short syntax sets it)")


def _unmade_folders(spec: ServiceSpec, base_dir: Path) -> tuple[UnmadeFolder, ...]:
    return tuple(UnmadeFolder(str((base_dir / Path(mount.source).expanduser()).resolve()),
                              mount.target,
                              PROPAGATED_FIX if mount.create_host_path else UNMADE_FIX)
                 for mount in spec.volumes if not mount.named and not mount.legacy_bind)


_MISSING_SOURCE = re.compile(r"bind source path does not exist: (?P<path>\S+)")


def missing_folder(config: ContainerConfig, refusal: str) -> str | None:
    """The engine's refusal of a bind whose host folder is missing, said with the
    service's mount, the key that decides it and the fix; None for any other refusal."""
    match = _MISSING_SOURCE.search(refusal)
    found = next((folder for folder in config.unmade_folders
                  if match is not None and folder.source == match["path"]), None)
    if found is None:
        return None
    return (f"the host folder {found.source} of its bind mount at {found.target} "
            f"(services.{config.service}.volumes) does not exist: {found.fix}")


def _bound(item: file_objects.Granted, base_dir: Path) -> dict[str, Any]:
    """A secret or config from a file: bind-mounted read-only, as compose mounts it."""
    return {"Type": "bind", "Source": str(file_objects.source_path(item.spec, base_dir)),
            "Target": item.grant.target, "ReadOnly": True}


def _copy(item: file_objects.Granted) -> FileCopy:
    grant = item.grant
    return FileCopy(grant.target, file_objects.encoded(item.spec.value or ""), item.mode,
                    None if grant.uid is None else int(grant.uid),
                    None if grant.gid is None else int(grant.gid))


def healthcheck_payload(check: HealthcheckSpec) -> dict[str, Any]:
    """The Engine API's Healthcheck: durations in nanoseconds, absent ones the engine's.
    No start_interval: the SDK's Healthcheck type drops it, and on one engine ollamatopo's
    own probe, not this check, decides readiness."""
    payload: dict[str, Any] = {"test": list(check.test)}
    for key, value in (("interval", check.interval), ("timeout", check.timeout),
                       ("start_period", check.start_period)):
        if value is not None:
            payload[key] = int(value * 1e9)
    if check.retries is not None:
        payload["retries"] = check.retries
    return payload


def _host_config(plan: Plan, spec: ServiceSpec, base_dir: Path) -> dict[str, Any]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in spec.ports:
        bindings.setdefault(port.container_key, []).append(
            {"HostIp": port.host_ip, "HostPort": port.published})  # a range as written
    mounts: list[dict[str, Any]] = []
    binds: list[str] = []
    for mount in spec.volumes:
        # a named volume by its engine name (the project's, or the external one)
        source = (plan_volume_name(plan, mount.source) if mount.named
                  else str((base_dir / Path(mount.source).expanduser()).resolve()))
        if mount.legacy_bind:
            binds.append(_bind_string(source, mount))
            continue
        mounts.append({"Type": "volume" if mount.named else "bind", "Source": source,
                       "Target": mount.target, "ReadOnly": mount.read_only})
        # only when set: an old container's hash stays
        if mount.propagation:
            # compose asks the mount API to make a missing folder (API 1.42); an older
            # engine ignores the option and refuses the folder, as it does compose's
            mounts[-1]["BindOptions"] = {"Propagation": mount.propagation,
                                         **({"CreateMountpoint": True}
                                            if mount.create_host_path else {})}
        if mount.nocopy:
            mounts[-1]["VolumeOptions"] = {"NoCopy": True}
    limits, reservations = spec.deploy.resources.limits, spec.deploy.resources.reservations
    config: dict[str, Any] = {
        "PortBindings": bindings,
        "Binds": binds or None,  # only when used: an old container's hash stays
        "Mounts": mounts,
        "RestartPolicy": restart_policy(spec.restart),
        "CapAdd": list(spec.cap_add) or None,
        "CapDrop": list(spec.cap_drop) or None,
        "SecurityOpt": list(spec.security_opt) or None,
        "ReadonlyRootfs": spec.read_only,
        "Init": spec.init or None,
        "Tmpfs": dict(_tmpfs(entry) for entry in spec.tmpfs) or None,
        "ExtraHosts": list(spec.extra_hosts) or None,
    }
    if limits.cpus is not None:
        config["NanoCpus"] = round(limits.cpus * 1e9)
    if limits.memory is not None:
        config["Memory"] = limits.memory
    if reservations.memory is not None:
        config["MemoryReservation"] = reservations.memory
    if reservations.cpus is not None and spec.cpu_shares is None:
        # One engine has no CPU reservation; the reservation becomes the CPU weight.
        config["CpuShares"] = max(2, int(reservations.cpus * CPU_SHARES_PER_CPU))
    return {key: value for key, value in config.items() if value is not None}


def _bind_string(source: str, mount: VolumeMount) -> str:
    """The engine's legacy bind `source:target:rw|ro[,z|Z]`, as compose v2 writes it (a
    named volume's source is its engine name): the engine makes a bind's missing source
    folder when the container starts (the mount API refuses it) and relabels the content
    for SELinux (the mount API has no relabel)."""
    options = ["ro" if mount.read_only else "rw", *([mount.selinux] if mount.selinux else [])]
    return f"{source}:{mount.target}:{','.join(options)}"


def _tmpfs(entry: str) -> tuple[str, str]:
    path, _, options = entry.partition(":")
    return path, options


def restart_policy(policy: str) -> dict[str, Any]:
    """The engine's form of a compose restart policy (`no`, `always`, `on-failure:3`...)."""
    name, _, count = policy.partition(":")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}
