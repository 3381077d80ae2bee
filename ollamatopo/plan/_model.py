"""The plan model: networks, volumes, services and phases, validated.

Service keys use docker compose's names and shapes; `ready`, `after` and
`optional` are ollamatopo's own. Shapes are checked by pydantic (each error
carries its path); references between parts are checked by `check_references`.
Everything here is pure data.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ollamatopo._errors import PlanProblem
from ollamatopo.plan._container import (
    PLATFORM_RE,
    ContainerSettings,
    DeviceRequest,
    normalized_platform,
    scalar_text,
)
from ollamatopo.plan._quantities import (
    PortBinding,
    parse_bytes,
    parse_cpus,
    parse_duration,
    parse_port,
)
from ollamatopo.plan._secrets import is_secret_name

# Docker's own rule for container, network and volume names.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
# Compose's rule for project names (they prefix every object name and label).
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LABEL_PREFIX = "ollamatopo."
# Label keys as Docker's docs recommend them (reverse DNS, letters, digits, . _ - /); label
# values are text without control characters.
LABEL_KEY_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9])?")
MAX_LABEL_VALUE = 4096
# A hostname or network alias: dot-separated labels of letters, digits, '-' and '_'.
DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
DNS_NAME_RE = re.compile(rf"{DNS_LABEL}(?:\.{DNS_LABEL})*")
MAX_HOSTNAME = 63  # Linux's HOST_NAME_MAX is 64 with the final NUL
MAX_ALIAS = 253
# An image reference, by the grammar of docker/distribution's reference package.
_DOMAIN = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN_NAME = rf"(?:{_DOMAIN}(?:\.{_DOMAIN})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN_NAME}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
MAX_IMAGE_NAME = 255
DRIVER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}")
MAX_PHASE_NAME = 100


def _check_name(value: str, what: str, pattern: re.Pattern[str] = NAME_RE) -> str:
    if not pattern.fullmatch(value):  # `$` alone would let a trailing newline through
        rule = "lowercase letters, digits, '-' and '_'" if pattern is PROJECT_RE else (
            "letters, digits, '_', '.' and '-'"
        )
        raise ValueError(f"{value!r} is not a valid {what} name: use {rule}, at most 63, "
                         "starting with a letter or digit")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Bytes = Annotated[int, BeforeValidator(parse_bytes)]
Cpus = Annotated[float, BeforeValidator(parse_cpus)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _argv(value: object) -> object:
    """Compose accepts a command as a string (split like a shell) or a list."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as error:
            raise ValueError(f"cannot split {value!r} into arguments: {error}") from None
    if isinstance(value, list):
        return [str(item) if isinstance(item, int | float) and not isinstance(item, bool)
                else item for item in value]
    return value


Argv = Annotated[list[str], BeforeValidator(_argv)]


def _string_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


_scalar_text = scalar_text  # compose stringifies numbers and booleans in environments, labels


class EnvFileRef(BaseModel):
    """An `env_file` entry: `path`, or compose's long form with `required: false` (a
    missing file is then skipped, as compose skips it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    required: bool = True

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: object) -> object:
        return {"path": value} if isinstance(value, str) else value


def _key_values(value: object) -> object:
    """A map, or compose's list form `[KEY=value, KEY]` (a bare KEY has no value here)."""
    if isinstance(value, list):
        pairs: dict[str, object] = {}
        for item in value:
            if not isinstance(item, str):
                raise ValueError("list items must be KEY=value strings")
            key, sep, text = item.partition("=")
            pairs[key] = text if sep else None
        return pairs
    if isinstance(value, dict):
        return {key: _scalar_text(item) for key, item in value.items()}
    return value


KeyValues = Annotated[dict[str, str | None], BeforeValidator(_key_values)]


def control_characters(text: str) -> bool:
    """Whether `text` holds a character that has no business in a name: C0 and C1 controls,
    DEL, and the invisible format characters (bidi overrides, zero widths)."""
    return any(unicodedata.category(character) in ("Cc", "Cf", "Cs") for character in text)


def _environment_names(value: dict[str, str | None]) -> dict[str, str | None]:
    """Names the engine and a shell take: not empty, no `=` (it would split the name), no
    control characters; values without NUL (no process can receive one)."""
    for key, text in value.items():
        if not key or "=" in key or control_characters(key):
            raise ValueError(f"{_shown(key)} is not an environment variable name: use letters, "
                             "digits and _, without '=' or control characters")
        if text is not None and "\x00" in text:
            raise ValueError(f"the value of {key} contains a NUL character")
    return value


Environment = Annotated[KeyValues, AfterValidator(_environment_names)]


def _secret_names(value: list[str]) -> list[str]:
    for name in value:
        _environment_names({name: None})
    return value


SecretNames = Annotated[list[str], BeforeValidator(_string_list), AfterValidator(_secret_names)]


def _labels(value: dict[str, str]) -> dict[str, str]:
    """Label keys Docker's docs recommend, none of ollamatopo's own, and plain-text values."""
    for key, text in value.items():
        if key.startswith(LABEL_PREFIX):
            raise ValueError(f"label {key!r}: labels starting with {LABEL_PREFIX!r} "
                             "are ollamatopo's own")
        if not LABEL_KEY_RE.fullmatch(key):
            raise ValueError(f"label {_shown(key)}: a label key is letters, digits, '.', '_', "
                             "'-' and '/', starts and ends with a letter or digit, and is at "
                             "most 255 characters")
        if len(text) > MAX_LABEL_VALUE or control_characters(text):
            raise ValueError(f"label {key}: the value must be at most {MAX_LABEL_VALUE} "
                             "characters, without control characters")
    return value


Labels = Annotated[dict[str, Annotated[str, BeforeValidator(_scalar_text)]],
                   AfterValidator(_labels)]
# compose's list-or-map form: a service's labels, a secret's or config's
KeyValueLabels = Annotated[dict[str, str], BeforeValidator(_key_values), AfterValidator(_labels)]


def _dns_name(value: str, what: str, limit: int) -> str:
    if len(value) > limit or not DNS_NAME_RE.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a valid {what}: use letters, digits, '-' and "
                         "'_' in dot-separated parts of at most 63, starting and ending with a "
                         f"letter or digit, at most {limit} in all")
    return value


def _hostname(value: str) -> str:
    return _dns_name(value, "hostname", MAX_HOSTNAME)


def _alias(value: str) -> str:
    return _dns_name(value, "network alias", MAX_ALIAS)


def _image(value: str) -> str:
    """A reference the engine can pull and create from, as Docker's own grammar has it."""
    match = IMAGE_RE.fullmatch(value)
    if not match or len(match["name"]) > MAX_IMAGE_NAME:
        raise ValueError(f"{_shown(value)} is not an image reference: write "
                         "[registry[:port]/]name[:tag][@digest] with a lowercase name, for "
                         "example postgres:16 or registry.local:5000/team/app:1.2")
    return value


def _driver(value: str) -> str:
    if not DRIVER_RE.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a driver name: use letters, digits and "
                         "'_', '.', ':', '/', '-', for example bridge or local")
    return value


def _phase_name(value: str) -> str:
    if len(value) > MAX_PHASE_NAME or control_characters(value):
        raise ValueError(f"{_shown(value)} is not a phase name: at most {MAX_PHASE_NAME} "
                         "characters, without control characters")
    return value


def _ip(version: int | None = None, hint: str = "") -> Callable[[str], str]:
    """A validator of one IP address, of `version` (4 or 6) when given."""
    def check(value: str) -> str:
        try:
            parsed: ipaddress.IPv4Address | ipaddress.IPv6Address | None = \
                ipaddress.ip_address(value)
        except ValueError:
            parsed = None
        if parsed is None or version not in (None, parsed.version):
            kind = f"IPv{version}" if version else "IP"
            raise ValueError(f"{_shown(value)} is not an {kind} address{hint}")
        return value

    return check


Driver = Annotated[str, AfterValidator(_driver)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- networks and volumes -------------------------------------------------------------------


class NetworkSpec(_Model):
    """A network; with `enable_ipv6`, its IPv6 pool (`ipv6_subnet`, `ipv6_gateway`) beside
    the IPv4 one (`subnet`, `gateway`): compose's two `ipam.config` entries."""

    driver: Driver = "bridge"
    subnet: str | None = None
    gateway: str | None = None
    enable_ipv6: bool = False
    ipv6_subnet: str | None = None
    ipv6_gateway: str | None = None
    internal: bool = False
    mtu: int | None = Field(default=None, ge=68, le=65535)
    driver_opts: dict[str, Annotated[str, BeforeValidator(_scalar_text)]] = {}
    labels: Labels = {}
    attachable: bool = False
    # compose's `name` (the engine's name as written, not project-prefixed) and
    # `external` (made elsewhere: only looked up, never made or removed)
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    external: bool = False

    @field_validator("subnet", "gateway", "ipv6_subnet", "ipv6_gateway")
    @classmethod
    def _address(cls, value: str | None, info: ValidationInfo) -> str | None:
        name = str(info.field_name)
        subnet, six = name.endswith("subnet"), name.startswith("ipv6_")
        if value is not None:
            try:
                parsed = (ipaddress.ip_network if subnet else ipaddress.ip_address)(value)
            except ValueError:
                parsed = None
            if parsed is None or (six and parsed.version != 6):
                example = ("an IPv6 subnet such as fd00:1::/64" if six else
                           "a subnet such as 172.22.0.0/24") if subnet else \
                    ("an IPv6 address" if six else "an IP address")
                raise ValueError(f"{value!r} is not {example}")
        return value

    @model_validator(mode="after")
    def _gateway_in_subnet(self) -> NetworkSpec:
        _only_a_name_if_external(self, "network")
        for gateway, subnet in ((self.gateway, self.subnet),
                                (self.ipv6_gateway, self.ipv6_subnet)):
            if gateway and not subnet:
                raise ValueError("a gateway needs a subnet")
            if gateway and subnet and (
                    ipaddress.ip_address(gateway) not in ipaddress.ip_network(subnet)):
                raise ValueError(f"gateway {gateway} is not in subnet {subnet}")
        if self.ipv6_subnet and not self.enable_ipv6:
            raise ValueError(f"an IPv6 subnet ({self.ipv6_subnet}) needs enable_ipv6: true "
                             "(without it the engine gives no IPv6 address)")
        return self

    def pools(self) -> list[tuple[str, str | None]]:
        """(subnet, gateway) of each pool given: the IPv4 one, then the IPv6 one."""
        return [(subnet, gateway) for subnet, gateway in (
            (self.subnet, self.gateway), (self.ipv6_subnet, self.ipv6_gateway)) if subnet]


class VolumeSpec(_Model):
    driver: Driver = "local"
    driver_opts: dict[str, Annotated[str, BeforeValidator(_scalar_text)]] = {}
    labels: Labels = {}
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    external: bool = False

    @model_validator(mode="after")
    def _external(self) -> VolumeSpec:
        _only_a_name_if_external(self, "volume")
        return self


def _only_a_name_if_external(spec: NetworkSpec | VolumeSpec, kind: str) -> None:
    """An external object is made elsewhere: how to make it is not the plan's to say
    (compose refuses it too)."""
    if spec.external:
        written = sorted(spec.model_fields_set - {"name", "external"})
        if written:
            raise ValueError(f"an external {kind} is made outside the project: remove "
                             f"{', '.join(written)} (only `name` goes with `external`)")


def _empty_as_default(value: object) -> object:
    return {} if value is None else value


# --- services -------------------------------------------------------------------------------


class Condition(StrEnum):
    STARTED = "started"
    HEALTHY = "healthy"
    COMPLETED = "completed"  # a one-shot job (a migration): it ran and exited with 0

    @property
    def waits_for_the_end(self) -> bool:
        """The dependent waits for the dependency's run to end (ready, or exited with 0),
        not only for its start."""
        return self is not Condition.STARTED


class DependencyOptions(_Model):
    """compose's `required` and `restart` of one `depends_on` entry, when not the defaults:
    `required: false` lets the dependent start when the dependency fails (a warning says
    so); `restart: true` restarts the dependent after `up` recreates the dependency or
    `restart` restarts it (not after the daemon restarts a dead one: compose excludes the
    runtime's own restarts too)."""

    required: bool = True
    restart: bool = False


class HttpCheck(_Model):
    port: Port
    path: str = "/"
    status: int | None = Field(default=None, ge=100, le=599)  # None: any 2xx or 3xx
    scheme: str = Field(default="http", pattern="^https?$")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value


class TcpCheck(_Model):
    port: Port


MAX_PATTERN = 1000


def _regex(value: object) -> object:
    if isinstance(value, str):
        if len(value) > MAX_PATTERN:
            raise ValueError(f"a log pattern of {len(value)} characters is too long (at most "
                             f"{MAX_PATTERN})")
        try:
            re.compile(value)
        except (re.error, RecursionError, OverflowError) as error:  # nesting, huge {n}
            reason = str(error) or type(error).__name__
            raise ValueError(f"{_shown(value)} is not a regular expression: {reason}") from None
    return value


class ProbeKind(StrEnum):
    HTTP = "http"
    TCP = "tcp"
    EXEC = "exec"
    DOCKER = "docker"
    LOG = "log"
    NONE = "none"


class ReadySpec(_Model):
    """How the orchestrator decides a service is ready: exactly one check, plus a deadline."""

    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    exec_: Argv | None = Field(default=None, alias="exec")
    docker: Annotated[str, Field(pattern="^healthy$")] | None = None
    log: Annotated[str, BeforeValidator(_regex)] | None = None
    none: bool | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadySpec:
        chosen = [kind.value for kind in ProbeKind if self._value(kind) not in (None, False)]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none given"
            raise ValueError(
                "give exactly one of http, tcp, exec, docker, log or none "
                f"(found: {found})"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout: a readiness deadline must be above 0")
        if self.exec_ is not None and not self.exec_:
            raise ValueError("exec needs a command, for example [pg_isready, -U, ollama]")
        return self

    def _value(self, kind: ProbeKind) -> object:
        return self.exec_ if kind is ProbeKind.EXEC else getattr(self, kind.value)

    @property
    def kind(self) -> ProbeKind:
        return next(kind for kind in ProbeKind if self._value(kind) not in (None, False))


class Resources(_Model):
    cpus: Cpus | None = None
    memory: Bytes | None = None


class Limits(Resources):
    pids: int | None = Field(default=None, ge=-1)


class ReservedDevice(DeviceRequest):
    capabilities: list[str] = Field(min_length=1)  # compose's schema requires them here


class Reservations(Resources):
    devices: list[ReservedDevice] | None = None  # None, not []: dumps stay as they were


class ResourceSpec(_Model):
    limits: Limits = Limits()
    reservations: Reservations = Reservations()

    @model_validator(mode="after")
    def _reservation_within_limit(self) -> ResourceSpec:
        for field in ("cpus", "memory"):
            limit = getattr(self.limits, field)
            reserved = getattr(self.reservations, field)
            if limit is not None and reserved is not None and reserved > limit:
                raise ValueError(f"reservations.{field} is above limits.{field}")
        return self


class DeploySpec(_Model):
    resources: ResourceSpec = ResourceSpec()


class Placement(_Model):
    constraints: list[str] = []  # `node.labels.role == gpu`
    preferences: list[dict[str, str]] = []  # [{spread: node.labels.zone}]
    max_replicas_per_node: int | None = Field(default=None, ge=1)


class UpdateConfig(_Model):
    """compose's update_config and rollback_config, as the swarm takes them."""

    parallelism: int | None = Field(default=None, ge=0)
    delay: Duration | None = None
    failure_action: Literal["continue", "rollback", "pause"] | None = None
    monitor: Duration | None = None
    max_failure_ratio: float | None = Field(default=None, ge=0, le=1)
    order: Literal["stop-first", "start-first"] | None = None


class SwarmRestartPolicy(_Model):
    condition: Literal["none", "on-failure", "any"] = "any"
    delay: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=0)
    window: Duration | None = None


class SwarmSpec(_Model):
    """The deploy keys only a swarm carries out (`--backend swarm`); one engine ignores
    them, as compose does."""

    mode: Literal["replicated", "global"] = "replicated"
    placement: Placement = Placement()
    update_config: UpdateConfig | None = None
    rollback_config: UpdateConfig | None = None
    endpoint_mode: Literal["vip", "dnsrr"] | None = None
    labels: Annotated[dict[str, str], BeforeValidator(_key_values)] = {}
    restart_policy: SwarmRestartPolicy | None = None


class ServiceNetwork(_Model):
    """A service's attachment to one network. `priority`: compose's order of attachment,
    the highest first (ties by the network's name): the first is the network the
    container is created on, its primary one."""

    aliases: list[Annotated[str, AfterValidator(_alias)]] = []
    ipv4_address: Annotated[str, AfterValidator(_ip(4))] | None = None
    ipv6_address: Annotated[str, AfterValidator(
        _ip(6, ": write one such as fd00:1::10"))] | None = None
    priority: int = 0
    link_local_ips: list[Annotated[str, AfterValidator(
        _ip(hint=": write one such as 169.254.8.8 or fe80::8"))]] = []
    driver_opts: dict[str, Annotated[str, BeforeValidator(_scalar_text)]] = {}


def _names(items: list[object]) -> list[str]:
    """A list of names, as the short forms of `networks` and `after` write them."""
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"item {index} ({_shown(item)}) is not a name: write names only, "
                             "for example [back, front]")
    return [str(item) for item in items]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _networks(value: object) -> object:
    if isinstance(value, list):
        return {name: {} for name in _names(value)}
    if isinstance(value, dict):
        return {name: {} if item is None else item for name, item in value.items()}
    return value


def _after(value: object) -> object:
    if isinstance(value, list):
        return {name: Condition.HEALTHY.value for name in _names(value)}
    return value


PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
SELINUX = ("z", "Z")  # relabel the content: shared by containers, private to one
# Options compose takes that mean nothing on a Linux engine (Docker Desktop's file sharing).
CONSISTENCY = ("cached", "delegated", "consistent")


class VolumeMount(_Model):
    source: str
    target: str
    read_only: bool = False
    named: bool  # a named volume of the plan, else a bind mount of a host path
    propagation: Literal["shared", "rshared", "slave", "rslave", "private",
                         "rprivate"] | None = None  # a bind's
    nocopy: bool = False  # a volume's: the image's files are not copied into a new one
    # A bind's: a missing host folder is made when the container starts (compose-go sets
    # it for every short-syntax bind; the long syntax with `bind.create_host_path: true`,
    # or with no `bind:` at all, which compose v2 makes the same way).
    create_host_path: bool = False
    # SELinux relabel, shared or private: a bind's, or a named volume's (compose-go reads
    # `data:/x:z` as bind.selinux on a volume mount, and compose v2 carries it out)
    selinux: Literal["z", "Z"] | None = None

    @model_validator(mode="after")
    def _options_of_its_kind(self) -> VolumeMount:
        if not self.target.startswith("/"):
            raise ValueError(f"mount target {self.target!r} must be an absolute path")
        bind_only = [name for name, used in (
            (self.propagation, self.propagation),
            ("create_host_path", self.create_host_path)) if used]
        if self.named and bind_only:
            raise ValueError(f"{bind_only[0]} is a bind mount's option: {self.source!r} is a "
                             "volume")
        if self.nocopy and not self.named:
            raise ValueError(f"nocopy is a volume's option: {self.source!r} is a bind mount")
        if self.named:
            return self._relabel_of_a_volume()
        if self.selinux and (self.propagation or not self.create_host_path):
            raise ValueError(
                f"SELinux relabel {self.selinux!r}: compose v2 relabels only a bind it makes "
                "through the engine's binds, one that creates its missing folder "
                "(create_host_path) and has no propagation; the mount API it uses otherwise "
                "has no relabel, and compose drops it: remove the propagation, set "
                "bind.create_host_path: true, or remove the relabel")
        return self

    def _relabel_of_a_volume(self) -> VolumeMount:
        """compose v2 relabels a named volume through the engine's `Binds`, which it uses
        for a volume mount without nocopy (pkg/compose create.go); with nocopy it takes
        the mount API, which has no relabel, and drops it."""
        if self.selinux and self.nocopy:
            raise ValueError(
                f"SELinux relabel {self.selinux!r} with nocopy: compose v2 makes a volume "
                "with nocopy through the engine's mount API, which has no relabel, and "
                "drops the relabel: remove nocopy or the relabel")
        return self

    @property
    def legacy_bind(self) -> bool:
        """Made through the engine's `Binds` rather than its mount API, as compose v2
        chooses (pkg/compose create.go): a bind that creates its missing host folder and
        has no propagation (only `Binds` make the folder, and carry a relabel), or a
        named volume with a relabel. compose sends a named volume without nocopy there
        too; ollamatopo keeps one without a relabel on the mount API, which mounts it
        alike, so that its containers' payloads (and hashes) stay."""
        if self.named:
            return self.selinux is not None
        return self.create_host_path and not self.propagation

    def __str__(self) -> str:
        """The short syntax (which makes a bind create its missing folder:
        `compose_form` writes one that does not in the long syntax)."""
        options = [option for option, used in (("ro", self.read_only), ("nocopy", self.nocopy),
                                               (self.propagation or "", bool(self.propagation)),
                                               (self.selinux or "", bool(self.selinux)))
                   if used]
        return f"{self.source}:{self.target}" + (f":{','.join(options)}" if options else "")

    def compose_form(self) -> str | dict[str, object]:
        """As `ollamatopo config` writes it: the short syntax, but for a bind that does not
        create its missing folder, which only the long syntax says."""
        if self.named or self.create_host_path:
            return str(self)
        bind: dict[str, object] = {"create_host_path": False}
        if self.propagation:
            bind["propagation"] = self.propagation
        return {"type": "bind", "source": self.source, "target": self.target,
                **({"read_only": True} if self.read_only else {}), "bind": bind}


def _volume_mount(value: object) -> object:
    """Compose's short form `source:target[:options]` (ro or rw, nocopy, a propagation, the
    SELinux relabel z or Z, and cached, delegated, consistent, which a Linux engine
    ignores); a source with `/`, `.` or `~` is a bind, which creates its missing host
    folder (compose-go sets create_host_path for the short syntax)."""
    if not isinstance(value, str):
        return value
    pieces = value.split(":")
    if len(pieces) not in (2, 3) or not all(pieces[:2]):
        raise ValueError(f"{value!r} is not a mount: use name:/path or ./dir:/path[:ro]")
    source, target = pieces[0], pieces[1]
    options = pieces[2].split(",") if len(pieces) == 3 else []
    unknown = [o for o in options if o not in ("ro", "rw", "nocopy", *PROPAGATIONS,
                                               *SELINUX, *CONSISTENCY)]
    if unknown:
        raise ValueError(f"mount option {unknown[0]!r} is not one compose takes: use ro, rw, "
                         "nocopy, a propagation (rslave, rshared, ...), z or Z (SELinux), or "
                         "cached/delegated")
    relabels = [o for o in options if o in SELINUX]
    if len(set(relabels)) > 1:
        raise ValueError(f"{value!r} asks for both SELinux relabels: z (shared) or Z "
                         "(private), one of them")
    named = not source.startswith(("/", ".", "~"))
    return {"source": source, "target": target, "read_only": "ro" in options, "named": named,
            "propagation": next((o for o in options if o in PROPAGATIONS), None),
            "nocopy": "nocopy" in options, "create_host_path": not named,
            "selinux": relabels[0] if relabels else None}


class LoadBalanceSpec(_Model):
    """This service balances requests over others: ollamatopo renders `template` (a path
    relative to the plan) into the container and reloads it when the ready backends change."""

    template: str = Field(min_length=1)
    config_path: str = "/etc/nginx/nginx.conf"
    reload: Argv = ["nginx", "-s", "reload"]
    port: Port = 8080
    backends: dict[str, Annotated[int, Field(ge=1, le=1000)]]
    server_options: str = "max_fails=2 fail_timeout=10s"

    @field_validator("backends")
    @classmethod
    def _some(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("name at least one backend service and its weight")
        return value


class FileObjectSpec(_Model):
    """A top-level secret or config of compose (plan/_file_objects.py says how each is
    carried out): its content from a `file` (bind-mounted), a variable of the project's
    `environment` or, for a config, inline `content` (both copied in before the start);
    or, on a swarm, `external`: one the swarm has already, under `name` or its key. `name`
    is the swarm's name of it (else `<project>_<key>`), `labels` the object's and
    `template_driver` its templating; one engine has no use for them.
    The loader fills `digest` and `value`; a file never holds them."""

    file: Annotated[str, Field(min_length=1)] | None = None
    environment: Annotated[str, Field(min_length=1)] | None = None
    content: str | None = None
    name: Annotated[str, Field(min_length=1)] | None = None
    external: bool = False
    # the swarm object's (engine/_swarm_objects.py); one engine ignores them, as compose does
    labels: KeyValueLabels = {}
    # the swarm's Go templates, rendered per task; one engine refuses it, as compose does
    template_driver: Literal["golang"] | None = None
    digest: str | None = None  # of the content: the container's config hash takes it
    value: str | None = Field(default=None, repr=False)  # what is copied in

    @model_validator(mode="after")
    def _one_source(self) -> FileObjectSpec:
        given = [key for key in ("file", "environment", "content") if getattr(self, key)
                 is not None]
        if self.external:
            if given:
                raise ValueError(f"an external one has no {given[0]}: the swarm holds its "
                                 "content (compose refuses both too)")
            return self
        if len(given) != 1:
            raise ValueError("give exactly one of file, environment or content (found: "
                             f"{', '.join(given) or 'none'})")
        return self


class FileGrant(_Model):
    """A service's use of a secret or config: the file `target` in its container."""

    source: str
    target: Annotated[str, Field(pattern="^/")]  # resolved as compose resolves it
    uid: Annotated[str, Field(pattern="^[0-9]{1,10}$")] | None = None
    gid: Annotated[str, Field(pattern="^[0-9]{1,10}$")] | None = None
    mode: Annotated[int, Field(ge=0, le=0o7777)] | None = None


RESTART_RE = re.compile(r"(no|always|unless-stopped|on-failure(:[0-9]{1,9})?)")


# The engine's own values for a healthcheck that gives no interval or retries.
HEALTH_INTERVAL_S, HEALTH_RETRIES = 30.0, 3


class HealthcheckSpec(_Model):
    """The container's own HEALTHCHECK, for the engine and `docker ps` (compose's
    `healthcheck`); ollamatopo's readiness does not wait for it (see `ready`)."""

    test: Argv  # the command as the container runs it: ["CMD", ...] or ["CMD-SHELL", "..."]
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=1000)
    start_period: Duration | None = None
    # How often to check during start_period (Docker 25+, API 1.44); on a swarm it decides
    # when a task runs and gets its name (engine/_swarm_payloads.swarm_healthcheck).
    start_interval: Duration | None = None

    @property
    def command(self) -> list[str] | None:
        """The argv the engine runs for a check (CMD-SHELL through /bin/sh -c, as the
        engine does); None for NONE."""
        if self.test[:1] == ["CMD"]:
            return list(self.test[1:])
        if self.test[:1] == ["CMD-SHELL"]:
            return ["/bin/sh", "-c", *self.test[1:]]
        return None


# A context given as a URL (compose-go's test: a scheme, or git's own forms).
REMOTE_CONTEXT_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)")


def _build_short_form(value: object) -> object:
    """compose's `build: PATH` is `build: {context: PATH}`."""
    return {"context": value} if isinstance(value, str) else value


def _local_context(value: str) -> str:
    if REMOTE_CONTEXT_RE.match(value):
        raise ValueError(f"{_shown(value)}: a remote build context (a URL or a git "
                         "repository) is not supported yet: give a folder of this host")
    return value


def _cache_option(value: str) -> dict[str, str]:
    """buildx's `type=registry,ref=NAME` (comma-separated key=value); a bare NAME is
    `ref`, as buildx reads it."""
    if "=" not in value:
        return {"type": "registry", "ref": value}
    fields = dict(part.partition("=")[::2] for part in value.split(","))
    fields.setdefault("type", "registry")
    return fields


def _cache_source(value: str) -> str:
    option = _cache_option(value)
    if option["type"] != "registry" or not option.get("ref"):
        raise ValueError(f"{_shown(value)}: the engine's own builder takes a cache only "
                         "from an image: write its name, or type=registry,ref=NAME (other "
                         "types need BuildKit's exporters)")
    _image(option["ref"])
    return value


def _cache_target(value: str) -> str:
    if _cache_option(value) != {"type": "inline"}:
        raise ValueError(f"{_shown(value)}: the engine's own builder exports no cache; "
                         "only type=inline is taken (the images it builds are a cache as "
                         "they are), as compose's docker driver takes only that")
    return value


def _build_host(value: str) -> str:
    """`host:ip` or `host=ip`, written as the engine reads it: `host:ip`."""
    host, separator, address = value.partition("=" if "=" in value else ":")
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        raise ValueError(f"{_shown(value)} is not an extra host: write NAME:IP or "
                         "NAME=IP, for example cache.internal:10.0.0.5") from None
    if not separator or not host:
        raise ValueError(f"{_shown(value)} is not an extra host: write NAME:IP")
    return f"{host}:{address.strip('[]')}"


def _build_tag(value: str) -> str:
    if "@" in _image(value):
        raise ValueError(f"{_shown(value)}: a build tags its image with a name and tag; a "
                         "digest is the engine's to give (write name:tag)")
    return value


class BuildSpec(_Model):
    """compose's `build`: the service's image built from a folder of the host (relative
    to the plan's folder; `dockerfile` relative to the context), tagged as its `image`
    and its `tags`. A bare arg (`args: [KEY]`) takes its value from ollamatopo's
    environment and is left out when that has none, as compose does (see `resolved`).
    The engine's own builder does the build: `cache_from` names images, `cache_to` is
    `type=inline` or nothing (see docs/compose.md)."""

    context: Annotated[str, Field(min_length=1), AfterValidator(_local_context)] = "."
    dockerfile: Annotated[str, Field(min_length=1)] | None = None  # None: its Dockerfile
    dockerfile_inline: Annotated[str, Field(min_length=1)] | None = None
    args: KeyValues = {}
    target: Annotated[str, Field(min_length=1)] | None = None
    labels: Labels = {}
    cache_from: list[Annotated[str, AfterValidator(_cache_source)]] = []
    cache_to: list[Annotated[str, AfterValidator(_cache_target)]] = []
    no_cache: bool = False
    pull: bool = False
    network: Annotated[str, Field(min_length=1)] | None = None
    shm_size: Bytes | None = None
    extra_hosts: list[Annotated[str, AfterValidator(_build_host)]] = []
    tags: list[Annotated[str, AfterValidator(_build_tag)]] = []
    platforms: list[Annotated[str, Field(pattern=PLATFORM_RE.pattern)]] = []

    def platform_for(self, service_platform: str | None) -> str | None:
        """The one platform `up` builds for, as compose's `up` picks it: the service's
        `platform`, else the only one of `platforms`, else none (the engine's own)."""
        if service_platform:
            return service_platform
        return self.platforms[0] if len(self.platforms) == 1 else None

    @property
    def cache_images(self) -> list[str]:
        """The images `cache_from` names, as the engine's builder takes them."""
        return [_cache_option(entry)["ref"] for entry in self.cache_from]

    @model_validator(mode="after")
    def _one_dockerfile(self) -> BuildSpec:
        if self.dockerfile is not None and self.dockerfile_inline is not None:
            raise ValueError("dockerfile and dockerfile_inline exclude each other: give one "
                             "(compose refuses both too)")
        return self

    def context_in(self, base: Path) -> Path:
        """The context folder, for a plan in the folder `base`."""
        return (base / Path(self.context).expanduser()).resolve()

    def resolved(self, environment: Mapping[str, str]) -> BuildSpec:
        """Bare args given their values from `environment`; those it lacks left out."""
        args = {key: value if value is not None else environment.get(key)
                for key, value in self.args.items()}
        return self.model_copy(update={"args": {key: value for key, value in args.items()
                                                if value is not None}})


def _exposed(value: object) -> object:
    """`80`, `"80"` or `"53/udp"`: one container port (ranges are not taken yet)."""
    text = str(value)
    number, _, protocol = text.partition("/")
    if not number.isdigit() or not 1 <= int(number) <= 65535 or protocol not in ("", "tcp",
                                                                                 "udp", "sctp"):
        raise ValueError(f"{text!r} is not a port to expose: use 8080 or 53/udp")
    return f"{int(number)}/{protocol or 'tcp'}"


class ServiceHook(_Model):
    """compose's `post_start` and `pre_stop` entries: a command run in the service's
    container (an exec) right after ollamatopo starts it, or right before it stops it."""

    command: Annotated[Argv, Field(min_length=1)]
    user: str | None = None
    privileged: bool = False
    working_dir: str | None = None
    environment: Environment = {}

    @model_validator(mode="before")
    @classmethod
    def _extensions(cls, value: object) -> object:
        """compose's `x-` keys, which the specification allows in a hook too."""
        if isinstance(value, dict):
            return {key: item for key, item in value.items() if not str(key).startswith("x-")}
        return value


class ServiceSpec(_Model, ContainerSettings):  # compose's keys for the engine: _container
    image: Annotated[str, AfterValidator(_image)]  # with `build` and none: Plan names it
    build: Annotated[BuildSpec, BeforeValidator(_build_short_form)] | None = None
    container_name: Annotated[str, AfterValidator(
        lambda value: _check_name(value, "container_name"))] | None = None
    expose: list[Annotated[str, BeforeValidator(_exposed)]] = []
    healthcheck: HealthcheckSpec | None = None
    command: Argv | None = None
    entrypoint: Argv | None = None
    environment: Environment = {}
    secrets: SecretNames = []  # more environment variables whose values are secret
    # compose's `secrets:` and `configs:` (the line above is ollamatopo's own `secrets`)
    secret_files: list[FileGrant] = []
    config_files: list[FileGrant] = []
    env_file: Annotated[list[EnvFileRef], BeforeValidator(_string_list)] = []
    ports: list[Annotated[PortBinding, BeforeValidator(parse_port)]] = []
    volumes: list[Annotated[VolumeMount, BeforeValidator(_volume_mount)]] = []
    networks: Annotated[dict[str, ServiceNetwork], BeforeValidator(_networks)] = {}
    hostname: Annotated[str, AfterValidator(_hostname)] | None = None
    user: str | None = None
    working_dir: str | None = None
    labels: KeyValueLabels = {}
    restart: str = "no"
    cap_add: list[str] = []
    cap_drop: list[str] = []
    security_opt: list[str] = []
    read_only: bool = False
    init: bool = False
    tmpfs: Annotated[list[str], BeforeValidator(_string_list)] = []
    extra_hosts: list[str] = []
    stop_grace_period: Duration = 10.0
    post_start: list[ServiceHook] = []
    pre_stop: list[ServiceHook] = []
    deploy: DeploySpec = DeploySpec()
    swarm: SwarmSpec = SwarmSpec()
    ready: ReadySpec = ReadySpec(none=True)
    after: Annotated[dict[str, Condition], BeforeValidator(_after)] | None = None
    dependency_options: dict[str, DependencyOptions] = {}  # by entry of `after`
    optional: bool = False
    load_balance: LoadBalanceSpec | None = None
    replicas: int = Field(default=1, ge=0, le=500)  # 0: declared, no container (compose)

    @field_validator("restart")
    @classmethod
    def _restart(cls, value: str) -> str:
        if not RESTART_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a restart policy: use no, always, unless-stopped, "
                "on-failure or on-failure:N"
            )
        return value

    @model_validator(mode="after")
    def _platform_built(self) -> ServiceSpec:
        platforms = self.build.platforms if self.build is not None else []
        if self.platform and platforms and normalized_platform(self.platform) not in [
                normalized_platform(platform) for platform in platforms]:
            raise ValueError(f"platform {self.platform} is not one of build.platforms "
                             f"({', '.join(platforms)}): add it there or change platform "
                             "(or DOCKER_DEFAULT_PLATFORM, which gives a service without one "
                             "its platform); compose refuses this too")
        return self

    @model_validator(mode="after")
    def _one_container_per_name(self) -> ServiceSpec:
        if self.container_name and self.replicas > 1:
            raise ValueError("container_name names one container: it cannot have replicas "
                             "(compose refuses it too)")
        return self

    @model_validator(mode="after")
    def _network_of_its_own(self) -> ServiceSpec:
        """What the engine refuses, or what cannot work, with another network namespace."""
        if self.network_mode is not None and self.networks:
            raise ValueError("network_mode and networks exclude each other (compose refuses "
                             "both too): with network_mode the service joins no network of "
                             "the plan")
        if self.shares_network:
            own = [key for key in ("ports", "expose", "hostname", "dns", "extra_hosts",
                                   "mac_address", "links") if getattr(self, key)]
            if self.ready.kind in (ProbeKind.HTTP, ProbeKind.TCP):
                own.append(f"ready.{self.ready.kind.value} (probe with exec: a healthcheck)")
            if own:
                raise ValueError(f"network_mode {self.network_mode} shares another container's "
                                 f"network: the service cannot have {', '.join(own)} of its "
                                 "own (the engine refuses them)")
        return self

    @field_validator("ports")
    @classmethod
    def _distinct_container_ports(cls, value: list[PortBinding]) -> list[PortBinding]:
        seen: set[tuple[str, str, str]] = set()
        for port in value:
            key = (port.container_key, port.published, port.host_ip)
            if key in seen:
                raise ValueError(f"port {port} is listed twice")
            seen.add(key)
        return value


# --- the plan -------------------------------------------------------------------------------


class PhaseSpec(_Model):
    name: Annotated[str, Field(min_length=1), AfterValidator(_phase_name)]
    services: list[str]


MAX_SERVICES = 1000  # containers of one plan, replicas counted


class Plan(_Model):
    project: str
    networks: dict[str, NetworkSpec] = {}
    volumes: dict[str, VolumeSpec] = {}
    secrets: dict[str, FileObjectSpec] = {}
    configs: dict[str, FileObjectSpec] = {}
    services: Annotated[dict[str, ServiceSpec], Field(max_length=MAX_SERVICES)]
    phases: list[PhaseSpec]

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return _check_name(value, "project", PROJECT_RE)

    @field_validator("networks", "volumes", mode="before")
    @classmethod
    def _defaults_for_empty(cls, value: object) -> object:
        if isinstance(value, dict):
            return {key: {} if item is None else item for key, item in value.items()}
        return _empty_as_default(value)

    @model_validator(mode="before")
    @classmethod
    def _built_image_names(cls, value: object) -> object:
        """A service with `build` and no `image` gets compose's name for its image,
        `<project>-<service>` (compose-go's default; tag latest). Named here, where the
        project is known, so every later step reads `image` alone. (A project name that is
        refused already gives its problem: no second one for each image.)"""
        if not isinstance(value, dict) or not isinstance(value.get("services"), dict):
            return value
        project = value.get("project")
        prefix = project if isinstance(project, str) and PROJECT_RE.fullmatch(project) \
            else "unnamed"
        named = {name: {**spec, "image": f"{prefix}-{name}"}
                 for name, spec in value["services"].items()
                 if isinstance(spec, dict) and spec.get("build") is not None
                 and "image" not in spec}
        return {**value, "services": {**value["services"], **named}} if named else value

    # Derived views used by the graph and the scheduler.

    def phase_of(self, service: str) -> str:
        for phase in self.phases:
            if service in phase.services:
                return phase.name
        raise KeyError(service)

    def dependencies(self, service: str) -> dict[str, Condition]:
        """A service's own `after:`, or by default every required service of the nearest
        earlier phase that has one, to be healthy (the phase barrier, as a graph edge); and,
        to be started, the services whose containers it uses (network_mode service:NAME,
        volumes_from, links...), as compose-go adds them to depends_on."""
        found = self._written_dependencies(service)
        for used in self.services[service].service_references():
            found.setdefault(used, Condition.STARTED)
        return found

    def _written_dependencies(self, service: str) -> dict[str, Condition]:
        spec = self.services[service]
        if spec.after is not None:
            return dict(spec.after)
        index = next(i for i, phase in enumerate(self.phases) if service in phase.services)
        for phase in reversed(self.phases[:index]):
            required = _barrier(self, phase)
            if required is not None:
                return dict.fromkeys(required, Condition.HEALTHY)
        return {}

    def ordered_services(self) -> Iterator[tuple[str, ServiceSpec]]:
        """Services in phase order, then file order within a phase."""
        for phase in self.phases:
            for name in phase.services:
                yield name, self.services[name]



def _barrier(plan: Plan, phase: PhaseSpec, unsure: Collection[str] = ()) -> list[str] | None:
    """What the services of later phases wait for by default: the phase's required services,
    or None when it has none (an earlier phase then counts). Of a plan with problems, a name
    that is no service or a service in `unsure` (its `optional` unread) may be required once
    fixed: the phase counts, with the services it surely has, so no edge is made up."""
    required = [name for name in phase.services if name in plan.services
                and name not in unsure and not plan.services[name].optional]
    uncertain = any(name not in plan.services or name in unsure for name in phase.services)
    return required if required or uncertain else None


SECTIONS = ("networks", "volumes", "phases")  # what `unread` may name


def check_references(plan: Plan, unread: Collection[str] = (),
                     lines: Mapping[str, int] | None = None) -> list[PlanProblem]:
    """Problems that span parts of the plan: names, references, phases, host ports, subnets.
    `unread` names the SECTIONS that could not be read (a plan with other problems): what
    refers to them is not checked. `lines` lets a problem cite the line of the other part."""
    problems: list[PlanProblem] = []
    add = problems.append
    for kind, names in (("network", plan.networks), ("volume", plan.volumes),
                        ("service", plan.services)):
        for name in names:
            try:
                _check_name(name, kind)
            except ValueError as error:
                add(PlanProblem(f"{kind}s.{name}", str(error)))
                continue
            if kind == "service" and not DNS_NAME_RE.fullmatch(name):
                add(PlanProblem(f"services.{name}", f"{name!r} is not a valid service name: "
                                "it is also the service's host name on its networks, so "
                                "'.', '-' and '_' go between letters or digits"))

    suggest = _Hints()
    seen_phase: dict[str, str] = {}
    phase_names: set[str] = set()
    for index, phase in enumerate(plan.phases):
        where = f"phases[{index}]"
        if phase.name in phase_names:
            add(PlanProblem(f"{where}.name", f"phase {phase.name!r} is declared twice"))
        phase_names.add(phase.name)
        for position, service in enumerate(phase.services):
            place = f"{where}.services[{position}]"
            if service not in plan.services:
                hint = suggest(service, plan.services)
                add(PlanProblem(place, f"unknown service {service!r}{hint}"))
            elif service in seen_phase:
                add(PlanProblem(place, f"service {service!r} is already in phase "
                                       f"{seen_phase[service]!r}: a service belongs to one phase"))
            else:
                seen_phase[service] = phase.name
    for name in plan.services if "phases" not in unread else ():
        if name not in seen_phase:
            add(PlanProblem(f"services.{name}", "this service is in no phase: add it to the "
                                                "services of one of the phases"))

    for name, spec in plan.services.items():
        problems.extend(_service_references(plan, name, spec, suggest, unread))
    problems.extend(_host_port_conflicts(plan))
    problems.extend(_overlapping_subnets(plan, lines or {}))
    return problems


def _service_references(plan: Plan, name: str, spec: ServiceSpec, suggest: _Hints,
                        unread: Collection[str]) -> Iterator[PlanProblem]:
    where = f"services.{name}"
    for used in spec.service_references():  # network_mode service:NAME, volumes_from, ...
        if used not in plan.services:
            yield PlanProblem(where, f"unknown service {used!r}{suggest(used, plan.services)}, "
                                     "named in its network_mode, pid, ipc, links or "
                                     "volumes_from")
        elif used == name:
            yield PlanProblem(where, "a service cannot use its own container (network_mode, "
                                     "pid, ipc, links or volumes_from)")
    for network in spec.networks if "networks" not in unread else ():
        if network not in plan.networks:
            yield PlanProblem(f"{where}.networks.{network}",
                              f"unknown network {network!r}{suggest(network, plan.networks)}; "
                              "declare it under the top-level networks")
        elif spec.networks[network].ipv6_address and not plan.networks[network].enable_ipv6:
            yield PlanProblem(f"{where}.networks.{network}.ipv6_address",
                              f"network {network!r} has no IPv6: give it enable_ipv6: true "
                              "and an IPv6 subnet in its ipam.config, or remove the address")
    for index, mount in enumerate(spec.volumes if "volumes" not in unread else ()):
        if mount.named and mount.source not in plan.volumes:
            yield PlanProblem(f"{where}.volumes[{index}]",
                              f"unknown volume {mount.source!r}"
                              f"{suggest(mount.source, plan.volumes)}; declare it under the "
                              "top-level volumes, or write ./path for a bind mount")
    for dependency in spec.after or {}:
        if dependency not in plan.services:
            yield PlanProblem(f"{where}.after.{dependency}",
                              f"unknown service {dependency!r}"
                              f"{suggest(dependency, plan.services)}")
        elif dependency == name:
            yield PlanProblem(f"{where}.after.{dependency}", "a service cannot wait for itself")
    for dependency in set(spec.dependency_options) - set(spec.after or {}):
        yield PlanProblem(f"{where}.dependency_options.{dependency}",
                          f"{dependency!r} is not among the service's `after:` entries")
    for backend in spec.load_balance.backends if spec.load_balance else {}:
        if backend not in plan.services:
            yield PlanProblem(f"{where}.load_balance.backends.{backend}",
                              f"unknown service {backend!r}{suggest(backend, plan.services)}")
        elif backend == name:
            yield PlanProblem(f"{where}.load_balance.backends.{backend}",
                              "a load balancer cannot be its own backend")


WILDCARDS = ("", "0.0.0.0", "::")


def _host_port_conflicts(plan: Plan) -> Iterator[PlanProblem]:
    """Two bindings of one host port clash when either is on all addresses or both on one.
    A range of host ports clashes with none: the engine binds a free one of them."""
    owners: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for name, spec in plan.services.items():
        for index, port in enumerate(spec.ports):
            if port.fixed_host_port is None:
                continue
            bound = owners.setdefault((port.fixed_host_port, port.protocol), [])
            clash = next((owner for owner, ip in bound
                          if ip in WILDCARDS or port.host_ip in WILDCARDS or ip == port.host_ip),
                         None)
            if clash is not None:
                yield PlanProblem(f"services.{name}.ports[{index}]",
                                  f"host port {port.host_port}/{port.protocol} is also "
                                  f"published by {clash}: choose another host port")
            else:
                bound.append((name, port.host_ip))


def _overlapping_subnets(plan: Plan, lines: Mapping[str, int]) -> Iterator[PlanProblem]:
    """Networks whose subnets share addresses: the engine refuses the second only when it
    creates it, after the first one's services started. Two subnets are nested or apart,
    so sorted by first address (the wider first) one overlaps an earlier one exactly when it
    starts within the widest seen so far: one pass, not every pair, and a problem for each
    network inside another (of equal ones, the one written later)."""
    subnets = sorted((_Subnet.of(name, text, key) for name, spec in plan.networks.items()
                      for key, text in (("subnet", spec.subnet),
                                        ("ipv6_subnet", spec.ipv6_subnet)) if text is not None),
                     key=lambda subnet: subnet.sort_key)
    widest: dict[int, _Subnet] = {}  # by IP version
    for subnet in subnets:
        outer = widest.get(subnet.version)
        if outer is None or subnet.first > outer.last:
            widest[subnet.version] = subnet
            continue
        at = lines.get(f"networks.{outer.network}.{outer.key}")
        yield PlanProblem(f"networks.{subnet.network}.{subnet.key}",
                          f"subnet {subnet.text} overlaps {outer.text}, the subnet of network "
                          f"{outer.network!r}{f' (line {at})' if at else ''}: the engine would "
                          "refuse to create this network; choose subnets that do not overlap")


@dataclass(frozen=True)
class _Subnet:
    network: str
    text: str
    version: int
    first: int  # addresses as numbers: IPv4 and IPv6 addresses do not compare
    last: int
    key: str = "subnet"  # the model's key: subnet, or ipv6_subnet

    @classmethod
    def of(cls, network: str, text: str, key: str = "subnet") -> _Subnet:
        subnet = ipaddress.ip_network(text)
        return cls(network, text, subnet.version, int(subnet.network_address),
                   int(subnet.broadcast_address), key)

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return self.version, self.first, -self.last  # the wider of two at one address first


def check_cycles(plan: Plan, unsure: Collection[str] = ()) -> list[PlanProblem]:
    """Every group of services that wait for each other, each named by one cycle through it
    (a service waiting for itself is a problem of check_references). Of a plan with
    problems, unknown names and the phase of a service in `unsure` (its `optional` unread)
    give no edge, so every cycle named is one the fixed plan has too."""
    edges = _dependency_names(plan, unsure)
    problems = []
    for group in _strongly_connected(edges):
        if len(group) < 2:
            continue
        start = _cycle_start(plan, group)
        cycle = _shortest_cycle(start, edges, group)
        problems.append(PlanProblem(f"services.{start}.after",
                                    "dependency cycle: " + " -> ".join(cycle)
                                    + "; remove one of these `after:` entries"))
    return problems


def _cycle_start(plan: Plan, group: set[str]) -> str:
    """The first service of the group, in plan order, whose `after:` names another of it:
    every cycle has such an edge (a phase default only points to earlier phases), and its
    entries are what the user can remove."""
    members = [name for name in plan.services if name in group]
    return next((name for name in members
                 if any(dependency in group for dependency in plan.services[name].after or {})),
                members[0])


def _dependency_names(plan: Plan, unsure: Collection[str]) -> dict[str, list[str]]:
    """Each service's dependencies (Plan.dependencies), in one pass over the phases, for a
    plan whose references may be wrong: names that are no service are left out, and so is
    a service's wait for itself."""
    defaults: dict[str, list[str]] = {}
    barrier: list[str] = []
    for phase in plan.phases:
        for name in phase.services:
            defaults.setdefault(name, barrier)  # a service in two phases: the first counts
        found = _barrier(plan, phase, unsure)
        if found is not None:
            barrier = found
    written = {name: list(spec.after) if spec.after is not None else defaults.get(name, [])
               for name, spec in plan.services.items()}
    return {name: [dependency for dependency in dict.fromkeys(
        [*written[name], *spec.service_references()])
        if dependency in plan.services and dependency != name]
        for name, spec in plan.services.items()}


def _strongly_connected(edges: Mapping[str, list[str]]) -> list[set[str]]:
    """The graph's strongly connected components, by Tarjan's algorithm without recursion
    (a chain of a thousand `after:` is no RecursionError)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        work = [(root, iter(edges[root]))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    work.append((successor, iter(edges[successor])))
                    break
                if successor in low:  # still on the stack: in the group being walked
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group: set[str] = set()
                    while node not in group:
                        member = stack.pop()
                        group.add(member)
                        del low[member]
                    groups.append(group)
    return groups


def _shortest_cycle(start: str, edges: Mapping[str, list[str]], group: set[str]) -> list[str]:
    """The shortest way from `start` back to itself within `group`, breadth first."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in edges[node]:
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if successor in group and successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise ValueError(f"no cycle through {start!r}")  # a strongly connected group has one


# --- risky settings -------------------------------------------------------------------------

# Binding these gives a container the Docker engine, and so root on the host.
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
UNCONFINED = {"seccomp": "seccomp filter, which keeps it from risky system calls",
              "apparmor": "AppArmor profile"}
LABELS_ARE_PUBLIC = ("labels are shown to anyone who may list containers, networks or volumes "
                     "(docker inspect): pass it to the service in its environment instead")


def risky_settings(plan: Plan, base: Path, secrets: Collection[str]) -> Iterator[str]:
    """Warnings, each `path: what the risk is; what to do`, for settings that give a
    container power over the host (the engine's socket or the host's root bound, every
    capability, confinement turned off) or that show a secret in a label. `base` is the
    plan's folder (bind sources are relative to it); `secrets` the plan's secret values,
    which no warning shows."""
    for name, spec in plan.services.items():
        where = f"services.{name}"
        for index, mount in enumerate(spec.volumes):
            risk = None if mount.named else _bind_risk(mount.source, base)
            if risk:
                yield f"{where}.volumes[{index}]: {risk}"
        if spec.privileged:
            yield (f"{where}.privileged: true gives the container every capability and every "
                   "device of the host, and lifts its confinement: root on the host; add only "
                   "the capabilities (cap_add) and devices (devices) it needs")
        if spec.oom_kill_disable and spec.mem_limit is None \
                and spec.deploy.resources.limits.memory is None:
            yield (f"{where}.oom_kill_disable: true without a memory limit lets the container "
                   "take the host's memory until the host's own processes fail (the engine "
                   "warns the same): give it mem_limit, or leave the OOM killer on")
        for index, rule in enumerate(spec.device_cgroup_rules):
            if rule.startswith("a "):
                yield (f"{where}.device_cgroup_rules[{index}]: {rule!r} allows every device "
                       "of the host, the block devices of its disks too: allow only the "
                       "devices it needs (type c or b, with their major and minor numbers)")
        for index, capability in enumerate(spec.cap_add):
            if capability.strip().upper().removeprefix("CAP_") == "ALL":
                yield (f"{where}.cap_add[{index}]: ALL gives the container every capability of "
                       "the kernel, nearly root on the host: add only the ones it needs (for "
                       "example NET_BIND_SERVICE)")
        for index, option in enumerate(spec.security_opt):
            kind, _, value = option.strip().lower().replace(":", "=", 1).partition("=")
            if kind in UNCONFINED and value == "unconfined":
                yield (f"{where}.security_opt[{index}]: {option} turns off the container's "
                       f"{UNCONFINED[kind]}: remove it, or give a profile that allows what the "
                       "service needs")
        yield from _secret_labels(where, spec.labels, secrets)
    for kind, parts in (("networks", plan.networks), ("volumes", plan.volumes)):
        for name, part in parts.items():
            yield from _secret_labels(f"{kind}.{name}", part.labels, secrets)


def _bind_risk(source: str, base: Path) -> str | None:
    """What binding the host path `source` gives away, if it is the engine's socket, a
    folder that holds it, or the root. Worked out from the text (the same resolution as the
    container's, without following links: both socket paths are listed)."""
    host = os.path.abspath(os.path.join(base, os.path.expanduser(source)))
    host = "/" + host.lstrip("/")  # "//" is the root too
    if host == "/":
        return ("binds the host's root directory: the container can read and change every "
                "file of the host; bind only the folders it needs")
    if host in ENGINE_SOCKETS or any(socket.startswith(host + "/") for socket in ENGINE_SOCKETS):
        what = "is" if host in ENGINE_SOCKETS else "holds"
        return (f"{source} {what} the Docker engine's socket: whoever has it controls the engine "
                "and so the host; bind it only into a service that must drive Docker, from an "
                "image you trust")
    return None


def _secret_labels(where: str, labels: Mapping[str, str],
                   secrets: Collection[str]) -> Iterator[str]:
    for key, value in labels.items():
        if value and is_secret_name(key):
            yield f"{where}.labels.{key}: this label is named like a secret; {LABELS_ARE_PUBLIC}"
        elif value in secrets:
            yield (f"{where}.labels.{key}: the value of this label is a secret of the plan; "
                   f"{LABELS_ARE_PUBLIC}")


class _Hints:
    """"did you mean" for the first few unknown names of a plan only: difflib over a
    thousand names takes milliseconds, and a hostile plan has thousands of unknown names."""

    def __init__(self, budget: int = 20) -> None:
        self.budget = budget

    def __call__(self, name: str, known: Mapping[str, Any] | list[str]) -> str:
        if self.budget <= 0:
            return ""
        self.budget -= 1
        import difflib

        close = difflib.get_close_matches(name, list(known), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""
