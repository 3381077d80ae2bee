"""The engine a command works on, as the settings name it."""

from __future__ import annotations

from ollamatopo.app._settings import Settings
from ollamatopo.engine._docker import Engine


async def connect_engine(settings: Settings) -> Engine:
    return await Engine.connect(settings.docker_host, settings.api_concurrency,
                                connect_timeout_s=settings.connect_timeout,
                                call_timeout_s=settings.engine_timeout)
