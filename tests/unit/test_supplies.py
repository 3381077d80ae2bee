"""What services need before their containers are created (`run._supplies`), with a fake
engine: images (`ImageSupply`), networks and volumes (`SharedObjects`). Each is made once,
a service waits only for its own, and a failure fails only the services that need it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from ollamatopo._errors import EngineError, ServiceFailed
from ollamatopo.engine._payloads import (
    ContainerConfig,
    NetworkConfig,
    VolumeConfig,
    container_config,
    network_config,
    volume_config,
)
from ollamatopo.engine._snapshot import ObservedContainer, ObservedNetwork, Snapshot
from ollamatopo.plan._model import Plan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._queue import EngineQueue
from ollamatopo.run._reconcile import NetworkAction, Verb
from ollamatopo.run._supplies import ImageSupply, NetworkFailed, SharedObjects, SupplyFailed

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeEngine:
    """The calls supplies make. `gates[name]`: the call waits for that event; `refuse[name]`:
    it fails with that message. Every call is recorded in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.gates: dict[str, anyio.Event] = {}
        self.refuse: dict[str, str] = {}
        self.in_flight: set[str] = set()

    async def _do(self, verb: str, name: str) -> None:
        self.calls.append((verb, name))
        self.in_flight.add(name)
        try:
            if name in self.gates:
                await self.gates[name].wait()
            if name in self.refuse:
                raise EngineError(self.refuse[name])
        finally:
            self.in_flight.discard(name)

    async def pull(self, image: str,
                   on_progress: Callable[[int, int], None] | None = None) -> None:
        if on_progress is not None:
            on_progress(40, 100)
        await self._do("pull", image)
        if on_progress is not None:
            on_progress(100, 100)

    async def create_network(self, config: NetworkConfig, run_id: str) -> str:
        assert run_id == "run1"
        await self._do("create network", config.name)
        return f"id-{config.name}"

    async def create_volume(self, config: VolumeConfig) -> None:
        await self._do("create volume", config.name)

    async def remove_container(self, container_id: str) -> None:
        await self._do("remove container", container_id)

    async def remove_network(self, name: str) -> None:
        await self._do("remove network", name)


def recorder(services: list[str]) -> RunRecorder:
    return RunRecorder(run_id="run1", project="shop", plan_path="plan.yaml",
                       phases=dict.fromkeys(services, "all"), phase_order=["all"])


async def still_waiting(wait: Callable[[], Any]) -> bool:
    """True if `wait()` neither returns nor raises once every other task is blocked."""
    over = False

    async def waiter() -> None:
        nonlocal over
        try:
            await wait()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:  # a failure is an answer too
            pass
        over = True

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()
    return not over


# --- images ------------------------------------------------------------------------------------


async def test_present_images_are_ready_at_once_and_only_missing_ones_are_pulled() -> None:
    engine = FakeEngine()
    images = ImageSupply(engine, recorder(["api", "web"]),  # type: ignore[arg-type]
                         ["nginx:1", "api:1", "api:1"], {"nginx:1": "sha256:aa"})
    assert images.missing == ["api:1"]
    with anyio.fail_after(2):
        await images.wait("web", "nginx:1")  # nothing pulled yet
        assert await still_waiting(lambda: images.wait("api", "api:1"))
        await images.pull_missing()
        await images.wait("api", "api:1")
    assert engine.calls == [("pull", "api:1")]  # once, though listed twice


async def test_a_service_waits_only_for_its_own_image() -> None:
    engine = FakeEngine()
    engine.gates["big:1"] = anyio.Event()
    images = ImageSupply(engine, recorder(["model", "api"]),  # type: ignore[arg-type]
                         ["big:1", "small:1"], {})
    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(images.pull_missing)
            await images.wait("api", "small:1")  # while big:1 is still being pulled
            assert "big:1" in engine.in_flight
            assert await still_waiting(lambda: images.wait("model", "big:1"))
            engine.gates["big:1"].set()
            await images.wait("model", "big:1")


async def test_missing_images_are_pulled_at_the_same_time() -> None:
    """Each pull waits until every pull has begun: one after the other would hang."""
    engine = FakeEngine()
    wanted = ["a:1", "b:1", "c:1"]
    all_began = anyio.Event()
    for image in wanted:
        engine.gates[image] = all_began
    images = ImageSupply(engine, recorder([]), wanted, {})  # type: ignore[arg-type]

    async def release_when_all_began() -> None:
        while len(engine.in_flight) < len(wanted):
            await anyio.sleep(0)
        all_began.set()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(release_when_all_began)
            await images.pull_missing()
    assert sorted(name for _, name in engine.calls) == wanted


async def test_a_failed_pull_fails_only_the_services_of_that_image() -> None:
    engine = FakeEngine()
    engine.refuse["bad:1"] = "manifest unknown"
    run = recorder(["api", "worker", "web"])
    images = ImageSupply(engine, run, ["bad:1", "good:1"], {})  # type: ignore[arg-type]
    with anyio.fail_after(2):
        await images.pull_missing()
        await images.wait("web", "good:1")
        for service in ("api", "worker"):
            with pytest.raises(ServiceFailed) as failed:
                await images.wait(service, "bad:1")
            assert failed.value.service == service
            assert "image bad:1" in failed.value.cause
            assert failed.value.cause.endswith("manifest unknown")
    assert run.pulls["bad:1"].status == "failed"
    assert run.pulls["good:1"].status == "pulled"


async def test_pull_progress_is_recorded() -> None:
    run = recorder([])
    images = ImageSupply(FakeEngine(), run, ["api:1"], {})  # type: ignore[arg-type]
    await images.pull_missing()
    assert (run.pulls["api:1"].downloaded, run.pulls["api:1"].total) == (100, 100)


# --- networks and volumes ------------------------------------------------------------------------


@pytest.fixture
def plan(build_plan: Callable[..., Plan]) -> Plan:
    return build_plan(
        {"db": {"image": "postgres:16", "networks": ["back"],
                "volumes": ["data:/var/lib/postgresql/data"]},
         "api": {"image": "api:1", "networks": ["back", "front"]},
         "web": {"image": "nginx:1", "networks": ["front"]},
         "cache": {"image": "redis:7", "networks": ["back"], "volumes": ["data:/data"]}},
        networks={"front": {}, "back": {}}, volumes={"data": {}})


@pytest.fixture
def containers(plan: Plan) -> dict[str, ContainerConfig]:
    return {name: container_config(plan, name, Path("/srv")) for name in plan.services}


def create(plan: Plan, *keys: str) -> list[NetworkAction]:
    return [NetworkAction(network_config(plan.project, key, plan.networks[key]), Verb.CREATE,
                          "missing") for key in keys]


def shared_objects(engine: FakeEngine, plan: Plan, containers: dict[str, ContainerConfig],
                   networks: list[NetworkAction], volumes: list[str] | None = None,
                   snapshot: Snapshot | None = None) -> SharedObjects:
    keys = ["data"] if volumes is None else volumes
    return SharedObjects(engine, recorder(list(plan.services)), "run1",  # type: ignore[arg-type]
                         networks, [volume_config(plan.project, key, plan.volumes[key])
                                    for key in keys],
                         containers, snapshot or Snapshot(plan.project))


async def test_each_network_and_volume_is_made_once_whatever_uses_it(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    shared = shared_objects(engine, plan, containers, create(plan, "front", "back"))
    with anyio.fail_after(2):
        await shared.make_all(EngineQueue(8, {}))
        for name in plan.services:
            await shared.wait(name, containers[name])
        await shared.made()
    assert sorted(engine.calls) == [("create network", "shop_back"),
                                    ("create network", "shop_front"),
                                    ("create volume", "shop_data")]
    assert shared.failures == []


def test_an_object_ranks_as_the_most_urgent_service_that_needs_it(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    shared = shared_objects(FakeEngine(), plan, containers, create(plan, "front", "back"))
    assert set(shared.keys) == {"make shop_front", "make shop_back", "make shop_data"}
    ranks = shared.ranks({"db": 4.0, "cache": 1.5, "api": 3.0, "web": 6.0})
    assert ranks == {"make shop_back": 1.5, "make shop_front": 3.0, "make shop_data": 1.5}


async def test_objects_are_made_in_order_of_need(plan: Plan,
                                                 containers: dict[str, ContainerConfig]) -> None:
    """One slot: front, needed by the latest services only, comes last though listed first."""
    engine = FakeEngine()
    shared = shared_objects(engine, plan, containers, create(plan, "front", "back"))
    ranks = shared.ranks({"db": 0.0, "cache": 1.0, "api": 7.0, "web": 5.0})
    assert ranks["make shop_front"] == 5.0
    queue = EngineQueue(1, ranks, expected=shared.keys)
    with anyio.fail_after(2):
        await shared.make_all(queue)
    made = [name for _, name in engine.calls]
    assert made[-1] == "shop_front"
    assert set(made[:2]) == {"shop_back", "shop_data"}


async def test_a_service_waits_only_for_its_own_networks_and_volumes(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    engine.gates["shop_front"] = anyio.Event()
    shared = shared_objects(engine, plan, containers, create(plan, "front", "back"))
    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(shared.make_all, EngineQueue(8, {}))
            await shared.wait("db", containers["db"])  # back and data, while front is made
            assert "shop_front" in engine.in_flight
            for service in ("web", "api"):
                assert await still_waiting(lambda s=service: shared.wait(s, containers[s]))
            assert await still_waiting(shared.made)
            engine.gates["shop_front"].set()
            await shared.wait("web", containers["web"])
            await shared.made()


async def test_a_failed_network_fails_only_its_users_and_names_itself(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    engine.refuse["shop_back"] = "Pool overlaps with other one on this address space"
    shared = shared_objects(engine, plan, containers, create(plan, "front", "back"))
    with anyio.fail_after(2):
        await shared.make_all(EngineQueue(8, {}))
        await shared.wait("web", containers["web"])
        for service in ("db", "api", "cache"):
            with pytest.raises(SupplyFailed) as failed:
                await shared.wait(service, containers[service])
            assert failed.value.service == service
            assert failed.value.cause == ("shop_back could not be made: Pool overlaps with "
                                          "other one on this address space")
    [failure] = shared.failures
    assert isinstance(failure, NetworkFailed)
    assert str(failure) == ("network 'back' (used by api, cache, db) failed: Pool overlaps "
                            "with other one on this address space")


async def test_a_failed_volume_fails_only_its_users_and_names_itself(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    engine.refuse["shop_data"] = "the volume shop_data belongs to another project"
    shared = shared_objects(engine, plan, containers, create(plan, "front", "back"))
    with anyio.fail_after(2):
        await shared.make_all(EngineQueue(8, {}))
        for service in ("api", "web"):
            await shared.wait(service, containers[service])
        for service in ("db", "cache"):
            with pytest.raises(SupplyFailed, match=r"^service '\w+' failed: shop_data could "
                                                   "not be made: the volume shop_data"):
                await shared.wait(service, containers[service])
    assert [(f.service, f.cause) for f in shared.failures] == [
        ("volume shop_data", "the volume shop_data belongs to another project")]


async def test_what_the_engine_already_holds_is_not_made_and_nobody_waits_for_it(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    [front, back] = create(plan, "front", "back")
    kept = NetworkAction(back.config, Verb.KEEP, "up to date")
    shared = shared_objects(engine, plan, containers, [front, kept],
                            snapshot=Snapshot(plan.project, volumes=("shop_data",)))
    assert shared.keys == ["make shop_front"]
    with anyio.fail_after(2):
        await shared.wait("db", containers["db"])  # before anything is made
        await shared.make_all(EngineQueue(8, {}))
    assert engine.calls == [("create network", "shop_front")]


async def test_a_changed_network_is_recreated_after_the_projects_containers_leave_it(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    [back] = create(plan, "back")
    existing = ObservedNetwork("net1", "shop_back", "back", "oldhash", containers=("c-db",))
    ours = ObservedContainer("c-db", "shop-db", "db", "h", "running", 0, "sha256:1")
    recreate = NetworkAction(back.config, Verb.RECREATE, "config changed", existing)
    shared = shared_objects(engine, plan, containers, [recreate], volumes=[],
                            snapshot=Snapshot(plan.project, containers=(ours,)))
    with anyio.fail_after(2):
        await shared.make_all(EngineQueue(8, {}))
    assert engine.calls == [("remove container", "c-db"), ("remove network", "shop_back"),
                            ("create network", "shop_back")]
    assert shared.failures == []


async def test_a_changed_network_used_by_a_stranger_is_left_alone_and_fails_its_users(
        plan: Plan, containers: dict[str, ContainerConfig]) -> None:
    engine = FakeEngine()
    [back] = create(plan, "back")
    existing = ObservedNetwork("net1", "shop_back", "back", "oldhash",
                               containers=("c-db", "someone-elses"))
    ours = ObservedContainer("c-db", "shop-db", "db", "h", "running", 0, "sha256:1")
    recreate = NetworkAction(back.config, Verb.RECREATE, "config changed", existing)
    shared = shared_objects(engine, plan, containers, [recreate], volumes=[],
                            snapshot=Snapshot(plan.project, containers=(ours,)))
    with anyio.fail_after(2):
        await shared.make_all(EngineQueue(8, {}))
        with pytest.raises(SupplyFailed, match="outside the project use it"):
            await shared.wait("api", containers["api"])
    assert engine.calls == []  # nothing removed, nothing made
    assert [f.service for f in shared.failures] == ["network shop_back"]
