"""What a service needs before its container can be created: its image, its networks and
its named volumes. Each is made once per run, concurrently with the services that do
not need it; a service waits only for its own.

`ImageSupply`: present images are ready at once, missing ones are pulled all at once, and
the images of `build:` that are missing or out of date are built meanwhile (never pulled).
`SharedObjects`: the networks and volumes to create go through the run's `EngineQueue`,
ranked by the earliest deadline among the services that use them, so the network of the
critical path is made first (the engine makes networks one after another, 70-100 ms
each here) and its first container is created while the others are still being made.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial

import anyio

from ollamatopo._errors import EngineError, NetworkFailed, ServiceFailed, SupplyFailed
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._payloads import ContainerConfig, VolumeConfig
from ollamatopo.engine._snapshot import Snapshot
from ollamatopo.report._recorder import ImagePull, RunRecorder
from ollamatopo.run._image_policy import NEVER_PULLED, ImageWants
from ollamatopo.run._queue import EngineQueue
from ollamatopo.run._reconcile import BuildAction, NetworkAction, Verb


class ImageSupply:
    """The run's images: present ones are ready at once; missing ones are pulled, and
    `builds` built, all concurrently while services with present images already start.
    A service waits only for its own image; one that cannot be had fails its services."""

    PROGRESS_EVERY_S = 0.5

    def __init__(self, engine: Engine, recorder: RunRecorder, images: Iterable[str],
                 present: Mapping[str, str], builds: Iterable[BuildAction] = (),
                 wants: Mapping[str, ImageWants] | None = None) -> None:
        self._engine, self._recorder = engine, recorder
        self._builds = {action.config.image: action for action in builds}
        self._wants = dict(wants or {})  # pull_policy and platform, by image
        self._present = set(present)
        needed = sorted(set(images))
        self.missing = [image for image in needed
                        if image not in present or image in self._builds
                        or self._want(image).policy == "always"]
        # Present images whose platform or age is looked at before they count as ready.
        self._checked = [image for image in needed
                         if image not in self.missing and self._want(image).checked]
        self._ready = {image: anyio.Event() for image in needed}
        self._errors: dict[str, str] = {}
        for image in needed:
            if image not in self.missing and image not in self._checked:
                self._ready[image].set()
                recorder.emit("image ensured", image=image, pulled=False)

    def _want(self, image: str) -> ImageWants:
        return self._wants.get(image) or ImageWants()

    async def pull_missing(self) -> None:
        """Pull what is missing and build what is to be built, all at once."""
        async with anyio.create_task_group() as group:
            for image in self.missing:
                group.start_soon(self._build if image in self._builds else self._pull, image)
            for image in self._checked:
                group.start_soon(self._check, image)

    async def _check(self, image: str) -> None:
        """A present image of the wrong platform fails its services; one older than its
        refresh policy allows is pulled again."""
        facts = await self._engine.image_facts(image)
        if facts is not None and self._want(image).stale(facts, time.time()):
            await self._pull(image)
            return
        problem = None if facts is None else self._want(image).problem(image, facts)
        if problem is not None:
            self._errors[image] = problem
            self._recorder.emit("image refused", image=image, level="error", error=problem)
        else:
            self._recorder.emit("image ensured", image=image, pulled=False)
        self._ready[image].set()

    async def _pull(self, image: str) -> None:
        want = self._want(image)
        if want.policy == "never":
            self._errors[image] = f"image {image} {NEVER_PULLED}"
            self._recorder.emit("image refused", image=image, level="error",
                                error=self._errors[image])
            self._ready[image].set()
            return
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
            if want.platform is None:
                await self._engine.pull(image, progress)
            else:  # the platform only when asked: the engine's own otherwise
                await self._engine.pull(image, progress, want.platform)
        except EngineError as error:
            self._errors[image] = (
                f"image {image} could not be pulled (pull_policy {want.policy} pulls it again "
                f"although the engine has it): {error}" if image in self._present else
                f"image {image} is not on the engine and could not be pulled: {error}")
            pull.status = "failed"
            self._recorder.emit("image pull failed", image=image, level="error",
                                error=str(error))
        else:
            pull.status = "pulled"
            self._recorder.emit("image ensured", image=image, pulled=True,
                                duration_s=round(self._recorder.elapsed() - began, 3))
        finally:
            self._ready[image].set()

    async def _build(self, image: str) -> None:
        action = self._builds[image]
        began = self._recorder.elapsed()
        self._recorder.emit("image build started", image=image, cause=action.cause,
                            context=str(action.config.context))

        def output(line: str) -> None:
            self._recorder.emit("image build output", image=image, level="debug", line=line)

        try:
            await self._engine.build(action.config, action.digest, output)
        except EngineError as error:
            self._errors[image] = f"its image could not be built: {error}"
            self._recorder.emit("image build failed", image=image, level="error",
                                error=str(error))
        else:
            self._recorder.emit("image ensured", image=image, built=True,
                                duration_s=round(self._recorder.elapsed() - began, 3))
        finally:
            self._ready[image].set()

    async def wait(self, service: str, image: str) -> None:
        await self._ready[image].wait()
        if image in self._errors:
            raise ServiceFailed(service, self._errors[image])


class SharedObjects:
    """The run's networks and volumes, each made once; `failures` are the ones that could
    not be made (their users fail with SupplyFailed)."""

    def __init__(self, engine: Engine, recorder: RunRecorder, run_id: str,
                 networks: Iterable[NetworkAction], volumes: Iterable[VolumeConfig],
                 containers: Mapping[str, ContainerConfig], snapshot: Snapshot) -> None:
        self._engine, self._recorder, self._run_id = engine, recorder, run_id
        self._containers, self._snapshot = containers, snapshot
        self._networks: list[NetworkAction] = []  # the ones to make
        for action in networks:
            if action.verb is Verb.KEEP:
                recorder.emit("network ensured", network=action.config.name, action="keep")
            else:
                self._networks.append(action)
        self._volumes = [v for v in volumes if v.name not in snapshot.volumes and not v.external]
        names = [a.config.name for a in self._networks] + [v.name for v in self._volumes]
        self._made = {name: anyio.Event() for name in names}
        self._errors: dict[str, str] = {}
        self.failures: list[ServiceFailed] = []

    @staticmethod
    def key(name: str) -> str:
        """The object's key in the engine queue (service names are never spaced)."""
        return f"make {name}"

    @property
    def keys(self) -> list[str]:
        """Queue keys of what this run makes: all of it asks the queue at once."""
        return [self.key(name) for name in self._made]

    def ranks(self, services: Mapping[str, float]) -> dict[str, float]:
        """Each object ranks as the most urgent service that needs it (by deadline)."""
        ranks: dict[str, float] = {}
        for name, config in self._containers.items():
            rank = services.get(name, 0.0)
            for needed in (*config.networks, *config.volumes):
                key = self.key(needed)
                ranks[key] = min(ranks.get(key, rank), rank)
        return ranks

    async def make_all(self, queue: EngineQueue) -> None:
        async with anyio.create_task_group() as group:
            for action in self._networks:
                group.start_soon(self._make, action.config.name, queue,
                                 partial(self._ensure_network, action))
            for volume in self._volumes:
                group.start_soon(self._make, volume.name, queue,
                                 partial(self._ensure_volume, volume))

    async def made(self) -> None:
        """Return when every object has been made or has failed."""
        for made in self._made.values():
            await made.wait()

    async def wait(self, service: str, config: ContainerConfig) -> None:
        for name in (*config.networks, *config.volumes):
            made = self._made.get(name)
            if made is None:
                continue
            await made.wait()
            if name in self._errors:
                raise SupplyFailed(service, f"{name} could not be made: {self._errors[name]}")

    async def _make(self, name: str, queue: EngineQueue,
                    ensure: Callable[[], Awaitable[None]]) -> None:
        try:
            async with queue.slot(self.key(name)):
                await ensure()
        except ServiceFailed as failure:
            self._errors[name] = failure.cause
            self.failures.append(failure)
        finally:
            self._made[name].set()

    async def _ensure_network(self, action: NetworkAction) -> None:
        config = action.config
        if action.verb is Verb.RECREATE and action.existing is not None:
            await self._clear_network(action.existing.name, action.existing.containers)
        try:
            await self._engine.create_network(config, self._run_id)
        except EngineError as error:
            users = sorted(name for name, container in self._containers.items()
                           if config.name in container.networks)
            raise NetworkFailed(config.key, users, str(error)) from None
        self._recorder.emit("network ensured", network=config.name, action=action.verb.value,
                            cause=action.cause)

    async def _clear_network(self, name: str, attached: tuple[str, ...]) -> None:
        ours = {c.id for c in self._snapshot.containers}
        strangers = [cid for cid in attached if cid not in ours]
        if strangers:
            raise ServiceFailed(f"network {name}", f"its config changed but {len(strangers)} "
                                "container(s) outside the project use it; detach them first")
        for container_id in attached:
            await self._engine.remove_container(container_id)
        await self._engine.remove_network(name)

    async def _ensure_volume(self, volume: VolumeConfig) -> None:
        try:
            await self._engine.create_volume(volume)
        except EngineError as error:
            raise ServiceFailed(f"volume {volume.name}", str(error)) from None
        self._recorder.emit("volume ensured", volume=volume.name, action="create")
