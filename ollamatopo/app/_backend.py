"""Where a plan runs, chosen in one place (`backend_for`): the engine's own containers, or
the services of a swarm whose manager the engine is (`--backend swarm`).

The command line and the daemon ask a Backend for `up`, `down`, `status` and
supervision, and never look at which one they got. Each backend is a thin pairing of
the run layer's functions for it: the container scheduler and supervisor, or
`run/_swarm`.
"""

from __future__ import annotations

from typing import Any, Protocol

from ollamatopo._errors import UsageError
from ollamatopo.app._settings import Settings
from ollamatopo.app._status import collect_status, swarm_rows
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._probes import http_client
from ollamatopo.engine._watch import watch_containers
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._hooks import StopHooks
from ollamatopo.run._scheduler import DownResult, UpOptions, down, up
from ollamatopo.run._supervisor import SuperviseOptions, Supervisor


class Backend(Protocol):
    name: str

    async def up(self, loaded: LoadedPlan, options: UpOptions,
                 recorder: RunRecorder) -> None:
        """The plan up; RunFailed (rolled back unless kept) when a required service fails."""

    async def down(self, project: str, *, volumes: bool, recorder: RunRecorder,
                   hooks: StopHooks | None = None) -> DownResult:
        """Stop and remove the project's containers from their labels (`hooks`: the plan's
        pre_stop hooks by service, when the plan could be read)."""

    async def status(self, loaded: LoadedPlan, *, probe: bool) -> list[dict[str, Any]]:
        """A row per service (`probe`: readiness checked now, else as last seen)."""

    async def supervise(self, loaded: LoadedPlan, options: SuperviseOptions,
                        recorder: RunRecorder) -> None:
        """Keep watching the project until cancelled."""

    async def stop(self, project: str, recorder: RunRecorder) -> None:
        """What the daemon's `on_stop = stop` does when it ends."""


def backend_for(settings: Settings, engine: Engine) -> Backend:
    if settings.backend == "swarm":
        if settings.on_stop == "stop":
            raise UsageError("OLLAMATOPO_ON_STOP=stop does not apply on a swarm: the swarm "
                             "keeps its services running without ollamatopo; use `down "
                             "--backend swarm` to remove them")
        return SwarmBackend(engine, settings.swarm_probe_image)
    return ContainerBackend(engine)


def check_plan_for(settings: Settings, loaded: LoadedPlan) -> None:
    """What `plan` adds for the backend, without an engine: on a swarm, the keys it does
    not carry out yet (PlanError, exit 2), as `up --backend swarm` would refuse them."""
    if settings.backend == "swarm":
        from ollamatopo.run._swarm import plan_problems

        plan_problems(loaded)


class ContainerBackend:
    name = "engine"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def up(self, loaded: LoadedPlan, options: UpOptions,
                 recorder: RunRecorder) -> None:
        await up(self.engine, loaded, options, recorder)

    async def down(self, project: str, *, volumes: bool, recorder: RunRecorder,
                   hooks: StopHooks | None = None) -> DownResult:
        return await down(self.engine, project, volumes=volumes, recorder=recorder,
                          hooks=hooks)

    async def status(self, loaded: LoadedPlan, *, probe: bool) -> list[dict[str, Any]]:
        return await collect_status(self.engine, loaded, probe=probe)

    async def supervise(self, loaded: LoadedPlan, options: SuperviseOptions,
                        recorder: RunRecorder) -> None:
        snapshot = await self.engine.snapshot(loaded.plan.project)
        containers = {c.service: c.id for c in snapshot.containers
                      if c.service in loaded.plan.services}
        async with watch_containers(self.engine, loaded.plan.project) as watch, \
                http_client() as http:
            await Supervisor(self.engine, loaded, containers, watch, http, recorder,
                             options).run()

    async def stop(self, project: str, recorder: RunRecorder) -> None:
        await down(self.engine, project, volumes=False, recorder=recorder, remove=False)


class SwarmBackend:
    name = "swarm"

    def __init__(self, engine: Engine, probe_image: str | None) -> None:
        from ollamatopo.engine._swarm import Swarm

        self.swarm, self.probe_image = Swarm(engine), probe_image

    async def up(self, loaded: LoadedPlan, options: UpOptions,
                 recorder: RunRecorder) -> None:
        from ollamatopo.run._swarm import up_swarm

        await up_swarm(self.swarm, loaded, options, recorder)

    async def down(self, project: str, *, volumes: bool, recorder: RunRecorder,
                   hooks: StopHooks | None = None) -> DownResult:
        from ollamatopo.run._swarm import down_swarm  # no hooks: `up` refuses them there

        removed = await down_swarm(self.swarm, project, recorder)
        return DownResult(removed.services, removed.networks, [])

    async def status(self, loaded: LoadedPlan, *, probe: bool) -> list[dict[str, Any]]:
        from ollamatopo.run._swarm import status_swarm

        return swarm_rows(loaded, await status_swarm(
            self.swarm, loaded, probe_image=self.probe_image, probe=probe))

    async def supervise(self, loaded: LoadedPlan, options: SuperviseOptions,
                        recorder: RunRecorder) -> None:
        from ollamatopo.run._swarm import supervise_swarm

        await supervise_swarm(self.swarm, loaded, options, recorder)

    async def stop(self, project: str, recorder: RunRecorder) -> None:
        """Nothing: refused by backend_for (the swarm keeps its services)."""
