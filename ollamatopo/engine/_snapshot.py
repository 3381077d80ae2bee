"""What the engine holds for one project, read by labels: the observe step's result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    service: str
    config_hash: str
    state: str  # created, running, exited, restarting, paused, dead
    exit_code: int
    image_id: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObservedNetwork:
    id: str
    name: str
    key: str
    config_hash: str
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    project: str
    containers: tuple[ObservedContainer, ...] = ()
    networks: tuple[ObservedNetwork, ...] = ()
    volumes: tuple[str, ...] = ()
    image_ids: Mapping[str, str] = field(default_factory=dict)  # image reference -> local id
    # image reference -> the digest of the build inputs it was built from (engine._build)
    build_digests: Mapping[str, str] = field(default_factory=dict)

    def container(self, service: str) -> ObservedContainer | None:
        return next((c for c in self.containers if c.service == service), None)
