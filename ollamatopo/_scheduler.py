"""The scheduler: one traversal of the dependency graph brings a plan up or down.

`up`: observe the engine, reconcile, ensure images, networks and volumes, then
every service runs in one task group: its container is created ahead of time,
it starts as soon as its own dependencies hold (`started` or `healthy`), and is
probed until ready while a container exit fails it at once. A required failure
cancels the rest; what this run created is then removed (unless kept).
`down`: the same traversal on the reversed graph, from labels alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import anyio

from ollamatopo._admission import Capacity, admit, clamp
from ollamatopo._container_config import (
    ContainerConfig,
    VolumeConfig,
    container_config,
    network_config,
    plan_networks,
    volume_config,
)
from ollamatopo._engine import Engine
from ollamatopo._errors import (
    EngineError,
    OllamatopoError,
    ProbeFailed,
    RunFailed,
    ServiceFailed,
)
from ollamatopo._graph import DependencyGraph
from ollamatopo._loadbalancer import BalancerSync
from ollamatopo._loader import LoadedPlan
from ollamatopo._plan import Condition, Plan
from ollamatopo._probes import Backoff, HttpClient, build_probe, http_client, wait_until_ready
from ollamatopo._reconcile import (
    NetworkAction,
    Reconciliation,
    ServiceAction,
    Snapshot,
    Verb,
    reconcile,
)
from ollamatopo._report import ImagePull, RunRecorder
from ollamatopo._start_queue import StartQueue
from ollamatopo._watch import ContainerWatch, watch_containers

LOG_TAIL = 20
DRAIN_S = 1.0


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


# --- the traversal --------------------------------------------------------------------------


class DependencyFailed(ServiceFailed):
    """A service did not start because something it waits for failed."""


class NetworkFailed(ServiceFailed):
    """A network of the plan could not be made; the services on it cannot start."""

    def __init__(self, network: str, users: list[str], cause: str) -> None:
        super().__init__(f"network {network}", cause)
        used = f" (used by {', '.join(users)})" if users else ""
        self.args = (f"network {network!r}{used} failed: {cause}",)


@dataclass
class _NodeState:
    started: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    failed: bool = False


class NodeContext:
    """What a visit may do: wait for its dependencies, say it has started."""

    def __init__(self, name: str, graph: DependencyGraph, states: Mapping[str, _NodeState]):
        self.name = name
        self._graph, self._states = graph, states

    async def dependencies_hold(self) -> None:
        for dependency, condition in self._graph.dependencies[self.name].items():
            state = self._states.get(dependency)
            if state is None:
                continue
            await (state.done if condition is Condition.HEALTHY else state.started).wait()
            if state.failed:
                raise DependencyFailed(self.name, f"dependency {dependency!r} failed")

    def started(self) -> None:
        self._states[self.name].started.set()


Visit = Callable[[str, NodeContext], Awaitable[None]]


async def traverse(graph: DependencyGraph, visit: Visit, *, required: Callable[[str], bool],
                   on_failure: Callable[[str, ServiceFailed], None]) -> list[ServiceFailed]:
    """Run `visit` for every node at once; each waits inside for what it needs.

    A failed node releases its dependents (they fail with DependencyFailed); a failed
    required node cancels everything still in flight. Returns the required failures.
    """
    states = {name: _NodeState() for name in graph.nodes}
    fatal: list[ServiceFailed] = []

    async with anyio.create_task_group() as group:

        async def run(name: str) -> None:
            state = states[name]
            try:
                try:
                    await visit(name, NodeContext(name, graph, states))
                except EngineError as error:
                    raise ServiceFailed(name, str(error)) from None
            except ServiceFailed as failure:
                state.failed = True
                on_failure(name, failure)
                if required(name):
                    fatal.append(failure)
                    group.cancel_scope.cancel()
            finally:
                state.started.set()
                state.done.set()

        for name in graph.topological_order():
            group.start_soon(run, name, name=f"service {name}")
    return fatal


# --- up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpOptions:
    keep_on_failure: bool = False
    default_timeout_s: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)
    remove_orphans: bool = True
    clamp_resources: bool = False
    start_concurrency: int = 8
    # Start-to-ready seconds of earlier runs: who is on the critical path starts first.
    durations: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DesiredState:
    """The plan as engine payloads."""

    containers: dict[str, ContainerConfig]
    reconciliation: Reconciliation
    snapshot: Snapshot


async def observe(engine: Engine, loaded: LoadedPlan) -> DesiredState:
    plan = loaded.plan
    base = loaded.path.parent
    containers = {name: container_config(plan, name, base) for name in loaded.graph.nodes}
    networks = [network_config(plan.project, key, spec)
                for key, spec in plan_networks(plan).items()]
    images = sorted({config.image for config in containers.values()})
    snapshot = await engine.snapshot(plan.project, images)
    return DesiredState(containers, reconcile(containers, networks, snapshot), snapshot)


@dataclass
class _ProbeOutcome:
    """Which came first: readiness (attempts), the deadline (error), or an exit."""

    attempts: int = 0
    error: str | None = None
    exit: tuple[int | None, bool] | None = None


class ImageSupply:
    """The run's images: present ones are ready at once, missing ones are pulled all
    concurrently while services with present images already start; a service waits only
    for its own image."""

    PROGRESS_EVERY_S = 0.5

    def __init__(self, engine: Engine, recorder: RunRecorder, desired: DesiredState) -> None:
        self._engine, self._recorder = engine, recorder
        needed = sorted({config.image for config in desired.containers.values()})
        self.missing = [image for image in needed if image not in desired.snapshot.image_ids]
        self._ready = {image: anyio.Event() for image in needed}
        self._errors: dict[str, str] = {}
        for image in needed:
            if image not in self.missing:
                self._ready[image].set()
                recorder.emit("image ensured", image=image, pulled=False)

    async def pull_missing(self) -> None:
        async with anyio.create_task_group() as group:
            for image in self.missing:
                group.start_soon(self._pull, image)

    async def _pull(self, image: str) -> None:
        last = [0.0]
        pull = self._recorder.pulls.setdefault(image, ImagePull())

        def progress(current: int, total: int) -> None:
            pull.downloaded, pull.total = current, total
            now = self._recorder.elapsed()
            if now - last[0] >= self.PROGRESS_EVERY_S or current >= total:
                last[0] = now
                self._recorder.emit("image pull progress", image=image, downloaded=current,
                                    total=total)

        began = self._recorder.elapsed()
        self._recorder.emit("image pull started", image=image)
        try:
            await self._engine.pull(image, progress)
        except EngineError as error:
            self._errors[image] = str(error)
            pull.status = "failed"
            self._recorder.emit("image pull failed", image=image, level="error",
                                error=str(error))
        else:
            pull.status = "pulled"
            self._recorder.emit("image ensured", image=image, pulled=True,
                                duration_s=round(self._recorder.elapsed() - began, 3))
        finally:
            self._ready[image].set()

    async def wait(self, service: str, image: str) -> None:
        await self._ready[image].wait()
        if image in self._errors:
            raise ServiceFailed(service, f"image {image} is not on the engine and could not "
                                         f"be pulled: {self._errors[image]}")


class _Run:
    """One `up`: the plan, the engine, what it decided and what it has done."""

    def __init__(self, engine: Engine, loaded: LoadedPlan, desired: DesiredState,
                 options: UpOptions, recorder: RunRecorder) -> None:
        self.engine, self.loaded, self.desired = engine, loaded, desired
        self.plan: Plan = loaded.plan
        self.options, self.recorder = options, recorder
        self.run_id = recorder.run_id
        self.container_ids: dict[str, str] = {}
        self.images = ImageSupply(engine, recorder, desired)
        self.starts = StartQueue(
            options.start_concurrency, loaded.graph.slack(options.durations),
            expected=[name for name, deps in loaded.graph.dependencies.items()
                      if not deps and desired.reconciliation.services[name].verb is not Verb.KEEP])
        self.balancers = BalancerSync(engine, self.plan, loaded.templates, recorder)
        # Backends that were running before this run count as up until a probe says not.
        self.balancers.up.update(name for name, action in desired.reconciliation.services.items()
                                 if action.verb is Verb.KEEP)

    # Networks and volumes first, concurrently; images are pulled alongside (ImageSupply).

    async def ensure_shared(self) -> None:
        async with anyio.create_task_group() as group:
            for action in self.desired.reconciliation.networks:
                group.start_soon(self.ensure_network, action)
            for key, spec in self.plan.volumes.items():
                group.start_soon(self.ensure_volume, volume_config(self.plan.project, key, spec))

    async def ensure_network(self, action: NetworkAction) -> None:
        config = action.config
        if action.verb is Verb.KEEP:
            self.recorder.emit("network ensured", network=config.name, action="keep")
            return
        if action.verb is Verb.RECREATE and action.existing is not None:
            await self._clear_network(action.existing.name, action.existing.containers)
        try:
            await self.engine.create_network(config, self.run_id)
        except EngineError as error:
            users = sorted(name for name, container in self.desired.containers.items()
                           if any(e.network == config.name for e in container.endpoints))
            raise NetworkFailed(config.key, users, str(error)) from None
        self.recorder.emit("network ensured", network=config.name, action=action.verb.value,
                           cause=action.cause)

    async def _clear_network(self, name: str, attached: tuple[str, ...]) -> None:
        ours = {c.id for c in self.desired.snapshot.containers}
        strangers = [cid for cid in attached if cid not in ours]
        if strangers:
            raise ServiceFailed(f"network {name}", f"its config changed but {len(strangers)} "
                                "container(s) outside the project use it; detach them first")
        for container_id in attached:
            await self.engine.remove_container(container_id)
        await self.engine.remove_network(name)

    async def ensure_volume(self, config: VolumeConfig) -> None:
        if config.name not in self.desired.snapshot.volumes:
            try:
                await self.engine.create_volume(config)
            except EngineError as error:
                raise ServiceFailed(f"volume {config.name}", str(error)) from None
            self.recorder.emit("volume ensured", volume=config.name, action="create")

    async def remove_orphans(self) -> None:
        orphans = [(o, o.existing) for o in self.desired.reconciliation.orphans
                   if o.existing is not None]
        if not orphans:
            return
        if not self.options.remove_orphans:
            for orphan, existing in orphans:
                self.recorder.emit("orphan kept", service=orphan.service, level="warning",
                                   container=existing.name, cause=orphan.cause)
            return
        await self._drain_balancers()
        for orphan, existing in orphans:
            await self.engine.stop(existing.id)
            await self.engine.remove_container(existing.id)
            self.recorder.emit("container removed", service=orphan.service, cause=orphan.cause)

    async def _drain_balancers(self) -> None:
        """Before orphans stop (replicas scaled away, services dropped): the running load
        balancers are re-rendered without them and reloaded, and requests in flight get
        DRAIN_S to finish on the old nginx workers."""
        reloaded = False
        for name, action in self.desired.reconciliation.services.items():
            if self.balancers.is_balancer(name) and action.verb is Verb.KEEP \
                    and action.existing is not None:
                reloaded |= await self.balancers.prepare(name, action.existing.id, True)
        if reloaded:
            self.recorder.emit("draining", seconds=DRAIN_S)
            await anyio.sleep(DRAIN_S)

    # One service: prepare ahead, wait for dependencies, start, probe.

    async def bring_up(self, name: str, context: NodeContext, watch: ContainerWatch,
                       http: HttpClient) -> None:
        try:
            await self._bring_up(name, context, watch, http)
        finally:
            self.starts.withdraw(name)  # if it never asked for a start slot, others need not wait

    async def _bring_up(self, name: str, context: NodeContext, watch: ContainerWatch,
                        http: HttpClient) -> None:
        action = self.desired.reconciliation.services[name]
        timing = self.recorder.services[name]
        timing.action, timing.cause = action.verb.value, action.cause
        container_id = await self.prepare(name, action)
        balancer = self.balancers.is_balancer(name)
        if balancer:
            await self.balancers.prepare(name, container_id, action.verb is Verb.KEEP)
        await context.dependencies_hold()
        if action.verb is not Verb.KEEP:
            watch.forget(container_id)
            start = partial(self.start, name, container_id)
            await (self.balancers.start(name, start) if balancer else start())
        context.started()
        try:
            await self.probe(name, container_id, watch, http)
        except ServiceFailed:
            await self.balancers.backend_changed(name, up=False)
            raise
        await self.balancers.backend_changed(name, up=True)

    async def start(self, name: str, container_id: str) -> None:
        try:
            async with self.starts.slot(name):
                await self.engine.start(container_id)
        except EngineError as error:
            raise ServiceFailed(name, f"the engine refused to start it: {error}") from None
        self.recorder.mark(name, "started")

    async def prepare(self, name: str, action: ServiceAction) -> str:
        config = self.desired.containers[name]
        if action.verb in (Verb.KEEP, Verb.START) and action.existing is not None:
            self.container_ids[name] = action.existing.id
            return action.existing.id
        await self.images.wait(name, config.image)
        if action.existing is not None:  # recreate
            await self.engine.stop(action.existing.id)
            await self.engine.remove_container(action.existing.id)
        try:
            container_id = await self.engine.create_container(config, self.run_id)
        except EngineError as error:
            raise ServiceFailed(name, f"the engine refused to create it: {error}") from None
        self.container_ids[name] = container_id
        self.recorder.mark(name, "created", cause=action.cause, container=container_id[:12])
        return container_id

    async def probe(self, name: str, container_id: str, watch: ContainerWatch,
                    http: HttpClient) -> None:
        spec = self.plan.services[name]
        state = await self.engine.inspect(container_id)
        if not state.running:
            raise await self._exited(name, container_id, state.exit_code, state.oom_killed)
        first_network = self.desired.containers[name].endpoints[0].network
        try:
            probe = build_probe(spec.ready, engine=self.engine, http=http,
                                container_id=container_id, state=state,
                                first_network=first_network)
        except ProbeFailed as error:
            raise ServiceFailed(name, str(error)) from None
        timing = self.recorder.services[name]
        timing.probe = probe.description
        deadline = spec.ready.timeout or self.options.default_timeout_s

        def on_attempt(attempt: int, error: str | None) -> None:
            timing.probe_attempts = attempt
            self.recorder.emit("probe attempt", service=name, level="debug", attempt=attempt,
                               error=error)

        outcome = _ProbeOutcome()
        async with anyio.create_task_group() as race:

            async def until_ready() -> None:
                try:
                    outcome.attempts = await wait_until_ready(probe, deadline,
                                                              self.options.backoff, on_attempt)
                except ProbeFailed as error:
                    outcome.error = str(error)
                race.cancel_scope.cancel()

            async def until_exit() -> None:
                outcome.exit = await watch.wait_exit(container_id)
                race.cancel_scope.cancel()

            race.start_soon(until_ready)
            race.start_soon(until_exit)
        if outcome.exit is not None:
            raise await self._exited(name, container_id, *outcome.exit)
        if outcome.error is not None:
            raise ServiceFailed(name, outcome.error)
        timing.probe_attempts = outcome.attempts
        started = timing.started_s if timing.started_s is not None else 0.0
        self.recorder.mark(name, "ready", probe=probe.description,
                           attempts=timing.probe_attempts,
                           start_to_ready_s=round(self.recorder.elapsed() - started, 3))

    async def _exited(self, name: str, container_id: str, code: int | None,
                      oom: bool) -> ServiceFailed:
        with anyio.CancelScope(shield=True):
            try:
                logs = await self.engine.logs(container_id, tail=LOG_TAIL)
            except OllamatopoError:
                logs = ""
            if not oom:  # the engine's `oom` event may come after `die`, or not at all
                with contextlib.suppress(OllamatopoError):
                    state = await self.engine.inspect(container_id)
                    oom = state.oom_killed
                    code = state.exit_code if code is None else code
        why = " (OOM-killed)" if oom else ""
        tail = "\n".join(f"    | {line}" for line in logs.rstrip().splitlines()[-LOG_TAIL:])
        return ServiceFailed(name, f"container exited with code {code}{why} while waiting for "
                                   f"it to be ready" + (f"; last log lines:\n{tail}" if tail
                                                       else "; it printed nothing"))

    # Rollback: by the run's label, so nothing created is missed even if a call was cut short.

    async def rollback(self) -> None:
        with anyio.CancelScope(shield=True):
            containers, networks = await self.engine.objects_of_run(self.plan.project,
                                                                    self.run_id)
            async with anyio.create_task_group() as group:
                for container_id in containers:
                    group.start_soon(self.engine.remove_container, container_id)
            removed = await remove_networks(self.engine, networks, self.recorder)
            self.recorder.emit("rolled back", containers=len(containers),
                               networks=len(removed))


async def up(engine: Engine, loaded: LoadedPlan, options: UpOptions,
             recorder: RunRecorder) -> None:
    """Bring the plan up; raise RunFailed (after rolling back) if a required service fails."""
    # The graph goes into the report, so `report` can weigh it with the measured times.
    recorder.extra["dependencies"] = {
        name: {dependency: condition.value for dependency, condition in deps.items()}
        for name, deps in loaded.graph.dependencies.items()}
    loaded = await admit_resources(engine, loaded, options, recorder)
    plan = loaded.plan
    desired = await observe(engine, loaded)
    run = _Run(engine, loaded, desired, options, recorder)
    recorder.emit("run started", plan=str(loaded.path), services=len(desired.containers),
                  actions=desired.reconciliation.lines())
    failures: list[ServiceFailed] = []

    def on_failure(name: str, failure: ServiceFailed) -> None:
        recorder.fail(name, failure.cause, optional=plan.services[name].optional)

    try:
        async with watch_containers(engine, plan.project) as watch, http_client() as http, \
                anyio.create_task_group() as pulls:
            pulls.start_soon(run.images.pull_missing)
            try:
                await run.ensure_shared()
                await run.remove_orphans()
            except* ServiceFailed as group:  # ensure_shared's task group wraps them
                failures.extend(_leaves(group))
            if not failures:
                failures = await traverse(
                    loaded.graph,
                    lambda name, ctx: run.bring_up(name, ctx, watch, http),
                    required=lambda name: not plan.services[name].optional,
                    on_failure=on_failure)
                _report_phases(recorder)
            pulls.cancel_scope.cancel()  # nothing waits for an image any more
    except BaseException:
        recorder.finish("interrupted")
        if not options.keep_on_failure:
            await run.rollback()
        raise
    if failures:
        recorder.finish("failed")
        if not options.keep_on_failure:
            await run.rollback()
        raise RunFailed(failures, rolled_back=not options.keep_on_failure)
    recorder.finish("succeeded")
    recorder.emit("run completed", total_s=recorder.total_s,
                  warnings=sum(1 for t in recorder.services.values() if t.status == "failed"))


async def admit_resources(engine: Engine, loaded: LoadedPlan, options: UpOptions,
                          recorder: RunRecorder) -> LoadedPlan:
    """Check the plan against the host before anything is touched; clamp it if asked."""
    capacity = Capacity(*await engine.capacity())
    if options.clamp_resources:
        plan, changes = clamp(loaded.plan, capacity)
        for change in changes:
            recorder.emit("resources clamped", service=change.service, level="warning",
                          change=str(change))
        loaded = dataclasses.replace(loaded, plan=plan)
    admit(loaded.plan, capacity)
    return loaded


def _leaves(group: BaseExceptionGroup[ServiceFailed]) -> list[ServiceFailed]:
    found: list[ServiceFailed] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found += _leaves(error)
        else:
            found.append(error)
    return found


def _report_phases(recorder: RunRecorder) -> None:
    for phase, (began, completed) in recorder.phase_spans().items():
        if completed is not None:
            recorder.emit("phase completed", phase=phase, began_s=began, completed_s=completed,
                          duration_s=round(completed - (began or 0.0), 3))


# --- down -----------------------------------------------------------------------------------


async def remove_networks(engine: Engine, networks: list[str],
                          recorder: RunRecorder) -> list[str]:
    """Remove each network; the ones removed. One the engine will not let go of (see
    `Engine.remove_network`) is kept with a warning instead of failing the run."""
    removed = []
    for network in networks:
        try:
            await engine.remove_network(network)
        except EngineError as error:
            recorder.emit("network kept", level="warning", network=network, error=str(error),
                          fix="the engine still counts endpoints on it: restart dockerd, "
                              "then run down again")
            continue
        removed.append(network)
    return removed



@dataclass(frozen=True)
class DownResult:
    containers: list[str]
    networks: list[str]
    volumes: list[str]
    kept_volumes: list[str] = field(default_factory=list)  # without `volumes`: still there


async def down(engine: Engine, project: str, *, volumes: bool,
               recorder: RunRecorder, remove: bool = True) -> DownResult:
    """Stop dependents before their dependencies (graceful, then kill), remove containers
    and networks; named volumes only with `volumes`. With `remove` false, only stop."""
    snapshot = await engine.snapshot(project)
    by_service = {c.service or c.name: c for c in snapshot.containers}
    graph = DependencyGraph({
        service: {dep: Condition.HEALTHY for dep in container.depends_on if dep in by_service}
        for service, container in by_service.items()
    }).reversed()
    removed: list[str] = []

    async def stop(service: str, context: NodeContext) -> None:
        await context.dependencies_hold()
        container = by_service[service]
        await engine.stop(container.id)  # its own StopTimeout: the plan's stop_grace_period
        if not remove:
            recorder.emit("container stopped", service=service, container=container.name)
            return
        await engine.remove_container(container.id)
        removed.append(container.name)
        recorder.emit("container removed", service=service, container=container.name)

    def on_failure(name: str, failure: ServiceFailed) -> None:
        recorder.emit("stop failed", service=name, level="error", error=failure.cause)

    await traverse(graph, stop, required=lambda _: False, on_failure=on_failure)
    if not remove:
        return DownResult([], [], [])
    networks = await remove_networks(engine, [n.name for n in snapshot.networks], recorder)
    for name in networks:
        recorder.emit("network removed", network=name)
    removed_volumes = []
    if volumes:
        for volume in snapshot.volumes:
            await engine.remove_volume(volume)
            removed_volumes.append(volume)
            recorder.emit("volume removed", volume=volume)
    kept = [] if volumes else sorted(snapshot.volumes)
    return DownResult(removed, networks, removed_volumes, kept)

