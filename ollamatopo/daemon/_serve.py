"""`up --supervise`: the long-running side of ollamatopo, as the systemd unit runs it.

After the first `up` the daemon supervises the project (`_supervisor`), tells systemd
how it is doing (`_systemd`: READY=1, STATUS=, WATCHDOG=1 while the loop is alive,
RELOADING=1 around a reload, STOPPING=1), and carries out requests one at a time: a
reconcile on SIGHUP, and status, reconcile, scale, down, up and stop from its control
socket (`_control`). An invalid plan is refused and the running topology left as it
was. A `down` leaves the daemon resident and idle, listening, so that a later `up`
brings the plan up from the warm process. SIGTERM, SIGINT or a `stop` request end it:
the containers are left running (the default: restarting the daemon does not restart
training) or stopped in reverse dependency order.

One process per project: the project lock (`app._lock`), held for as long as it runs.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ollamatopo._errors import EngineUnreachable, OllamatopoError, RunFailed, UsageError
from ollamatopo.app._backend import Backend, backend_for
from ollamatopo.app._connect import connect_engine
from ollamatopo.app._control import Op, plan_link, socket_path
from ollamatopo.app._lock import ProjectLock
from ollamatopo.app._scale import read_overrides, scale_summary, write_overrides
from ollamatopo.app._settings import Settings
from ollamatopo.app._status import format_status
from ollamatopo.app._up import (
    UpRequest,
    finish_run,
    load,
    new_recorder,
    read_plan,
    select,
    up_options,
)
from ollamatopo.daemon._control import ControlRequest, ControlServer
from ollamatopo.daemon._metrics import DaemonMetrics, serve_metrics
from ollamatopo.daemon._systemd import SystemdNotifier
from ollamatopo.daemon._view import EventHub, LiveView
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._probes import Backoff
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.report._recorder import EventListener, RunRecorder
from ollamatopo.run._hooks import stop_hooks
from ollamatopo.run._supervisor import SuperviseOptions

HOLDER = "up --supervise"


@dataclass(frozen=True)
class DaemonOptions:
    supervise: SuperviseOptions
    request: UpRequest
    stop_containers_on_exit: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, request: UpRequest) -> DaemonOptions:
        return cls(
            supervise=SuperviseOptions(
                liveness_interval_s=settings.liveness_interval,
                failure_threshold=settings.failure_threshold,
                restart_initial_s=settings.restart_backoff_initial,
                restart_cap_s=settings.restart_backoff_max,
                stable_s=settings.restart_stable_after,
                ready_timeout_s=settings.probe_timeout,
                probe_backoff=Backoff(settings.probe_initial_backoff,
                                      settings.probe_max_backoff),
                probe_image=settings.swarm_probe_image),
            request=request,
            stop_containers_on_exit=settings.on_stop == "stop")


def status_reporter(notifier: SystemdNotifier, total: int) -> EventListener:
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


async def run_daemon(settings: Settings, loaded: LoadedPlan, request: UpRequest,
                     recorder: RunRecorder, report: Path | None = None) -> None:
    """The daemon's whole life: the project locked, the plan brought up with `recorder`,
    then supervised and served until cancelled (a signal) or asked to stop. RunFailed when
    the first `up` fails (nothing is supervised then)."""
    lock = ProjectLock(settings.lock_dir, settings.docker_host, loaded.plan.project)
    lock.acquire(HOLDER)
    notifier = SystemdNotifier.from_environment()
    try:
        recorder.listeners.append(status_reporter(notifier, len(loaded.plan.services)))
        daemon = Daemon(settings, loaded, DaemonOptions.from_settings(settings, request),
                        notifier, recorder.listeners)
        engine = await connect_engine(settings)
        try:
            await daemon.run(engine, recorder, report)
        finally:
            engine.close()
    finally:
        notifier.close()
        lock.release()


class Daemon:
    """One project's resident process."""

    def __init__(self, settings: Settings, loaded: LoadedPlan, options: DaemonOptions,
                 notifier: SystemdNotifier, listeners: list[EventListener]) -> None:
        self.settings, self.loaded, self.options = settings, loaded, options
        self.notifier = notifier
        self.view, self.hub = LiveView(), EventHub()
        self.metrics = (DaemonMetrics(loaded.plan.project)
                        if settings.metrics_port is not None else None)
        # Every run's recorder tells these: the caller's, the live view, the hub, metrics.
        self.listeners: list[EventListener] = [
            *listeners, self.view.on_event, self.hub.on_event,
            *([self.metrics.on_event] if self.metrics is not None else [])]
        self.engine: Engine | None = None
        self.backend: Backend | None = None
        self.up = True  # what the project should be: up (supervised) or down (idle)
        self.selection: list[str] | None = None  # up SERVICE... after a down: only those
        self.requests, self._next = anyio.create_memory_object_stream[ControlRequest](16)

    # --- the main loop ----------------------------------------------------------------------

    async def run(self, engine: Engine, first: RunRecorder, report: Path | None) -> None:
        self.engine = engine
        self.backend = backend_for(self.settings, engine)
        first.listeners[:] = self.listeners
        self.view.follow(self._phases(self.loaded))
        async with anyio.create_task_group() as group:
            if self.metrics is not None:
                await self._serve_metrics(group, first)
            control = ControlServer(socket_path(self.settings.state_dir, self.loaded.plan.project),
                                    plan_link(self.settings.state_dir, self.loaded.path),
                                    self.hub, self._status, self.requests)
            await group.start(control.serve)
            try:
                await self.backend.up(self.loaded, up_options(
                    self.settings, self.loaded, self.options.request), first)
            finally:
                if first.outcome != "running":
                    finish_run(self.settings, first, report)
            await self._learn_containers()
            interval = self.notifier.watchdog_interval()
            if interval is not None:
                group.start_soon(_keep_watchdog, self.notifier, interval)
            group.start_soon(self._hangups)
            await self._serve()
            group.cancel_scope.cancel()

    async def _serve(self) -> None:
        recorder = self._recorder("supervise")
        self.notifier.ready(f"supervising {len(self.loaded.plan.services)} services")
        try:
            while True:
                request = await (self._supervise_until_asked(recorder) if self.up
                                 else self._idle_until_asked())
                if request.op is Op.STOP:
                    return
                recorder = await self._carry_out(request, recorder)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(recorder)

    async def _stop(self, recorder: RunRecorder) -> None:
        assert self.engine is not None and self.backend is not None
        self.view.state = "stopping"
        self.notifier.stopping()
        stop = self.options.stop_containers_on_exit and self.up
        recorder.emit("daemon stopping", containers="stopped" if stop else "left")
        if stop:
            async with self.engine.abandon_if_stalled("stopping the containers"):
                await self.backend.stop(self.loaded.plan.project, recorder)

    async def _supervise_until_asked(self, recorder: RunRecorder) -> ControlRequest:
        """Supervise the project until a request comes; the engine going away is waited
        out, and supervision resumes from the labels."""
        assert self.engine is not None and self.backend is not None
        self.view.state = "supervising"
        while True:
            asked: list[ControlRequest] = []
            lost: list[BaseException] = []
            try:
                await _supervise_until(self.backend, self.loaded, self.options.supervise,
                                       recorder, self._next, asked)
            except* EngineUnreachable as group:
                lost.extend(group.exceptions)
            if asked:
                return asked[0]
            await _wait_for_engine(self.engine, self.notifier, recorder, lost[0])

    async def _idle_until_asked(self) -> ControlRequest:
        self.view.state = "idle"
        return await self._next.receive()

    async def _hangups(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP) as hangups:
            async for _ in hangups:
                await self.requests.send(ControlRequest(Op.RECONCILE, {"signal": "SIGHUP"}))

    # --- requests ---------------------------------------------------------------------------

    async def _carry_out(self, request: ControlRequest, recorder: RunRecorder) -> RunRecorder:
        recorder.emit("reload requested" if request.op is Op.RECONCILE else "request",
                      op=request.op.value, **request.arguments)
        try:
            if request.op is Op.DOWN:
                await request.reply({"done": await self._down(request)})
            elif request.op is Op.SCALE:
                await request.reply({"done": await self._scale(request)})
            elif request.op is Op.UP:
                services = _service_names(request.arguments.get("services", []))
                await request.reply({"done": _run_answer(await self._reconcile(services))})
            elif request.op is Op.RECONCILE and self.up:
                await request.reply({"done": _run_answer(await self._reconcile())})
            else:
                await request.reply({"done": {"state": "idle", "note": "the project is down: "
                                              "ask for up to bring it up"}})
        except OllamatopoError as error:
            await request.reply({"error": {"message": str(error),
                                           "exit_code": error.exit_code}})
        if self.up and request.op in (Op.UP, Op.RECONCILE, Op.SCALE):
            # After the answer: the caller waits for the run, not for status's rows
            # (40 ms after a seed run here); the next request is served after this.
            await self._learn_containers()
        return self._recorder("supervise")

    async def _reconcile(self, services: Sequence[str] = ()) -> RunRecorder:
        """Read the plan again and bring it up (`services`: those and what they wait for,
        as `up SERVICE...`); an invalid plan or an unknown name is refused (raised) and
        nothing changes."""
        assert self.backend is not None
        try:
            loaded = load(self.settings)
            selected = select(loaded, services)
        except OllamatopoError as error:
            self._recorder("supervise").emit("reload refused", level="error", error=str(error),
                                             note="the running topology is left as it was")
            raise
        self.view.state = "reconciling"
        self.notifier.reloading()
        recorder = self._recorder("reload", selected)
        options = up_options(self.settings, selected, self.options.request)
        try:
            # A reload never removes what it created: the topology is live, keep what runs.
            # up --build was for the first run: a reload builds what is missing or changed.
            await self.backend.up(selected, replace(
                options, keep_on_failure=True,
                build="auto" if options.build == "always" else options.build), recorder)
        except RunFailed as error:
            recorder.emit("reload failed", level="error", error=str(error))
        finally:
            finish_run(self.settings, recorder)
        # What is up is what is supervised: the whole plan, or (`up SERVICE...` on a project
        # that was down) the services asked for so far and what they wait for.
        if not services:
            self.selection = None
        elif not self.up:
            self.selection = list(services)
        elif self.selection is not None:
            self.selection = [*self.selection, *services]
        self.loaded, self.up = select(loaded, self.selection or ()), True
        self.view.follow(self._phases(self.loaded))
        self.notifier.ready(f"reloaded; supervising {len(self.loaded.plan.services)} services")
        return recorder

    async def _scale(self, request: ControlRequest) -> dict[str, Any]:
        wanted = request.arguments.get("replicas")
        if not isinstance(wanted, dict) or not all(
                isinstance(k, str) and isinstance(v, int) for k, v in wanted.items()):
            raise UsageError("scale: replicas must be a map of service to count")
        project, before = self.loaded.plan.project, list(self.loaded.plan.services)
        counts = {**read_overrides(self.settings.state_dir, project), **wanted}
        read_plan(self.settings, counts)  # valid?
        write_overrides(self.settings.state_dir, project, counts)
        recorder = await self._reconcile()
        return {**_run_answer(recorder),
                "summary": scale_summary(wanted, before, list(self.loaded.plan.services),
                                         recorder.report())}

    async def _down(self, request: ControlRequest) -> dict[str, Any]:
        assert self.backend is not None
        recorder = self._recorder("down")
        result = await self.backend.down(self.loaded.plan.project,
                                         volumes=bool(request.arguments.get("volumes")),
                                         recorder=recorder,
                                         hooks=stop_hooks(self.loaded.plan))
        self.up = False
        self.view.containers = {}
        recorder.emit("down completed", containers=len(result.containers),
                      networks=len(result.networks), volumes=result.volumes,
                      kept_volumes=result.kept_volumes, total_s=recorder.elapsed(),
                      note="the daemon stays, idle: `up` brings the plan up again")
        self.notifier.status("down; idle")
        return {"containers": result.containers, "networks": result.networks,
                "volumes": result.volumes, "kept_volumes": result.kept_volumes}

    # --- what requests read -----------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        project, rows = self.loaded.plan.project, self.view.rows()
        return {"project": project, "daemon": self.view.state, "services": rows,
                "text": f"{format_status(project, rows)}\n\ndaemon: {self.view.state} "
                        f"(pid {os.getpid()})"}

    async def _learn_containers(self) -> None:
        """Ports, URLs and container names, read once after a run (no probes), for status."""
        assert self.backend is not None
        rows = await self.backend.status(self.loaded, probe=False)
        self.view.containers = {row["service"]: row for row in rows}

    def _recorder(self, command: str, loaded: LoadedPlan | None = None) -> RunRecorder:
        return new_recorder(loaded or self.loaded, command, self.listeners)

    @staticmethod
    def _phases(loaded: LoadedPlan) -> dict[str, str | None]:
        return {name: loaded.plan.phase_of(name) for name in loaded.plan.services}

    async def _serve_metrics(self, group: anyio.abc.TaskGroup, recorder: RunRecorder) -> None:
        assert self.metrics is not None
        host, port = self.settings.metrics_address, self.settings.metrics_port or 0
        try:
            bound = await group.start(serve_metrics, self.metrics, host, port)
        except OSError as error:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {error.strerror}; "
                             "choose another --metrics-port or OLLAMATOPO_METRICS_ADDRESS"
                             ) from None
        recorder.emit("metrics served", url=f"http://{host}:{bound}/metrics")


def _service_names(value: object) -> list[str]:
    """`up SERVICE...`'s names from a request, which the client sends as a list."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise UsageError("up: services must be a list of service names")
    return value


def _run_answer(recorder: RunRecorder) -> dict[str, Any]:
    return {"outcome": recorder.outcome, "table": recorder.table(),
            "report": recorder.report()}


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


async def _supervise_until(backend: Backend, loaded: LoadedPlan, options: SuperviseOptions,
                           recorder: RunRecorder,
                           requests: anyio.abc.ObjectReceiveStream[ControlRequest],
                           asked: list[ControlRequest]) -> None:
    """Supervise the project until the next request (put into `asked`)."""
    async with anyio.create_task_group() as group:
        group.start_soon(backend.supervise, loaded, options, recorder)
        asked.append(await requests.receive())
        group.cancel_scope.cancel()
