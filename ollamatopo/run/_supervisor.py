"""Supervision after `up`: keep every service of the project alive and ready.

One guard task per service, all in one task group. A guard waits for its container to
die (the engine's event stream wakes it) or to fail its liveness checks (its own
readiness probe, re-run every `liveness_interval_s`, `failure_threshold` times in a
row), then restarts it according to the service's restart policy after a crash-loop
backoff: doubling from `initial_s` up to `cap_s`, reset once the service has stayed
ready for `stable_s`. When a service is ready again its dependents are re-probed at
once (they are restarted only if they fail themselves), and load balancers get it back.

While it supervises, ollamatopo owns the restarts: it sets the engine's restart policy
of the project's containers to `no` (so the two never race and the backoff is the one
above) and gives them back the plan's policy when it stops, so a host without the
daemon still restarts them as compose would. A guard that finds its container running
again after the backoff (someone started it) only probes it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ollamatopo._errors import EngineError, HookFailed, OllamatopoError, ProbeFailed
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._payloads import first_network, restart_policy
from ollamatopo.engine._probes import (
    ATTEMPT_TIMEOUT_S,
    Backoff,
    HttpClient,
    ReadinessProbe,
    build_probe,
    wait_until_ready,
)
from ollamatopo.engine._watch import ContainerWatch
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._balancers import BalancerSync
from ollamatopo.run._hooks import run_hooks, stop_container

# An update needs the explicit name: an empty one leaves the policy as it was.
ENGINE_NEVER_RESTARTS = {"Name": "no", "MaximumRetryCount": 0}
# The engine's `die` event follows an exit by milliseconds; this is ample.
DEATH_NEWS_S = 1.0


@dataclass(frozen=True)
class SuperviseOptions:
    liveness_interval_s: float = 10.0
    failure_threshold: int = 3
    restart_initial_s: float = 0.5
    restart_cap_s: float = 60.0
    stable_s: float = 60.0
    ready_timeout_s: float = 60.0
    probe_backoff: Backoff = field(default_factory=Backoff)
    probe_image: str | None = None  # on a swarm: the overlay prober's (run/_swarm.py)


@dataclass
class CrashLoopBackoff:
    """How long to wait before the next restart: doubling per failure, capped, and
    forgiven once the service has been ready for `stable_s`."""

    initial_s: float
    cap_s: float
    stable_s: float
    failures: int = 0
    ready_since: float | None = None

    def ready(self, now: float) -> None:
        self.ready_since = now

    def next_delay(self, now: float) -> float:
        if self.ready_since is not None and now - self.ready_since >= self.stable_s:
            self.failures = 0
        delay = min(self.cap_s, self.initial_s * 2.0 ** self.failures)
        self.failures += 1
        self.ready_since = None
        return delay


def wants_restart(policy: str, exit_code: int | None, restarts: int) -> bool:
    """The plan's restart policy, applied to a container that died with `exit_code`
    (None: it did not exit, it stopped being ready)."""
    name, _, limit = policy.partition(":")
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        return exit_code != 0 and (not limit or restarts < int(limit))
    return False


class _Guard:
    """Keeps one service alive."""

    def __init__(self, supervisor: Supervisor, name: str, container_id: str) -> None:
        self._supervisor, self.name, self.container_id = supervisor, name, container_id
        spec = supervisor.plan.services[name]
        options = supervisor.options
        self._backoff = CrashLoopBackoff(options.restart_initial_s, options.restart_cap_s,
                                         options.stable_s)
        self._policy = spec.restart
        self.restarts = 0
        self.recheck = anyio.Event()
        self._down_since = time.monotonic()

    async def run(self) -> None:
        self._backoff.ready(time.monotonic())
        found = await self._found_stopped()
        while True:
            exit_code = found.pop() if found else await self._until_unhealthy()
            if not wants_restart(self._policy, exit_code, self.restarts):
                await self._supervisor.lost(self.name, f"restart policy {self._policy!r}")
                await self._supervisor.watch.wait_started(self.container_id)
            else:
                await self._restart(exit_code)
            found = await self._until_ready()

    async def _found_stopped(self) -> list[int | None]:
        """A container that stopped while nobody watched (the engine was away, the daemon
        was not running) is handled as a death at once, not after failed checks."""
        state = await self._supervisor.engine.inspect(self.container_id)
        if state.running:
            return []
        await self._supervisor.down(self.name, "found stopped", exit_code=state.exit_code,
                                    oom_killed=state.oom_killed)
        return [state.exit_code]

    async def _until_unhealthy(self) -> int | None:
        """Wait for a death (its exit code) or a run of failed liveness checks (None)."""
        try:
            return (await self._racing_death(self._unready))[0]
        finally:
            self._down_since = time.monotonic()

    async def _unready(self) -> list[int | None]:
        await self._failed_liveness()
        await self._supervisor.down(self.name, "not ready",
                                    checks=self._supervisor.options.failure_threshold)
        return [None]

    async def _racing_death(self, other: Callable[[], Awaitable[list[int | None]]],
                            ) -> list[int | None]:
        """What `other` returns, unless the container dies first: then its exit code (-1
        when the engine did not say), reported as a death."""
        outcome: list[int | None] = []
        async with anyio.create_task_group() as race:

            async def died() -> None:
                code, oom = await self._supervisor.watch.wait_exit(self.container_id)
                await self._supervisor.down(self.name, "container died", exit_code=code,
                                            oom_killed=oom)
                outcome.append(code if code is not None else -1)
                race.cancel_scope.cancel()

            async def finished() -> None:
                outcome.extend(await other())
                race.cancel_scope.cancel()

            race.start_soon(died)
            race.start_soon(finished)
        return outcome

    async def _failed_liveness(self) -> None:
        options = self._supervisor.options
        failures = 0
        while failures < options.failure_threshold:
            with anyio.move_on_after(options.liveness_interval_s):
                await self.recheck.wait()
            self.recheck = anyio.Event()
            began = time.monotonic()
            try:
                probe = await self._supervisor.probe_for(self.name, self.container_id)
                with anyio.fail_after(ATTEMPT_TIMEOUT_S + 1):
                    await probe.check()
            except (ProbeFailed, EngineError, TimeoutError) as error:
                failures += 1
                self._supervisor.recorder.emit("liveness check failed", service=self.name,
                                               level="warning", failures=failures,
                                               error=str(error) or "timed out")
            else:
                failures = 0
                self._supervisor.recorder.emit(
                    "liveness check passed", service=self.name, level="debug",
                    latency_s=round(time.monotonic() - began, 4))

    async def _restart(self, exit_code: int | None) -> None:
        supervisor = self._supervisor
        delay = self._backoff.next_delay(time.monotonic())
        self.restarts += 1
        supervisor.recorder.emit("service restarting", service=self.name, level="warning",
                                 restarts=self.restarts, delay_s=round(delay, 3),
                                 exit_code=exit_code)
        await anyio.sleep(delay)
        try:
            state = await supervisor.engine.inspect(self.container_id)
            spec = supervisor.plan.services[self.name]
            if exit_code is None and state.running:  # alive but not ready: restart it
                await stop_container(supervisor.engine, self.container_id, spec.pre_stop,
                                     self.name, supervisor.recorder)
                # The engine reports this stop's death through the event stream, after the
                # stop's answer: wait for it here, or it would pass for the next one.
                with anyio.move_on_after(DEATH_NEWS_S):
                    await supervisor.watch.wait_exit(self.container_id)
                state = await supervisor.engine.inspect(self.container_id)
            if not state.running:
                supervisor.watch.forget(self.container_id)
                await supervisor.engine.start(self.container_id)
                await run_hooks(supervisor.engine, self.container_id, spec.post_start,
                                "post_start")
                supervisor.recorder.emit("container started", service=self.name,
                                         restarts=self.restarts)
            else:
                supervisor.recorder.emit("container restarted by the engine",
                                         service=self.name, restarts=self.restarts)
        except (EngineError, HookFailed) as error:  # the next death or probe tries again
            supervisor.recorder.emit("restart failed", service=self.name, level="error",
                                     error=str(error))

    async def _until_ready(self) -> list[int | None]:
        """Probe until ready, watching for a death at the same time: a container that dies
        while it is probed is restarted at once (its exit code returned), not after the
        deadline; one that is still not ready at the service's own deadline is restarted
        too (None returned), as a failed startup probe is in Kubernetes. Ready: []."""
        supervisor = self._supervisor
        deadline = supervisor.plan.services[self.name].ready.timeout \
            or supervisor.options.ready_timeout_s

        async def ready() -> list[int | None]:
            error = await self._probe_until_ready(deadline)
            if error is None:
                return []
            await supervisor.down(self.name, "not ready after restart", error=error,
                                  deadline_s=deadline)
            return [None]

        outcome = await self._racing_death(ready)
        if outcome:
            self._down_since = time.monotonic()
        return outcome

    async def _probe_until_ready(self, deadline: float) -> str | None:
        """None once ready (and the service counted back up); else why not."""
        supervisor = self._supervisor
        try:
            probe = await supervisor.probe_for(self.name, self.container_id)
        except (ProbeFailed, EngineError) as error:
            # Not running: its death is on its way through the event stream, which has
            # the exit code; give it a moment to win the race.
            await anyio.sleep(DEATH_NEWS_S)
            return str(error)
        try:
            attempts = await wait_until_ready(probe, deadline, supervisor.options.probe_backoff)
        except (ProbeFailed, EngineError) as error:
            return str(error)
        self._backoff.ready(time.monotonic())
        await supervisor.back_up(self.name, attempts=attempts, restarts=self.restarts,
                                 recovered_in_s=round(time.monotonic() - self._down_since, 3))
        return None


class Supervisor:
    """The guards of one project, and what they share."""

    def __init__(self, engine: Engine, loaded: LoadedPlan, containers: Mapping[str, str],
                 watch: ContainerWatch, http: HttpClient, recorder: RunRecorder,
                 options: SuperviseOptions) -> None:
        self.engine, self.plan, self.watch, self.http = engine, loaded.plan, watch, http
        self.recorder, self.options = recorder, options
        # One-shot jobs (what dependents wait to complete) have done their work: their
        # exit is no death to restart.
        jobs = loaded.graph.jobs()
        self._containers = {name: container_id for name, container_id in containers.items()
                            if name not in jobs}
        self._graph = loaded.graph
        self._guards = {name: _Guard(self, name, container_id)
                        for name, container_id in self._containers.items()}
        self.balancers = BalancerSync(engine, loaded.plan, loaded.templates, recorder)
        self.balancers.up.update(self._containers)
        self._first_networks = {name: first_network(loaded.plan, name)
                                for name in self._containers}

    async def run(self) -> None:
        try:
            for name, container_id in self._containers.items():
                await self.engine.set_restart_policy(container_id, ENGINE_NEVER_RESTARTS)
                if self.balancers.is_balancer(name):
                    await self.balancers.prepare(name, container_id, started=True)
            self.recorder.emit("supervising", services=len(self._guards),
                               liveness_interval_s=self.options.liveness_interval_s)
            async with anyio.create_task_group() as group:
                for guard in self._guards.values():
                    group.start_soon(guard.run)
        finally:
            with anyio.CancelScope(shield=True):
                async with self.engine.abandon_if_stalled("giving the containers back their "
                                                          "restart policies"):
                    await self._give_back_restart_policies()

    async def _give_back_restart_policies(self) -> None:
        for name, container_id in self._containers.items():
            try:
                await self.engine.set_restart_policy(
                    container_id, restart_policy(self.plan.services[name].restart))
            except OllamatopoError as error:
                self.recorder.emit("restart policy not restored", service=name,
                                   level="error", error=str(error))

    async def probe_for(self, name: str, container_id: str) -> ReadinessProbe:
        state = await self.engine.inspect(container_id)
        if not state.running:
            raise ProbeFailed(f"container is {state.status}")
        return build_probe(self.plan.services[name].ready, engine=self.engine, http=self.http,
                           container_id=container_id, state=state,
                           first_network=self._first_networks[name])

    async def down(self, name: str, why: str, **fields: Any) -> None:
        self.recorder.emit("service unhealthy", service=name, level="warning", reason=why,
                           **fields)
        await self.balancers.backend_changed(name, up=False)

    async def lost(self, name: str, why: str) -> None:
        self.recorder.emit("service not restarted", service=name, level="error", reason=why)

    async def back_up(self, name: str, **fields: Any) -> None:
        self.recorder.emit("service healthy", service=name, **fields)
        await self.balancers.backend_changed(name, up=True)
        for dependent in self._graph.dependents(name):
            if dependent in self._guards:
                self._guards[dependent].recheck.set()
