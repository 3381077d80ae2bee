"""A plan service as a swarm service (`docker service create`'s spec), and the plan's
networks as overlay networks. Pure: the plan in, the services API's payloads out.

Names follow `docker stack deploy`: `<project>_<service>` for services, `<project>_<net>`
for networks. The project's labels and the spec hash go on the service (not on its
containers: the container backend reads container labels). A key this backend does not
carry out yet is named by `swarm_problems`, before anything is made. Compose's secrets
and configs are swarm objects the services refer to: `_swarm_objects`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ollamatopo._errors import PlanProblem
from ollamatopo.engine._payloads import (
    LABEL_DEPENDS,
    LABEL_HASH,
    LABEL_PROJECT,
    LABEL_SERVICE,
    NetworkConfig,
    config_hash,
    healthcheck_payload,
    network_config,
    plan_network_name,
    plan_networks,
    plan_volume_name,
    service_networks,
)
from ollamatopo.engine._swarm import ServiceConfig
from ollamatopo.engine._swarm_objects import object_problems
from ollamatopo.plan._model import (
    HEALTH_INTERVAL_S,
    HEALTH_RETRIES,
    HealthcheckSpec,
    Plan,
    ServiceSpec,
    UpdateConfig,
    VolumeMount,
)
from ollamatopo.plan._replicas import REPLICA_TOKEN

NS = 1_000_000_000
# How often a start is checked on a swarm when the file gives no start_interval.
START_INTERVAL_S = 1.0
# ServiceSpec fields this backend carries out; any other one set is refused by name.
CARRIED = frozenset({
    "image", "command", "entrypoint", "environment", "secrets", "env_file", "labels",
    "hostname", "user", "working_dir", "stop_grace_period", "stop_signal", "healthcheck",
    "volumes", "tmpfs", "init", "read_only", "cap_add", "cap_drop", "extra_hosts", "dns",
    "dns_search", "dns_opt", "sysctls", "ulimits", "deploy", "swarm", "gpus", "ports",
    "expose", "networks", "replicas", "ready", "after", "dependency_options", "optional",
    "restart", "mem_limit", "mem_reservation", "cpus", "pids_limit", "tty", "stdin_open",
    "group_add", "logging", "pull_policy", "label_file", "secret_files", "config_files",
    "load_balance"})  # a config by then: plan/_swarm_balancers.py
# compose's restart policies as the swarm's conditions (what `docker stack deploy` does).
RESTART_CONDITIONS = {"no": "none", "always": "any", "unless-stopped": "any",
                      "on-failure": "on-failure"}


def swarm_problems(plan: Plan) -> list[PlanProblem]:
    """Keys of the plan this backend does not carry out yet, each at its path."""
    problems = list(object_problems(plan))
    for name, spec in plan.services.items():
        for field, info in type(spec).model_fields.items():
            if field in CARRIED:
                continue
            if getattr(spec, field) != info.get_default(call_default_factory=True):
                problems.append(PlanProblem(
                    f"services.{name}.{field}", "not supported yet on a swarm "
                    "(--backend swarm): docs/swarm.md lists what it carries out"))
        if spec.pull_policy not in (None, "missing", "if_not_present"):
            problems.append(PlanProblem(f"services.{name}.pull_policy", "not supported yet on "
                                        "a swarm: its nodes pull what they miss"))
        problems.extend(PlanProblem(f"services.{name}.networks.{key}.{field}",
                                    "not supported yet on a swarm: the swarm gives the "
                                    "addresses and sets the endpoints up")
                        for key, attachment in spec.networks.items()
                        for field in ("ipv4_address", "ipv6_address", "link_local_ips",
                                      "driver_opts")
                        if getattr(attachment, field))
        problems.extend(_port_problems(name, spec))
        problems.extend(PlanProblem(f"services.{name}.environment.{key}", _REPLICA_REFUSED)
                        for key, value in spec.environment.items()
                        if value is not None and REPLICA_TOKEN in value)
        problems.extend(PlanProblem(f"services.{name}.volumes[{index}]", _relabel_refused(mount))
                        for index, mount in enumerate(spec.volumes) if mount.selinux)
    return problems


# The swarm reads `{{...}}` in an environment value as its own Go template, where
# `{{replica}}` is no function: the task would be rejected at every start.
_REPLICA_REFUSED = (f"{REPLICA_TOKEN} names one engine's replica containers: a swarm's tasks "
                    "take the swarm's own templates instead, for example {{.Task.Slot}} (the "
                    "task's number, 1 to replicas) or {{.Task.Name}}")


def _relabel_refused(mount: VolumeMount) -> str:
    """A swarm service's mounts have no relabel, of a bind or of a named volume (docker
    stack deploy drops it): what to do instead, for its kind."""
    where = ("the volume's folder on each node (under the engine's volumes directory)"
             if mount.named else "the folder on each node")
    return (f"SELinux relabel {mount.selinux!r}: not supported on a swarm (the services "
            "API's mounts have no relabel; docker stack deploy drops it): remove it, or "
            f"relabel {where} (chcon -Rt container_file_t)")


def _port_problems(name: str, spec: ServiceSpec) -> list[PlanProblem]:
    """A swarm publishes a port on every address of a node (no `host_ip`), and a fixed
    host-mode port on the node of each task: two of the service's tasks on one node
    would want it both (the swarm would leave the second pending). One engine's check of
    replicas' host ports is not made for a swarm (plan/_replicas.expand_replicas)."""
    one_per_node = spec.swarm.mode == "global" or spec.replicas == 1 \
        or spec.swarm.placement.max_replicas_per_node == 1
    problems = []
    for index, port in enumerate(spec.ports):
        at = f"services.{name}.ports[{index}]"
        if port.host_ip:
            problems.append(PlanProblem(at, f"a swarm publishes on every address of its "
                                        f"nodes, not on {port.host_ip} alone: leave host_ip "
                                        "out"))
        if port.host_port_last is not None:
            problems.append(PlanProblem(at, f"a range of host ports ({port.published}) for "
                                        "one container port: not supported on a swarm, "
                                        "which publishes one port per target: choose one "
                                        "host port"))
        elif port.mode == "host" and port.host_port is not None and not one_per_node:
            problems.append(PlanProblem(at, f"host-mode port {port.host_port} binds on the "
                                        f"node of each task: {spec.replicas} replicas could "
                                        "put two on one node; set deploy.placement."
                                        "max_replicas_per_node: 1 (or deploy.mode: global)"))
    return problems


def overlay_networks(plan: Plan) -> list[NetworkConfig]:
    """The plan's networks as attachable overlays (attachable: a probe can join them)."""
    return [network_config(plan.project, key, spec.model_copy(
        update={"driver": "overlay", "attachable": True}))
        if not spec.external else network_config(plan.project, key, spec)
        for key, spec in plan_networks(plan).items()]


def service_name(project: str, service: str) -> str:
    return f"{project}_{service}"


def service_config(plan: Plan, service: str, base_dir: Path, *,
                   has_start_interval: bool = False, job: bool = False) -> ServiceConfig:
    """`has_start_interval`: the swarm's engines take a healthcheck's StartInterval.
    `job`: a one-shot service (a dependent waits for it to complete), as a swarm job:
    its replicas run to completion once, one at a time, and are not restarted unless
    its restart policy says so."""
    spec = plan.services[service]
    task_template: dict[str, Any] = {
        "ContainerSpec": _container_spec(plan, spec, base_dir, has_start_interval),
        "Resources": _resources(spec),
        "RestartPolicy": _restart_policy(spec),
        "Placement": _placement(spec),
        "Networks": [{"Target": plan_network_name(plan, key),
                      "Aliases": [service, *(spec.networks[key].aliases
                                             if key in spec.networks else ())]}
                     for key in service_networks(spec)],
    }
    if spec.logging is not None and spec.logging.driver:
        task_template["LogDriver"] = {"Name": spec.logging.driver,
                                      "Options": dict(spec.logging.options)}
    global_mode = spec.swarm.mode == "global"
    kwargs: dict[str, Any] = {
        "task_template": _without_empty(task_template),
        "mode": {"Global": {}} if global_mode else {"ReplicatedJob": {
            "MaxConcurrent": 1, "TotalCompletions": spec.replicas}} if job
        else {"Replicated": {"Replicas": spec.replicas}},
        "endpoint_spec": _endpoint(spec),
    }
    for key, config in (("update_config", spec.swarm.update_config),
                        ("rollback_config", spec.swarm.rollback_config)):
        if config is not None:
            kwargs[key] = _update(config)
    digest = config_hash(kwargs)
    labels = {**spec.swarm.labels, LABEL_PROJECT: plan.project, LABEL_SERVICE: service,
              LABEL_HASH: digest,
              LABEL_DEPENDS: ",".join(sorted(plan.dependencies(service)))}
    return ServiceConfig(service, service_name(plan.project, service), spec.image,
                         None if global_mode else spec.replicas, kwargs, labels, digest)


def _container_spec(plan: Plan, spec: ServiceSpec, base_dir: Path,
                    has_start_interval: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "Image": spec.image,
        "Command": spec.entrypoint, "Args": spec.command,
        "Env": [f"{key}={value}" for key, value in sorted(spec.environment.items())],
        "Labels": dict(spec.labels),
        "Hostname": spec.hostname, "User": spec.user, "Dir": spec.working_dir,
        "StopGracePeriod": int(spec.stop_grace_period * NS), "StopSignal": spec.stop_signal,
        "Mounts": [*_mounts(plan, spec, base_dir), *_tmpfs(spec)],
        "Init": spec.init or None, "ReadOnly": spec.read_only or None,
        "CapabilityAdd": list(spec.cap_add) or None,
        "CapabilityDrop": list(spec.cap_drop) or None,
        "Hosts": [_host_line(entry) for entry in spec.extra_hosts] or None,
        "Sysctls": dict(spec.sysctls) or None,
        "Ulimits": [{"Name": name, "Soft": limit.soft, "Hard": limit.hard}
                    for name, limit in spec.ulimits.items()] or None,
        "TTY": spec.tty or None, "OpenStdin": spec.stdin_open or None,
        "Groups": list(spec.group_add) or None,
    }
    if spec.dns or spec.dns_search or spec.dns_opt:
        container["DNSConfig"] = {"Nameservers": list(spec.dns), "Search": list(spec.dns_search),
                                  "Options": list(spec.dns_opt)}
    if spec.healthcheck is not None:
        container["Healthcheck"] = swarm_healthcheck(spec.healthcheck,
                                                     has_start_interval=has_start_interval)
    return _without_empty(container)


def _mounts(plan: Plan, spec: ServiceSpec, base_dir: Path) -> list[dict[str, Any]]:
    """Named volumes are each node's own volume of that name; a bind's source must exist
    on the node the task lands on, whatever its create_host_path (as with `docker stack
    deploy`: a swarm makes no missing folder)."""
    mounts = []
    for mount in spec.volumes:
        source = (plan_volume_name(plan, mount.source) if mount.named
                  else str((base_dir / Path(mount.source).expanduser()).resolve()))
        entry: dict[str, Any] = {"Type": "volume" if mount.named else "bind",
                                 "Source": source, "Target": mount.target,
                                 "ReadOnly": mount.read_only}
        if mount.named:
            entry["VolumeOptions"] = {"Labels": {LABEL_PROJECT: plan.project},
                                      **({"NoCopy": True} if mount.nocopy else {})}
        elif mount.propagation:
            entry["BindOptions"] = {"Propagation": mount.propagation}
        mounts.append(entry)
    return mounts


def _tmpfs(spec: ServiceSpec) -> list[dict[str, Any]]:
    mounts = []
    for entry in spec.tmpfs:
        target, _, options = entry.partition(":")
        tmpfs: dict[str, Any] = {}
        for option in filter(None, options.split(",")):
            key, _, value = option.partition("=")
            if key == "size":
                tmpfs["SizeBytes"] = int(value)
            elif key == "mode":
                tmpfs["Mode"] = int(value, 8)
        mounts.append({"Type": "tmpfs", "Target": target,
                       **({"TmpfsOptions": tmpfs} if tmpfs else {})})
    return mounts


def _host_line(entry: str) -> str:
    """compose's `host:address` as the swarm's hosts-file line `address host`."""
    host, _, address = entry.partition(":")
    return f"{address} {host}"


def swarm_healthcheck(check: HealthcheckSpec, *, has_start_interval: bool) -> dict[str, Any]:
    """The healthcheck as deployed on a swarm, in the services API's spelling (`Test`, ...).

    A swarm keeps a task `starting`, and its name out of the swarm's DNS, until a check
    passed, and the engine runs the first check one `interval` after the start: with the
    seed's 10-15 s intervals every level of the graph would cost an interval, however soon
    the service answers (docs/swarm.md). So the start is checked every `start_interval`
    (the file's, else START_INTERVAL_S): on an engine with `StartInterval` (API 1.44) as
    written, with a start period of at least one interval (a failure the file's timing
    would not have seen yet does not count); on an older engine by checking every
    start interval throughout, with the retries scaled so that a check failing at once
    makes the task unhealthy after the file's interval x retries, as written. A file that
    wants the engine's first check at `interval` says `start_interval` = `interval`.
    """
    payload = {"".join(part.title() for part in key.split("_")): value
               for key, value in healthcheck_payload(check).items()}
    if check.test[:1] == ["NONE"]:
        return payload
    interval = check.interval if check.interval is not None else HEALTH_INTERVAL_S
    start = check.start_interval if check.start_interval is not None else START_INTERVAL_S
    if start >= interval:
        return payload
    if has_start_interval:
        payload["StartInterval"] = int(start * NS)
        payload["StartPeriod"] = int(max(check.start_period or 0.0, interval) * NS)
        return payload
    retries = check.retries if check.retries is not None else HEALTH_RETRIES
    payload["Interval"] = int(start * NS)
    payload["Retries"] = math.ceil(retries * interval / start)
    return payload


def _resources(spec: ServiceSpec) -> dict[str, Any]:
    limits, reservations = spec.deploy.resources.limits, spec.deploy.resources.reservations
    cpus = limits.cpus if limits.cpus is not None else spec.cpus
    memory = limits.memory if limits.memory is not None else spec.mem_limit
    reserved_memory = reservations.memory if reservations.memory is not None \
        else spec.mem_reservation
    gpus = sum(max(request.count, 0) for request in spec.gpus
               if request.count is not None) + sum(
        max(device.count, 0) for device in reservations.devices or ()
        if device.count is not None and "gpu" in device.capabilities)
    return _without_empty({
        "Limits": _without_empty({
            "NanoCPUs": round(cpus * NS) if cpus is not None else None,
            "MemoryBytes": memory,
            "Pids": limits.pids if limits.pids is not None else spec.pids_limit}),
        "Reservations": _without_empty({
            "NanoCPUs": round(reservations.cpus * NS) if reservations.cpus is not None
            else None,
            "MemoryBytes": reserved_memory,
            # A swarm schedules GPUs as the nodes' generic resources (dockerd's
            # `node-generic-resources`), kind `gpu`.
            "GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": gpus}}]
            if gpus else None}),
    })


def _restart_policy(spec: ServiceSpec) -> dict[str, Any]:
    written = spec.swarm.restart_policy
    if written is not None:
        return _without_empty({
            "Condition": written.condition,
            "Delay": int(written.delay * NS) if written.delay is not None else None,
            "MaxAttempts": written.max_attempts,
            "Window": int(written.window * NS) if written.window is not None else None})
    if "restart" not in spec.model_fields_set:
        return {}  # the swarm's own default, `any`, as `docker stack deploy` leaves it
    name, _, count = spec.restart.partition(":")
    return _without_empty({"Condition": RESTART_CONDITIONS.get(name, "any"),
                           "MaxAttempts": int(count) if count else None})


def _placement(spec: ServiceSpec) -> dict[str, Any]:
    placement = spec.swarm.placement
    return _without_empty({
        "Constraints": list(placement.constraints) or None,
        "Preferences": [{"Spread": {"SpreadDescriptor": preference["spread"]}}
                        for preference in placement.preferences
                        if "spread" in preference] or None,
        "MaxReplicas": placement.max_replicas_per_node})


def _endpoint(spec: ServiceSpec) -> dict[str, Any]:
    return _without_empty({
        "Mode": spec.swarm.endpoint_mode or "vip",
        "Ports": [_without_empty({"Protocol": port.protocol,
                                  "TargetPort": port.container_port,
                                  "PublishedPort": port.host_port,
                                  "PublishMode": port.mode})
                  for port in spec.ports] or None})


def _update(config: UpdateConfig) -> dict[str, Any]:
    return _without_empty({
        "Parallelism": config.parallelism,
        "Delay": int(config.delay * NS) if config.delay is not None else None,
        "FailureAction": config.failure_action,
        "Monitor": int(config.monitor * NS) if config.monitor is not None else None,
        "MaxFailureRatio": config.max_failure_ratio,
        "Order": config.order})


def _without_empty(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without the keys left unset (None, {} or []): the swarm's defaults."""
    return {key: value for key, value in payload.items() if value not in (None, {}, [])}

