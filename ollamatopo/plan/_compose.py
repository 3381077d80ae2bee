"""A Compose Specification file as a plan (the first part of the compose issue).

A file without ollamatopo's own `project:` key is read as a compose file: compose's keys
are mapped onto the plan model, and ollamatopo's additions live under one extension key,
`x-ollamatopo` (compose ignores every `x-` key): at the top `phases`, in a service `ready`,
`optional`, `load_balance` and `secrets`. One key rather than several keeps the file's
compose part exactly compose's, and `docker compose config` the referee of what it means.

Compose v2 (compose-go's loader) is the reference for what a key means:
- the project name is `name:`, else `-p`/OLLAMATOPO_PROJECT, else COMPOSE_PROJECT_NAME,
  else the file's folder, normalized as compose normalizes it (lower case; only a-z, 0-9,
  `_` and `-`; no leading `_` or `-`);
- `depends_on` as a list means `condition: service_started`; the long form's
  `service_healthy` waits for ollamatopo's readiness probe;
- a `healthcheck` becomes that probe: its `test` run in the container by ollamatopo, at
  ollamatopo's cadence, within `start_period + interval x retries` (compose's defaults:
  30 s, 3 retries, no start period) unless `x-ollamatopo.ready` says otherwise;
- without `x-ollamatopo.phases` the graph is `depends_on` alone.

A key of the specification that ollamatopo does not carry out yet is a problem naming it
("not supported yet"), never silently dropped; a key the specification does not have is
an unknown key. Pure: a tree in, a tree and problems out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ollamatopo._errors import PlanProblem
from ollamatopo.plan._container import CONTAINER_KEYS, service_references
from ollamatopo.plan._model import HEALTH_INTERVAL_S, HEALTH_RETRIES
from ollamatopo.plan._quantities import LONG_PORT_KEYS, parse_bytes, parse_cpus, parse_duration

EXTENSION = "x-ollamatopo"
SINGLE_PHASE = "services"

TOP_LEVEL = {"version", "name", "include", "services", "networks", "volumes", "secrets",
             "configs"}
# The specification's service keys (compose-spec's schema), and which of them mean the
# same in the plan model.
SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "driver_opts", "entrypoint",
    "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file",
    "labels", "links", "logging", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "network_mode", "networks", "oom_kill_disable",
    "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop",
    "privileged", "profiles", "pull_policy", "read_only", "restart", "runtime", "scale",
    "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "use_api_socket", "user",
    "userns_mode", "uts", "volumes", "volumes_from", "working_dir"}
SAME = {"image", "command", "entrypoint", "environment", "hostname", "user", "working_dir",
        "container_name", "expose",
        "labels", "restart", "cap_add", "cap_drop", "security_opt", "read_only", "init",
        "stop_grace_period", "post_start", "pre_stop"}
TRANSLATED = {"depends_on", "healthcheck", "deploy", "ports", "volumes", "networks",
              "env_file", "extra_hosts", "tmpfs", "build", "secrets", "configs", "scale"}
# compose-spec's build keys; the model takes the rest of them (BuildSpec).
# BuildKit's own (the engine's builder, which ollamatopo drives, has none of them), and
# `isolation` (Windows containers).
BUILD_NOT_YET = {"additional_contexts", "entitlements", "isolation", "privileged",
                 "provenance", "sbom", "secrets", "ssh", "ulimits"}
EXTENSION_KEYS = {"ready", "optional", "load_balance", "secrets"}
NETWORK_KEYS = {"driver", "driver_opts", "ipam", "external", "internal", "attachable",
                "enable_ipv4", "enable_ipv6", "labels", "name"}
VOLUME_KEYS = {"driver", "driver_opts", "external", "labels", "name"}
# A service's attachment to a network; the others (mac_address, interface_name,
# gw_priority) need Engine API 1.44-1.49.
ATTACHMENT_KEYS = {"aliases", "ipv4_address", "ipv6_address", "priority", "link_local_ips",
                   "driver_opts"}
CONDITIONS = {"service_started": "started", "service_healthy": "healthy",
              "service_completed_successfully": "completed"}


@dataclass
class Translation:
    """The plan's tree, what could not be taken, and where each plan key came from."""

    tree: dict[str, Any]
    problems: list[PlanProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # True only on one engine (a swarm key it ignores): not said when the plan is for a swarm.
    one_engine_warnings: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # plan path -> compose path


def is_compose(tree: object) -> bool:
    """A compose file, not one of ollamatopo's own dialect (which has `project:`); one with
    only `include` is one too."""
    return isinstance(tree, dict) and "project" not in tree and (
        "services" in tree or "include" in tree)


def normalize_project_name(text: str) -> str:
    """compose-go's rule: lower case, only a-z 0-9 _ -, no leading _ or -."""
    return "".join(re.findall(r"[a-z0-9_-]", text.lower())).lstrip("_-")


def with_default_platform(tree: dict[str, Any], platform: str) -> dict[str, Any]:
    """compose's DOCKER_DEFAULT_PLATFORM: the platform of every service that names none
    (compose's create, pull and build take it so; a swarm's stack deploy does not)."""
    services = {name: {**spec, "platform": platform}
                if isinstance(spec, dict) and "platform" not in spec else spec
                for name, spec in _mapping(tree.get("services")).items()}
    return {**tree, "services": services} if services else tree


def from_compose(tree: dict[str, Any], project: str,
                 profiles: Collection[str] = ()) -> Translation:
    """The plan tree of a compose tree (interpolated already), named `project` (chosen by
    compose's precedence: -p, COMPOSE_PROJECT_NAME, `name:`, the folder)."""
    out = Translation({"project": project})
    for key in tree:
        if str(key).startswith("x-"):
            continue
        if key not in TOP_LEVEL:
            out.problems.append(PlanProblem(str(key), "unknown key: the Compose "
                                            "Specification has no such top-level key"))
    if "version" in tree:
        out.warnings.append("version: the Compose Specification made it obsolete; it is "
                            "ignored (compose v2 ignores it too): remove it")
    extension = _mapping(tree.get(EXTENSION))
    services = {name: spec for name, spec in _mapping(tree.get("services")).items()
                if _enabled(spec, profiles)}
    phased = bool(extension.get("phases"))
    inactive = set(_mapping(tree.get("services"))) - set(services)
    out.tree["services"] = {name: _service(out, str(name), spec, phased, inactive)
                            for name, spec in services.items()}
    _used_services(out, services)
    out.tree["networks"] = {name: _network(out, str(name), spec)
                            for name, spec in _mapping(tree.get("networks")).items()}
    if _names_default_network(out.tree["services"]):
        out.tree["networks"].setdefault("default", {})  # compose's implicit one
    out.tree["volumes"] = {name: _volume(out, str(name), spec)
                           for name, spec in _mapping(tree.get("volumes")).items()}
    from ollamatopo.plan import _file_objects  # it builds on this module's Translation

    _file_objects.translate(out, tree, services)
    if extension.get("phases") is not None:
        out.tree["phases"] = _enabled_phases(extension["phases"], services,
                                             set(_mapping(tree.get("services"))))
        out.sources["phases"] = f"{EXTENSION}.phases"
    else:
        out.tree["phases"] = [{"name": SINGLE_PHASE, "services": list(services)}]
    for key in extension:
        if key != "phases":
            out.problems.append(PlanProblem(f"{EXTENSION}.{key}", "unknown key: "
                                            f"{EXTENSION} takes phases"))
    return out


def _enabled(spec: object, profiles: Collection[str]) -> bool:
    """compose's rule: a service without `profiles` always runs; one with them only when one
    of its profiles is active (--profile, COMPOSE_PROFILES)."""
    named = _mapping(spec).get("profiles")
    return not named or not isinstance(named, list) or bool(set(named) & set(profiles))


def _enabled_phases(phases: object, enabled: Mapping[Any, Any],
                    declared: Collection[Any]) -> object:
    """The phases without the services of profiles not active (a name the file does not
    declare stays, for the model to call unknown)."""
    if not isinstance(phases, list):
        return phases
    return [{**phase, "services": [name for name in phase["services"]
                                   if name in enabled or name not in declared]}
            if isinstance(phase, dict) and isinstance(phase.get("services"), list) else phase
            for phase in phases]


def _names_default_network(services: Mapping[Any, Any]) -> bool:
    """Some service names the network `default`, which compose has without a declaration
    (`<project>_default`, the one a service that names no network joins)."""
    return any(isinstance(networks, list | dict) and "default" in networks
               for networks in (_mapping(spec).get("networks") for spec in services.values()))


def _mapping(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _not_yet(out: Translation, path: str) -> None:
    out.problems.append(PlanProblem(path, "not supported yet: ollamatopo does not carry this "
                                          "out yet (docs/compose.md lists what it does)"))


# --- services -------------------------------------------------------------------------------


def _service(out: Translation, name: str, spec: object, phased: bool,
             inactive: Collection[str]) -> object:
    if not isinstance(spec, dict):
        return spec  # the model says what is wrong with it
    at = f"services.{name}"
    service: dict[str, Any] = {}
    for key, value in spec.items():
        key = str(key)
        if key.startswith("x-") and key != EXTENSION:
            continue
        if key in SAME or key in CONTAINER_KEYS:
            service[key] = value
        elif key == EXTENSION or key in TRANSLATED or key in ("profiles", "extends"):
            continue  # extends: resolved before (_compose_files), so never here in a load
        elif key == "attach":  # which logs an attached `up` shows: ollamatopo's shows none
            if not isinstance(value, bool) and value not in ("true", "false"):
                out.problems.append(PlanProblem(f"{at}.attach", "attach is true or false"))
        elif key == "develop":  # compose watch's; compose's `up -d` ignores it silently
            out.warnings.append(f"{at}.develop: compose watch's settings; ollamatopo has no "
                                "watch mode, so nothing syncs or rebuilds on a change (as with "
                                "compose's up without --watch): run `ollamatopo up --build` "
                                "again after a change")
        elif key in SERVICE_KEYS:
            _not_yet(out, f"{at}.{key}")
        else:
            out.problems.append(PlanProblem(f"{at}.{key}", "unknown key: the Compose "
                                            "Specification has no such service key"))
    _short_forms(out, at, "ports", _port_ranges(spec), service, _port)
    _short_forms(out, at, "volumes", spec, service, _mount(out, service))
    _networks(out, at, spec, service)
    _simple_lists(at, spec, service)
    _deploy(out, at, spec.get("deploy"), service)
    _scale(out, at, spec, service)
    if "cpu_count" in spec:
        out.warnings.append(f"{at}.cpu_count: the engine applies it to Windows containers "
                            "only; on Linux it has no effect (compose passes it all the same): "
                            "limit the service with cpus instead")
    _distinct_twins(out, at, spec)
    dependencies = _depends_on(out, at, spec.get("depends_on"), inactive, service)
    if dependencies is not None or not phased:
        service["after"] = dependencies or {}
        out.sources[f"{at}.after"] = f"{at}.depends_on"
    _healthcheck(out, at, spec.get("healthcheck"), service)
    _build(out, at, spec.get("build"), service)
    _extension(out, at, spec.get(EXTENSION), service)
    return service


def _simple_lists(at: str, spec: dict[str, Any], service: dict[str, Any]) -> None:
    """env_file (short and long form), extra_hosts (list or map), tmpfs (string or list)."""
    files = spec.get("env_file")
    if files is not None:
        files = files if isinstance(files, list) else [files]
        service["env_file"] = files  # the long form's `required` is the model's too
    if spec.get("extra_hosts") is not None:
        service["extra_hosts"] = _host_list(spec["extra_hosts"])
    if "tmpfs" in spec:  # beside the long form's `type: tmpfs` mounts, if any
        written = spec["tmpfs"] if isinstance(spec["tmpfs"], list) else [spec["tmpfs"]]
        service["tmpfs"] = [*written, *service.get("tmpfs", [])]


def _host_list(hosts: object) -> object:
    """extra_hosts' map form (`name: ip`) as the list the model reads (`name:ip`)."""
    if isinstance(hosts, dict):
        return [f"{host}:{address}" for host, address in hosts.items()]
    return hosts


def _short_forms(out: Translation, at: str, key: str, spec: dict[str, Any],
                 service: dict[str, Any],
                 write: Callable[[dict[str, Any], str], str | dict[str, Any] | None]) -> None:
    """`spec[key]`'s long-syntax entries written in the short syntax the model reads
    (`write` gives it, or a mapping the model reads for what the short syntax cannot say;
    "" for an entry that went elsewhere, None for one not carried out yet); short
    entries, and a value that is no list, are the model's to judge."""
    items = spec.get(key)
    if not isinstance(items, list):
        if items is not None:
            service[key] = items
        return
    written: list[object] = []
    for index, item in enumerate(items):
        text = write(item, f"{at}.{key}[{index}]") if isinstance(item, dict) else item
        if text is None:
            _not_yet(out, f"{at}.{key}[{index}]")
        elif text != "":
            written.append(text)
    service[key] = written


_RANGE = re.compile(r"(\d+)-(\d+)")


def _port_ranges(spec: dict[str, Any]) -> dict[str, Any]:
    """Short-syntax port ranges written out one port each, as compose expands them:
    `"30000-30009:30000-30009"` is ten mappings, `"9000-9002"` three container ports. A
    range of host ports for one container port (`"7000-7002:7000"`) stays one mapping:
    the engine binds a free one of them."""
    ports = spec.get("ports")
    if not isinstance(ports, list):
        return spec
    expanded: list[object] = []
    for port in ports:
        expanded.extend(_expanded_port(port) if isinstance(port, str) else [port])
    return {**spec, "ports": expanded}


def _expanded_port(text: str) -> list[object]:
    body, slash, protocol = text.partition("/")
    address, mapping = _address_prefix(body)
    host, _, container = mapping.rpartition(":")
    containers = _RANGE.fullmatch(container)
    if containers is None:
        return [text]
    first, count = int(containers[1]), int(containers[2]) - int(containers[1]) + 1
    hosts = _RANGE.fullmatch(host)
    if count < 1 or (host and (hosts is None or int(hosts[2]) - int(hosts[1]) + 1 != count)):
        return [text]  # the model says why it is no port
    published = [str(int(hosts[1]) + i) if hosts else "" for i in range(count)]
    return [f"{address}{published[i]}{':' if published[i] or address else ''}{first + i}"
            f"{slash}{protocol}" for i in range(count)]


def _address_prefix(body: str) -> tuple[str, str]:
    """`("127.0.0.1:", "8000:80")` of `"127.0.0.1:8000:80"`; `("", body)` without one."""
    if body.startswith("[") and "]:" in body:
        end = body.index("]:") + 2
        return body[:end], body[end:]
    if body.count(":") == 2:
        address, _, rest = body.partition(":")
        return f"{address}:", rest
    return "", body


def _port(port: dict[str, Any], _: str) -> str | dict[str, Any] | None:
    """A long-syntax port in the short syntax, but for a `mode` other than the default
    ingress (which the short syntax cannot say): that one as the mapping the model reads
    (parse_port), without compose's descriptive `name` and `app_protocol`."""
    if port.get("mode", "ingress") != "ingress":
        return {key: port[key] for key in LONG_PORT_KEYS if key in port}
    target, published, address = port.get("target"), port.get("published"), port.get("host_ip")
    text = (f"{address}:{published or ''}:{target}" if address
            else f"{published}:{target}" if published else f"{target}")
    return f"{text}/{port.get('protocol', 'tcp')}"


LONG_MOUNT_KEYS = {"type", "source", "target", "read_only", "consistency", "bind", "volume",
                   "tmpfs"}


def _mount(out: Translation, service: dict[str, Any]
           ) -> Callable[[dict[str, Any], str], str | dict[str, Any] | None]:
    """A long-syntax mount as the model reads it; a tmpfs one joins the service's `tmpfs`
    with its size and mode. A bind creates its missing host folder as compose v2 decides
    (compose-go 2.9's model, pkg/compose create.go): with `bind.create_host_path: true`,
    or without any `bind:` (compose then uses the engine's binds, which make the folder);
    `bind:` without create_host_path: true goes through the mount API, which refuses a
    missing folder."""
    def write(mount: dict[str, Any], at: str) -> str | dict[str, Any] | None:
        kind, target = mount.get("type", "volume"), mount.get("target")
        if set(mount) - LONG_MOUNT_KEYS or not target:
            return None
        options = {"bind": _mapping(mount.get("bind")), "volume": _mapping(mount.get("volume")),
                   "tmpfs": _mapping(mount.get("tmpfs"))}
        taken = {"bind": {"propagation", "create_host_path", "selinux"}, "volume": {"nocopy"},
                 "tmpfs": {"size", "mode"}}
        extra = [f"{group}.{key}" for group in options
                 for key in sorted(set(options[group]) - taken[group])]
        if extra:
            _not_yet(out, f"{at}.{extra[0]}")
            return ""
        if kind == "tmpfs":
            try:
                service.setdefault("tmpfs", []).append(_tmpfs_entry(target, options["tmpfs"]))
            except ValueError as error:
                out.problems.append(PlanProblem(f"{at}.tmpfs.size", str(error)))
            return ""
        if kind not in ("volume", "bind") or not mount.get("source"):
            return None
        bind = options["bind"]
        written = {"source": mount["source"], "target": target, "named": kind == "volume",
                   "read_only": mount.get("read_only", False),
                   "propagation": bind.get("propagation"), "selinux": bind.get("selinux"),
                   "nocopy": options["volume"].get("nocopy", False),
                   "create_host_path": kind == "bind" and (
                       mount.get("bind") is None or bind.get("create_host_path", False))}
        return {key: value for key, value in written.items() if value is not None}

    return write


def _tmpfs_entry(target: str, options: dict[str, Any]) -> str:
    """The engine's tmpfs form `target:size=N,mode=O` (compose's mode is the number's bits,
    written in octal for the engine)."""
    written = []
    if options.get("size") is not None:
        written.append(f"size={parse_bytes(options['size'])}")
    if isinstance(options.get("mode"), int):
        written.append(f"mode={options['mode']:o}")
    return f"{target}:{','.join(written)}" if written else target


def _networks(out: Translation, at: str, spec: dict[str, Any],
              service: dict[str, Any]) -> None:
    networks = spec.get("networks")
    if not isinstance(networks, dict):
        if networks is not None:
            service["networks"] = networks
        return
    kept: dict[Any, Any] = {}
    for name, attachment in networks.items():
        extra = set(_mapping(attachment)) - ATTACHMENT_KEYS
        for key in sorted(extra):
            _not_yet(out, f"{at}.networks.{name}.{key}")
        kept[name] = {key: value for key, value in _mapping(attachment).items()
                      if key not in extra}
    service["networks"] = kept


def _deploy(out: Translation, at: str, deploy: object, service: dict[str, Any]) -> None:
    if deploy is None:
        return
    if not isinstance(deploy, dict):
        service["deploy"] = deploy
        return
    for key in deploy:
        if key in SWARM_ONLY:
            _swarm_only(out, f"{at}.deploy.{key}", deploy[key])
        elif key not in ("replicas", "resources", "restart_policy"):
            _not_yet(out, f"{at}.deploy.{key}")
    # Kept as written for `--backend swarm`, which carries every one of them out.
    swarm = {key: deploy[key] for key in (*SWARM_ONLY, "restart_policy") if key in deploy}
    if swarm:
        service["swarm"] = swarm
        out.sources[f"{at}.swarm"] = f"{at}.deploy"
    _restart_policy(out, at, deploy.get("restart_policy"), service)
    if "replicas" in deploy:
        service["replicas"] = deploy["replicas"]
        out.sources[f"{at}.replicas"] = f"{at}.deploy.replicas"
    resources = deploy.get("resources")
    if isinstance(resources, dict):
        kept = {}
        for kind, taken in RESOURCE_KEYS.items():
            amounts = _mapping(resources.get(kind))
            for key in amounts:
                if key not in taken:
                    _not_yet(out, f"{at}.deploy.resources.{kind}.{key}")
            kept[kind] = {k: v for k, v in amounts.items() if k in taken}
        for key in resources:
            if key not in ("limits", "reservations"):
                _not_yet(out, f"{at}.deploy.resources.{key}")
        service["deploy"] = {"resources": kept}


# deploy keys for a swarm, which compose v2 ignores on one engine: so does ollamatopo, with a
# warning (nothing is dropped silently). `mode: global` is one container on one engine.
SWARM_ONLY = {"labels", "placement", "update_config", "rollback_config", "endpoint_mode",
              "mode"}
RESOURCE_KEYS = {"limits": ("cpus", "memory", "pids"),
                 "reservations": ("cpus", "memory", "devices")}
# compose's restart_policy conditions as restart policies (pkg/compose's mapping).
RESTART_CONDITIONS = {"none": "no", "no": "no", "on-failure": "on-failure", "any": "always",
                      "always": "always", "unless-stopped": "unless-stopped"}
# Service keys compose-go refuses to see differ from their deploy.resources twin once that
# part of deploy.resources is written (even without the twin key).
TWINS: dict[str, tuple[str, str, Callable[[Any], float]]] = {
    "mem_limit": ("limits", "memory", parse_bytes), "cpus": ("limits", "cpus", parse_cpus),
    "pids_limit": ("limits", "pids", int),
    "mem_reservation": ("reservations", "memory", parse_bytes)}


def _swarm_only(out: Translation, where: str, value: object) -> None:
    if where.endswith(".mode") and value not in ("replicated", "global"):
        _not_yet(out, where)
    elif not (where.endswith(".mode") and value == "replicated"):  # what one engine does
        one = " (one engine is one node: one container)" if value == "global" else ""
        out.one_engine_warnings.append(
            f"{where}: a swarm setting; docker compose ignores it on one engine, and so does "
            f"ollamatopo{one}; `--backend swarm` carries it out")


def _restart_policy(out: Translation, at: str, policy: object, service: dict[str, Any]) -> None:
    """compose's deploy.restart_policy wins over `restart` on one engine: its condition and
    max_attempts become the engine's policy; delay and window are the swarm's."""
    if policy is None:
        return
    where = f"{at}.deploy.restart_policy"
    policy = _mapping(policy)
    condition = policy.get("condition", "no")  # compose v2 maps a missing one to none
    for key in sorted(set(policy) - {"condition", "max_attempts"}):
        _swarm_only(out, f"{where}.{key}", policy[key])
    if condition not in RESTART_CONDITIONS:
        out.problems.append(PlanProblem(f"{where}.condition", f"{condition!r} is not a "
                                        "condition: use none, on-failure or any"))
        return
    name, attempts = RESTART_CONDITIONS[condition], policy.get("max_attempts")
    if attempts is not None and name != "on-failure":
        out.problems.append(PlanProblem(f"{where}.max_attempts", "max_attempts goes with "
                                        "condition: on-failure (the engine refuses it with "
                                        f"{condition})"))
        return
    service["restart"] = f"{name}:{attempts}" if attempts is not None else name
    out.sources[f"{at}.restart"] = where


def _scale(out: Translation, at: str, spec: dict[str, Any], service: dict[str, Any]) -> None:
    """`scale` is deploy.replicas under its older name (compose-go copies it there); the two
    must agree when both are written."""
    if "scale" not in spec:
        return
    replicas = _mapping(spec.get("deploy")).get("replicas")
    if replicas is not None and str(replicas) != str(spec["scale"]):
        out.problems.append(PlanProblem(f"{at}.scale", f"scale {spec['scale']} differs from "
                                        f"deploy.replicas {replicas}: compose refuses distinct "
                                        "values; write one of them"))
        return
    service["replicas"] = spec["scale"]
    out.sources[f"{at}.replicas"] = f"{at}.scale"


def _distinct_twins(out: Translation, at: str, spec: dict[str, Any]) -> None:
    """compose-go's rule: `mem_limit`, `cpus`, `pids_limit` and `mem_reservation` must equal
    their deploy.resources twins once that part of deploy.resources is written."""
    resources = _mapping(_mapping(spec.get("deploy")).get("resources"))
    for key, (kind, twin, number) in TWINS.items():
        if key not in spec or kind not in resources:
            continue
        written = _mapping(resources[kind]).get(twin)
        try:
            same = written is not None and number(spec[key]) == number(written)
        except (TypeError, ValueError):
            continue  # the model says what is wrong with the value
        if not same:
            out.problems.append(PlanProblem(f"{at}.{key}", f"{key} differs from "
                                            f"deploy.resources.{kind}.{twin}: compose refuses "
                                            "distinct values; write it once"))


def _used_services(out: Translation, services: Mapping[Any, Any]) -> None:
    """compose-go's implied depends_on: a service that uses another one's container
    (network_mode/ipc/pid `service:NAME`, links, volumes_from) depends on it, started, and
    is restarted with it (but for volumes_from), unless depends_on says otherwise. A name
    that is no active service is left to the model's reference check."""
    for name, spec in services.items():
        service = out.tree["services"][name]
        if not isinstance(spec, dict) or "after" not in service:
            continue  # phased without depends_on: Plan.dependencies adds them
        for used, restart in service_references(spec).items():
            if used in services and used != name and used not in service["after"]:
                service["after"][used] = "started"
                if restart:
                    service.setdefault("dependency_options", {})[used] = {"required": True,
                                                                          "restart": True}


def _depends_on(out: Translation, at: str, value: object, inactive: Collection[str],
                service: dict[str, Any]) -> dict[str, str] | None:
    """The `after:` entries; `required`/`restart` other than the defaults go to the
    service's `dependency_options`. A `required: false` dependency whose profile is not
    active is left out with a warning (compose v2 starts without it; a service the file
    does not declare is an error for both, required or not)."""
    if value is None:
        return None
    if isinstance(value, list):
        return {str(name): "started" for name in value}
    if not isinstance(value, dict):
        out.problems.append(PlanProblem(f"{at}.depends_on", "expected a list of services or a "
                                        "map of service to {condition: ...}"))
        return {}
    dependencies = {}
    for name, options in value.items():
        where = f"{at}.depends_on.{name}"
        options = _mapping(options)
        condition = options.get("condition", "service_started")
        if condition not in CONDITIONS:
            out.problems.append(PlanProblem(f"{where}.condition", f"{condition!r} is not a "
                                            "condition: use service_started, service_healthy "
                                            "or service_completed_successfully"))
            continue
        required, restart = options.get("required", True), options.get("restart", False)
        if required is False and name in inactive:
            out.warnings.append(f"{where}: {name!r} is in no active profile; required: false, "
                                "so the service starts without it")
            continue
        if required is not True or restart is not False:
            service.setdefault("dependency_options", {})[str(name)] = {
                "required": required, "restart": restart}
            out.sources[f"{at}.dependency_options.{name}"] = where
        dependencies[str(name)] = CONDITIONS[condition]
    return dependencies


def _healthcheck(out: Translation, at: str, check: object, service: dict[str, Any]) -> None:
    """The healthcheck's test as ollamatopo's own exec probe; its deadline from compose's
    numbers. Without one, a service is ready once it runs (as compose's service_started)."""
    if check is None:
        return
    where = f"{at}.healthcheck"
    if not isinstance(check, dict):
        out.problems.append(PlanProblem(where, "expected a mapping with test, interval, "
                                               "timeout, retries, start_period"))
        return
    for key in set(check) - {"test", "interval", "timeout", "retries", "start_period",
                             "start_interval", "disable"}:
        out.problems.append(PlanProblem(f"{where}.{key}", "unknown key: a healthcheck takes "
                                        "test, interval, timeout, retries, start_period, "
                                        "start_interval, disable"))
    test = check.get("test")
    if check.get("disable") or test == ["NONE"]:
        service["ready"] = {"none": True}
        # The image's own HEALTHCHECK is switched off too, as compose does (on a swarm it
        # would hold the task `starting`, and kill it when it fails).
        service["healthcheck"] = {"test": ["NONE"]}
    else:
        argv = _health_argv(test)
        if argv is None:
            out.problems.append(PlanProblem(f"{where}.test", "expected a command: [CMD, ...], "
                                            "[CMD-SHELL, '...'], a string, or [NONE]"))
            return
        try:
            deadline = (parse_duration(check.get("start_period", 0))
                        + parse_duration(check.get("interval", HEALTH_INTERVAL_S))
                        * int(check.get("retries", HEALTH_RETRIES)))
        except (TypeError, ValueError) as error:
            out.problems.append(PlanProblem(where, str(error)))
            return
        service["ready"] = {"exec": argv, "timeout": max(deadline, 1.0)}
        # The container keeps it too, for the engine and `docker ps`.
        service["healthcheck"] = {"test": ["CMD", *argv] if test and isinstance(test, list)
                                  and test[0] == "CMD" else ["CMD-SHELL", argv[-1]],
                                  **{key: check[key] for key in (
                                      "interval", "timeout", "retries", "start_period",
                                      "start_interval") if key in check}}
        out.sources[f"{at}.healthcheck"] = where
    out.sources[f"{at}.ready"] = where


def _build(out: Translation, at: str, build: object, service: dict[str, Any]) -> None:
    """`build` as the model reads it (a path, or its keys); BuildKit's own keys are not
    carried out yet, its `x-` keys ignored."""
    if build is None:
        return
    if isinstance(build, dict):
        for key in sorted(BUILD_NOT_YET & set(build)):
            _not_yet(out, f"{at}.build.{key}")
        build = {key: value for key, value in build.items()
                 if key not in BUILD_NOT_YET and not str(key).startswith("x-")}
        if build.get("extra_hosts") is not None:
            build["extra_hosts"] = _host_list(build["extra_hosts"])
    service["build"] = build


def _health_argv(test: object) -> list[str] | None:
    if isinstance(test, str) and test:
        return ["/bin/sh", "-c", test]
    if isinstance(test, list) and len(test) >= 2 and all(isinstance(t, str) for t in test):
        if test[0] == "CMD":
            return list(test[1:])
        if test[0] == "CMD-SHELL" and len(test) == 2:
            return ["/bin/sh", "-c", test[1]]
    return None


def _extension(out: Translation, at: str, extension: object, service: dict[str, Any]) -> None:
    if extension is None:
        return
    where = f"{at}.{EXTENSION}"
    if not isinstance(extension, dict):
        out.problems.append(PlanProblem(where, "expected a mapping of ready, optional, "
                                               "load_balance, secrets"))
        return
    for key, value in extension.items():
        if key in EXTENSION_KEYS:
            service[key] = value
            out.sources[f"{at}.{key}"] = f"{where}.{key}"
        else:
            takes = ", ".join(sorted(EXTENSION_KEYS))
            out.problems.append(PlanProblem(f"{where}.{key}",
                                            f"unknown key: {EXTENSION} takes {takes}"))


# --- networks and volumes -------------------------------------------------------------------


def _network(out: Translation, name: str, spec: object) -> object:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        return spec
    at = f"networks.{name}"
    network: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("driver", "driver_opts", "internal", "labels", "attachable", "name",
                   "enable_ipv6"):
            network[key] = value
        elif key == "external":
            _external(value, network)
        elif key == "ipam":
            _ipam(out, at, value, network)
        elif key in NETWORK_KEYS:
            _not_yet(out, f"{at}.{key}")
        elif not str(key).startswith("x-"):
            out.problems.append(PlanProblem(f"{at}.{key}", "unknown key: a network takes "
                                            + ", ".join(sorted(NETWORK_KEYS))))
    return network


def _ipam(out: Translation, at: str, ipam: object, network: dict[str, Any]) -> None:
    ipam = _mapping(ipam)
    if ipam.get("driver", "default") != "default" or ipam.get("options"):
        _not_yet(out, f"{at}.ipam.driver")
    pools = ipam.get("config") or []
    families = [_family(_mapping(pool)) for pool in pools] if isinstance(pools, list) else []
    if not isinstance(pools, list) or len(set(families)) < len(families):
        _not_yet(out, f"{at}.ipam.config")  # one pool of each family: an IPv4 and an IPv6
        return
    for index, (pool, family) in enumerate(zip(pools, families, strict=True)):
        pool = _mapping(pool)
        for key in set(pool) - {"subnet", "gateway"}:
            _not_yet(out, f"{at}.ipam.config[{index}].{key}")
        for key in ("subnet", "gateway"):
            if key in pool:
                target = f"ipv6_{key}" if family == 6 else key
                network[target] = pool[key]
                out.sources[f"{at}.{target}"] = f"{at}.ipam.config[{index}].{key}"


def _family(pool: dict[str, Any]) -> int:
    """4 or 6: the pool's address family, by its subnet (else its gateway); an address
    that does not parse counts as 4, where the model says what is wrong with it."""
    for key in ("subnet", "gateway"):
        with contextlib.suppress(ValueError):
            return ipaddress.ip_network(str(pool.get(key)), strict=False).version
    return 4


def _volume(out: Translation, name: str, spec: object) -> object:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        return spec
    at = f"volumes.{name}"
    volume = {key: value for key, value in spec.items()
              if key in ("driver", "driver_opts", "labels", "name")}
    for key in spec:
        if key == "external":
            _external(spec[key], volume)
        elif key not in VOLUME_KEYS and not str(key).startswith("x-"):
            out.problems.append(PlanProblem(f"{at}.{key}", "unknown key: a volume takes "
                                            + ", ".join(sorted(VOLUME_KEYS))))
    return volume


def _external(value: object, target: dict[str, Any]) -> None:
    """`external: true`, or the old `external: {name: N}` (compose still reads it)."""
    if isinstance(value, dict):
        target["external"] = True
        if "name" in value:
            target["name"] = value["name"]
    else:
        target["external"] = value


# --- several files ---------------------------------------------------------------------------

# Sequences compose replaces rather than appends (the spec's "shell commands").
REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}
# Sequences or mappings that are one mapping, whichever form each file wrote.
# (by their path below the service)
AS_MAPPING = {("environment",), ("labels",), ("extra_hosts",), ("depends_on",),
              ("networks",), ("sysctls",), ("build", "extra_hosts")}


def merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged over `base` by the Compose Specification's rules: mappings merged
    key by key, sequences appended, `command`, `entrypoint` and `healthcheck.test`
    replaced, `ports` unique by address and `volumes` by target (the override's wins),
    and the keys written either way (environment, labels, depends_on, networks, ...)
    merged as mappings."""
    merged: dict[str, Any] = _merge(base, override, ())
    return merged


def _merge(base: Any, override: Any, path: tuple[str, ...]) -> Any:
    in_service = len(path) >= 3 and path[0] == "services"
    key = path[-1] if path else ""
    if in_service and path[2:] in AS_MAPPING:
        base, override = _as_mapping(key, base), _as_mapping(key, override)
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{name: _merge(base[name], value, (*path, str(name)))
                           if name in base else value for name, value in override.items()}}
    if isinstance(base, list) and isinstance(override, list) and in_service:
        if path[2:] in REPLACED:
            return override
        if path[2:] in {("ports",), ("volumes",), ("secrets",), ("configs",)}:
            unique = {"ports": _port_key, "secrets": _file_target,
                      "configs": _file_target}.get(key, _mount_target)
            kept = {unique(item): item for item in base}
            kept.update({unique(item): item for item in override})
            return list(kept.values())
        return [*base, *override]
    return override


def _as_mapping(key: str, value: Any) -> Any:
    if not isinstance(value, list):
        return value
    if key in ("depends_on", "networks"):
        return {str(name): {} if key == "networks" else {"condition": "service_started"}
                for name in value}
    separator = ":" if key == "extra_hosts" else "="
    pairs = (str(item).partition("=" if "=" in str(item) else separator) for item in value)
    return {name: (text if sep else None) for name, sep, text in pairs}


def _port_key(port: Any) -> object:
    if isinstance(port, dict):
        return (port.get("host_ip", ""), str(port.get("published", "")), port.get("target"),
                port.get("protocol", "tcp"))
    return str(port)


def _mount_target(mount: Any) -> object:
    if isinstance(mount, dict):
        return mount.get("target")
    parts = str(mount).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _file_target(item: Any) -> object:
    """A secret's or config's place in a service's list (compose-go's mountIndexer)."""
    return item.get("target", item.get("source")) if isinstance(item, dict) else item


def compose_lines(lines: Mapping[str, int], sources: Mapping[str, str]) -> dict[str, int]:
    """Lines for the plan's paths that came from other compose paths, so a problem found in
    the plan model still names the compose file's line."""
    return {plan_path: lines[source] for plan_path, source in sources.items()
            if source in lines and plan_path not in lines}
