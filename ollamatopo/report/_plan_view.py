"""What `plan` shows: phases, the dependency graph, its critical path, the resource table.

Pure: a validated plan (and past durations, if any) in, a printable description out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ollamatopo._printable import printable
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.plan._quantities import format_bytes
from ollamatopo.report._recorder import format_seconds, format_table


def describe_plan(loaded: LoadedPlan, durations: Mapping[str, float]) -> dict[str, Any]:
    plan, graph = loaded.plan, loaded.graph
    measured = bool(durations) and all(name in durations for name in graph.nodes)
    weights = dict(durations) if measured else {}
    path, length = graph.critical_path(weights)
    try:  # the same weights, the same graph, and the phases as barriers on top
        barriers: float | None = graph.phase_bound(
            [list(phase.services) for phase in plan.phases], weights)
        barrier_problem = None
    except ValueError as error:
        barriers, barrier_problem = None, str(error)
    if measured:
        basis = "by start-to-ready seconds of the last successful run"
    elif durations:
        basis = "by number of services; not every service measured by a successful run yet"
    else:
        basis = "by number of services; no successful run recorded yet"
    services = {}
    totals: dict[str, float] = {"limit_cpus": 0.0, "limit_memory": 0, "reserved_cpus": 0.0,
                                "reserved_memory": 0}
    for name, spec in plan.ordered_services():
        resources = spec.deploy.resources
        service: dict[str, Any] = {
            "phase": plan.phase_of(name),
            "image": spec.image,
            "after": {dep: cond.value for dep, cond in graph.dependencies[name].items()},
            "after_source": "after" if spec.after is not None else "phase",
            "optional": spec.optional,
            "ready": spec.ready.kind.value,
            "limit_cpus": resources.limits.cpus,
            "limit_memory": resources.limits.memory,
            "reserved_cpus": resources.reservations.cpus,
            "reserved_memory": resources.reservations.memory,
        }
        services[name] = service
        for key in totals:
            totals[key] += service[key] or 0
    return {
        "project": plan.project,
        "plan": str(loaded.path),
        "phases": [{"name": p.name, "services": list(p.services)} for p in plan.phases],
        "services": services,
        "critical_path": {
            "services": path,
            "seconds": round(length, 3) if measured else None,
            "length": len(path),
            "basis": basis,
            "phase_barrier_seconds": round(barriers, 3)
            if measured and barriers is not None else None,
            "phase_barrier_problem": barrier_problem,
        },
        "resources": totals,
    }


def format_plan(view: Mapping[str, Any]) -> str:
    # Names in a plan are checked; the plan's own file name is whatever the user passed.
    lines = [f"project {view['project']}  ({printable(view['plan'])})", "", "phases:"]
    for index, phase in enumerate(view["phases"], start=1):
        lines.append(f"  {index}. {phase['name']}: {', '.join(phase['services'])}")
    lines += ["", "dependencies (a service starts when these hold):"]
    for name, service in view["services"].items():
        after = ", ".join(f"{dep} {cond}" for dep, cond in service["after"].items()) or "nothing"
        source = "" if service["after_source"] == "after" or not service["after"] else " (phase)"
        optional = "  [optional]" if service["optional"] else ""
        lines.append(f"  {name} <- {after}{source}; ready: {service['ready']}{optional}")
    path = view["critical_path"]
    seconds = f" {format_seconds(path['seconds'])}" if path["seconds"] is not None else ""
    lines += ["", f"critical path{seconds} ({path['basis']}):",
              "  " + " -> ".join(path["services"])]
    if path["phase_barrier_seconds"] is not None:
        lines.append("  with phases as barriers it would be "
                     + format_seconds(path["phase_barrier_seconds"]))
    elif path["phase_barrier_problem"]:
        lines.append(f"  with phases as barriers it would never end: "
                     f"{path['phase_barrier_problem']}")
    rows: list[tuple[str, ...]] = [("service", "cpu limit", "mem limit", "cpu reserved",
                                    "mem reserved")]
    for name, service in view["services"].items():
        rows.append((name, _cpus(service["limit_cpus"]), _memory(service["limit_memory"]),
                     _cpus(service["reserved_cpus"]), _memory(service["reserved_memory"])))
    totals = view["resources"]
    rows.append(("total", _cpus(totals["limit_cpus"]), _memory(totals["limit_memory"]),
                 _cpus(totals["reserved_cpus"]), _memory(totals["reserved_memory"])))
    lines += ["", "resources:", format_table(rows)]
    return "\n".join(lines)


def _cpus(value: float | None) -> str:
    return "-" if not value else f"{value:g}"


def _memory(value: int | None) -> str:
    return "-" if not value else format_bytes(int(value))
