"""Compose's commands on running services: `logs`, `exec`, `stop`, `start`, `restart`, each
on some services (all when none is named) of the project's containers, found by labels."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial

import anyio
import anyio.lowlevel

from ollamatopo._errors import HookFailed, ServiceFailed, UsageError
from ollamatopo.app._connect import connect_engine
from ollamatopo.app._lock import ProjectLock
from ollamatopo.app._settings import Settings
from ollamatopo.engine._docker import Engine
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.run._hooks import run_hooks, stop_container


def chosen(loaded: LoadedPlan, services: Sequence[str]) -> list[str]:
    """The services named (all when none is), in dependency order; an unknown name is a
    usage error naming the ones there are."""
    order = loaded.graph.topological_order()
    check_named(services, order)
    return [name for name in order if not services or name in services]


def check_named(services: Sequence[str], known: Sequence[str]) -> None:
    """A usage error naming the services that are not in the plan, and the ones that are."""
    unknown = [name for name in services if name not in known]
    if unknown:
        raise UsageError(f"no service {', '.join(map(repr, unknown))} in the plan: it has "
                         f"{', '.join(known)}")


async def _containers(engine: Engine, loaded: LoadedPlan) -> dict[str, str]:
    snapshot = await engine.snapshot(loaded.plan.project)
    return {c.service: c.id for c in snapshot.containers if c.service in loaded.plan.services}


async def logs(settings: Settings, loaded: LoadedPlan, services: Sequence[str],
               tail: int | None) -> list[tuple[str, str]]:
    """Each chosen service's log (its last `tail` lines), as (service, text)."""
    names = chosen(loaded, services)
    engine = await connect_engine(settings)
    try:
        containers = await _containers(engine, loaded)
        return [(name, await engine.logs(containers[name], "all" if tail is None else tail))
                for name in names if name in containers]
    finally:
        engine.close()


async def follow(settings: Settings, loaded: LoadedPlan, services: Sequence[str],
                 tail: int | None, on_line: Callable[[str, str], None]) -> None:
    """`logs -f`: each chosen service's lines as they come, as (service, line), from its
    last `tail` lines on, until every followed container has stopped."""
    names = chosen(loaded, services)
    engine = await connect_engine(settings)
    try:
        containers = await _containers(engine, loaded)
        async with anyio.create_task_group() as group:
            for name in names:
                if name in containers:
                    group.start_soon(engine.follow_logs, containers[name],
                                     "all" if tail is None else tail, partial(on_line, name))
    finally:
        engine.close()


async def exec_in(settings: Settings, loaded: LoadedPlan, service: str,
                  argv: Sequence[str]) -> tuple[int, str]:
    """The command run in the service's running container: its exit code and output."""
    chosen(loaded, [service])
    engine = await connect_engine(settings)
    try:
        container = (await _containers(engine, loaded)).get(service)
        if container is None or not (await engine.inspect(container)).running:
            raise UsageError(f"service {service!r} is not running: bring it up first")
        return await engine.exec(container, list(argv))
    finally:
        engine.close()


async def stop(settings: Settings, loaded: LoadedPlan, services: Sequence[str]) -> list[str]:
    """Stop the chosen services, dependents first, each in its own grace period."""
    async with _locked_engine(settings, loaded, "stop") as engine:
        return await _stop(engine, loaded, services)


async def start(settings: Settings, loaded: LoadedPlan, services: Sequence[str]) -> list[str]:
    """Start the chosen services' stopped containers, dependencies first (not waiting for
    readiness, as compose's `start`; `up` waits)."""
    async with _locked_engine(settings, loaded, "start") as engine:
        return await _start(engine, loaded, services)


async def restart(settings: Settings, loaded: LoadedPlan,
                  services: Sequence[str]) -> list[str]:
    """Stop, then start, the chosen services and the dependents that have `restart: true`
    on them (compose's rule)."""
    if services:
        check_named(services, loaded.graph.nodes)
        services = loaded.graph.restarted_with(services)
    async with _locked_engine(settings, loaded, "restart") as engine:
        await _stop(engine, loaded, services)
        return await _start(engine, loaded, services)


@contextlib.asynccontextmanager
async def _locked_engine(settings: Settings, loaded: LoadedPlan,
                         command: str) -> AsyncIterator[Engine]:
    """The engine, under the project's lock: never beside an `up`, or a daemon that would
    restart what this stops (stop the daemon first, or use its `down`)."""
    lock = ProjectLock(settings.lock_dir, settings.docker_host, loaded.plan.project)
    lock.acquire(command)
    try:
        engine = await connect_engine(settings)
        try:
            yield engine
        finally:
            engine.close()
    finally:
        lock.release()


async def _stop(engine: Engine, loaded: LoadedPlan, services: Sequence[str]) -> list[str]:
    containers = await _containers(engine, loaded)
    stopped = []
    for name in reversed(chosen(loaded, services)):
        if name in containers and (await engine.inspect(containers[name])).running:
            await stop_container(engine, containers[name], loaded.plan.services[name].pre_stop,
                                 name)
            stopped.append(name)
    return stopped


async def _start(engine: Engine, loaded: LoadedPlan, services: Sequence[str]) -> list[str]:
    containers = await _containers(engine, loaded)
    started = []
    for name in chosen(loaded, services):
        if name in containers and not (await engine.inspect(containers[name])).running:
            await engine.start(containers[name])
            try:
                await run_hooks(engine, containers[name],
                                loaded.plan.services[name].post_start, "post_start")
            except HookFailed as error:
                raise ServiceFailed(name, str(error)) from None
            started.append(name)
        await anyio.lowlevel.checkpoint()
    return started
