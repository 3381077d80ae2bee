"""Load balancer configuration in step with the set of ready backends.

`BalancerSync` keeps each load balancer's rendered configuration in
step with the backends that are up: it writes the file into the container (before it
starts, so nginx never starts with a name it cannot resolve) and reloads it (a
graceful `nginx -s reload`: requests in flight finish on the old workers) whenever
the set changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import anyio
import tenacity

from ollamatopo._errors import EngineError
from ollamatopo.engine._docker import Engine
from ollamatopo.plan._model import LoadBalanceSpec, Plan
from ollamatopo.plan._templates import allowed_networks, render
from ollamatopo.report._recorder import RunRecorder

RELOAD_RETRY_S = 3.0


@dataclass
class _Balancer:
    service: str
    spec: LoadBalanceSpec
    template: str
    allow: list[str]
    container_id: str | None = None
    started: bool = False
    written: str | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class BalancerSync:
    """Keeps every load balancer of a run in step with the backends that are up."""

    def __init__(self, engine: Engine, plan: Plan, templates: Mapping[str, str],
                 recorder: RunRecorder) -> None:
        self._engine, self._recorder = engine, recorder
        self._balancers = {
            name: _Balancer(name, spec.load_balance, templates[name],
                            allowed_networks(plan, name))
            for name, spec in plan.services.items() if spec.load_balance is not None
        }
        self.up: set[str] = set()

    def is_balancer(self, service: str) -> bool:
        return service in self._balancers

    async def prepare(self, service: str, container_id: str, started: bool) -> bool:
        """Before the balancer starts (or, for a running one, at once): its configuration.
        True if a running balancer was reloaded."""
        balancer = self._balancers[service]
        if balancer.container_id == container_id and balancer.written is not None:
            return False  # prepared already (drained before orphans were removed)
        balancer.container_id, balancer.started = container_id, started
        if started:
            balancer.written = await self._engine.read_file(container_id,
                                                            balancer.spec.config_path)
        return await self._sync(balancer)

    async def start(self, service: str, start: Callable[[], Awaitable[None]]) -> None:
        """Start the balancer with no configuration change in between: a change written
        while nginx reads its configuration would otherwise be missed."""
        balancer = self._balancers[service]
        async with balancer.lock:
            await start()
            balancer.started = True

    async def backend_changed(self, service: str, up: bool) -> None:
        if (service in self.up) == up:
            return
        (self.up.add if up else self.up.discard)(service)
        for balancer in self._balancers.values():
            if service in balancer.spec.backends and balancer.container_id:
                try:
                    await self._sync(balancer)
                except EngineError as error:
                    self._recorder.emit("load balancer reload failed", level="error",
                                        service=balancer.service, error=str(error))

    async def _sync(self, balancer: _Balancer) -> bool:
        """Write and reload if the configuration changed; True if it was reloaded."""
        async with balancer.lock:
            backends = [name for name in balancer.spec.backends if name in self.up]
            text = render(balancer.template, balancer.spec, backends, balancer.allow)
            if text == balancer.written or balancer.container_id is None:
                return False
            await self._engine.put_file(balancer.container_id, balancer.spec.config_path,
                                        text.encode())
            balancer.written = text
            if balancer.started:
                await self._reload(balancer.container_id, balancer)
            self._recorder.emit("load balancer configured", service=balancer.service,
                                backends=backends, reloaded=balancer.started)
            return balancer.started

    async def _reload(self, container_id: str, balancer: _Balancer) -> None:
        """Reload; retried briefly, since a just-started nginx may not have its pid file yet
        (a reload is safe to repeat)."""
        retrying = tenacity.AsyncRetrying(
            sleep=anyio.sleep, reraise=True, stop=tenacity.stop_after_delay(RELOAD_RETRY_S),
            wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
            retry=tenacity.retry_if_exception_type(EngineError))
        async for attempt in retrying:
            with attempt:
                code, output = await self._engine.exec(container_id, list(balancer.spec.reload))
                if code != 0:
                    raise EngineError(f"reload of {balancer.service} failed (exit {code}): "
                                      f"{output.strip()[-500:]}")
