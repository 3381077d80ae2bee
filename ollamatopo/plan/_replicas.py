"""Replicas: one declared service, several containers with stable names.

`ollama-node-2: {replicas: 3}` becomes the services ollama-node-2, ollama-node-3 and
ollama-node-4 (a name that ends in a number counts up from it; any other name keeps
its own for the first replica and adds -2, -3, ...), so scaling up or down never
renames a replica that stays. Everything that names the declared service (phases,
`after:`, load balancer backends) then names all its replicas. A service with 0
replicas has no container, as in compose: it drops out of the plan, and a dependent does
not wait for it (compose's `up` skips a dependency scaled to 0); a container of it left
from before is an orphan, removed by `up`. Each replica's
hostname is its own name unless the plan sets one, and `{{replica}}` in an
environment value becomes that name (for example `NODE_ID: "{{replica}}"`). Not on a
swarm: its tasks are one service's, with the swarm's hostnames and templates (a
`{{replica}}` there is refused: engine/_swarm_payloads.swarm_problems).

Pure: a validated plan and the replica counts in, the expanded plan and any problems out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from ollamatopo._errors import PlanProblem
from ollamatopo.plan._model import LoadBalanceSpec, PhaseSpec, Plan, ServiceSpec

T = TypeVar("T")

NUMBERED = re.compile(r"^(?P<stem>.*?-)(?P<number>[0-9]+)$")
REPLICA_TOKEN = "{{replica}}"


def replica_names(service: str, count: int) -> list[str]:
    if count < 1:
        return []
    numbered = NUMBERED.match(service)
    if numbered:
        first = int(numbered["number"])
        return [f"{numbered['stem']}{first + index}" for index in range(count)]
    return [service, *(f"{service}-{index}" for index in range(2, count + 1))]


def is_replicated(plan: Plan, name: str, overrides: Mapping[str, int]) -> bool:
    return "replicas" in plan.services[name].model_fields_set or name in overrides


def replicated(plan: Plan, overrides: Mapping[str, int]) -> dict[str, list[str]]:
    """For each declared service, the names of its replicas."""
    return {name: replica_names(name, overrides.get(name, spec.replicas))
            if is_replicated(plan, name, overrides) else [name]
            for name, spec in plan.services.items()}


def expand_replicas(plan: Plan, overrides: Mapping[str, int] | None = None, *,
                    on_swarm: bool = False) -> tuple[Plan, list[PlanProblem]]:
    """The plan with a service per replica, as one engine runs it (a swarm runs the
    declared services again, with the swarm's own replicas: run/_swarm.one_service_each).

    The replicas' fixed host ports are checked here, where the counts are known for every
    command that loads the plan (`config` and `scale` included), but only for one engine
    (`on_swarm` False): its replicas are containers of one host, which cannot all bind a
    port. A swarm publishes an ingress port once for the service, whatever its replicas,
    and a host-mode port on the node of each task; engine/_swarm_payloads.swarm_problems
    checks that no node gets two of those."""
    overrides = overrides or {}
    problems = [PlanProblem(f"services.{name}", f"cannot scale {name!r}: no such service")
                for name in overrides if name not in plan.services]
    names = replicated(plan, overrides)
    owners = {name: name for name in plan.services}  # declared names come first
    for declared, replicas in names.items():
        for replica in replicas:
            if replica in owners and owners[replica] != declared:
                problems.append(PlanProblem(
                    f"services.{declared}.replicas",
                    f"replica {replica!r} would have the name of service "
                    f"{owners[replica]!r}: rename one of them or use fewer replicas"))
            owners.setdefault(replica, declared)
        if not on_swarm:
            problems.extend(_fixed_host_ports(declared, plan.services[declared],
                                              len(replicas)))
    problems.extend(_uses_what_is_not_there(plan, names))
    if problems or not any(is_replicated(plan, name, overrides) for name in plan.services):
        return plan, problems

    services: dict[str, ServiceSpec] = {}
    for declared, spec in plan.services.items():
        for replica in names[declared]:
            services[replica] = _replica(spec, replica, names, own_names=not on_swarm
                                         and is_replicated(plan, declared, overrides))
    phases = [PhaseSpec(name=phase.name,
                        services=[r for name in phase.services for r in names[name]])
              for phase in plan.phases]
    return plan.model_copy(update={"services": services, "phases": phases}), []


def _uses_what_is_not_there(plan: Plan, names: Mapping[str, list[str]]) -> list[PlanProblem]:
    """A running service cannot use the container of a service with 0 replicas (its
    network, pid or ipc namespace, volumes_from, links), nor balance over none."""
    problems: list[PlanProblem] = []
    for name, spec in plan.services.items():
        if not names[name]:
            continue
        problems.extend(PlanProblem(f"services.{name}", f"uses the container of {used!r}, "
                                    f"which has 0 replicas: give {used} a replica, or scale "
                                    f"{name} to 0 too")
                        for used in spec.service_references() if names.get(used) == [])
        backends = spec.load_balance.backends if spec.load_balance is not None else {}
        if backends and not any(names.get(backend, [backend]) for backend in backends):
            problems.append(PlanProblem(f"services.{name}.x-ollamatopo.load_balance.backends",
                                        "every backend has 0 replicas: the balancer would "
                                        "have no server; give one a replica"))
    return problems


def _fixed_host_ports(name: str, spec: ServiceSpec, count: int) -> list[PlanProblem]:
    """Replicas on one engine each bind their own host port: a fixed one only once, a
    range as many times as it has ports (the engine gives each container a free one, as
    it does compose's replicas; the one too many would fail at its start)."""
    if count < 2:
        return []
    return [PlanProblem(f"services.{name}.ports[{index}]",
                        f"{count} replicas cannot all publish host port {port.host_port}: "
                        "leave the host port out (for example 127.0.0.1::8080)"
                        if port.fixed_host_port is not None else
                        f"{count} replicas cannot each get a host port of {port.published} "
                        f"({port.host_port_count} ports): widen the range, use fewer "
                        "replicas, or leave the host port out")
            for index, port in enumerate(spec.ports)
            if port.host_port is not None and port.host_port_count < count]


def _replica(spec: ServiceSpec, replica: str, names: Mapping[str, list[str]], *,
             own_names: bool) -> ServiceSpec:
    """`own_names`: the replica gets its own hostname and `{{replica}}` values (one
    engine's replicas; a swarm's tasks keep the swarm's)."""
    update: dict[str, object] = {"replicas": 1}
    if own_names:
        # the engine refuses a hostname in another container's network namespace
        update["hostname"] = spec.hostname or (None if spec.shares_network else replica)
        update["environment"] = {
            key: value.replace(REPLICA_TOKEN, replica) if value is not None else None
            for key, value in spec.environment.items()}
    if spec.after is not None:
        update["after"] = _expand_after(spec.after, names)
        update["dependency_options"] = _expand_after(spec.dependency_options, names)
    if spec.load_balance is not None:
        update["load_balance"] = _expand_backends(spec.load_balance, names)
    return spec.model_copy(update=update)


def _expand_after(after: Mapping[str, T], names: Mapping[str, list[str]]) -> dict[str, T]:
    return {replica: condition for dependency, condition in after.items()
            for replica in names.get(dependency, [dependency])}


def _expand_backends(spec: LoadBalanceSpec, names: Mapping[str, list[str]]) -> LoadBalanceSpec:
    backends = {replica: weight for backend, weight in spec.backends.items()
                for replica in names.get(backend, [backend])}
    return spec.model_copy(update={"backends": backends})
