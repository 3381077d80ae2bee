"""`bench swarm` (issue 14): the seed topology on a real two-node swarm, from one compose
file, deployed by `ollamatopo up --backend swarm` and by `docker stack deploy`, against
the critical-path bound measured on the same swarm.

The bed is tests/swarm_bed.py's: the host's engine as manager (node label role=data) and
a second dockerd in a network namespace as worker (role=gpu). It is made here and always
torn down; when the machine refuses it (not root, no `ip netns`, the engine already in a
swarm, another bed still running after a wait) the benchmark is skipped with the reason.

The file is in v3 shape, which `docker stack deploy -c` needs and ollamatopo reads as a
compose file: the stand-ins with a tenth of the seed's delays and the seed's healthchecks
(or 1 s intervals), `endpoint_mode: dnsrr` (no IPVS here, so no VIP), model nodes placed
on role == gpu and data stores on role == data, overlays with subnets in 10.97.x. Each
stand-in with `healthy` dependencies gets STANDIN_NEEDS naming them: it exits 1 at start
when one does not answer by name, as the real nodes exit without postgres, so a deploy
without ordering shows as restarts. The v3 schema takes `depends_on` only as a list
(`service_started`; the CLI refuses the long form), so the `healthy` dependencies come
from `x-ollamatopo.phases`, whose default is exactly that (every required service of the
phase before, healthy); ollamatopo's own loader checks the file's graph against the
seed's before anything runs. No named volumes: the stand-ins write nothing, and
`docker stack rm` would leave a stack's volumes on every node.

Times are epoch seconds from the engines (both nodes share this machine's clock): a
task's `running` is its Status.Timestamp, a container's start its StartedAt, a stand-in's
answer the engine's timestamp of its "standin ready" line, and "by name" the first time
`nc NAME 8080` succeeded from a container on the service's overlay (the swarm's DNS).
Everything made carries the session's label and the project names; it is removed by
them after each run and when a run fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench import _child
from bench._compose import HEALTH_COMMAND, Healthcheck
from bench._docker import BenchError, Engine
from bench._logs import event_times, json_events, parse_timestamp, ready_time
from bench._plans import SEED_DELAYS, STANDIN_PORT, TARGET_LABEL, SeedService, SeedTopology
from bench._stats import critical_path, ratio

if TYPE_CHECKING:
    from tests.swarm_bed import SwarmBed

COMPOSE_VERSION = "3.8"  # Debian's docker.io (20.10) wants a version; newer CLIs take it
DATA_STORES = frozenset({"postgres", "redis", "minio"})
# Overlay subnets, one /24 each: 10.97.2-63, after the bed's docker_gwbridges (10.97.0-1)
# and before its address pool (10.97.64.0/18).
SUBNETS = ipaddress.ip_network("10.97.0.0/18")
FIRST_SUBNET = 2
VARIANTS: Mapping[str, str] = {
    "seed": "the seed's healthchecks (interval 10-15 s, start_period 10-20 s)",
    "1s": "1 s healthcheck intervals (the seed's start periods and retries)",
}
NS = 1_000_000_000
BED_WAIT_S = 300.0  # for another bed (a test session) to finish
READY_TIMEOUT_S = 240.0
GONE_TIMEOUT_S = 90.0
POLL_S = 0.05
STACK_LABEL = "com.docker.stack.namespace"
SERVICE_ID_LABEL = "com.docker.swarm.service.id"


# --- the file (pure) ----------------------------------------------------------------------

def role_of(service: str) -> str | None:
    """The node label a service is placed by (None: either node)."""
    if service.startswith("ollama-node"):
        return "gpu"
    return "data" if service in DATA_STORES else None


def standin_needs(service: SeedService) -> str:
    """STANDIN_NEEDS: the `healthy` dependencies, by name. A `started` one need not answer
    yet (ollamatopo starts the dependent as soon as it runs), so it is not checked."""
    return " ".join(f"{dependency}:{STANDIN_PORT}"
                    for dependency, condition in service.after.items() if condition == "healthy")


def phase_default(topology: SeedTopology, name: str) -> dict[str, str]:
    """What `x-ollamatopo.phases` gives a service without `depends_on`: every required
    service of the nearest earlier phase that has one, healthy."""
    optional = {service.name for service in topology.services if service.optional}
    phases = [members for _, members in topology.phases]
    index = next(i for i, members in enumerate(phases) if name in members)
    for members in reversed(phases[:index]):
        required = [member for member in members if member not in optional]
        if required:
            return dict.fromkeys(required, "healthy")
    return {}


def depends_on(topology: SeedTopology, service: SeedService) -> list[str] | None:
    """The v3 `depends_on` list (service_started), or None where the phase default says it."""
    if any(condition == "healthy" for condition in service.after.values()):
        if dict(service.after) != phase_default(topology, service.name):
            raise ValueError(f"{service.name}: its healthy dependencies are not its phase's "
                             "default, and a v3 depends_on cannot say them")
        return None
    return sorted(service.after)


def swarm_file(topology: SeedTopology, *, image: str, labels: Mapping[str, str],
               healthchecks: Mapping[str, Healthcheck], subnets: Mapping[str, str],
               delays: Mapping[str, float] = SEED_DELAYS) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for service in topology.services:
        environment = {"STANDIN_DELAY": f"{delays.get(service.name, 0.0):g}"}
        if standin_needs(service):
            environment["STANDIN_NEEDS"] = standin_needs(service)
        deploy: dict[str, Any] = {"endpoint_mode": "dnsrr", "labels": dict(labels),
                                  # stated, so both read the same: `stack deploy` ignores
                                  # `restart:`; the swarm's default delay is 5 s
                                  "restart_policy": {"condition": "any"}}
        role = role_of(service.name)
        if role is not None:
            deploy["placement"] = {"constraints": [f"node.labels.role == {role}"]}
        entry: dict[str, Any] = {
            "image": image, "environment": environment, "networks": list(service.networks),
            "labels": {**labels, TARGET_LABEL: service.name}, "stop_grace_period": "2s",
            "healthcheck": healthchecks[service.name].compose(), "deploy": deploy}
        listed = depends_on(topology, service)
        if listed is not None:
            entry["depends_on"] = listed
        if service.optional:
            entry["x-ollamatopo"] = {"optional": True}
        services[service.name] = entry
    return {
        "version": COMPOSE_VERSION,
        "services": services,
        "networks": {name: {"driver": "overlay", "attachable": True, "labels": dict(labels),
                            "ipam": {"config": [{"subnet": subnets[name]}]}}
                     for name in topology.networks},
        "x-ollamatopo": {"phases": [{"name": name, "services": list(members)}
                                    for name, members in topology.phases]},
    }


def file_graph(path: Path, project: str) -> dict[str, dict[str, str]]:
    """The dependencies ollamatopo reads from the file (its own loader)."""
    from ollamatopo.plan._loading import load_plan

    plan = load_plan(path, {}, project=project).plan
    return {name: {dependency: condition.value
                   for dependency, condition in plan.dependencies(name).items()}
            for name in plan.services}


@dataclass(frozen=True)
class LoneKey:
    """What a lone service's create-to-ready depends on: its delay, healthcheck, node."""

    delay_s: float
    healthcheck: Healthcheck
    role: str | None


def lone_keys(topology: SeedTopology, healthchecks: Mapping[str, Healthcheck],
              delays: Mapping[str, float]) -> dict[str, LoneKey]:
    return {name: LoneKey(delays.get(name, 0.0), healthchecks[name], role_of(name))
            for name in topology.names}


# --- the swarm ----------------------------------------------------------------------------

@dataclass
class _Swarm:
    """The bed's two engines through the SDK, and this session's names."""

    bed: SwarmBed
    engine: Engine
    image: str
    worker: Any = field(init=False)
    subnets: Iterator[str] = field(init=False)

    def __post_init__(self) -> None:
        self.worker = self.bed.client(self.bed.worker)
        self.has_start_interval = tuple(
            int(part) for part in str(self.manager.api.api_version).split(".")) >= (1, 44)
        self.subnets = (str(net) for index, net in enumerate(SUBNETS.subnets(new_prefix=24))
                        if index >= FIRST_SUBNET)

    @property
    def manager(self) -> Any:
        return self.engine.client

    @property
    def prefix(self) -> str:
        return f"bench-swarm-{self.engine.session}"

    def client_of(self, node_id: str) -> Any:
        return self.worker if node_id == self.bed.node_ids.get("worker") else self.manager

    def role_of_node(self, node_id: str) -> str:
        return "worker" if node_id == self.bed.node_ids.get("worker") else "manager"

    def subnet(self) -> str:
        try:
            return next(self.subnets)
        except StopIteration:
            raise BenchError(f"the benchmark's overlay subnets ({SUBNETS}) are used up") from None

    def labels(self, **extra: str) -> dict[str, str]:
        # Not the bed's own label: ollamatopo refuses labels in its `ollamatopo.` namespace.
        return self.engine.labels(**extra)

    def close(self) -> None:
        self.worker.close()

    # what runs

    def services(self, label: str) -> dict[str, str]:
        """Service name -> id, of the services carrying `label`."""
        return {raw["Spec"]["Name"]: raw["ID"]
                for raw in self.manager.api.services(filters={"label": label})}

    def tasks(self, service_id: str) -> list[dict[str, Any]]:
        return list(self.manager.api.tasks(filters={"service": service_id}))

    def containers(self, label: str) -> list[tuple[Any, str]]:
        """(client, container id) on both nodes of the containers carrying `label`."""
        return [(client, raw["Id"]) for client in (self.manager, self.worker)
                for raw in client.api.containers(all=True, filters={"label": label})]

    def networks(self, prefix: str) -> list[tuple[Any, str]]:
        """(client, network id) on both nodes of the networks named with `prefix`."""
        return [(client, raw["Id"]) for client in (self.manager, self.worker)
                for raw in client.api.networks(filters={"name": prefix})
                if raw["Name"].startswith(prefix)]

    def wait_gone(self, service_ids: Sequence[str], network_prefix: str | None) -> float:
        """Seconds until the services' containers, and the networks named with the prefix,
        are gone from both nodes (BenchError past GONE_TIMEOUT_S)."""
        began = time.monotonic()
        while True:
            left = [item for service_id in service_ids
                    for item in self.containers(f"{SERVICE_ID_LABEL}={service_id}")]
            networks = self.networks(network_prefix) if network_prefix else []
            if not left and not networks:
                return time.monotonic() - began
            if time.monotonic() - began > GONE_TIMEOUT_S:
                raise BenchError(f"after {GONE_TIMEOUT_S:g} s, {len(left)} task containers and "
                                 f"{len(networks)} networks of {network_prefix} remain")
            time.sleep(0.2)

    def sweep(self) -> None:
        """Everything of this session on the swarm, by label and name, whatever state a
        failed run left it in: services, their containers, probers, networks."""
        selector = self.engine.selector
        for service_id in self.services(selector).values():
            with contextlib.suppress(Exception):
                self.manager.api.remove_service(service_id)
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while time.monotonic() < deadline:
            for client, container in self.containers(selector):
                with contextlib.suppress(Exception):  # a task container: the swarm's own
                    client.api.remove_container(container, force=True)
            for client, network in self.networks(self.prefix):
                with contextlib.suppress(Exception):  # in use until its tasks are gone
                    client.api.remove_network(network)
            if not self.containers(selector) and not self.networks(self.prefix):
                return
            time.sleep(0.5)


def _task_state(task: Mapping[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State", ""))


def _current(tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The tasks the swarm means to run (a restart's next task waits as `ready`)."""
    return [task for task in tasks if task.get("DesiredState") in ("running", "ready")]


def _all_running(tasks: Sequence[Mapping[str, Any]]) -> bool:
    current = _current(tasks)
    return bool(current) and all(_task_state(task) == "running" for task in current)


def _wait_all_running(swarm: _Swarm, service_ids: Mapping[str, str], launched: float
                      ) -> float:
    """Seconds from `launched` until every service's tasks were seen running."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(service_ids)
    while pending:
        for name, service_id in list(pending.items()):
            if _all_running(swarm.tasks(service_id)):
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"not all running after {READY_TIMEOUT_S:g} s: "
                             f"{', '.join(sorted(pending))}")
        time.sleep(POLL_S * 2)
    return time.time() - launched


def _wait_container(swarm: _Swarm, service_id: str) -> None:
    """Until the service's task has its container (the node has set its overlays up)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not any((task.get("Status") or {}).get("ContainerStatus", {}).get("ContainerID")
                  for task in swarm.tasks(service_id)):
        if time.monotonic() > deadline:
            raise BenchError(f"no container after {READY_TIMEOUT_S:g} s: {service_id}")
        time.sleep(POLL_S)


def _container_times(swarm: _Swarm, task: Mapping[str, Any]) -> tuple[float | None,
                                                                       float | None]:
    """(started, answering) of a task's container, from its node's engine."""
    container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
    if not container:
        return None, None
    client = swarm.client_of(str(task.get("NodeID", "")))
    try:
        attrs = client.api.inspect_container(container)
        logs = client.api.logs(container, timestamps=True).decode("utf-8", "replace")
    except Exception:  # removed already: its times are unknown, not an error
        return None, None
    started = attrs.get("State", {}).get("StartedAt")
    return (parse_timestamp(started) if started else None), ready_time(logs)


def _why_replaced(swarm: _Swarm, task: Mapping[str, Any]) -> str:
    """The swarm's error for a replaced task, with the stand-in's own last line if kept."""
    status = task.get("Status") or {}
    why = str(status.get("Err") or status.get("Message") or _task_state(task))
    container = (status.get("ContainerStatus") or {}).get("ContainerID")
    if container:
        with contextlib.suppress(Exception):
            logs = swarm.client_of(str(task.get("NodeID", ""))).api.logs(container)
            lines = [line for line in logs.decode("utf-8", "replace").splitlines()
                     if "standin needs" in line]
            if lines:
                why += f": {lines[-1].strip()}"
    return why


def service_report(swarm: _Swarm, service_id: str, launched: float) -> dict[str, Any]:
    """One service after a deploy: when its task ran (seconds from `launched`), on which
    node, and the tasks the swarm replaced before (restarts) with why."""
    tasks = swarm.tasks(service_id)
    current = [task for task in _current(tasks) if _task_state(task) == "running"]
    replaced = sorted((task for task in tasks if task not in _current(tasks)),
                      key=lambda task: str(task.get("CreatedAt", "")))
    result: dict[str, Any] = {"restarts": len(replaced), "replaced": [
        {"created_s": _since(task.get("CreatedAt"), launched),
         "ended_s": _since((task.get("Status") or {}).get("Timestamp"), launched),
         "why": _why_replaced(swarm, task)} for task in replaced]}
    if current:
        task = current[0]
        started, answering = _container_times(swarm, task)
        running = parse_timestamp(str(task["Status"]["Timestamp"]))
        result.update({
            "node": swarm.role_of_node(str(task.get("NodeID", ""))),
            "task_created_s": _since(task.get("CreatedAt"), launched),
            "started_s": None if started is None else started - launched,
            "answering_s": None if answering is None else answering - launched,
            "running_s": running - launched})
    return result


def _since(stamp: object, launched: float) -> float | None:
    return parse_timestamp(stamp) - launched if isinstance(stamp, str) and stamp else None


def _last(services: Mapping[str, Mapping[str, Any]], key: str) -> float | None:
    values = [service.get(key) for service in services.values()]
    known = [value for value in values if isinstance(value, int | float)]
    return max(known) if known and len(known) == len(values) else None


# --- a lone service: the units of the bound -----------------------------------------------

class _NameProbe(threading.Thread):
    """`nc NAME 8080` from a container on the overlay until it connects: when the swarm's
    DNS first gives the service's task (it gives a task only once it is running)."""

    def __init__(self, prober: Any, name: str) -> None:
        super().__init__(name="bench-name-probe", daemon=True)
        self.prober, self.target = prober, name
        self.at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        command = ["sh", "-c", f"nc -w 1 {self.target} {STANDIN_PORT} </dev/null"]
        while not self.stop.is_set():
            try:
                code, _ = self.prober.exec_run(command)
            except Exception:
                return
            if code == 0:
                self.at = time.time()
                return
            self.stop.wait(POLL_S)


def deployed_healthcheck(check: Healthcheck, *, as_written: bool,
                         has_start_interval: bool) -> dict[str, Any]:
    """The services API's healthcheck for `check`: as ollamatopo deploys it (checked at
    its start cadence, engine/_swarm_payloads.swarm_healthcheck), or as written (what
    `docker stack deploy` deploys: the first check one interval after the start)."""
    from ollamatopo.engine._swarm_payloads import swarm_healthcheck
    from ollamatopo.plan._model import HealthcheckSpec

    spec = HealthcheckSpec(test=list(HEALTH_COMMAND), interval=check.interval_s,
                           timeout=check.timeout_s, retries=check.retries,
                           start_period=check.start_period_s,
                           start_interval=check.interval_s if as_written else None)
    return swarm_healthcheck(spec, has_start_interval=has_start_interval)


def measure_lone(swarm: _Swarm, key: LoneKey, index: str, *,
                 as_written: bool) -> dict[str, Any]:
    """One stand-in service alone on its own overlay, with the delay, healthcheck (as
    written, or as ollamatopo deploys it) and placement of `key`: seconds from
    `create_service` to its container's start, its answer, its name answering on the
    overlay, and its task running. The prober joins the overlay only once the task's
    container is there: the first container on an overlay on a node waits for the node
    to set the overlay up (about 0.5 s here), which a deploy's first task pays and which
    a prober joined first would take off the lone figure (it did until 2026-12-02)."""
    import docker.types

    name = f"{swarm.prefix}-lone-{index}"
    labels = swarm.labels()
    network = swarm.manager.api.create_network(
        name, driver="overlay", attachable=True, labels=labels,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=swarm.subnet())]))["Id"]
    prober = swarm.manager.containers.create(swarm.image, ["sleep", "3600"], entrypoint=[],
                                             name=f"{name}-prober", labels=labels,
                                             network=name)
    service_id = None
    try:
        spec = docker.types.ContainerSpec(
            swarm.image, env=[f"STANDIN_DELAY={key.delay_s:g}"], labels=labels,
            stop_grace_period=2 * NS, healthcheck=deployed_healthcheck(
                key.healthcheck, as_written=as_written,
                has_start_interval=swarm.has_start_interval))
        template = docker.types.TaskTemplate(
            spec, networks=[network], restart_policy=docker.types.RestartPolicy("none"),
            placement=docker.types.Placement(
                constraints=[f"node.labels.role == {key.role}"] if key.role else None))
        probe = _NameProbe(prober, name)
        began = time.time()
        service_id = swarm.manager.api.create_service(
            template, name=name, labels=labels,
            endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"))["ID"]
        _wait_container(swarm, service_id)
        prober.start()
        probe.start()
        seen = _wait_all_running(swarm, {name: service_id}, began)
        probe.join(timeout=10)
        probe.stop.set()
        result = service_report(swarm, service_id, began)
        result.update({"running_seen_s": seen,
                       "by_name_s": None if probe.at is None else probe.at - began})
        return result
    finally:
        if service_id is not None:
            swarm.manager.api.remove_service(service_id)
        prober.remove(force=True)
        with contextlib.suppress(BenchError):
            swarm.wait_gone([service_id] if service_id else [], None)
        with contextlib.suppress(Exception):
            swarm.manager.api.remove_network(network)


# --- the two deploys ----------------------------------------------------------------------

def run_ollamatopo(swarm: _Swarm, path: Path, project: str, folder: Path) -> dict[str, Any]:
    """`ollamatopo up --backend swarm` until it exits (every service ready by the swarm's
    account), then `down --backend swarm`."""
    env = _child.ollamatopo_env(folder / "state")
    target = ["--backend", "swarm", "-f", str(path), "-p", project, "--log-format", "json"]
    return _measured_up(swarm, target, env, project, folder)


def run_through_daemon(swarm: _Swarm, path: Path, project: str, folder: Path
                       ) -> dict[str, Any]:
    """The same `up` through an idle daemon's control socket, as a systemd unit runs it:
    `up --supervise --backend swarm` brings the file up, `down` through its socket leaves
    it idle, then `up` through the socket is measured as `run_ollamatopo` measures (a thin
    client: no interpreter full of the stack's imports, no plan read, no engine connection)."""
    from bench._daemon import Daemon

    env = _child.ollamatopo_env(folder / "state")
    target = ["--backend", "swarm", "-f", str(path), "-p", project]
    daemon = Daemon(path, env, "--backend", "swarm", "-p", project)  # it adds --plan PATH
    try:
        daemon.wait_supervising()
        ids = list(swarm.services(f"ollamatopo.project={project}").values())
        down = _child.run(_child.ollamatopo_argv("down", *target, "--log-format", "json"),
                          env=env, timeout_s=180, cwd=folder)
        if down.exit_code != 0:
            raise BenchError(f"down through the daemon exited {down.exit_code}:\n"
                             f"{down.tail()}")
        swarm.wait_gone(ids, f"{project}_")
        return _measured_up(swarm, [*target, "--log-format", "json"], env, project, folder)
    finally:
        _child.run(_child.ollamatopo_argv("daemon", "stop", *target), env=env, timeout_s=60,
                   cwd=folder)
        daemon.kill()


def _measured_up(swarm: _Swarm, target: list[str], env: Mapping[str, str], project: str,
                 folder: Path) -> dict[str, Any]:
    up = _child.run(_child.ollamatopo_argv("up", *target), env=env,
                    timeout_s=READY_TIMEOUT_S + 60, cwd=folder)
    if up.exit_code != 0:
        raise BenchError(f"ollamatopo up --backend swarm exited {up.exit_code}:\n{up.tail()}")
    ids = {name.removeprefix(f"{project}_"): service_id
           for name, service_id in swarm.services(f"ollamatopo.project={project}").items()}
    events = json_events(up.lines())
    created = event_times(events, "container created")
    healthy = event_times(events, "service healthy")
    services = {}
    for name, service_id in sorted(ids.items()):
        services[name] = service_report(swarm, service_id, up.launched_at)
        services[name]["created_s"] = created[name] - up.launched_at if name in created else None
        services[name]["ready_event_s"] = (healthy[name] - up.launched_at if name in healthy
                                           else None)
    down = _child.run(_child.ollamatopo_argv("down", *target), env=env, timeout_s=180,
                      cwd=folder)
    gone = swarm.wait_gone(list(ids.values()), f"{project}_")
    return {"up_exit_s": up.wall_s, "up_cpu_s": up.cpu_s,
            "all_running_s": _last(services, "running_s"),
            "all_answering_s": _last(services, "answering_s"),
            "restarts": sum(service["restarts"] for service in services.values()),
            "down_s": down.wall_s, "down_exit_code": down.exit_code,
            "gone_after_down_s": gone, "services": services}


def run_stack(swarm: _Swarm, path: Path, project: str, folder: Path) -> dict[str, Any]:
    """`docker stack deploy -c` of the same file, then waiting until every service's tasks
    run; then `docker stack rm` and waiting until its tasks and networks are gone."""
    # --resolve-image never: no registry here; the CLI would ask one for every image.
    deploy = _child.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c",
                         str(path), project], timeout_s=120, cwd=folder)
    if deploy.exit_code != 0:
        raise BenchError(f"docker stack deploy exited {deploy.exit_code}:\n{deploy.tail()}")
    ids = {name.removeprefix(f"{project}_"): service_id
           for name, service_id in swarm.services(f"{STACK_LABEL}={project}").items()}
    seen = _wait_all_running(swarm, ids, deploy.launched_at)
    services = {name: service_report(swarm, service_id, deploy.launched_at)
                for name, service_id in sorted(ids.items())}
    removal = _child.run(["docker", "stack", "rm", project], timeout_s=120, cwd=folder)
    gone = swarm.wait_gone(list(ids.values()), f"{project}_")
    return {"deploy_exit_s": deploy.wall_s, "all_running_seen_s": seen,
            "all_running_s": _last(services, "running_s"),
            "all_answering_s": _last(services, "answering_s"),
            "restarts": sum(service["restarts"] for service in services.values()),
            "rm_s": removal.wall_s + gone,
            "rm_exit_code": removal.exit_code, "services": services}


# --- one variant, and the benchmark -------------------------------------------------------

def run_variant(swarm: _Swarm, topology: SeedTopology, variant: str,
                delays: Mapping[str, float] = SEED_DELAYS) -> dict[str, Any]:
    from bench._peers import healthchecks_for

    checks = healthchecks_for(variant, topology.names)
    result: dict[str, Any] = {"description": VARIANTS[variant],
                              "healthchecks": {name: check.compose()
                                               for name, check in checks.items()}}
    keys = lone_keys(topology, checks, delays)
    # Each distinct lone service twice when the two healthchecks differ: as ollamatopo
    # deploys it (its bound) and as written (the bound of a deployer that keeps the
    # file's first check one interval after the start, as `stack deploy` does).
    for key_name, as_written in (("lone", False), ("lone_as_written", True)):
        lone: dict[LoneKey, dict[str, Any]] = {}
        for number, key in enumerate(dict.fromkeys(keys.values())):
            if as_written and _same_deployed(key.healthcheck, swarm.has_start_interval):
                lone[key] = result["lone"][next(n for n, k in keys.items() if k == key)]
                continue
            lone[key] = measure_lone(swarm, key, f"{variant}-{number}{'w' * as_written}",
                                     as_written=as_written)
        result[key_name] = {name: lone[key] for name, key in keys.items()}
    result["bound"] = _bound(topology.dependencies(), result["lone"], "running_s")
    result["bound_as_written"] = _bound(topology.dependencies(), result["lone_as_written"],
                                        "running_s")
    result["answer_bound"] = _bound(topology.dependencies(), result["lone"], "answering_s")
    with tempfile.TemporaryDirectory(prefix="ollamatopo-bench-swarm-") as text:
        folder = Path(text)
        for label, runner in (("ollamatopo", run_ollamatopo), ("daemon", run_through_daemon),
                              ("stack", run_stack)):
            project = f"{swarm.prefix}-{label}-{variant}".lower()
            subnets = {name: swarm.subnet() for name in topology.networks}
            document = swarm_file(topology, image=swarm.image, labels=swarm.labels(),
                                  healthchecks=checks, subnets=subnets, delays=delays)
            path = folder / f"{label}.yaml"
            path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
            if file_graph(path, project) != topology.dependencies():
                raise BenchError("the v3 file's graph, as ollamatopo reads it, is not the "
                                 f"seed's: {file_graph(path, project)}")
            try:
                result[label] = runner(swarm, path, project, folder)
            except BenchError as error:
                result[label] = {"error": str(error)}
                result["failed"] = True
            finally:
                swarm.sweep()
    ours = result["ollamatopo"].get("up_exit_s")
    theirs = result["stack"].get("all_running_s")
    bound = result["bound"].get("critical_s")
    result["ratio_stack_to_ollamatopo"] = ratio(theirs, ours)
    result["over_bound_s"] = ours - bound if ours is not None and bound is not None else None
    served = result["daemon"].get("up_exit_s")
    result["ratio_stack_to_daemon"] = ratio(theirs, served)
    result["daemon_over_bound_s"] = (served - bound if served is not None and bound is not None
                                     else None)
    return result


def _same_deployed(check: Healthcheck, has_start_interval: bool) -> bool:
    return deployed_healthcheck(check, as_written=True, has_start_interval=has_start_interval) \
        == deployed_healthcheck(check, as_written=False, has_start_interval=has_start_interval)


def _bound(dependencies: Mapping[str, Mapping[str, str]],
           lone: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, Any]:
    durations = {name: figures.get(key) for name, figures in lone.items()}
    if any(value is None for value in durations.values()):
        return {"error": f"a lone service has no {key}"}
    known = {name: float(value) for name, value in durations.items() if value is not None}
    path, length = critical_path(dependencies, known)
    return {"critical_path": list(path), "critical_s": length, "durations": known}


@contextlib.contextmanager
def _bed_when_free(image: str) -> Iterator[SwarmBed]:
    """The bed, waiting up to BED_WAIT_S while another one (a test session) runs."""
    from tests.swarm_bed import Refused, swarm_bed

    deadline = time.monotonic() + BED_WAIT_S
    while True:
        entered = False
        try:
            with swarm_bed((image,)) as bed:
                entered = True
                yield bed
            return
        except Refused as refused:
            if entered or "another swarm bed" not in str(refused) \
                    or time.monotonic() > deadline:
                raise
            time.sleep(5)


def run_swarm_bench(engine: Engine, image: str, topology: SeedTopology,
                    variants: Sequence[str] = tuple(VARIANTS)) -> dict[str, Any]:
    from tests.swarm_bed import Refused

    result: dict[str, Any] = {"variants": {}}
    if subprocess.run(["docker", "stack", "--help"], capture_output=True,
                      check=False).returncode != 0:
        return {"error": "skipped: the docker CLI has no `stack` command", "failed": False}
    began = time.monotonic()
    try:
        with _bed_when_free(image) as bed:
            result["bed"] = {"id": bed.id, "made_s": round(time.monotonic() - began, 2),
                             "nodes": {"manager": "role=data", "worker": "role=gpu"}}
            swarm = _Swarm(bed, engine, image)
            try:
                for variant in variants:
                    try:
                        result["variants"][variant] = run_variant(swarm, topology, variant)
                    except BenchError as error:
                        result["variants"][variant] = {"description": VARIANTS[variant],
                                                       "error": str(error)}
                    finally:
                        swarm.sweep()
                    if result["variants"][variant].get("error") or \
                            result["variants"][variant].get("failed"):
                        result["failed"] = True
                    print(f"bench: swarm {variant} done", flush=True)
            finally:
                swarm.sweep()
                swarm.close()
            closing = time.monotonic()
        result["bed"]["torn_down_s"] = round(time.monotonic() - closing, 2)
    except Refused as refused:
        return {"error": f"skipped: no swarm bed: {refused}", "failed": False}
    return result


# --- the table ----------------------------------------------------------------------------

def render_swarm(result: Mapping[str, Any]) -> str:
    from bench._report import seconds, short, table, times, verdict

    heading = "== swarm: the seed topology on a two-node swarm =="
    if "error" in result:
        return f"{heading}\nnot measured: {result['error']}"
    bed = result.get("bed") or {}
    lines = [heading, f"bed {bed.get('id')}: manager role=data, worker role=gpu (made in "
                      f"{seconds(bed.get('made_s'))}, torn down in "
                      f"{seconds(bed.get('torn_down_s'))})"]
    for variant, run in result["variants"].items():
        lines.append(f"\n-- {variant}: {run.get('description', '')} --")
        if "error" in run:
            lines.append(f"not measured: {short(run['error'])}")
            continue
        ours, theirs = run.get("ollamatopo") or {}, run.get("stack") or {}
        served = run.get("daemon") or {}
        bound, answers = run.get("bound") or {}, run.get("answer_bound") or {}
        written = run.get("bound_as_written") or {}
        over, share = run.get("over_bound_s"), run.get("ratio_stack_to_ollamatopo")
        rows = [
            ("ollamatopo up --backend swarm: exits, all ready", seconds(ours.get("up_exit_s")),
             _either(ours, f"all running {seconds(ours.get('all_running_s'))}, all answering "
                           f"{seconds(ours.get('all_answering_s'))}, restarts "
                           f"{ours.get('restarts')}; down {seconds(ours.get('down_s'))}")),
            ("the same through an idle daemon (up --supervise)",
             seconds(served.get("up_exit_s")),
             _either(served, f"over the bound {seconds(run.get('daemon_over_bound_s'))}, "
                             f"stack deploy / it {times(run.get('ratio_stack_to_daemon'))}, "
                             f"restarts {served.get('restarts')}")),
            ("docker stack deploy: all running", seconds(theirs.get("all_running_s")),
             _either(theirs, f"restarts {theirs.get('restarts')} ("
                             f"{_restarted(theirs)}), all answering "
                             f"{seconds(theirs.get('all_answering_s'))}; stack rm until gone "
                             f"{seconds(theirs.get('rm_s'))}")),
            ("bound: lone create-to-running on the critical path",
             seconds(bound.get("critical_s")), "healthchecks as ollamatopo deploys them: "
             + " -> ".join(bound.get("critical_path", []))),
            ("the same, healthchecks as written", seconds(written.get("critical_s")),
             "the first check one interval after the start, as `stack deploy` has it"),
            ("bound by the stand-ins' own answers", seconds(answers.get("critical_s")),
             "lone create-to-answering: what the healthchecks' interval costs is the rest"),
            ("stack deploy / ollamatopo", times(share),
             f"target >= 2x: {verdict(share >= 2) if isinstance(share, float) else '-'}"),
            ("ollamatopo over the bound", seconds(over),
             f"target <= +1 s: {verdict(over <= 1) if isinstance(over, float) else '-'}"),
        ]
        lines.append(table(rows))
        for key, what in (("lone", "as deployed"), ("lone_as_written", "as written")):
            lone = run.get(key) or {}
            lines.append(table([(f"lone service, healthcheck {what}", "node", "started",
                                 "answering", "by name", "running"), *[
                (name, str(figures.get("node", "-")), seconds(figures.get("started_s")),
                 seconds(figures.get("answering_s")), seconds(figures.get("by_name_s")),
                 seconds(figures.get("running_s"))) for name, figures in lone.items()]]))
    return "\n".join(lines)


def _either(run: Mapping[str, Any], text: str) -> str:
    return f"failed: {run['error'].splitlines()[0]}" if "error" in run else text


def _restarted(run: Mapping[str, Any]) -> str:
    counts = {name: service.get("restarts", 0)
              for name, service in (run.get("services") or {}).items()}
    return ", ".join(f"{name} {count}" for name, count in counts.items() if count) or "none"


__all__ = ["VARIANTS", "render_swarm", "run_swarm_bench", "swarm_file"]
