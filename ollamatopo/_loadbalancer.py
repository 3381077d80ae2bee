"""Load balancer configuration: rendered from a template and the set of ready backends.

`render` is pure. `BalancerSync` keeps each load balancer's rendered configuration in
step with the backends that are up: it writes the file into the container (before it
starts, so nginx never starts with a name it cannot resolve) and reloads it (a
graceful `nginx -s reload`: requests in flight finish on the old workers) whenever
the set changes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import tenacity

from ollamatopo._engine import Engine
from ollamatopo._errors import EngineError
from ollamatopo._plan import LoadBalanceSpec, Plan
from ollamatopo._report import RunRecorder

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
KNOWN = {"upstream_servers", "status_allow"}
# nginx refuses an empty upstream block; a server marked down keeps it valid and answers 502.
NO_BACKEND = "127.0.0.1:9 down"
INDENT = " " * 8
RELOAD_RETRY_S = 3.0


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def template_problems(template: str) -> list[str]:
    found = {name for line in template.splitlines() if not _is_comment(line)
             for name in PLACEHOLDER.findall(line)}
    problems = [f"unknown placeholder {{{{{name}}}}}: use {', '.join(sorted(KNOWN))}"
                for name in sorted(found - KNOWN)]
    if "upstream_servers" not in found:
        problems.append("the template has no {{upstream_servers}} placeholder")
    return problems


def render(template: str, spec: LoadBalanceSpec, backends: Sequence[str],
           allow: Sequence[str]) -> str:
    """The configuration for these ready backends (plan order), allowing `allow` networks."""
    servers = [f"{INDENT}server {name}:{spec.port} weight={spec.backends[name]} "
               f"{spec.server_options};".rstrip() for name in backends]
    values = {
        "upstream_servers": "\n".join(servers) or f"{INDENT}server {NO_BACKEND};",
        "status_allow": "\n".join(f"{INDENT}    allow {network};" for network in allow),
    }
    # Placeholders in comments stay as written: a multi-line value would break out of them.
    return "".join(line if _is_comment(line) else
                   PLACEHOLDER.sub(lambda match: values[match.group(1)], line)
                   for line in template.splitlines(keepends=True))


def allowed_networks(plan: Plan, service: str) -> list[str]:
    """Loopback and the subnets of the networks the load balancer is on."""
    subnets = [plan.networks[key].subnet for key in plan.services[service].networks
               if key in plan.networks and plan.networks[key].subnet]
    return ["127.0.0.1", *(subnet for subnet in subnets if subnet)]


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
