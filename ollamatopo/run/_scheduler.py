"""The scheduler: one traversal of the dependency graph brings a plan up or down.

`up`: observe the engine and reconcile, then every service runs in one task group,
beside the supplies (`_supplies`: images pulled, networks and volumes made): its
container is created ahead of time, as soon as its own image, networks and volumes
are there; it starts as soon as its own dependencies hold (`started` or `healthy`),
and is probed until ready while a container exit fails it at once. Creates and starts
go through one `EngineQueue`, the earliest deadline (latest start) first. A required
failure cancels the rest; what this run created is then removed (unless kept).
`down`: the same traversal on the reversed graph, from labels alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import anyio

from ollamatopo._errors import (
    DependencyFailed,
    EngineError,
    ExternalMissing,
    HookFailed,
    OllamatopoError,
    PlanError,
    ProbeFailed,
    RunFailed,
    ServiceFailed,
    SupplyFailed,
)
from ollamatopo.engine._build import build_configs
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._payloads import (
    LABEL_RUN,
    ContainerConfig,
    NetworkConfig,
    VolumeConfig,
    container_config,
    first_network,
    network_config,
    plan_networks,
    volume_config,
)
from ollamatopo.engine._probes import (
    Backoff,
    HttpClient,
    build_probe,
    http_client,
    wait_until_ready,
)
from ollamatopo.engine._snapshot import Snapshot
from ollamatopo.engine._watch import ContainerWatch, watch_containers
from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.plan._model import Condition, Plan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._admission import Capacity, admit, clamp
from ollamatopo.run._balancers import BalancerSync
from ollamatopo.run._hooks import StopHooks, run_hooks, stop_container
from ollamatopo.run._image_policy import image_wants
from ollamatopo.run._queue import EngineQueue
from ollamatopo.run._reconcile import (
    FORCED,
    BuildPolicy,
    Reconciliation,
    ServiceAction,
    Verb,
    reconcile,
)
from ollamatopo.run._supplies import ImageSupply, SharedObjects

LOG_TAIL = 20
DRAIN_S = 1.0
# Deadlines closer than one container start (0.3-0.45 s alone on this engine) are a tie.
DEADLINE_TIE_S = 0.5


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


# --- the traversal --------------------------------------------------------------------------


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

    async def dependencies_hold(self) -> list[str]:
        """Wait for every dependency's condition; the failed ones of `required: false`
        edges, which the service starts without (any other failure is DependencyFailed)."""
        failed = []
        for dependency, condition in self._graph.dependencies[self.name].items():
            state = self._states.get(dependency)
            if state is None:
                continue
            await (state.done if condition.waits_for_the_end else state.started).wait()
            if state.failed and (self.name, dependency) in self._graph.not_required:
                failed.append(dependency)
            elif state.failed:
                raise DependencyFailed(self.name, f"dependency {dependency!r} failed")
        return failed

    async def containers_made(self, services: Iterable[str]) -> None:
        """Wait until `services` (whose containers this one's create names: network_mode
        service:NAME, volumes_from, links) have started; DependencyFailed if one failed."""
        for service in services:
            state = self._states.get(service)
            if state is not None:
                await state.started.wait()
                if state.failed:
                    raise DependencyFailed(self.name, f"dependency {service!r} failed")

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
    # Start-to-ready seconds of earlier runs: they set each service's deadline.
    durations: Mapping[str, float] = field(default_factory=dict)
    # On a swarm: the image of the containers that probe the tasks on their overlay
    # (it needs busybox's `sh` and `nc`); None: the swarm's own verdict only.
    probe_image: str | None = None
    build: BuildPolicy = "auto"  # compose's up --build (always) and --no-build (never)


@dataclass(frozen=True)
class DesiredState:
    """The plan as engine payloads."""

    containers: dict[str, ContainerConfig]
    reconciliation: Reconciliation
    snapshot: Snapshot


async def observe(engine: Engine, loaded: LoadedPlan,
                  build_policy: BuildPolicy = "auto") -> DesiredState:
    plan = loaded.plan
    base = loaded.path.parent
    problems = list(file_objects.on_one_engine(plan))
    if problems:
        raise PlanError(str(loaded.path), problems)
    containers = {name: container_config(plan, name, base) for name in loaded.graph.nodes}
    networks = [network_config(plan.project, key, spec)
                for key, spec in plan_networks(plan).items()]
    images = {config.image for config in containers.values()}
    # Reading the build contexts is file I/O: in a thread, off the event loop.
    builds = await anyio.to_thread.run_sync(build_configs, plan, list(containers), base)
    bases = {base_image for config in builds.values() for base_image in config.bases}
    snapshot = await engine.snapshot(plan.project, sorted(images | bases))
    await _externals_exist(engine, networks, [volume_config(plan.project, key, spec)
                                              for key, spec in plan.volumes.items()])
    reconciliation = reconcile(containers, networks, snapshot, loaded.graph.restarting,
                               builds, build_policy)
    return DesiredState(containers, reconciliation, snapshot)


async def _externals_exist(engine: Engine, networks: Sequence[NetworkConfig],
                           volumes: Sequence[VolumeConfig]) -> None:
    """compose's check before anything is made: every external network and volume is
    there (ollamatopo only looks them up)."""
    wanted: list[tuple[Literal["network", "volume"], str]] = [
        *(("network", n.name) for n in networks if n.external),
        *(("volume", v.name) for v in volumes if v.external)]
    missing = [(kind, name) for kind, name in wanted if not await engine.exists(kind, name)]
    if missing:
        named = ", ".join(f"{kind} {name!r}" for kind, name in missing)
        fixes = "; ".join(f"docker {kind} create {name}" for kind, name in missing)
        raise ExternalMissing(f"the plan uses {named} as external, and the engine has no such "
                              f"{'objects' if len(missing) > 1 else missing[0][0]}: create "
                              f"{'them' if len(missing) > 1 else 'it'} first ({fixes}), or "
                              "drop `external: true` to let ollamatopo make it")


@dataclass
class _ProbeOutcome:
    """Which came first: readiness (attempts), the deadline (error), or an exit."""

    attempts: int = 0
    error: str | None = None
    exit: tuple[int | None, bool] | None = None


class _Run:
    """One `up`: the plan, the engine, what it decided and what it has done."""

    def __init__(self, engine: Engine, loaded: LoadedPlan, desired: DesiredState,
                 options: UpOptions, recorder: RunRecorder) -> None:
        self.engine, self.loaded, self.desired = engine, loaded, desired
        self.plan: Plan = loaded.plan
        self.options, self.recorder = options, recorder
        self.run_id = recorder.run_id
        self.images = ImageSupply(engine, recorder,
                                  [config.image for config in desired.containers.values()],
                                  desired.snapshot.image_ids, desired.reconciliation.builds,
                                  image_wants(desired.containers.values()))
        volumes = [volume_config(self.plan.project, key, spec)
                   for key, spec in self.plan.volumes.items()]
        self.shared = SharedObjects(engine, recorder, self.run_id,
                                    desired.reconciliation.networks, volumes,
                                    desired.containers, desired.snapshot)
        ranks = loaded.graph.latest_starts(options.durations)
        self.queue = EngineQueue(options.start_concurrency,
                                 {**ranks, **self.shared.ranks(ranks)},
                                 expected=[*self.shared.keys, *self._about_to_ask()],
                                 tie_s=DEADLINE_TIE_S)
        self.balancers = BalancerSync(engine, self.plan, loaded.templates, recorder)
        self.jobs = loaded.graph.jobs()
        # Backends that were running before this run count as up until a probe says not.
        self.balancers.up.update(name for name, action in desired.reconciliation.services.items()
                                 if action.verb is Verb.KEEP)

    def _about_to_ask(self) -> list[str]:
        """Services whose next engine step comes at once: a create with its image at hand
        (a recreate stops the old container first), or the start of a stopped container
        that waits for nothing."""
        services = self.desired.reconciliation.services
        graph = self.loaded.graph
        return [name for name, action in services.items()
                if (action.verb is Verb.CREATE and not self.desired.containers[name].joins
                    and self.desired.containers[name].image not in self.images.missing)
                or (action.verb is Verb.START and not graph.dependencies[name])]

    async def remove_orphans(self) -> None:
        orphans = [(o, o.existing) for o in self.desired.reconciliation.orphans
                   if o.existing is not None and o.service not in self.loaded.unselected]
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
                       http: HttpClient) -> str:
        """The service ready; its container's id."""
        try:
            return await self._bring_up(name, context, watch, http)
        finally:
            self.queue.withdraw(name)  # if it never asks for a slot, others need not wait

    async def _bring_up(self, name: str, context: NodeContext, watch: ContainerWatch,
                        http: HttpClient) -> str:
        action = await self._rebuilt_or(self.desired.reconciliation.services[name])
        timing = self.recorder.services[name]
        timing.action, timing.cause = action.verb.value, action.cause
        # The engine looks up the containers it uses by name at its create.
        await context.containers_made(self.desired.containers[name].joins)
        container_id = await self.prepare(name, action)
        balancer = self.balancers.is_balancer(name)
        if balancer:
            await self.balancers.prepare(name, container_id, action.verb is Verb.KEEP)
        for dependency in await context.dependencies_hold():
            self.recorder.emit("dependency failed, not required", service=name,
                               level="warning", dependency=dependency)
        if action.verb is not Verb.KEEP:
            watch.forget(container_id)
            start = partial(self.start, name, container_id)
            await (self.balancers.start(name, start) if balancer else start())
        context.started()
        if name in self.jobs:
            await self.until_completed(name, container_id, watch)
            return container_id
        try:
            await self.probe(name, container_id, watch, http)
        except ServiceFailed:
            await self.balancers.backend_changed(name, up=False)
            raise
        await self.balancers.backend_changed(name, up=True)
        return container_id

    async def _rebuilt_or(self, action: ServiceAction) -> ServiceAction:
        """A container whose image `up --build` rebuilt with unchanged inputs is kept when
        the build gave the same image (the layer cache's usual outcome), and recreated
        otherwise: compose's rule, which only the finished build can tell."""
        image = self.desired.containers[action.service].image
        forced = any(build.cause == FORCED and build.config.image == image
                     for build in self.desired.reconciliation.builds)
        if not forced or action.existing is None or action.verb is Verb.RECREATE:
            return action
        await self.images.wait(action.service, image)
        if await self.engine.image_id(image) in (None, action.existing.image_id):
            return action
        return ServiceAction(action.service, Verb.RECREATE, "its image was rebuilt",
                             action.existing)

    async def until_completed(self, name: str, container_id: str,
                              watch: ContainerWatch) -> None:
        """A one-shot job (`service_completed_successfully`): done when its container exits
        with 0; any other exit fails it, with its last log lines. Not probed."""
        state = await self.engine.inspect(container_id)
        code: int | None
        if state.running:
            code, oom = await watch.wait_exit(container_id)
        else:
            code, oom = state.exit_code, state.oom_killed
        if code != 0:
            raise await self._exited(name, container_id, code, oom,
                                     "(a job its dependents wait to complete)")
        started = self.recorder.services[name].started_s or 0.0
        self.recorder.mark(name, "ready", completed=True, exit_code=0,
                           start_to_ready_s=round(self.recorder.elapsed() - started, 3))

    async def stay_alive(self, name: str, container_id: str,
                         watch: ContainerWatch) -> ServiceFailed:
        """Once ready, a required service must still run when `up` returns: its death
        until then is the run's failure (a success with a dead service would be a lie)."""
        code, oom = await watch.wait_exit(container_id)
        failure = await self._exited(name, container_id, code, oom, "after it was ready")
        self.recorder.fail(name, failure.cause, optional=False)
        return failure

    async def start(self, name: str, container_id: str) -> None:
        try:
            async with self.queue.slot(name):
                await self.engine.start(container_id)
        except EngineError as error:
            raise ServiceFailed(name, f"the engine refused to start it: {error}") from None
        try:  # started, for its dependents, once its post_start hooks passed (compose)
            await run_hooks(self.engine, container_id, self.plan.services[name].post_start,
                            "post_start")
        except HookFailed as error:
            raise ServiceFailed(name, str(error)) from None
        self.recorder.mark(name, "started")

    async def stop_with_hooks(self, name: str, container_id: str) -> None:
        """Stop a running container of the plan's service, its pre_stop hooks first."""
        await stop_container(self.engine, container_id, self.plan.services[name].pre_stop,
                             name, self.recorder)

    async def prepare(self, name: str, action: ServiceAction) -> str:
        config = self.desired.containers[name]
        if action.verb is Verb.RESTART and action.existing is not None:
            await self.stop_with_hooks(name, action.existing.id)  # started once deps hold
        if action.verb in (Verb.KEEP, Verb.START, Verb.RESTART) \
                and action.existing is not None:
            return action.existing.id
        await self.images.wait(name, config.image)
        await self.shared.wait(name, config)
        if action.existing is not None:  # recreate
            await self.stop_with_hooks(name, action.existing.id)
            await self.engine.remove_container(action.existing.id)
        try:
            async with self.queue.slot(name, again=not self.loaded.graph.dependencies[name]):
                created = await self.engine.create_container(config, self.run_id)
        except EngineError as error:
            raise ServiceFailed(name, f"the engine refused to create it: {error}") from None
        container_id = created.id
        self.recorder.mark(name, "created", cause=action.cause, container=container_id[:12])
        for warning in created.warnings:
            self.recorder.emit("engine warning", service=name, level="warning",
                               detail=warning)
        try:  # compose's secrets and configs from the environment or inline, before start
            if config.copies:
                await self.engine.copy_files(container_id, config.copies)
        except EngineError as error:
            raise ServiceFailed(name, "the engine refused the files of its secrets and "
                                      f"configs: {error}") from None
        return container_id

    async def probe(self, name: str, container_id: str, watch: ContainerWatch,
                    http: HttpClient) -> None:
        spec = self.plan.services[name]
        state = await self.engine.inspect(container_id)
        if not state.running:
            raise await self._exited(name, container_id, state.exit_code, state.oom_killed,
                                     "while waiting for it to be ready")
        try:
            probe = build_probe(spec.ready, engine=self.engine, http=http,
                                container_id=container_id, state=state,
                                first_network=first_network(self.plan, name))
        except ProbeFailed as error:
            raise ServiceFailed(name, str(error)) from None
        timing = self.recorder.services[name]
        timing.probe = probe.description
        deadline = spec.ready.timeout or self.options.default_timeout_s

        def on_attempt(attempt: int, error: str | None) -> None:
            timing.probe_attempts = attempt
            self.recorder.emit("probe attempt", service=name, level="debug", attempt=attempt,
                               error=error)

        # A container started now is expected to take as long as it did last time.
        started_now = self.recorder.services[name].action != Verb.KEEP  # as carried out
        expected = self.options.durations.get(name) if started_now else None
        outcome = _ProbeOutcome()
        async with anyio.create_task_group() as race:

            async def until_ready() -> None:
                try:
                    outcome.attempts = await wait_until_ready(
                        probe, deadline, self.options.backoff, on_attempt, expected)
                except ProbeFailed as error:
                    outcome.error = str(error)
                race.cancel_scope.cancel()

            async def until_exit() -> None:
                outcome.exit = await watch.wait_exit(container_id)
                race.cancel_scope.cancel()

            race.start_soon(until_ready)
            race.start_soon(until_exit)
        if outcome.exit is not None:
            raise await self._exited(name, container_id, *outcome.exit,
                                     "while waiting for it to be ready")
        if outcome.error is not None:
            raise ServiceFailed(name, outcome.error)
        timing.probe_attempts = outcome.attempts
        started = timing.started_s if timing.started_s is not None else 0.0
        self.recorder.mark(name, "ready", probe=probe.description,
                           attempts=timing.probe_attempts,
                           start_to_ready_s=round(self.recorder.elapsed() - started, 3))

    async def _exited(self, name: str, container_id: str, code: int | None,
                      oom: bool, when: str) -> ServiceFailed:
        logs = ""
        with anyio.CancelScope(shield=True):
            async with self.engine.abandon_if_stalled(f"reading {name}'s last log lines"):
                with contextlib.suppress(OllamatopoError):
                    logs = await self.engine.logs(container_id, tail=LOG_TAIL)
                if not oom:  # the engine's `oom` event may come after `die`, or not at all
                    with contextlib.suppress(OllamatopoError):
                        state = await self.engine.inspect(container_id)
                        oom = state.oom_killed
                        code = state.exit_code if code is None else code
        why = " (OOM-killed)" if oom else ""
        tail = "\n".join(f"    | {line}" for line in logs.rstrip().splitlines()[-LOG_TAIL:])
        return ServiceFailed(name, f"container exited with code {code}{why} {when}"
                             + (f"; last log lines:\n{tail}" if tail else "; it printed nothing"))

    # Rollback: by the run's label, so nothing created is missed even if a call was cut short.

    async def rollback(self) -> None:
        """Remove what this run made, once the creates in flight have their answers (a
        cancelled caller abandons them, the engine still acts). A stalled engine ends the
        rollback; what is left is named."""
        with anyio.CancelScope(shield=True):
            async with self.engine.abandon_if_stalled(f"the rollback of run {self.run_id}"):
                await self.engine.quiesce()
                containers, networks = await self.engine.objects_of_run(self.plan.project,
                                                                        self.run_id)
                async with anyio.create_task_group() as group:
                    for container_id in containers:
                        group.start_soon(self.engine.remove_container, container_id)
                removed = await remove_networks(self.engine, networks, self.recorder)
                self.recorder.emit("rolled back", containers=len(containers),
                                   networks=len(removed))
                return
            self.recorder.emit("rollback abandoned", level="error", run=self.run_id,
                               fix=f"the engine stopped answering: once it answers, run `down`,"
                                   f" or remove what carries the label {LABEL_RUN}={self.run_id}")


async def up(engine: Engine, loaded: LoadedPlan, options: UpOptions,
             recorder: RunRecorder) -> None:
    """Bring the plan up; raise RunFailed (after rolling back) if a required service fails."""
    # The graph goes into the report, so `report` can weigh it with the measured times.
    recorder.extra["dependencies"] = {
        name: {dependency: condition.value for dependency, condition in deps.items()}
        for name, deps in loaded.graph.dependencies.items()}
    loaded = await admit_resources(engine, loaded, options, recorder)
    plan = loaded.plan
    desired = await observe(engine, loaded, options.build)
    run = _Run(engine, loaded, desired, options, recorder)
    recorder.emit("run started", plan=str(loaded.path), services=len(desired.containers),
                  actions=desired.reconciliation.lines())

    def on_failure(name: str, failure: ServiceFailed) -> None:
        recorder.fail(name, failure.cause, optional=plan.services[name].optional)

    async with rolled_back_on_failure(recorder, options, run.rollback) as failures, \
            watch_containers(engine, plan.project) as watch, http_client() as http, \
            anyio.create_task_group() as supplies:
        supplies.start_soon(run.images.pull_missing)
        await run.remove_orphans()
        supplies.start_soon(run.shared.make_all, run.queue)
        traversed, deaths = await _traverse_watching(run, watch, http, on_failure)
        failures.extend(deaths + traversed)  # a death cut the run short: it is the cause
        if run.shared.failures:  # the cause first; its users' failures only repeat it
            failures[:] = run.shared.failures + [f for f in failures
                                                 if not isinstance(f, SupplyFailed)]
        elif not failures:
            await run.shared.made()  # a network no service joins is still the plan's
        _report_phases(recorder)
        supplies.cancel_scope.cancel()  # nothing waits for an image any more
    recorder.finish("succeeded")
    recorder.emit("run completed", total_s=recorder.total_s,
                  warnings=sum(1 for t in recorder.services.values() if t.status == "failed"))


@contextlib.asynccontextmanager
async def rolled_back_on_failure(recorder: RunRecorder, options: UpOptions,
                                 rollback: Callable[[], Awaitable[None]],
                                 ) -> AsyncIterator[list[ServiceFailed]]:
    """A run's body, and how it ends when not well: interrupted (any exception: rolled
    back, raised again) or failed (the required failures the body put in the list: rolled
    back, RunFailed), unless the options keep what it made. Both backends end so."""
    failures: list[ServiceFailed] = []
    try:
        yield failures
    except BaseException:
        recorder.finish("interrupted")
        if not options.keep_on_failure:
            await rollback()
        raise
    if failures:
        recorder.finish("failed")
        if not options.keep_on_failure:
            await rollback()
        raise RunFailed(failures, rolled_back=not options.keep_on_failure)


async def _traverse_watching(run: _Run, watch: ContainerWatch, http: HttpClient,
                             on_failure: Callable[[str, ServiceFailed], None],
                             ) -> tuple[list[ServiceFailed], list[ServiceFailed]]:
    """The traversal, with every required service watched from its readiness until the
    traversal ends: a death cancels the traversal. Its failures, and the deaths."""
    plan = run.plan
    failures: list[ServiceFailed] = []
    deaths: list[ServiceFailed] = []

    def required(name: str) -> bool:
        return not plan.services[name].optional

    async with anyio.create_task_group() as ready_services:

        async def stay_alive(name: str, container_id: str) -> None:
            deaths.append(await run.stay_alive(name, container_id, watch))
            ready_services.cancel_scope.cancel()

        async def visit(name: str, context: NodeContext) -> None:
            container_id = await run.bring_up(name, context, watch, http)
            if required(name) and name not in run.jobs:  # a job's end is its success
                ready_services.start_soon(stay_alive, name, container_id)

        failures = await traverse(run.loaded.graph, visit, required=required,
                                  on_failure=on_failure)
        ready_services.cancel_scope.cancel()
    return failures, deaths


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
               recorder: RunRecorder, remove: bool = True,
               hooks: StopHooks | None = None) -> DownResult:
    """Stop dependents before their dependencies (graceful, then kill; their pre_stop
    `hooks` first), remove containers and networks; named volumes only with `volumes`.
    With `remove` false, only stop."""
    hooks = hooks or {}
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
        # its own StopTimeout: the plan's stop_grace_period
        await stop_container(engine, container.id, hooks.get(service, ()), service, recorder)
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

