"""`up`, as the command line and the daemon both run it: the plan loaded with what `scale`
kept, the scheduler's options from the settings and the run history, and the finished
run's report kept in the run store."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ollamatopo._errors import RunFailed, UsageError
from ollamatopo.app._backend import backend_for
from ollamatopo.app._connect import connect_engine
from ollamatopo.app._lock import ProjectLock
from ollamatopo.app._scale import read_overrides, scale_summary, write_overrides
from ollamatopo.app._services import check_named
from ollamatopo.app._settings import Settings
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._probes import Backoff
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._secrets import redactor
from ollamatopo.report._recorder import (
    EventListener,
    RunRecorder,
    latest_durations,
    store_report,
    write_report,
)
from ollamatopo.run._reconcile import BuildPolicy
from ollamatopo.run._scheduler import UpOptions, new_run_id


@dataclass(frozen=True)
class UpRequest:
    """What one `up` asks for beyond the plan and the settings."""

    keep_on_failure: bool = False
    keep_orphans: bool = False
    clamp_resources: bool = False
    build: BuildPolicy = "auto"  # up --build: always; up --no-build: never


def read_plan(settings: Settings, replicas: Mapping[str, int] | None = None) -> LoadedPlan:
    """The plan the settings name: its file, the compose files merged over it, the
    profiles, the variables' file; checked for the backend they name."""
    return load_plan(settings.plan, project=settings.project, replicas=replicas,
                     overrides=settings.plan_overrides, profiles=settings.profiles,
                     env_file=settings.env_file, on_swarm=settings.backend == "swarm")


def load(settings: Settings, *, warn: bool = True) -> LoadedPlan:
    """The plan, with the replica counts `scale` kept; its secrets join the redactor that
    every output goes through, and its warnings are logged (unless `warn` is false: a
    command that reads the plan only on the side, as `down` for its hooks)."""
    loaded = read_plan(settings)
    overrides = read_overrides(settings.state_dir, loaded.plan.project)
    if overrides:  # what `scale` set outlives it
        loaded = read_plan(settings, overrides)
    redactor.add(loaded.secrets)
    log = structlog.get_logger("ollamatopo")
    for warning in (*loaded.migration, *loaded.warnings) if warn else ():
        log.warning("plan warning", detail=warning)
    return loaded


def select(loaded: LoadedPlan, services: Sequence[str]) -> LoadedPlan:
    """`up SERVICE...`: those services, their replicas, and everything they wait for (the
    phase defaults included), as compose's `up SERVICE` brings up; the rest of the plan is
    left as it is on the engine (`unselected`: no orphans to remove)."""
    if not services:
        return loaded
    plan, declared = loaded.plan, loaded.declared or loaded.plan
    check_named(services, list(declared.services))
    wanted = {name for name in plan.services for asked in services
              if name == asked or (declared.services[asked].replicas > 1
                                   and name.startswith(f"{asked}-")
                                   and name[len(asked) + 1:].isdigit())}
    pending = list(wanted)
    while pending:  # what they wait for, and what that waits for
        for dependency in loaded.graph.dependencies[pending.pop()]:
            if dependency not in wanted:
                wanted.add(dependency)
                pending.append(dependency)
    subset = plan.model_copy(update={
        "services": {name: spec for name, spec in plan.services.items() if name in wanted},
        "phases": [phase.model_copy(update={"services": [n for n in phase.services
                                                         if n in wanted]})
                   for phase in plan.phases if any(n in wanted for n in phase.services)]})
    graph = loaded.graph.subgraph(wanted)
    # Declared names too: a service with 0 replicas is in no expanded plan, and a swarm
    # makes its (taskless) service only when it is chosen.
    return dataclasses.replace(loaded, plan=subset, graph=graph, unselected=frozenset(
        (set(plan.services) | set(declared.services)) - wanted))


def new_recorder(loaded: LoadedPlan, command: str = "up",
                 listeners: Iterable[EventListener] = ()) -> RunRecorder:
    plan = loaded.plan
    return RunRecorder(run_id=new_run_id(), project=plan.project, plan_path=str(loaded.path),
                       phases={name: plan.phase_of(name) for name in plan.services},
                       phase_order=[phase.name for phase in plan.phases], command=command,
                       listeners=list(listeners))


def up_options(settings: Settings, loaded: LoadedPlan, request: UpRequest) -> UpOptions:
    plan = loaded.plan
    if request.build == "always" and settings.backend == "swarm":
        raise UsageError("up --build: a swarm runs only images its nodes can pull, it builds "
                         "none; build and push the images, then up without --build")
    return UpOptions(
        keep_on_failure=request.keep_on_failure,
        default_timeout_s=settings.probe_timeout,
        backoff=Backoff(settings.probe_initial_backoff, settings.probe_max_backoff),
        remove_orphans=not request.keep_orphans,
        clamp_resources=request.clamp_resources,
        start_concurrency=settings.start_concurrency,
        durations=latest_durations(settings.state_dir, plan.project, plan.services),
        probe_image=settings.swarm_probe_image,
        build=request.build,
    )


async def bring_up(engine: Engine, settings: Settings, loaded: LoadedPlan,
                   request: UpRequest, recorder: RunRecorder) -> None:
    """The plan up on the backend the settings name (the one place that chooses);
    RunFailed (rolled back unless kept) when a required service fails."""
    await backend_for(settings, engine).up(loaded, up_options(settings, loaded, request),
                                           recorder)


async def run_up(settings: Settings, loaded: LoadedPlan, request: UpRequest,
                 recorder: RunRecorder, also: Path | None = None) -> None:
    """One `up`, under the project's lock; its report kept however it ends."""
    with _locked(settings, loaded.plan.project, "up"):
        await _run_up(settings, loaded, request, recorder, also)


async def scale(settings: Settings, requests: Mapping[str, int]) -> dict[str, Any]:
    """`scale` without a daemon: the counts validated, kept, and brought up, under one
    hold of the project's lock; the summary (its outcome says whether the run failed)."""
    before = load(settings)
    project = before.plan.project
    wanted = {**read_overrides(settings.state_dir, project), **requests}
    loaded = read_plan(settings, wanted)  # validates
    recorder = new_recorder(loaded)
    with _locked(settings, project, "scale"), contextlib.suppress(RunFailed):
        write_overrides(settings.state_dir, project, wanted)
        await _run_up(settings, loaded, UpRequest(), recorder, None)
    return scale_summary(requests, list(before.plan.services), list(loaded.plan.services),
                         recorder.report())


@contextlib.contextmanager
def _locked(settings: Settings, project: str, command: str) -> Iterator[None]:
    lock = ProjectLock(settings.lock_dir, settings.docker_host, project)
    lock.acquire(command)
    try:
        yield
    finally:
        lock.release()


async def _run_up(settings: Settings, loaded: LoadedPlan, request: UpRequest,
                  recorder: RunRecorder, also: Path | None) -> None:
    try:
        engine = await connect_engine(settings)
        try:
            await bring_up(engine, settings, loaded, request, recorder)
        finally:
            engine.close()
    finally:
        if recorder.outcome != "running":
            finish_run(settings, recorder, also)


def finish_run(settings: Settings, recorder: RunRecorder, also: Path | None = None) -> None:
    """Keep the finished run's report in the run store (and at `also`); a report that
    cannot be written is said, not fatal: the run itself is over."""
    kept = _written(recorder, settings.state_dir / recorder.project,
                    lambda: store_report(settings.state_dir, recorder, settings.keep_runs))
    if also is not None:
        kept = _written(recorder, also, lambda: write_report(recorder.report(), also)) or kept
    if kept is not None:
        recorder.emit("report written", path=str(kept))


def _written(recorder: RunRecorder, where: Path, write: Callable[[], Path]) -> Path | None:
    try:
        return write()
    except OSError as error:
        recorder.emit("report not written", level="error", path=str(where),
                      error=error.strerror,
                      fix="choose another place with --report or OLLAMATOPO_STATE_DIR")
        return None
