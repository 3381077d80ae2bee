"""`up`, `down` and `status` on a swarm: the plan's services created in dependency order,
each once its dependencies' conditions hold, and waited for until the swarm reports their
tasks running (what `docker stack deploy` does not do).

Observe (the project's services, by label), reconcile (a pure function: create, update
when the spec hash changed, keep), execute (the one graph traversal of `_scheduler`).
`service_started` holds once a task of the dependency has started its container (seen
by the engine on this manager; on another node, once the swarm says `starting`);
`service_healthy` once every replica's task is running, which the swarm reports only
after the container's healthcheck passed (engine/_swarm.py). A task that fails
before that fails the service, with the swarm's error. A failed run removes the services
it created and puts back the specs of those it updated, as the container backend rolls
back its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from ollamatopo._errors import (
    EngineError,
    NotFound,
    OllamatopoError,
    PlanError,
    ServiceFailed,
)
from ollamatopo.engine._docker import StillInUse
from ollamatopo.engine._payloads import LABEL_PROJECT, LABEL_RUN
from ollamatopo.engine._swarm import (
    ObservedObject,
    ObservedService,
    ServiceConfig,
    Swarm,
    TaskState,
)
from ollamatopo.engine._swarm_objects import (
    ObjectKey,
    SwarmObject,
    base_name,
    contents,
    placed,
    stale,
    wanted,
    with_ids,
    with_objects,
)
from ollamatopo.engine._swarm_payloads import (
    overlay_networks,
    service_config,
    service_name,
    swarm_problems,
)
from ollamatopo.plan._file_objects import KINDS
from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.plan._model import Condition, Plan, ProbeKind, ReadySpec
from ollamatopo.plan._replicas import replica_names
from ollamatopo.plan._swarm_balancers import with_balancer_configs
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._queue import EngineQueue
from ollamatopo.run._reconcile import Verb
from ollamatopo.run._scheduler import (
    DEADLINE_TIE_S,
    LOG_TAIL,
    NodeContext,
    UpOptions,
    remove_networks,
    rolled_back_on_failure,
    traverse,
)
from ollamatopo.run._supervisor import SuperviseOptions

# The services API has no task events on this engine: tasks are listed, for every waiting
# service in one call (TaskBoard), so a short poll costs the manager little.
POLL_S = 0.05
RECHECK_S = 0.5  # a dependent's re-probe, a network still held: slower than a task's start
NETWORK_GONE_POLL_S = 0.2
NETWORK_RELEASE_S = 60.0
WATCH_S = 1.0  # how often `up --supervise` on a swarm reads the tasks
MAX_REPLICAS = 500  # the plan model's own limit
LABEL_PROBER = "ollamatopo.prober"  # a prober container (not a service's)
PROBERS_CLOSE_S = 20.0


@dataclass(frozen=True)
class SwarmAction:
    service: str
    verb: Verb  # CREATE, RECREATE (an update of the service), KEEP, REMOVE
    cause: str
    existing: ObservedService | None = None

    def __str__(self) -> str:
        verb = "update" if self.verb is Verb.RECREATE else self.verb.value
        return f"{verb} service {self.service}: {self.cause}"


def reconcile_services(configs: Mapping[str, ServiceConfig],
                       observed: Sequence[ObservedService]) -> tuple[dict[str, SwarmAction],
                                                                     list[SwarmAction]]:
    """One action per plan service, and a removal per project service not in the plan."""
    by_service = {service.service: service for service in observed}
    actions = {}
    for name, config in configs.items():
        existing = by_service.get(name)
        if existing is None:
            actions[name] = SwarmAction(name, Verb.CREATE, "missing")
        elif existing.config_hash != config.config_hash:
            actions[name] = SwarmAction(name, Verb.RECREATE, "spec changed", existing)
        else:
            actions[name] = SwarmAction(name, Verb.KEEP, "up to date", existing)
    orphans = [SwarmAction(service.service, Verb.REMOVE, "not in the plan", service)
               for service in observed if service.service not in configs]
    return actions, orphans


class OverlayProbes:
    """ollamatopo's own readiness on a swarm, at its own cadence rather than the
    healthcheck's interval: the HTTP or TCP check of `x-ollamatopo.ready`, run against
    each task's address on the service's first overlay from a prober container there
    (one per network, made on first use on the manager, removed when the run ends)."""

    def __init__(self, swarm: Swarm, image: str | None, labels: Mapping[str, str]) -> None:
        self._swarm, self._image = swarm, image
        # This instance's own label value: close() finds by it a prober whose create a
        # cancelled caller abandoned (the engine's thread made it after all).
        self._token = uuid.uuid4().hex
        self._labels = {**labels, LABEL_PROBER: self._token}
        self._probers: dict[str, str] = {}  # network -> container id
        self._making = anyio.Lock()
        self._asked = False

    def applies(self, ready: ReadySpec) -> bool:
        return self._image is not None and ready.kind in (ProbeKind.HTTP, ProbeKind.TCP)

    async def answer(self, ready: ReadySpec, network: str, tasks: list[TaskState]) -> bool:
        """Every task answers the check on `network` (False: one does not, or has no
        address there yet)."""
        addresses = [task.addresses.get(network) for task in tasks]
        if not addresses or None in addresses:
            return False
        prober = await self._prober(network)
        answers: list[bool] = []
        async with anyio.create_task_group() as group:
            for address in addresses:
                group.start_soon(self._check, prober, ready, str(address), answers)
        return all(answers) and len(answers) == len(addresses)

    async def _check(self, prober: str, ready: ReadySpec, address: str,
                     answers: list[bool]) -> None:
        if ready.http is not None:
            # busybox has no HTTP client that resolves here (its static wget): a request
            # line through nc, and the status of the answer's first line.
            code, output = await self._swarm.engine.exec(prober, [
                "sh", "-c", 'printf "GET %s HTTP/1.0\\r\\n\\r\\n" "$1" | nc -w 2 "$2" "$3" '
                "| head -n 1", "probe", ready.http.path, address, str(ready.http.port)])
            status = output.split()[1] if len(output.split()) > 1 else ""
            wanted = ready.http.status
            answers.append(code == 0 and status.isdigit() and (
                int(status) == wanted if wanted else 200 <= int(status) < 400))
        elif ready.tcp is not None:
            code, _ = await self._swarm.engine.exec(
                prober, ["nc", "-z", "-w", "1", address, str(ready.tcp.port)])
            answers.append(code == 0)

    async def _prober(self, network: str) -> str:
        self._asked = True
        async with self._making:
            if network not in self._probers:
                assert self._image is not None
                self._probers[network] = await self._swarm.start_prober(
                    self._image, network, self._labels)
            return self._probers[network]

    async def close(self) -> None:
        """Remove the probers, bounded so that a stalled engine does not hold the run's
        end (a prober left is said, and `down` removes it)."""
        if not self._asked:
            return
        engine = self._swarm.engine
        with anyio.move_on_after(PROBERS_CLOSE_S, shield=True):
            made = set(self._probers.values())
            with contextlib.suppress(OllamatopoError):
                made.update(await engine.containers_labelled({LABEL_PROBER: self._token}))
            for container_id in sorted(made):
                try:
                    await engine.remove_container(container_id)
                except OllamatopoError as error:
                    structlog.get_logger("ollamatopo").warning(
                        "prober left", container=container_id[:12], error=str(error),
                        fix="`down` removes it")


@dataclass
class SwarmReadiness:
    """Whether a service is ready on the swarm: every task the swarm means to run is
    `running` (the swarm's DNS answers for a task only then, so a dependent that looks
    the service up by name could not find it before), and answers ollamatopo's own probe
    where it has one (HTTP/TCP through the overlay's prober; the exec probe in the
    container of a task on this manager), else the swarm's `running` is the verdict."""

    swarm: Swarm
    plan: Plan
    configs: Mapping[str, ServiceConfig]
    probes: OverlayProbes

    async def holds(self, name: str, tasks: list[TaskState]) -> bool:
        wanted = self.configs[name].replicas
        current = [task for task in tasks if task.current]
        enough = len(current) >= wanted if wanted is not None else bool(current)
        if not enough or not all(task.state == "running" for task in current):
            return False
        ready = self.plan.services[name].ready
        if self.probes.applies(ready):
            return await self.probes.answer(ready, self._network(name), current)
        if self._is_the_healthcheck(name):
            return True  # `running` said it: a task with a healthcheck runs once it passed
        return all([await self._local_ready(ready, task) for task in current])

    def _is_the_healthcheck(self, name: str) -> bool:
        """The exec probe is the service's own healthcheck (compose's `healthcheck` as
        readiness): running it again after the swarm's `running` would only add an exec
        (50 ms here, plus a poll) to every level of the graph."""
        spec = self.plan.services[name]
        return (spec.ready.exec_ is not None and spec.healthcheck is not None
                and spec.healthcheck.command == list(spec.ready.exec_))

    async def task_ready(self, name: str, task: TaskState) -> bool:
        """One running task by ollamatopo's own probe, where it has one (`status`)."""
        ready = self.plan.services[name].ready
        if task.state != "running":
            return False
        if self.probes.applies(ready):
            return await self.probes.answer(ready, self._network(name), [task])
        return await self._local_ready(ready, task)

    def _network(self, name: str) -> str:
        return str(self.configs[name].create_kwargs["task_template"]["Networks"][0]["Target"])

    async def _local_ready(self, ready: ReadySpec, task: TaskState) -> bool:
        """A running task with an exec probe, on this manager, also passes it in its
        container (a service without a healthcheck runs before it is ready); another
        node's containers are out of this engine's reach: the swarm's `running` there."""
        container = self.swarm.local_container(task)
        if ready.exec_ is None or not container:
            return True
        with contextlib.suppress(EngineError):
            code, _ = await self.swarm.engine.exec(container, list(ready.exec_))
            return code == 0
        return False


class TaskBoard:
    """The tasks of the services a run waits for, from one listing that every waiter
    shares: a listing younger than `fresh_s` answers, else one call lists them all. A
    listing per service per poll would load the manager with N calls where one serves."""

    def __init__(self, swarm: Swarm, fresh_s: float) -> None:
        self._swarm, self._fresh_s = swarm, fresh_s
        self._waiting: dict[str, int] = {}  # service id -> how many wait for it
        self._tasks: dict[str, list[TaskState]] = {}  # the last listing's, by service id
        self._listed_at = -math.inf
        self._lock = anyio.Lock()

    @contextlib.contextmanager
    def watching(self, service_id: str) -> Iterator[None]:
        self._waiting[service_id] = self._waiting.get(service_id, 0) + 1
        try:
            yield
        finally:
            self._waiting[service_id] -= 1
            if not self._waiting[service_id]:
                del self._waiting[service_id]

    async def tasks(self, service_id: str) -> list[TaskState]:
        async with self._lock:  # who comes during a listing takes its result
            if service_id not in self._tasks \
                    or anyio.current_time() - self._listed_at > self._fresh_s:
                self._tasks = await self._swarm.tasks_by_service(
                    sorted({*self._waiting, service_id}))
                self._listed_at = anyio.current_time()
            return list(self._tasks[service_id])


@dataclass
class _SwarmRun:
    swarm: Swarm
    loaded: LoadedPlan
    options: UpOptions
    recorder: RunRecorder
    configs: dict[str, ServiceConfig]
    actions: dict[str, SwarmAction]
    readiness: SwarmReadiness
    queue: EngineQueue
    board: TaskBoard
    ids: dict[str, str] = field(default_factory=dict)  # service -> swarm service id
    created: list[str] = field(default_factory=list)  # swarm ids this run made
    updated: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> spec before
    objects_made: list[ObservedObject] = field(default_factory=list)  # secrets, configs

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    async def visit(self, name: str, context: NodeContext) -> None:
        try:
            failed = await context.dependencies_hold()
        except BaseException:  # it will not ask for a slot: others need not wait for it
            self.queue.withdraw(name)
            raise
        for dependency in failed:
            self.recorder.emit("dependency failed, not required", service=name,
                               level="warning", dependency=dependency)
        kept = self.actions[name].verb is Verb.KEEP
        if kept:
            self.queue.withdraw(name)
        job = name in self.loaded.graph.jobs()
        # The nodes' engines start containers barely in parallel (run/_queue): a create
        # holds its slot until its task has a container, earliest deadline first, so
        # the critical path's services start first and the others use their slack.
        idle = self.configs[name].replicas == 0  # compose's scale 0: a service with no task
        async with contextlib.nullcontext() if kept else self.queue.slot(name):
            try:
                service_id = await self._apply(name)
            except EngineError as error:
                raise ServiceFailed(name, f"the swarm refused it: {error}") from None
            if not idle:
                began = _job_began if job else functools.partial(container_started,
                                                                 self.swarm)
                await self._until(name, service_id, began, "started", job=job)
        context.started()
        if idle:  # nothing to wait for, as compose's up does not wait for it
            self.recorder.mark(name, "ready", replicas=0)
            return
        if job:
            await self._until(name, service_id, _job_completed, "ready", job=True)
            return
        check = functools.partial(self.readiness.holds, name)
        if self.actions[name].verb is Verb.RECREATE:
            check = functools.partial(self._updated_and_ready, name, service_id)
        await self._until(name, service_id, check, "ready")

    async def _updated_and_ready(self, name: str, service_id: str,
                                 tasks: list[TaskState]) -> bool:
        """An updated service is ready once the swarm finished its rolling update (until
        then an old task still runs and would pass for the new one), its tasks are, and
        no task it removes still runs: compose's scale down and recreate return once the
        old containers stopped, where the swarm calls a change of replicas done at once
        and stops the extra tasks over the next seconds (they answer until then)."""
        if any(task.stopping for task in tasks):
            return False
        if not await self.readiness.holds(name, tasks):
            return False  # a failed task fails it in _until; no inspect per poll till then
        state, message = await self.swarm.update_state(service_id)
        if state in ("paused", "rollback_started", "rollback_paused", "rollback_completed"):
            raise ServiceFailed(name, f"the swarm's update of it is {state.replace('_', ' ')}"
                                      f": {message}")
        return state in ("completed", "")

    async def _apply(self, name: str) -> str:
        action, config = self.actions[name], self.configs[name]
        timing = self.recorder.services[name]
        timing.action, timing.cause = action.verb.value, action.cause
        if action.verb is Verb.CREATE:
            service_id = await self.swarm.create_service(config, self.run_id)
            self.created.append(service_id)
            self.recorder.mark(name, "created", cause=action.cause, service_id=service_id[:12])
        elif action.existing is not None and action.verb is Verb.RECREATE:
            service_id = action.existing.id
            self.updated[service_id] = await self.swarm.spec_of(service_id)
            await self.swarm.update_service(action.existing, config, self.run_id)
            self.recorder.mark(name, "created", cause=action.cause, service_id=service_id[:12])
        else:
            assert action.existing is not None
            service_id = action.existing.id
        self.ids[name] = service_id
        return service_id

    async def _until(self, name: str, service_id: str, check: _Check, what: str, *,
                     job: bool = False) -> None:
        """Poll the service's tasks until `check` holds (then mark `what`); a task that
        failed (of a job: any), or the deadline, fails the service."""
        spec = self.loaded.plan.services[name]
        deadline = spec.ready.timeout or self.options.default_timeout_s
        last: list[TaskState] = []
        with anyio.move_on_after(deadline) as scope, self.board.watching(service_id):
            while True:
                last = await self.board.tasks(service_id)
                failed = [task for task in last if task.failed and (task.current or job)]
                if failed:
                    task = failed[-1]
                    raise ServiceFailed(name, f"its task on node {task.node[:12]} "
                                              f"{task.state}: {task.error or task.message}"
                                              + _exit(task) + await self._last_lines(service_id))
                if await check(last):
                    break
                await anyio.sleep(POLL_S)
        if scope.cancelled_caught:
            states = ", ".join(sorted({task.state for task in last if task.current})) or "none"
            replaced = [task for task in last if task.failed and not task.current]
            errors = "; ".join(sorted({task.error for task in replaced if task.error}))
            stopping = sum(task.stopping for task in last)
            raise ServiceFailed(name, f"not {what} after {deadline:g}s (its tasks: {states}"
                                + (f"; {len(replaced)} failed and replaced: {errors}"
                                   if replaced else "")
                                + (f"; {stopping} being removed still running"
                                   if stopping else "") + ")")
        if what == "ready":
            began = self.recorder.services[name].created_s or 0.0
            done: dict[str, Any] = {"completed": True, "exit_code": 0} if job else {}
            self.recorder.mark(name, what, **done,
                               start_to_ready_s=round(self.recorder.elapsed() - began, 3))
        else:
            self.recorder.mark(name, what)

    async def _last_lines(self, service_id: str) -> str:
        """A failed service's last log lines (the swarm gathers them from its node): why a
        task exited is in its output, not in the swarm's "non-zero exit (1)"."""
        with contextlib.suppress(OllamatopoError):
            lines = (await self.swarm.service_logs(service_id, LOG_TAIL)).rstrip().splitlines()
            if lines:
                return "; last log lines:\n" + "\n".join(f"    | {line}"
                                                         for line in lines[-LOG_TAIL:])
        return "; it printed nothing"

    async def rollback(self) -> None:
        with anyio.CancelScope(shield=True):
            for service_id in reversed(self.created):
                try:
                    await self.swarm.remove_service(service_id)
                except OllamatopoError as error:
                    self.recorder.emit("rollback incomplete", level="error",
                                       service_id=service_id[:12], error=str(error))
            for service_id, spec in self.updated.items():
                try:
                    await self.swarm.restore(service_id, spec)
                except OllamatopoError as error:
                    self.recorder.emit("rollback incomplete", level="error",
                                       service_id=service_id[:12], error=str(error))
            await _remove_objects(self.swarm, self.objects_made, self.recorder)
            self.recorder.emit("rolled back", services=len(self.created),
                               restored=len(self.updated))


_Check = Callable[[list[TaskState]], Awaitable[bool]]


async def container_started(swarm: Swarm, tasks: list[TaskState]) -> bool:
    """A task's container started (compose's `service_started`; the queue's slot is held
    until then, docs/swarm.md). The swarm says `starting` once it asks for the start, and a
    task with a healthcheck stays `starting` until healthy, so the engine tells where it
    can; another node's start cannot be seen from here: there `starting` counts."""
    for task in tasks:
        if not (task.current and task.has_container):
            continue
        container = swarm.local_container(task)
        if task.state == "running" or not container:
            return True
        with contextlib.suppress(EngineError):  # gone: the task's failure tells
            if (await swarm.engine.inspect(container)).status != "created":
                return True
    return False


async def _job_began(tasks: list[TaskState]) -> bool:
    """A job's task has its container, or already ran (a job's ended task is not current)."""
    return any(task.state in ("starting", "running", "complete") for task in tasks)


async def _job_completed(tasks: list[TaskState]) -> bool:
    return any(task.state == "complete" for task in tasks)


def _exit(task: TaskState) -> str:
    return f" (exit code {task.exit_code})" if task.exit_code not in (None, 0) else ""


def one_service_each(loaded: LoadedPlan) -> LoadedPlan:
    """The plan with a swarm service per declared service: its replicas the swarm's own
    (`deploy.replicas`), not the one-container-each services of one engine."""
    declared = loaded.declared
    if declared is None:
        return loaded
    # A service with 0 replicas is kept, as docker stack deploy keeps it (no task): one
    # engine's expansion left it out of loaded.plan (as `up SERVICE...` leaves out the
    # services not chosen, which stay out).
    services = {name: loaded.plan.services.get(name, spec).model_copy(update={
                    "replicas": _replicas(loaded, name) if name in loaded.plan.services else 0,
                    "after": spec.after, "dependency_options": spec.dependency_options,
                    "load_balance": spec.load_balance})
                for name, spec in declared.services.items()
                if name in loaded.plan.services or name not in loaded.unselected}
    phases = [phase.model_copy(update={"services": [n for n in phase.services
                                                    if n in services]})
              for phase in declared.phases if any(n in services for n in phase.services)]
    plan = loaded.plan.model_copy(update={"services": services, "phases": phases})
    return dataclasses.replace(loaded, plan=plan, graph=DependencyGraph.from_plan(plan))


def _replicas(loaded: LoadedPlan, name: str) -> int:
    """How many replicas of `name` the plan has, `scale`'s counts included (one engine's
    plan has a service per replica: `name`, `name-2`, ...)."""
    declared = loaded.declared.services if loaded.declared is not None else {}
    count = 1
    while count < MAX_REPLICAS and (replica := replica_names(name, count + 1)[-1]) in \
            loaded.plan.services and replica not in declared:
        count += 1
    return count


async def up_swarm(swarm: Swarm, loaded: LoadedPlan, options: UpOptions,
                   recorder: RunRecorder) -> None:
    """The plan on the swarm; RunFailed (after rolling back) if a required service fails."""
    loaded = plan_problems(loaded)
    plan = loaded.plan
    for name in plan.services:
        recorder.track(name, plan.phase_of(name))
    await swarm.nodes()  # a manager, or NotAManager before anything is made
    configs = _configs(swarm, loaded)
    objects = await _placed_objects(swarm, loaded)
    configs = {name: with_objects(config, plan, objects) for name, config in configs.items()}
    actions, orphans = reconcile_services(configs, await swarm.services(plan.project))
    probes = OverlayProbes(swarm, options.probe_image, {
        LABEL_PROJECT: plan.project, LABEL_RUN: recorder.run_id})
    queue = EngineQueue(options.start_concurrency,
                        loaded.graph.latest_starts(options.durations),
                        expected=[name for name, action in actions.items()
                                  if action.verb is not Verb.KEEP
                                  and not loaded.graph.dependencies[name]],
                        tie_s=DEADLINE_TIE_S)
    run = _SwarmRun(swarm, loaded, options, recorder, configs, actions,
                    SwarmReadiness(swarm, plan, configs, probes), queue,
                    TaskBoard(swarm, fresh_s=POLL_S * 0.9))
    recorder.emit("run started", backend="swarm", plan=str(loaded.path),
                  services=len(configs),
                  actions=[str(a) for a in (*actions.values(), *orphans)])
    _tell_start_checks(plan, configs, swarm.has_start_interval, recorder)
    def on_failure(name: str, failure: ServiceFailed) -> None:
        recorder.fail(name, failure.cause, optional=plan.services[name].optional)

    async with rolled_back_on_failure(recorder, options, run.rollback) as failures:
        await _ensure_networks(swarm, loaded, run.run_id, recorder)
        await _ensure_objects(run, objects)
        try:
            failures.extend(await traverse(
                loaded.graph, run.visit, required=lambda name: not plan.services[name].optional,
                on_failure=on_failure))
        finally:
            await probes.close()
    for orphan in orphans if options.remove_orphans else ():
        if orphan.existing is not None:
            await swarm.remove_service(orphan.existing.id)
            recorder.emit("service removed", service=orphan.service, cause=orphan.cause)
    await _remove_objects(swarm, stale(await _project_objects(swarm, plan.project), objects),
                          recorder)
    recorder.finish("succeeded")
    recorder.emit("run completed", total_s=recorder.total_s)


async def _ensure_networks(swarm: Swarm, loaded: LoadedPlan, run_id: str,
                           recorder: RunRecorder) -> None:
    """The plan's overlay networks: made when missing (external ones only looked up)."""
    snapshot = await swarm.engine.snapshot(loaded.plan.project)
    have = {network.name for network in snapshot.networks}
    for config in overlay_networks(loaded.plan):
        if config.external:
            if not await swarm.engine.exists("network", config.name):
                raise ServiceFailed(f"network {config.name}", "it is external and the swarm "
                                    f"has no such network: docker network create --driver "
                                    f"overlay --attachable {config.name}")
            continue
        if config.name in have:
            recorder.emit("network ensured", network=config.name, action="keep")
            continue
        await swarm.engine.create_network(config, run_id)
        recorder.emit("network ensured", network=config.name, action="create")


def plan_problems(loaded: LoadedPlan) -> LoadedPlan:
    """The plan as the swarm takes it (a service per declared service, each load
    balancer's rendered configuration a config it gets: plan/_swarm_balancers.py);
    PlanError naming each key this backend does not carry out yet."""
    loaded = one_service_each(loaded)
    project = loaded.plan.project
    plan, problems = with_balancer_configs(
        loaded.plan, loaded.templates,
        host=lambda backend: f"tasks.{service_name(project, backend)}")
    problems += swarm_problems(plan)
    if problems:
        raise PlanError(str(loaded.path), problems)
    return dataclasses.replace(loaded, plan=plan)


async def _placed_objects(swarm: Swarm, loaded: LoadedPlan) -> dict[ObjectKey, SwarmObject]:
    """The plan's secrets and configs as the swarm is to hold them, named by what it has
    (engine/_swarm_objects.py); a missing external one is a plan problem, before anything
    is made."""
    plan = loaded.plan
    read, problems = await anyio.to_thread.run_sync(contents, plan, loaded.path.parent)
    observed: list[ObservedObject] = []
    for kind in KINDS:
        names = [base_name(plan, kind, key) for of, key in wanted(plan) if of == kind]
        if names:
            observed += await swarm.objects(kind, names=names)
    objects, more = placed(plan, read, observed)
    if problems or more:
        raise PlanError(str(loaded.path), [*problems, *more])
    return objects


async def _ensure_objects(run: _SwarmRun, objects: dict[ObjectKey, SwarmObject]) -> None:
    """The secrets and configs the swarm lacks, made (this run's: its rollback removes
    them), and the services' references given their ids."""
    ids = {(item.kind, item.name): item.id for item in objects.values() if item.id}
    for item in objects.values():
        if (item.kind, item.name) in ids:
            continue
        made = await run.swarm.create_object(item.kind, item.name, item.content,
                                             item.labels(run.loaded.plan.project, run.run_id),
                                             item.template_driver)
        ids[item.kind, item.name] = made
        run.objects_made.append(ObservedObject(item.kind, made, item.name, item.digest, ""))
        run.recorder.emit(f"{item.kind[:-1]} created", name=item.name, key=item.key)
    for name, config in run.configs.items():
        run.configs[name] = with_ids(config, ids)


async def _project_objects(swarm: Swarm, project: str) -> list[ObservedObject]:
    return [item for kind in KINDS for item in await swarm.objects(kind, project=project)]


async def _remove_objects(swarm: Swarm, objects: Sequence[ObservedObject],
                          recorder: RunRecorder) -> None:
    """Each removed, unless a service still refers to it (the swarm refuses: it is kept,
    and said). Never cancelled halfway (a rollback's, a down's)."""
    with anyio.CancelScope(shield=True):
        for item in objects:
            try:
                await swarm.remove_object(item.kind, item.id)
            except StillInUse:
                recorder.emit(f"{item.kind[:-1]} kept", name=item.name,
                              cause="a service still refers to it")
                continue
            except NotFound:
                continue
            recorder.emit(f"{item.kind[:-1]} removed", name=item.name)


def _configs(swarm: Swarm, loaded: LoadedPlan) -> dict[str, ServiceConfig]:
    jobs = loaded.graph.jobs()
    return {name: service_config(loaded.plan, name, loaded.path.parent,
                                 has_start_interval=swarm.has_start_interval, job=name in jobs)
            for name in loaded.graph.nodes}


async def supervise_swarm(swarm: Swarm, loaded: LoadedPlan, options: SuperviseOptions,
                          recorder: RunRecorder) -> None:
    """`up --supervise` on a swarm, until cancelled. The swarm restarts the tasks itself
    (by the services' restart policies and healthchecks); this watches them: each task
    that fails is told with its node and error, a service whose tasks stop running is
    told unhealthy, and once it runs and answers ollamatopo's own probe again it is told
    healthy and its dependents are re-probed at once (they are the swarm's to restart if
    they fail their own checks). The task list is read every WATCH_S: this engine has no
    task events."""
    loaded = one_service_each(loaded)
    configs = _configs(swarm, loaded)
    await swarm.nodes()  # the manager's own node, for exec probes of its tasks
    probes = OverlayProbes(swarm, options.probe_image, {
        LABEL_PROJECT: loaded.plan.project, LABEL_RUN: recorder.run_id})
    watch = _TaskWatch(loaded, SwarmReadiness(swarm, loaded.plan, configs, probes),
                       recorder, options.ready_timeout_s)
    recorder.emit("supervising", backend="swarm", services=len(configs), every_s=WATCH_S)
    try:
        while True:
            watch.ids = {service.service: service.id
                         for service in await swarm.services(loaded.plan.project)
                         if service.service in configs}
            listed = await swarm.tasks_by_service(list(watch.ids.values()))
            for name, service_id in watch.ids.items():
                await watch.observe(name, listed[service_id])
            await anyio.sleep(WATCH_S)
    finally:
        await probes.close()


@dataclass
class _TaskWatch:
    loaded: LoadedPlan
    readiness: SwarmReadiness
    recorder: RunRecorder
    ready_timeout_s: float
    ready: dict[str, bool] = field(default_factory=dict)  # by the tasks' states
    told: set[str] = field(default_factory=set)  # failed tasks already told
    ids: dict[str, str] = field(default_factory=dict)  # service -> swarm id, this tick's

    async def observe(self, name: str, tasks: list[TaskState]) -> None:
        for task in tasks:
            if task.failed and task.id not in self.told:
                self.told.add(task.id)
                self.recorder.emit("task failed", service=name, level="warning",
                                   node=task.node[:12], state=task.state,
                                   error=task.error or task.message, exit_code=task.exit_code)
        current = [task for task in tasks if task.current]
        running = bool(current) and all(task.state == "running" for task in current)
        was = self.ready.get(name, True)  # `up` left every service ready
        self.ready[name] = running
        if was and not running:
            states = ", ".join(sorted({task.state for task in current})) or "no task"
            self.recorder.emit("service unhealthy", service=name, level="warning",
                               reason=f"its tasks: {states} (the swarm restarts them)")
        elif running and not was:
            await self._back(name)

    async def _back(self, name: str) -> None:
        """Running again: ready once its own probe answers, then its dependents re-probed."""
        if not await self._holds_within(name, self.ready_timeout_s):
            self.ready[name] = False  # told again when it runs anew
            self.recorder.emit("service unhealthy", service=name, level="warning",
                               reason=f"running, but not ready after {self.ready_timeout_s:g}s")
            return
        self.recorder.emit("service healthy", service=name)
        for dependent in sorted(self.loaded.graph.dependents(name)):
            ready = await self._holds_now(dependent)
            self.recorder.emit("dependent re-probed", service=dependent, dependency=name,
                               ready=ready, level="info" if ready else "warning")

    async def _holds_within(self, name: str, timeout_s: float) -> bool:
        with anyio.move_on_after(timeout_s):
            while not await self._holds_now(name):
                await anyio.sleep(RECHECK_S)
            return True
        return False

    async def _holds_now(self, name: str) -> bool:
        service_id = self.ids.get(name)
        return service_id is not None and await self.readiness.holds(
            name, await self.readiness.swarm.tasks(service_id))


def _tell_start_checks(plan: Plan, configs: Mapping[str, ServiceConfig],
                       has_start_interval: bool, recorder: RunRecorder) -> None:
    """Say where the swarm's healthchecks run more often than the file wrote them (on an
    engine without StartInterval, for the task's whole life: swarm_healthcheck)."""
    changed = {}
    for name, config in configs.items():
        check = config.create_kwargs["task_template"]["ContainerSpec"].get("Healthcheck", {})
        written = plan.services[name].healthcheck
        if "StartInterval" in check:
            changed[name] = f"every {check['StartInterval'] / 1e9:g}s while starting"
        elif written is not None and check.get("Retries") != written.retries:
            changed[name] = f"every {check['Interval'] / 1e9:g}s, {check['Retries']} retries"
    if changed:
        recorder.emit("healthchecks at start cadence", level="info" if has_start_interval
                      else "warning", services=changed,
                      why="a swarm names a task only once a check passed" + (
                          "" if has_start_interval else "; this engine has no "
                          "start_interval (API < 1.44), so throughout"))


@dataclass(frozen=True)
class SwarmDown:
    services: list[str]
    networks: list[str]


async def down_swarm(swarm: Swarm, project: str, recorder: RunRecorder) -> SwarmDown:
    """The project's services removed, dependents first (the order their labels give),
    then its networks once no task holds them."""
    await swarm.nodes()
    observed = await swarm.services(project)
    by_name = {service.service: service for service in observed}
    graph = DependencyGraph({service.service: dict.fromkeys(
        [d for d in service.depends_on if d in by_name], Condition.HEALTHY)
        for service in observed})
    removed = []
    for name in reversed(graph.topological_order()):
        await swarm.remove_service(by_name[name].id)
        recorder.emit("service removed", service=name)
        removed.append(name)
    await _remove_objects(swarm, await _project_objects(swarm, project), recorder)
    snapshot = await swarm.engine.snapshot(project)
    for container in snapshot.containers:  # a prober a killed run left
        if not container.service:
            await swarm.engine.remove_container(container.id)
    pending = [network.id for network in snapshot.networks]
    # The removed services' tasks hold the networks until they stopped, on every node
    # (a stand-in takes its grace period): wait for that, up to the longest grace period.
    with anyio.move_on_after(NETWORK_RELEASE_S):
        while pending:
            for network in list(pending):
                with contextlib.suppress(StillInUse):
                    await swarm.engine.remove_network(network)
                    pending.remove(network)
            if pending:
                await anyio.sleep(RECHECK_S)
    kept = await remove_networks(swarm.engine, pending, recorder)  # says why, if still held
    # The swarm takes a network's removal at once and drops it from this node once the
    # last task on it stopped: `down` returns when it is gone here too.
    with anyio.move_on_after(NETWORK_RELEASE_S):
        while any(n.id not in kept for n in (await swarm.engine.snapshot(project)).networks):
            await anyio.sleep(NETWORK_GONE_POLL_S)
    return SwarmDown(removed, [n.id for n in snapshot.networks
                               if n.id not in pending or n.id in kept])


@dataclass(frozen=True)
class TaskRow:
    service: str
    node: str
    state: str
    desired: str
    message: str
    ready: bool  # a job's: completed; else running, and answering its probe if asked


async def status_swarm(swarm: Swarm, loaded: LoadedPlan, *, probe_image: str | None,
                       probe: bool) -> list[TaskRow]:
    """Each task of the project's services: its node's hostname, state, message and
    readiness (with `probe`, each running task checked now by ollamatopo's own probe
    where the service has one: HTTP/TCP through a prober on the overlay, the exec probe
    in a container on this manager; else the swarm's `running`)."""
    loaded = one_service_each(loaded)
    project = loaded.plan.project
    nodes = {node.id: node.hostname for node in await swarm.nodes()}
    configs = _configs(swarm, loaded)
    probes = OverlayProbes(swarm, probe_image if probe else None,
                           {LABEL_PROJECT: project})
    readiness = SwarmReadiness(swarm, loaded.plan, configs, probes)
    rows = []
    try:
        services = await swarm.services(project)
        listed = await swarm.tasks_by_service([service.id for service in services])
        for service in services:
            for task in listed[service.id]:
                if not task.current and task.desired != "complete":  # a job's: its end
                    continue
                ready = task.state == "complete" or (
                    await readiness.task_ready(service.service, task)
                    if probe and service.service in configs else task.state == "running")
                rows.append(TaskRow(service.service, nodes.get(task.node, task.node[:12]),
                                    task.state, task.desired, task.error or task.message,
                                    ready))
    finally:
        await probes.close()
    return sorted(rows, key=lambda row: (row.service, row.node))

