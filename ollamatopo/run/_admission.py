"""Resource admission: does the plan fit the engine's host, and how to make it fit.

Pure: the plan and the host's capacity in, a verdict (or a clamped plan and the list
of changes) out. A plan fits when no single limit exceeds the host (the engine would
refuse it) and the reservations together fit (they are promises to every service).
Limits may add up past the host: that is ordinary overcommit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ollamatopo._errors import ResourcesDoNotFit
from ollamatopo.plan._model import Plan, Resources
from ollamatopo.plan._quantities import format_bytes
from ollamatopo.report._recorder import format_table


@dataclass(frozen=True)
class Capacity:
    cpus: float
    memory: int


@dataclass(frozen=True)
class Shortfall:
    what: str  # e.g. "ollama-node-1 cpu limit", "cpu reservations (total)"
    asked: float
    available: float
    memory: bool

    def row(self) -> tuple[str, str, str]:
        show = _memory if self.memory else _cpus
        return self.what, show(self.asked), show(self.available)


def shortfalls(plan: Plan, capacity: Capacity) -> list[Shortfall]:
    found: list[Shortfall] = []
    total_cpus, total_memory = 0.0, 0
    for name, spec in plan.ordered_services():
        limits = spec.deploy.resources.limits
        reserved = spec.deploy.resources.reservations
        if limits.cpus is not None and limits.cpus > capacity.cpus:
            found.append(Shortfall(f"{name} cpu limit", limits.cpus, capacity.cpus, False))
        if limits.memory is not None and limits.memory > capacity.memory:
            found.append(Shortfall(f"{name} memory limit", limits.memory, capacity.memory, True))
        total_cpus += reserved.cpus or 0.0
        total_memory += reserved.memory or 0
    if total_cpus > capacity.cpus:
        found.append(Shortfall("cpu reservations (total)", total_cpus, capacity.cpus, False))
    if total_memory > capacity.memory:
        found.append(Shortfall("memory reservations (total)", total_memory, capacity.memory,
                               True))
    return found


def admit(plan: Plan, capacity: Capacity) -> None:
    """Raise ResourcesDoNotFit with the table of what is asked against what the host has."""
    found = shortfalls(plan, capacity)
    if found:
        table = format_table([("resource", "asked", "host has"), *(s.row() for s in found)])
        raise ResourcesDoNotFit(
            f"the plan does not fit this host ({_cpus(capacity.cpus)} CPUs, "
            f"{_memory(capacity.memory)} memory):\n{table}\n"
            "lower the plan's deploy.resources, or pass --clamp-resources to scale them "
            "down to fit")


@dataclass(frozen=True)
class Change:
    service: str
    field: str  # "limits.cpus", "reservations.memory", ...
    before: float
    after: float

    def __str__(self) -> str:
        show = _memory if self.field.endswith("memory") else _cpus
        return f"{self.service} {self.field}: {show(self.before)} -> {show(self.after)}"


def clamp(plan: Plan, capacity: Capacity) -> tuple[Plan, list[Change]]:
    """Scale the plan down to fit: each limit to at most the host, and all reservations by
    one factor per resource so that together they fit (and never above their limit)."""
    cpu_total = sum(s.deploy.resources.reservations.cpus or 0.0 for s in plan.services.values())
    memory_total = sum(s.deploy.resources.reservations.memory or 0
                       for s in plan.services.values())
    cpu_factor = min(1.0, capacity.cpus / cpu_total) if cpu_total else 1.0
    memory_factor = min(1.0, capacity.memory / memory_total) if memory_total else 1.0
    changes: list[Change] = []
    services = {}
    for name, spec in plan.services.items():
        resources = spec.deploy.resources
        limits = _clamped(name, "limits", resources.limits, capacity.cpus, capacity.memory,
                          1.0, 1.0, changes)
        reservations = _clamped(name, "reservations", resources.reservations,
                                limits.cpus or capacity.cpus, limits.memory or capacity.memory,
                                cpu_factor, memory_factor, changes)
        deploy = spec.deploy.model_copy(update={"resources": resources.model_copy(
            update={"limits": limits, "reservations": reservations})})
        services[name] = spec.model_copy(update={"deploy": deploy})
    return plan.model_copy(update={"services": services}), changes


def _clamped(service: str, kind: str, resources: Resources, max_cpus: float, max_memory: int,
             cpu_factor: float, memory_factor: float, changes: list[Change]) -> Resources:
    cpus, memory = resources.cpus, resources.memory
    if cpus is not None:
        new_cpus = round(min(cpus * cpu_factor, max_cpus), 3)
        if new_cpus != cpus:
            changes.append(Change(service, f"{kind}.cpus", cpus, new_cpus))
            cpus = new_cpus
    if memory is not None:
        new_memory = int(min(memory * memory_factor, max_memory)) // (1024 * 1024) * 1024 * 1024
        new_memory = max(new_memory, 6 * 1024 * 1024)  # the engine's smallest memory limit
        if new_memory != memory:
            changes.append(Change(service, f"{kind}.memory", memory, new_memory))
            memory = new_memory
    return resources.model_copy(update={"cpus": cpus, "memory": memory})


def _cpus(value: float) -> str:
    return f"{value:g}"


def _memory(value: float) -> str:
    return format_bytes(int(value))
