"""Observe, then reconcile: what the engine holds, and what `up` must do about it.

`Snapshot` (the engine layer's) is the engine's state for one project, read by labels.
`reconcile` is a pure function of the desired configs and the snapshot; it returns one action per
service (and per orphan), each with the cause that prints itself. `plan` shows
them; the scheduler carries them out and decides nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from ollamatopo._errors import ImageNotBuilt
from ollamatopo.engine._build import BuildConfig
from ollamatopo.engine._payloads import ContainerConfig, NetworkConfig
from ollamatopo.engine._snapshot import ObservedContainer, ObservedNetwork, Snapshot

# compose's `up --build` (always), `--no-build` (never), neither (auto: when missing or
# its inputs changed).
BuildPolicy = Literal["auto", "always", "never"]
FORCED = "--build asks for it"


class Verb(StrEnum):
    KEEP = "keep"
    START = "start"
    CREATE = "create"
    RECREATE = "recreate"
    RESTART = "restart"  # running and up to date, but a dependency it restarts with changes
    REMOVE = "remove"


@dataclass(frozen=True)
class ServiceAction:
    service: str
    verb: Verb
    cause: str
    existing: ObservedContainer | None = None

    def __str__(self) -> str:
        return f"{self.verb.value} {self.service}: {self.cause}"


@dataclass(frozen=True)
class NetworkAction:
    config: NetworkConfig
    verb: Verb
    cause: str
    existing: ObservedNetwork | None = None

    def __str__(self) -> str:
        return f"{self.verb.value} network {self.config.name}: {self.cause}"


@dataclass(frozen=True)
class BuildAction:
    """An image to build (the others of the plan's builds are up to date), labelled with
    `digest`, the digest of its inputs now."""

    config: BuildConfig
    digest: str
    cause: str

    def __str__(self) -> str:
        return f"build image {self.config.image}: {self.cause}"


@dataclass(frozen=True)
class Reconciliation:
    networks: tuple[NetworkAction, ...]
    services: Mapping[str, ServiceAction]
    orphans: tuple[ServiceAction, ...]
    builds: tuple[BuildAction, ...] = ()

    def lines(self) -> list[str]:
        return [str(action) for action in (*self.builds, *self.networks,
                                           *self.services.values(), *self.orphans)]

    @property
    def changes_nothing(self) -> bool:
        kept = all(a.verb is Verb.KEEP for a in self.networks) and all(
            a.verb is Verb.KEEP for a in self.services.values())
        return kept and not self.orphans and not self.builds


def reconcile(containers: Mapping[str, ContainerConfig], networks: Sequence[NetworkConfig],
              snapshot: Snapshot,
              restarting: Collection[tuple[str, str]] = (),
              builds: Mapping[str, BuildConfig] | None = None,
              build_policy: BuildPolicy = "auto") -> Reconciliation:
    """One action per desired network and service, and a removal per container not in it.
    A running service is restarted when a dependency it has `restart: true` on is
    recreated (compose's rule), after that dependency holds again. Of `builds` (by image),
    the images that are missing or were built from other inputs are built, and the
    containers made from them recreated (see `decide_builds` for the policy; a build only
    forced recreates nothing here: the run compares the image it makes)."""
    to_build = decide_builds(builds or {}, snapshot, build_policy)
    rebuilt = {action.config.image for action in to_build if action.cause != FORCED}
    network_actions = tuple(_network_action(config, snapshot) for config in networks)
    actions = {name: _service_action(config, snapshot, rebuilt)
               for name, config in containers.items()}
    recreated = {a.config.name for a in network_actions if a.verb is Verb.RECREATE}
    for name, config in containers.items():
        changed = [e.network for e in config.endpoints if e.network in recreated]
        if changed and actions[name].existing is not None:
            actions[name] = ServiceAction(name, Verb.RECREATE, f"network {changed[0]} changed",
                                          actions[name].existing)
    _recreate_joining(containers, actions)
    _restart_dependents(actions, restarting)
    orphans = tuple(
        ServiceAction(observed.service, Verb.REMOVE, "not in the plan", observed)
        for observed in snapshot.containers if observed.service not in containers
    )
    return Reconciliation(network_actions, actions, orphans, to_build)


def decide_builds(builds: Mapping[str, BuildConfig], snapshot: Snapshot,
                  policy: BuildPolicy = "auto") -> tuple[BuildAction, ...]:
    """auto: the builds whose image is missing or carries another digest than its inputs'
    now. always: every build, the up-to-date ones with the cause FORCED. never: none, and
    ImageNotBuilt if an image is missing (one built from other inputs is used as it is,
    as compose's --no-build does)."""
    if policy == "never":
        missing = sorted(config.service for image, config in builds.items()
                         if image not in snapshot.image_ids)
        if missing:
            raise ImageNotBuilt(
                f"up --no-build: the image of {', '.join(missing)} (build:) is not on the "
                "engine; run up without --no-build (or with --build) to build it")
        return ()
    actions = []
    for image, config in sorted(builds.items()):
        digest = config.digest(snapshot.image_ids)
        if image not in snapshot.image_ids:
            actions.append(BuildAction(config, digest, "missing"))
        elif snapshot.build_digests.get(image) != digest:
            actions.append(BuildAction(config, digest, "its build inputs changed"
                                       if image in snapshot.build_digests
                                       else "not built from these inputs"))
        elif policy == "always":
            actions.append(BuildAction(config, digest, FORCED))
    return tuple(actions)


def _recreate_joining(containers: Mapping[str, ContainerConfig],
                      actions: dict[str, ServiceAction]) -> None:
    """A container in another one's namespaces (network_mode, pid, ipc service:NAME) or with
    its volumes (volumes_from) holds that container's id from its create: it is made again
    when that one is. (A link is by name: `restart: true` restarts its dependent.)"""
    made = (Verb.CREATE, Verb.RECREATE)
    changed = True
    while changed:  # along chains of them
        changed = False
        for name, config in containers.items():
            action = actions[name]
            used = next((other for other in config.holds
                         if other in actions and actions[other].verb in made), None)
            if used is not None and action.existing is not None and action.verb not in made:
                actions[name] = ServiceAction(name, Verb.RECREATE, f"{used} is made again and "
                                              "this container uses its container",
                                              action.existing)
                changed = True


def _restart_dependents(actions: dict[str, ServiceAction],
                        restarting: Collection[tuple[str, str]]) -> None:
    changed = True
    while changed:  # a restart restarts its own `restart: true` dependents too
        changed = False
        for dependent, dependency in restarting:
            action, cause = actions.get(dependent), actions.get(dependency)
            if action is not None and cause is not None and action.verb is Verb.KEEP \
                    and cause.verb in (Verb.RECREATE, Verb.RESTART):
                done = "recreated" if cause.verb is Verb.RECREATE else "restarted"
                actions[dependent] = ServiceAction(
                    dependent, Verb.RESTART, f"{dependency} is {done} (restart: true)",
                    action.existing)
                changed = True


def _network_action(config: NetworkConfig, snapshot: Snapshot) -> NetworkAction:
    if config.external:
        return NetworkAction(config, Verb.KEEP, "external")
    existing = next((n for n in snapshot.networks if n.name == config.name), None)
    if existing is None:
        return NetworkAction(config, Verb.CREATE, "missing")
    if existing.config_hash != config.config_hash:
        return NetworkAction(config, Verb.RECREATE, "config changed", existing)
    return NetworkAction(config, Verb.KEEP, "up to date", existing)


def _service_action(config: ContainerConfig, snapshot: Snapshot,
                    rebuilt: Collection[str] = ()) -> ServiceAction:
    existing = snapshot.container(config.service)
    if existing is None:
        return ServiceAction(config.service, Verb.CREATE, "missing")
    if existing.config_hash != config.config_hash:
        return ServiceAction(config.service, Verb.RECREATE, "config changed", existing)
    if config.image in rebuilt:
        return ServiceAction(config.service, Verb.RECREATE, "its image is to be rebuilt",
                             existing)
    image_id = snapshot.image_ids.get(config.image)
    if image_id and existing.image_id != image_id:
        return ServiceAction(config.service, Verb.RECREATE, "image changed", existing)
    if existing.state == "running":
        return ServiceAction(config.service, Verb.KEEP, "running, up to date", existing)
    if existing.state in ("exited", "dead"):
        cause = f"{existing.state} ({existing.exit_code})"
    else:
        cause = existing.state
    if existing.state in ("dead", "removing", "paused", "restarting"):
        return ServiceAction(config.service, Verb.RECREATE, cause, existing)
    return ServiceAction(config.service, Verb.START, cause, existing)
