"""`up --supervise`: the long-running side of ollamatopo, as the systemd unit runs it.

After the first `up` the daemon supervises the project (`_supervisor`), tells systemd
how it is doing (`_systemd`: READY=1, STATUS=, WATCHDOG=1 while the loop is alive,
RELOADING=1 around a reload, STOPPING=1), reloads the plan on SIGHUP (an invalid plan
is refused and the running topology left as it was), and on SIGTERM or SIGINT either
leaves the containers running (the default: restarting the daemon does not restart
training) or stops them in reverse dependency order.

One process per project: `_lock.ProjectLock`, held for as long as the daemon runs.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from ollamatopo._errors import EngineUnreachable, OllamatopoError, RunFailed
from ollamatopo.daemon._supervisor import SuperviseOptions, Supervisor
from ollamatopo.daemon._systemd import SystemdNotifier
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._probes import http_client
from ollamatopo.engine._watch import watch_containers
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._scheduler import UpOptions, down, up


@dataclass(frozen=True)
class DaemonOptions:
    supervise: SuperviseOptions
    up: UpOptions
    stop_containers_on_exit: bool = False


def status_reporter(notifier: SystemdNotifier, total: int) -> Callable[[str, dict[str, Any]],
                                                                        None]:
    """A recorder listener that keeps systemd's STATUS= line current during `up`."""
    ready: set[str] = set()

    def on_event(event: str, fields: dict[str, Any]) -> None:
        if event == "service healthy" and "service" in fields:
            ready.add(fields["service"])
            notifier.status(f"starting: {len(ready)}/{total} services ready")
        elif event == "phase completed":
            notifier.status(f"phase {fields.get('phase')} complete; "
                            f"{len(ready)}/{total} services ready")

    return on_event


async def serve(engine: Engine, loaded: LoadedPlan, options: DaemonOptions,
                notifier: SystemdNotifier, new_recorder: Callable[[LoadedPlan], RunRecorder],
                reload_plan: Callable[[], LoadedPlan],
                on_run: Callable[[RunRecorder], None]) -> None:
    """Supervise until cancelled; SIGHUP reloads. `up` has already brought the plan up."""
    recorder = new_recorder(loaded)
    notifier.ready(f"supervising {len(loaded.plan.services)} services")
    try:
        async with anyio.create_task_group() as group:
            interval = notifier.watchdog_interval()
            if interval is not None:
                group.start_soon(_keep_watchdog, notifier, interval)
            with anyio.open_signal_receiver(signal.SIGHUP) as hangups:
                while True:
                    lost: list[BaseException] = []
                    try:
                        await _supervise_until(engine, loaded, options.supervise, recorder,
                                               hangups.__anext__)
                    except* EngineUnreachable as group:
                        lost.extend(group.exceptions)
                    if lost:
                        await _wait_for_engine(engine, notifier, recorder, lost[0])
                        continue  # resynchronise from the labels
                    loaded = await _reload(engine, loaded, options, notifier, new_recorder,
                                           reload_plan, on_run)
                    recorder = new_recorder(loaded)
    finally:
        with anyio.CancelScope(shield=True):
            notifier.stopping()
            recorder.emit("daemon stopping",
                          containers="stopped" if options.stop_containers_on_exit else "left")
            if options.stop_containers_on_exit:
                async with engine.abandon_if_stalled("stopping the containers"):
                    await down(engine, loaded.plan.project, volumes=False, recorder=recorder,
                               remove=False)


async def _wait_for_engine(engine: Engine, notifier: SystemdNotifier, recorder: RunRecorder,
                           error: BaseException) -> None:
    """The engine went away (restart, socket gone): wait for it, backing off to 10 s."""
    recorder.emit("engine lost", level="error", error=str(error),
                  note="waiting for it to come back; the containers are left as they are")
    notifier.status("the Docker engine is unreachable; waiting for it")
    began, delay = anyio.current_time(), 0.25
    while True:
        await anyio.sleep(delay)
        try:
            await engine.ping()
        except OllamatopoError:
            delay = min(delay * 2, 10.0)
            continue
        recorder.emit("engine back", after_s=round(anyio.current_time() - began, 3))
        notifier.status("the Docker engine is back; resynchronising")
        return


async def _keep_watchdog(notifier: SystemdNotifier, interval: float) -> None:
    while True:
        notifier.watchdog()
        await anyio.sleep(interval)


async def _supervise_until(engine: Engine, loaded: LoadedPlan, options: SuperviseOptions,
                           recorder: RunRecorder, hangup: Callable[[], Awaitable[Any]]) -> None:
    """Supervise the project's containers until the next SIGHUP."""
    snapshot = await engine.snapshot(loaded.plan.project)
    containers = {c.service: c.id for c in snapshot.containers
                  if c.service in loaded.plan.services}
    async with watch_containers(engine, loaded.plan.project) as watch, \
            http_client() as http, anyio.create_task_group() as group:
        supervisor = Supervisor(engine, loaded, containers, watch, http, recorder, options)
        group.start_soon(supervisor.run)
        await hangup()
        recorder.emit("reload requested", signal="SIGHUP")
        group.cancel_scope.cancel()


async def _reload(engine: Engine, current: LoadedPlan, options: DaemonOptions,
                  notifier: SystemdNotifier, new_recorder: Callable[[LoadedPlan], RunRecorder],
                  reload_plan: Callable[[], LoadedPlan],
                  on_run: Callable[[RunRecorder], None]) -> LoadedPlan:
    """The new plan, brought up; or, if it is invalid, the current one, untouched."""
    recorder = new_recorder(current)
    try:
        loaded = reload_plan()
    except OllamatopoError as error:
        recorder.emit("reload refused", level="error", error=str(error),
                      note="the running topology is left as it was")
        return current
    notifier.reloading()
    recorder = new_recorder(loaded)
    recorder.command = "reload"
    try:
        # A reload never removes what it created: the topology is live, keep what runs.
        await up(engine, loaded, replace(options.up, keep_on_failure=True), recorder)
    except RunFailed as error:
        recorder.emit("reload failed", level="error", error=str(error))
    finally:
        on_run(recorder)
    notifier.ready(f"reloaded; supervising {len(loaded.plan.services)} services")
    return loaded
