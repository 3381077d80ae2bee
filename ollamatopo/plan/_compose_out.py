"""The resolved plan as a Compose Specification file: what `ollamatopo config` prints (like
`docker compose config`), and so the converter from ollamatopo's own dialect.

Everything compose knows is written in compose's keys, with every dependency spelled out
(`depends_on` with its condition, phase defaults included); the rest goes under
`x-ollamatopo`. As compose's own `config` writes them: environments resolved (env_files
read, variables replaced, and every `$` written `$$`, since compose interpolates what it
reads), relative paths made absolute (bind mounts, templates), memory as a string of
bytes (compose's schema wants a string). Pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._compose import EXTENSION
from ollamatopo.plan._container import compose_form
from ollamatopo.plan._interpolate import escaped
from ollamatopo.plan._model import (
    Condition,
    DependencyOptions,
    NetworkSpec,
    Plan,
    ServiceSpec,
    VolumeSpec,
)

CONDITION_NAMES = {Condition.STARTED: "service_started", Condition.HEALTHY: "service_healthy",
                   Condition.COMPLETED: "service_completed_successfully"}


def to_compose(plan: Plan, base: Path) -> dict[str, Any]:
    """`base`: the folder relative paths of the plan start from."""
    document: dict[str, Any] = {"name": plan.project,
                                "services": {name: _service(plan, name, spec, base)
                                             for name, spec in plan.services.items()}}
    if plan.networks:
        document["networks"] = {name: _network(spec) for name, spec in plan.networks.items()}
    if plan.volumes:
        document["volumes"] = {name: _volume(spec) for name, spec in plan.volumes.items()}
    for kind in file_objects.KINDS:  # their sources, never a value
        if getattr(plan, kind):
            document[kind] = {name: file_objects.definition(spec, base)
                              for name, spec in getattr(plan, kind).items()}
    document[EXTENSION] = {"phases": [{"name": phase.name, "services": list(phase.services)}
                                      for phase in plan.phases]}
    written: dict[str, Any] = escaped(document)
    return written


def _service(plan: Plan, name: str, spec: ServiceSpec, base: Path) -> dict[str, Any]:
    service: dict[str, Any] = {"image": spec.image}
    if spec.build is not None:  # the context absolute, as compose's config writes it
        service["build"] = {"context": str(spec.build.context_in(base)),
                            **spec.build.model_dump(exclude_defaults=True,
                                                    exclude={"context"})}
    for key in ("command", "entrypoint", "hostname", "user", "working_dir", "container_name"):
        if getattr(spec, key) is not None:
            service[key] = getattr(spec, key)
    if spec.expose:
        service["expose"] = list(spec.expose)
    if spec.healthcheck is not None:  # the container's own (x-ollamatopo.ready is the probe)
        service["healthcheck"] = {key: f"{value:g}s" if isinstance(value, float) else value
                                  for key, value in spec.healthcheck.model_dump(
                                      exclude_none=True).items()}
    if spec.environment:
        service["environment"] = dict(spec.environment)
    if spec.env_file:  # the plan as declared has not read them: name them, absolute
        service["env_file"] = [
            {"path": str((base / Path(ref.path).expanduser()).resolve()), "required": False}
            if not ref.required else str((base / Path(ref.path).expanduser()).resolve())
            for ref in spec.env_file]
    if spec.ports:
        # the short form has no mode: a host-mode port in the long form
        service["ports"] = [str(port) if port.mode == "ingress" else port.long_form()
                            for port in spec.ports]
    if spec.volumes:
        service["volumes"] = [(mount if mount.named else mount.model_copy(
            update={"source": str((base / mount.source).resolve())})).compose_form()
            for mount in spec.volumes]
    if spec.networks:
        service["networks"] = {key: network.model_dump(exclude_defaults=True)
                               for key, network in spec.networks.items()}
    for key in ("labels", "cap_add", "cap_drop", "security_opt", "tmpfs", "extra_hosts"):
        if getattr(spec, key):
            service[key] = getattr(spec, key)
    for key in ("read_only", "init"):
        if getattr(spec, key):
            service[key] = True
    if spec.restart != "no":
        service["restart"] = spec.restart
    service.update(compose_form(spec, base))  # ulimits, sysctls, network_mode, gpus...
    service["stop_grace_period"] = f"{spec.stop_grace_period:g}s"
    for moment in ("post_start", "pre_stop"):
        if getattr(spec, moment):
            service[moment] = [hook.model_dump(exclude_defaults=True)
                               for hook in getattr(spec, moment)]
    deploy = spec.deploy.model_dump(exclude_none=True, exclude_defaults=True)
    for amounts in (deploy.get("resources") or {}).values():
        if "memory" in amounts:
            amounts["memory"] = str(amounts["memory"])
    if spec.replicas != 1:
        deploy["replicas"] = spec.replicas
    deploy.update(_swarm_deploy(spec))
    if deploy:
        service["deploy"] = deploy
    dependencies = plan.dependencies(name)
    # An empty map says "nothing", where the phases would otherwise add their default.
    if dependencies or plan.phase_of(name) != plan.phases[0].name:
        service["depends_on"] = {
            dependency: {"condition": CONDITION_NAMES[condition],
                         **spec.dependency_options.get(dependency, DependencyOptions())
                         .model_dump(exclude_defaults=True)}
            for dependency, condition in dependencies.items()}
    extension: dict[str, Any] = {"ready": spec.ready.model_dump(by_alias=True,
                                                                 exclude_none=True)}
    if spec.optional:
        extension["optional"] = True
    if spec.load_balance is not None:
        balance = spec.load_balance.model_dump()
        balance["template"] = str((base / spec.load_balance.template).resolve())
        extension["load_balance"] = balance
    for kind, field in file_objects.FIELD.items():
        if getattr(spec, field):
            service[kind] = [file_objects.usage(grant) for grant in getattr(spec, field)]
    if spec.secrets:
        extension["secrets"] = list(spec.secrets)
    service[EXTENSION] = extension
    return service


def _identity(spec: NetworkSpec | VolumeSpec) -> dict[str, Any]:
    """`name` and `external` (an external object has nothing else)."""
    return {key: value for key, value in (("name", spec.name), ("external", spec.external))
            if value}


def _network(spec: NetworkSpec) -> dict[str, Any]:
    if spec.external:
        return _identity(spec)
    network: dict[str, Any] = {"driver": spec.driver, **_identity(spec)}
    if spec.attachable:
        network["attachable"] = True
    if spec.enable_ipv6:
        network["enable_ipv6"] = True
    pools = [{"subnet": subnet, **({"gateway": gateway} if gateway else {})}
             for subnet, gateway in spec.pools()]
    if pools:
        network["ipam"] = {"config": pools}
    options = dict(spec.driver_opts)
    if spec.mtu is not None:
        options["com.docker.network.driver.mtu"] = str(spec.mtu)
    if options:
        network["driver_opts"] = options
    if spec.internal:
        network["internal"] = True
    if spec.labels:
        network["labels"] = dict(spec.labels)
    return network


def _volume(spec: VolumeSpec) -> dict[str, Any]:
    if spec.external:
        return _identity(spec)
    volume: dict[str, Any] = {"driver": spec.driver, **_identity(spec)}
    if spec.driver_opts:
        volume["driver_opts"] = dict(spec.driver_opts)
    if spec.labels:
        volume["labels"] = dict(spec.labels)
    return volume


SWARM_DURATIONS = {"delay", "monitor", "window"}


def _swarm_deploy(spec: ServiceSpec) -> dict[str, Any]:
    """The swarm's deploy keys as written (durations in seconds, as compose writes them)."""
    def written(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: written(v, k) for k, v in node.items()}
        return f"{node:g}s" if key in SWARM_DURATIONS and isinstance(node, float) else node

    deploy = spec.swarm.model_dump(exclude_none=True, exclude_defaults=True)
    if spec.swarm.restart_policy is not None:  # its condition even when the default
        deploy["restart_policy"] = spec.swarm.restart_policy.model_dump(exclude_none=True)
    return dict(written(deploy))
