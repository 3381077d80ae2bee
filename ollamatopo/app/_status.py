"""What `status` shows: per service its phase, container state, readiness and ports.

Readiness is one check of the service's own probe, made now (not Docker's last
HEALTHCHECK result), so `status` says what `up` would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ollamatopo._errors import ProbeFailed
from ollamatopo.app._connect import connect_engine
from ollamatopo.app._settings import Settings
from ollamatopo.engine._docker import ContainerState, Engine
from ollamatopo.engine._payloads import container_config, first_network
from ollamatopo.engine._probes import ATTEMPT_TIMEOUT_S, build_probe, http_client
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.report._recorder import format_table

if TYPE_CHECKING:
    from ollamatopo.run._swarm import TaskRow


async def status(settings: Settings, loaded: LoadedPlan) -> list[dict[str, Any]]:
    """`status` without a daemon: the engine read and every service probed once."""
    from ollamatopo.app._backend import backend_for  # it builds on this module's rows

    engine = await connect_engine(settings)
    try:
        return await backend_for(settings, engine).status(loaded, probe=True)
    finally:
        engine.close()


def swarm_rows(loaded: LoadedPlan, tasks: Sequence[TaskRow]) -> list[dict[str, Any]]:
    """A row per service on a swarm: its tasks' states, nodes and readiness (ready: every
    task it means to run is ready, run/_swarm.status_swarm)."""
    rows = []
    for name, _ in loaded.plan.ordered_services():
        own = [task for task in tasks if task.service == name]
        running = sum(task.state == "running" for task in own)
        state = (f"running {running}/{len(own)}" if running or not own
                 or any(task.state != "complete" for task in own) else "completed")
        rows.append({"service": name, "phase": loaded.plan.phase_of(name), "container": None,
                     "state": state if own else "missing",
                     "ready": bool(own) and all(task.ready for task in own), "ports": [],
                     "urls": [],
                     "up_to_date": None,
                     "detail": ", ".join(f"{task.node}: {task.state}"
                                         + (f" ({task.message})" if task.message
                                            and task.state != "running" else "")
                                         for task in own),
                     "tasks": [task.__dict__ for task in own]})
    return rows


async def collect_status(engine: Engine, loaded: LoadedPlan,
                         probe: bool = True) -> list[dict[str, Any]]:
    """A row per service: container, state, ports, URLs and, with `probe`, readiness by
    one check of its probe."""
    plan = loaded.plan
    snapshot = await engine.snapshot(plan.project)
    rows: dict[str, dict[str, Any]] = {}
    async with http_client() as http, anyio.create_task_group() as group:
        for name, _ in plan.ordered_services():
            rows[name] = {"service": name, "phase": plan.phase_of(name), "container": None,
                          "state": "missing", "ready": False, "detail": "", "ports": [],
                          "urls": [], "up_to_date": None}
            observed = snapshot.container(name)
            if observed is None:
                continue
            desired = container_config(plan, name, loaded.path.parent)
            rows[name].update(container=observed.name, state=observed.state,
                              up_to_date=observed.config_hash == desired.config_hash)
            group.start_soon(_probe_once, engine, http, loaded, name, observed.id, rows[name],
                             first_network(plan, name), probe)
    for observed in snapshot.containers:
        if observed.service not in plan.services:
            rows[observed.service] = {"service": observed.service, "phase": None,
                                      "container": observed.name, "state": observed.state,
                                      "ready": False, "detail": "not in the plan (orphan)",
                                      "ports": [], "urls": [], "up_to_date": False}
    return list(rows.values())


async def _probe_once(engine: Engine, http: Any, loaded: LoadedPlan, name: str,
                      container_id: str, row: dict[str, Any], first_network: str,
                      probe: bool) -> None:
    state = await engine.inspect(container_id)
    row["ports"] = _ports(state)
    check = loaded.plan.services[name].ready.http
    row["urls"] = _urls(state, check.scheme) if check is not None else []
    if not probe:
        return
    if not state.running:
        row["detail"] = f"exit code {state.exit_code}" + (" (OOM-killed)" if state.oom_killed
                                                           else "")
        return
    spec = loaded.plan.services[name].ready
    try:
        check_once = build_probe(spec, engine=engine, http=http, container_id=container_id,
                                 state=state, first_network=first_network)
        with anyio.fail_after(ATTEMPT_TIMEOUT_S + 1):
            await check_once.check()
    except ProbeFailed as error:
        row["detail"] = str(error)
    except TimeoutError:
        row["detail"] = "the readiness check timed out"
    else:
        row["ready"] = True
        row["detail"] = check_once.description


def _ports(state: ContainerState) -> list[str]:
    return [f"{binding.host_ip or '0.0.0.0'}:{binding.host_port}->{key}"
            for key, bindings in sorted(state.ports.items()) for binding in bindings]


def _urls(state: ContainerState, scheme: str) -> list[str]:
    """Where a browser reaches a service that speaks HTTP: each published TCP port, at
    loopback when it is published on all addresses."""
    urls = []
    for key, bindings in sorted(state.ports.items()):
        if key.endswith("/tcp"):
            for binding in bindings:
                host = binding.host_ip if binding.host_ip not in ("", "0.0.0.0", "::") \
                    else "127.0.0.1"
                host = f"[{host}]" if ":" in host else host
                urls.append(f"{scheme}://{host}:{binding.host_port}/")
    return list(dict.fromkeys(urls))


def format_status(project: str, rows: list[dict[str, Any]]) -> str:
    table: list[tuple[str, ...]] = [("service", "phase", "state", "ready", "ports", "detail")]
    for row in rows:
        state = row["state"] + (" (changed)" if row["up_to_date"] is False else "")
        table.append((row["service"], row["phase"] or "-", state,
                      "yes" if row["ready"] else "no", ", ".join(row["ports"]) or "-",
                      row["detail"]))
    links = [(row["service"], url) for row in rows for url in row.get("urls", [])]
    text = f"project {project}\n" + format_table(table)
    if links:
        text += "\n\nURLs\n" + format_table([(f"  {service}", url) for service, url in links])
    return text
