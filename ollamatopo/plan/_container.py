"""What the engine applies to a service's container as written: limits, kernel settings,
namespaces, devices, logging, DNS, the image's platform and pull policy.

`ContainerSettings` holds compose's service keys of that kind, under compose's names and
in compose's shapes; `ServiceSpec` inherits them, so a plan writes them where compose
does (`services.x.ulimits`) and a problem names that path. They change nothing in how
ollamatopo schedules a service, with one exception: a service that uses another one's
container (`network_mode`, `pid` or `ipc` of `service:NAME`, `volumes_from`, `links`)
depends on it, as compose-go makes it depend (`service_references`).

Compose v2 (compose-go's loader and `pkg/compose/create.go`) is the reference for each
key's forms and for how it maps to the Engine API (see engine/_payloads). Pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ollamatopo.plan._quantities import parse_bytes, parse_cpus

SERVICE_PREFIX, CONTAINER_PREFIX = "service:", "container:"
# compose-go's pull policies; `if_not_present` is its old name for `missing`.
PULL_POLICY_RE = re.compile(r"always|never|missing|if_not_present|build|refresh|daily|weekly"
                            r"|every_(?:[0-9]+[wdhms])+")
PULL_NOT_YET = ("build", "refresh")
ALL_DEVICES = -1  # the Engine API's DeviceRequest count for "every matching device"
# Anchored: pydantic's `pattern` searches, it does not match the whole value.
PLATFORM_RE = re.compile(r"^[a-z0-9_-]+(?:/[a-z0-9_-]+(?:/[a-z0-9_-]+)?)?$")
SIGNAL_RE = re.compile(r"^(?:(?:SIG)?[A-Z][A-Z0-9+-]*|[0-9]{1,2})$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
CPUSET_RE = re.compile(r"^[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*$")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# The engine's device cgroup rule (daemon/oci_linux.go): type, major:minor, access.
CGROUP_RULE_RE = re.compile(r"[abc] (?:[0-9]+|\*):(?:[0-9]+|\*) [rwm]{1,3}")
# Namespace modes the engine takes besides another container's (Docker 20.10).
NAMESPACE_MODES = {"network_mode": ("host", "none", "bridge"), "pid": ("host",),
                   "ipc": ("host", "private", "shareable", "none")}


def scalar_text(value: object) -> object:
    """Compose stringifies numbers and booleans where it wants text (labels, sysctls,
    options)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _text_map(value: object) -> object:
    """A map, or compose's list form `[key=value]`; values as text."""
    if isinstance(value, list):
        pairs: dict[str, object] = {}
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep:
                raise ValueError(f"{item!r} has no value: write key=value")
            pairs[key] = text
        return pairs
    if isinstance(value, dict):
        return {key: scalar_text(item) for key, item in value.items()}
    return value


def _listed(value: object) -> object:
    """One item or a list of them (`dns: 9.9.9.9`); numbers as text (`group_add: [1000]`)."""
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [scalar_text(item) for item in items]


TextMap = Annotated[dict[str, str], BeforeValidator(_text_map)]
TextList = Annotated[list[str], BeforeValidator(_listed)]
Bytes = Annotated[int, BeforeValidator(parse_bytes)]


def _swap(value: object) -> object:
    """memswap_limit: a size, or -1 for unlimited swap (as compose and the engine read it)."""
    return -1 if value in (-1, "-1") else parse_bytes(value)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Ulimit(_Settings):
    """One resource limit; -1 is unlimited. compose writes `nofile: 1024` for soft = hard."""

    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)

    @model_validator(mode="before")
    @classmethod
    def _single(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"soft": value, "hard": value}
        return value

    @model_validator(mode="after")
    def _soft_within_hard(self) -> Ulimit:
        if self.hard != -1 and (self.soft == -1 or self.soft > self.hard):
            raise ValueError(f"soft limit {self.soft} is above hard limit {self.hard}")
        return self


class LoggingSpec(_Settings):
    driver: str | None = None  # None: the engine's default driver
    options: TextMap = {}


class DeviceMapping(_Settings):
    """A host device in the container: compose's `source:target:permissions`."""

    source: str = Field(pattern="^/")
    target: str = Field(pattern="^/")
    permissions: str = "rwm"

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: object) -> object:
        """compose-go's short form: `/dev/x`, `/dev/x:/dev/y`, `/dev/x:/dev/y:rw`."""
        if not isinstance(value, str):
            return value
        parts = value.split(":")
        if len(parts) > 3:
            raise ValueError(f"{value!r} is not a device: use /dev/host[:/dev/container[:rwm]]")
        return {"source": parts[0], "target": parts[1] if len(parts) > 1 else parts[0],
                **({"permissions": parts[2]} if len(parts) == 3 else {})}

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: str) -> str:
        if not value or set(value) - set("rwm") or len(set(value)) != len(value):
            raise ValueError(f"{value!r} is not a device's permissions: use r, w and m, "
                             "for example rwm or r")
        return value

    def __str__(self) -> str:
        return f"{self.source}:{self.target}:{self.permissions}"


class DeviceRequest(_Settings):
    """Devices from a driver (GPUs): `gpus:` and `deploy.resources.reservations.devices`,
    the Engine API's DeviceRequest. Without `count` or `device_ids`, every matching device
    (compose-go writes count -1)."""

    capabilities: list[str] = []
    count: int | None = Field(default=None, ge=ALL_DEVICES)
    device_ids: list[str] = []
    driver: str | None = None
    options: TextMap = {}

    @field_validator("count", mode="before")
    @classmethod
    def _all(cls, value: object) -> object:
        return ALL_DEVICES if value == "all" else value

    @model_validator(mode="after")
    def _count_or_ids(self) -> DeviceRequest:
        if self.count is not None and self.device_ids:
            raise ValueError("count and device_ids exclude each other (compose refuses both)")
        if self.count == 0:
            raise ValueError("count 0 asks for no device: give a number, all, or device_ids")
        return self

    @property
    def engine_count(self) -> int:
        return self.count if self.count is not None else 0 if self.device_ids else ALL_DEVICES


class WeightDevice(_Settings):
    """One device's relative block IO weight (blkio_config.weight_device)."""

    path: str = Field(pattern="^/")
    weight: int = Field(ge=10, le=1000)


class ThrottleDevice(_Settings):
    """One device's rate limit, bytes or operations per second; compose-go reads both as a
    size (`10mb`, and `1k` is 1024 operations), so this does too."""

    path: str = Field(pattern="^/")
    rate: Bytes


class BlkioConfig(_Settings):
    """compose's `blkio_config`: the engine's Blkio* settings (cgroup blkio controller)."""

    weight: int | None = Field(default=None, ge=10, le=1000)
    weight_device: list[WeightDevice] = []
    device_read_bps: list[ThrottleDevice] = []
    device_write_bps: list[ThrottleDevice] = []
    device_read_iops: list[ThrottleDevice] = []
    device_write_iops: list[ThrottleDevice] = []


def _gpus(value: object) -> object:
    """`gpus: all` is every GPU (compose-go: one request of count -1)."""
    return [{"count": "all"}] if value == "all" else value


class ContainerSettings(_Settings):
    """compose's service keys that the engine applies to the container as they are."""

    # Resources (deploy.resources.limits/reservations win where both are set, as in compose)
    mem_limit: Bytes | None = None
    mem_reservation: Bytes | None = None
    memswap_limit: Annotated[int, BeforeValidator(_swap)] | None = None
    cpus: Annotated[float, BeforeValidator(parse_cpus)] | None = None
    cpu_shares: int | None = Field(default=None, ge=0, le=262144)
    cpuset: str | None = Field(default=None, pattern=CPUSET_RE.pattern)
    # The CFS bandwidth in microseconds, within the engine's own bounds (1 ms to 1 s; a
    # quota of at least 1 ms, or -1 for none), so that a bad value is refused at `plan`.
    cpu_period: int | None = Field(default=None, ge=1000, le=1_000_000)
    cpu_quota: int | None = None
    cpu_rt_period: int | None = Field(default=None, ge=0)
    cpu_rt_runtime: int | None = Field(default=None, ge=-1)
    mem_swappiness: int | None = Field(default=None, ge=0, le=100)
    # Windows containers' CPU keys: a Linux engine drops cpu_percent (with a warning, which
    # `up` logs) and keeps cpu_count without effect (the plan warns: _compose._service).
    cpu_count: int | None = Field(default=None, ge=0)
    cpu_percent: int | None = Field(default=None, ge=0, le=100)
    oom_kill_disable: bool = False
    blkio_config: BlkioConfig | None = None
    pids_limit: int | None = Field(default=None, ge=-1)
    oom_score_adj: int | None = Field(default=None, ge=-1000, le=1000)
    shm_size: Bytes | None = None
    ulimits: dict[str, Ulimit] = {}
    storage_opt: TextMap = {}
    # Kernel, namespaces, devices
    sysctls: TextMap = {}
    privileged: bool = False
    network_mode: str | None = None
    pid: str | None = None
    ipc: str | None = None
    uts: str | None = Field(default=None, pattern="^host$")
    cgroup: str | None = Field(default=None, pattern="^(host|private)$")
    userns_mode: str | None = Field(default=None, pattern="^host$")
    cgroup_parent: str | None = None
    runtime: str | None = Field(default=None, pattern=NAME_RE.pattern)
    isolation: str | None = None  # a Linux engine takes `default` only, and says so
    devices: list[DeviceMapping] = []
    device_cgroup_rules: TextList = []
    gpus: Annotated[list[DeviceRequest], BeforeValidator(_gpus)] = []
    group_add: TextList = []
    # Names and DNS
    domainname: str | None = None
    mac_address: str | None = Field(default=None, pattern=MAC_RE.pattern)
    dns: TextList = []
    dns_search: TextList = []
    dns_opt: TextList = []
    links: TextList = []
    external_links: TextList = []
    volumes_from: TextList = []
    # Process and terminal
    stop_signal: str | None = Field(default=None, pattern=SIGNAL_RE.pattern)
    tty: bool = False
    stdin_open: bool = False
    logging: LoggingSpec | None = None
    label_file: TextList = []  # read by the loader into `labels`
    # The image
    platform: str | None = Field(default=None, pattern=PLATFORM_RE.pattern)
    pull_policy: str | None = None  # None: missing (pulled when not on the engine)

    @field_validator("network_mode", "pid", "ipc")
    @classmethod
    def _namespace(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The engine's own modes, another container's (`container:NAME`), or another
        service's (`service:NAME`)."""
        modes = NAMESPACE_MODES[str(info.field_name)]
        kind, sep, name = (value or "").partition(":")
        if value is None or value in modes or (
                sep and kind in ("service", "container") and NAME_RE.fullmatch(name)):
            return value
        hint = " (the plan's networks go under networks)" if info.field_name == "network_mode" \
            else ""
        raise ValueError(f"{value!r} is not a {info.field_name}: use {', '.join(modes)}, "
                         f"service:NAME or container:NAME{hint}")

    @field_validator("cpu_quota")
    @classmethod
    def _quota(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and value < 1000:
            raise ValueError(f"{value} is below the engine's smallest CPU quota: give at least "
                             "1000 (microseconds, 1 ms per period), or -1 for none")
        return value

    @model_validator(mode="after")
    def _realtime_within_period(self) -> ContainerSettings:
        if self.cpu_rt_runtime not in (None, -1) and self.cpu_rt_period is not None \
                and self.cpu_rt_runtime > self.cpu_rt_period:
            raise ValueError(f"cpu_rt_runtime {self.cpu_rt_runtime} is above cpu_rt_period "
                             f"{self.cpu_rt_period}: the engine refuses a runtime longer than "
                             "its period")
        return self

    @field_validator("device_cgroup_rules")
    @classmethod
    def _cgroup_rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            if not CGROUP_RULE_RE.fullmatch(rule):
                raise ValueError(f"{rule!r} is not a device cgroup rule: write TYPE MAJOR:MINOR "
                                 "ACCESS, for example 'c 189:* rmw' (type a, b or c; * for any "
                                 "number; access r, w, m)")
        return value

    @field_validator("dns")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address of a DNS server") from None
        return value

    @field_validator("pull_policy")
    @classmethod
    def _pull_policy(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not PULL_POLICY_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a pull policy: use missing, never, always, "
                             "daily, weekly or every_<duration> (every_12h)")
        if value in PULL_NOT_YET:
            raise ValueError(f"pull_policy {value} is not supported yet")
        return "missing" if value == "if_not_present" else value

    @field_validator("links", "external_links", "volumes_from")
    @classmethod
    def _references(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for item in value:
            if not _reference(str(info.field_name), item):
                raise ValueError(f"{item!r} is not a {FORMS[str(info.field_name)]}")
        return value

    def service_references(self) -> dict[str, bool]:
        """The services whose containers this one uses, each with whether compose restarts
        this one when it is recreated (`restart: true` of compose-go's implied depends_on)."""
        return service_references({key: getattr(self, key) for key in REFERRING})

    def held_services(self) -> list[str]:
        """The services whose container the engine pins by id at this one's create (its
        network, pid, ipc namespace, its volumes_from mounts): this container must be made
        again when that one is. A link is by name: a restart does (compose restarts)."""
        held = {key: getattr(self, key) for key in REFERRING if key != "links"}
        return list(service_references(held))

    @property
    def shares_network(self) -> bool:
        """It lives in another container's network namespace (no networks, hostname,
        published ports or address of its own)."""
        return (self.network_mode or "").startswith((SERVICE_PREFIX, CONTAINER_PREFIX))


FORMS = {"links": "link: write SERVICE or SERVICE:ALIAS",
         "external_links": "link: write CONTAINER or CONTAINER:ALIAS",
         "volumes_from": "volumes_from entry: write SERVICE[:ro|:rw] or "
                         "container:NAME[:ro|:rw]"}
CONTAINER_KEYS = frozenset(ContainerSettings.model_fields)
# Keys that may name another service of the plan, and whether compose-go's implied
# dependency restarts the service with it.
REFERRING = {"network_mode": True, "ipc": True, "pid": True, "links": True,
             "volumes_from": False}


def _reference(key: str, item: str) -> bool:
    parts = item.split(":")
    if key == "volumes_from":
        if parts[0] == "container":
            parts = parts[1:]
        return 1 <= len(parts) <= 2 and bool(NAME_RE.fullmatch(parts[0])) and (
            len(parts) == 1 or parts[1] in ("ro", "rw"))
    return len(parts) <= 2 and all(NAME_RE.fullmatch(part) for part in parts)


def service_references(spec: Mapping[str, Any]) -> dict[str, bool]:
    """The services a service's keys (as written, or as the model holds them) name, each
    with compose-go's `restart` for the implied dependency: `service:NAME` of network_mode,
    ipc and pid, SERVICE[:ALIAS] of links, and volumes_from entries that are not
    `container:`."""
    found: dict[str, bool] = {}
    for key, restart in REFERRING.items():
        for name in _named_services(key, spec.get(key)):
            found[name] = found.get(name, False) or restart
    return found


def _named_services(key: str, value: object) -> Iterator[str]:
    if isinstance(value, str) and value.startswith(SERVICE_PREFIX):
        yield value.removeprefix(SERVICE_PREFIX)
    elif isinstance(value, list) and key in ("links", "volumes_from"):
        for item in value:
            name = str(item).split(":")[0]
            if name != "container":
                yield name


def compose_form(settings: ContainerSettings, base: Path) -> dict[str, Any]:
    """The settings that differ from the defaults, as compose writes them (sizes as strings
    of bytes, devices in the short form, relative label files made absolute)."""
    written = settings.model_dump(include=set(CONTAINER_KEYS), exclude_defaults=True)
    for key in ("mem_limit", "mem_reservation", "memswap_limit", "shm_size"):
        if key in written and written[key] != -1:  # compose reads -1 (unlimited) as a number
            written[key] = str(written[key])
    if "ulimits" in written:
        written["ulimits"] = {name: limit.soft if limit.soft == limit.hard else
                              {"soft": limit.soft, "hard": limit.hard}
                              for name, limit in settings.ulimits.items()}
    if "devices" in written:
        written["devices"] = [str(device) for device in settings.devices]
    if "gpus" in written:
        written["gpus"] = [device_form(request) for request in settings.gpus]
    if "logging" in written:
        written["logging"] = settings.logging.model_dump(exclude_defaults=True) \
            if settings.logging else {}
    if "label_file" in written:
        written["label_file"] = [str((base / name).resolve()) for name in settings.label_file]
    return written


def device_form(request: DeviceRequest) -> dict[str, Any]:
    """A device request as compose writes it (`count: all` for every device)."""
    written = request.model_dump(exclude_defaults=True)
    if request.count == ALL_DEVICES:
        written["count"] = "all"
    return written


# --- the image: its platform and when to pull it ----------------------------------------

# containerd's normalization of architecture names, the part this engine's images use.
ARCHITECTURES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386", "i686": "386"}
DEFAULT_VARIANTS = {"arm64": "v8", "amd64": "v1"}
REFRESH_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def normalized_platform(text: str) -> tuple[str, str, str]:
    """(os, architecture, variant) as containerd compares them: `linux/x86_64` is
    linux/amd64, `linux/arm64/v8` is linux/arm64."""
    os_name, _, rest = text.lower().partition("/")
    architecture, _, variant = rest.partition("/")
    architecture = ARCHITECTURES.get(architecture, architecture)
    if variant == DEFAULT_VARIANTS.get(architecture):
        variant = ""
    return os_name, architecture, variant


def platform_matches(wanted: str, actual: str) -> bool:
    """Whether an image of `actual` (os/arch[/variant]) runs as `wanted`: the parts
    `wanted` names are the same."""
    mine, theirs = normalized_platform(wanted), normalized_platform(actual)
    return all(not part or part == other for part, other in zip(mine, theirs, strict=True))


def refresh_seconds(policy: str) -> float | None:
    """How old a present image may be before compose pulls it again (`daily`, `weekly`,
    `every_12h`, `every_1d12h`); None for the other policies."""
    if policy == "daily":
        return REFRESH_UNITS["d"]
    if policy == "weekly":
        return REFRESH_UNITS["w"]
    if not policy.startswith("every_"):
        return None
    parts = re.findall(r"([0-9]+)([wdhms])", policy.removeprefix("every_"))
    return sum(int(number) * REFRESH_UNITS[unit] for number, unit in parts)
