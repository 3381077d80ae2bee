"""A Docker swarm, ollamatopo's second backend (`--backend swarm`): its nodes, services
and their tasks, through the SDK's services API.

A swarm manager is a Docker engine, so every call goes through the container backend's
own mechanism (`Engine._call`: worker threads, retries of safe calls, abandoned by a
cancelled caller, counted in flight). What a service is made of comes from
`_swarm_payloads`; what to do about it is the scheduler's (`run/_swarm.py`), which
learns of tasks and nodes only through the types here.

Facts of Docker 20.10 that the callers rely on (docs/swarm.md has the rest):
- a task whose container has a healthcheck stays `starting` until the container is
  healthy, and the swarm replaces a task whose container turns unhealthy: `running` is
  the swarm's own readiness;
- the manager warns that it cannot record the digest of an image no registry has, and
  the nodes run it from their local images;
- labels of a service are not its containers' labels: the project's labels go on the
  service only, so the container backend never takes a task's container for its own.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollamatopo._errors import EngineError
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._payloads import (
    LABEL_DEPENDS,
    LABEL_HASH,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SERVICE,
)

# Task states the swarm will not move on from by itself for this task.
ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
FAILED = frozenset({"failed", "rejected", "orphaned"})


class NotAManager(EngineError):
    """The engine is in no swarm, or not one of its managers."""


@dataclass(frozen=True)
class SwarmNode:
    id: str
    hostname: str
    role: str  # manager or worker
    state: str  # ready, down, ...
    availability: str  # active, pause, drain
    labels: Mapping[str, str]
    address: str


@dataclass(frozen=True)
class TaskState:
    """One task of a service as the swarm reports it."""

    id: str
    slot: int | None
    node: str  # node id
    state: str  # new ... starting, running, complete, failed, ...
    desired: str  # running or shutdown
    message: str
    error: str
    container_id: str | None
    exit_code: int | None
    addresses: Mapping[str, str] = field(default_factory=dict)  # network name -> its IP
    service_id: str = ""

    @property
    def current(self) -> bool:
        """The swarm still means this task to run (not one it replaced or is removing)."""
        return self.desired == "running"

    @property
    def failed(self) -> bool:
        return self.state in FAILED

    @property
    def has_container(self) -> bool:
        """Its container was made and has not ended (`starting`: not yet healthy)."""
        return self.state in ("starting", "running")

    @property
    def stopping(self) -> bool:
        """The swarm removes or replaces it, and its container still runs (and may still
        answer): a scale down's extra replica for a few seconds after the update."""
        return not self.current and self.has_container


@dataclass(frozen=True)
class ObservedService:
    id: str
    name: str
    service: str  # the plan's name
    config_hash: str
    version: int  # the swarm's version index, for an update
    run: str
    depends_on: tuple[str, ...] = ()  # plan services it waits for (its label): down's order


ObjectKind = str  # "secrets" or "configs", as compose's top-level keys
LABEL_DIGEST = "ollamatopo.content-digest"  # a secret's or config's: SHA-256 of its content


@dataclass(frozen=True)
class ObservedObject:
    """A swarm secret or config (its content cannot be read back: its digest label)."""

    kind: ObjectKind
    id: str
    name: str
    digest: str  # "" when made by someone else
    project: str  # "" when not a project's


@dataclass(frozen=True)
class ServiceConfig:
    """Everything needed to create one plan service as a swarm service."""

    service: str
    name: str
    image: str
    replicas: int | None  # None: global
    create_kwargs: dict[str, Any]  # create_service's arguments but labels
    labels: dict[str, str]
    config_hash: str


class Swarm:
    """The swarm whose manager `engine` is."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._client = engine._client  # the same connection: one engine, one pool
        self.local_node = ""  # the manager's own node id, once `nodes` has been asked

    def local_container(self, task: TaskState) -> str | None:
        """The task's container when it is on this manager's engine, in reach of its
        inspect and exec; None before it has one, or on another node (whose engine is not
        reachable from here)."""
        return task.container_id if task.node == self.local_node else None

    @property
    def has_start_interval(self) -> bool:
        """The engines take a healthcheck's StartInterval (Docker 25, API 1.44)."""
        return self.engine.api_version >= (1, 44)

    async def nodes(self) -> list[SwarmNode]:
        """The swarm's nodes; NotAManager when the engine cannot say (not a manager)."""
        info = await self.engine._call("engine info", self._client.info, retry=True)
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise NotAManager(
                f"the engine at {self.engine.base_url} is not a swarm manager (its swarm "
                f"state: {swarm.get('LocalNodeState') or 'inactive'}): point DOCKER_HOST or "
                "--docker-host at a manager, or make one with `docker swarm init`")
        self.local_node = str(swarm.get("NodeID", ""))
        raw = await self.engine._call("list nodes", self._client.nodes, retry=True)
        return [_node(node) for node in raw]

    async def services(self, project: str) -> list[ObservedService]:
        raw = await self.engine._call("list services", self._client.services,
                                      filters={"label": f"{LABEL_PROJECT}={project}"},
                                      retry=True)
        return [_service(service) for service in raw]

    async def create_service(self, config: ServiceConfig, run_id: str) -> str:
        labels = {**config.labels, LABEL_RUN: run_id}
        raw = await self.engine._call(f"create service {config.name}",
                                      self._client.create_service, name=config.name,
                                      labels=labels, **config.create_kwargs)
        return str(raw["ID"])

    async def update_service(self, existing: ObservedService, config: ServiceConfig,
                             run_id: str) -> None:
        """The service's spec replaced by `config`'s, rolled out by its update_config."""
        labels = {**config.labels, LABEL_RUN: run_id}
        await self.engine._call(f"update service {config.name}", self._client.update_service,
                                existing.id, existing.version, name=config.name,
                                labels=labels, fetch_current_spec=False,
                                **config.create_kwargs)

    async def remove_service(self, service_id: str) -> None:
        await self.engine._call(f"remove service {service_id[:12]}",
                                self._client.remove_service, service_id, retry=True)

    async def tasks(self, service_id: str) -> list[TaskState]:
        return (await self.tasks_by_service([service_id]))[service_id]

    async def tasks_by_service(self, service_ids: Sequence[str]
                               ) -> dict[str, list[TaskState]]:
        """The tasks of several services from one call (the filter's values are or-ed),
        by service id; each id has its list, empty when it has no task."""
        if not service_ids:
            return {}  # an empty filter would list every task of the swarm
        raw = await self.engine._call("list tasks", self._client.tasks,
                                      filters={"service": list(service_ids)}, retry=True)
        listed: dict[str, list[TaskState]] = {service_id: [] for service_id in service_ids}
        for task in map(_task, raw):
            listed.setdefault(task.service_id, []).append(task)
        return listed

    async def service_logs(self, service_id: str, tail: int) -> str:
        """The last `tail` lines of the service's tasks, from whichever nodes ran them."""
        def read() -> str:
            chunks = self._client.service_logs(service_id, stdout=True, stderr=True,
                                               tail=tail)
            return b"".join(chunks).decode("utf-8", errors="replace")

        return await self.engine._call(f"read logs of service {service_id[:12]}", read,
                                       retry=True)

    async def update_state(self, service_id: str) -> tuple[str, str]:
        """The service's rolling update as the swarm reports it (`updating`, `completed`,
        `paused`, `rollback_...`; "" before any update) and its message."""
        raw = await self.engine._call(f"inspect service {service_id[:12]}",
                                      self._client.inspect_service, service_id, retry=True)
        status = raw.get("UpdateStatus") or {}
        return str(status.get("State", "")), str(status.get("Message", ""))

    async def spec_of(self, service_id: str) -> dict[str, Any]:
        """The service's spec as the swarm holds it (to put back after a failed update)."""
        raw = await self.engine._call(f"inspect service {service_id[:12]}",
                                      self._client.inspect_service, service_id, retry=True)
        return dict(raw["Spec"])

    async def restore(self, service_id: str, spec: Mapping[str, Any]) -> None:
        """The service updated back to `spec` (what `docker service rollback` does)."""
        raw = await self.engine._call(f"inspect service {service_id[:12]}",
                                      self._client.inspect_service, service_id, retry=True)
        version = int(raw["Version"]["Index"])
        await self.engine._call(
            f"restore service {service_id[:12]}", self._client.update_service, service_id,
            version, task_template=spec.get("TaskTemplate"), name=spec.get("Name"),
            labels=spec.get("Labels"), mode=spec.get("Mode"),
            update_config=spec.get("UpdateConfig"), endpoint_spec=spec.get("EndpointSpec"),
            rollback_config=spec.get("RollbackConfig"), fetch_current_spec=False)

    async def start_prober(self, image: str, network: str, labels: Mapping[str, str]) -> str:
        """A container on the manager attached to the overlay `network` (attachable), that
        only sleeps: probes of the tasks' addresses are run in it (`Engine.exec`), since
        the manager's own host cannot reach an overlay."""
        host_config = self._client.create_host_config(network_mode=network, init=True)
        raw = await self.engine._call(
            f"create prober on {network}", self._client.create_container, image,
            command=["sleep", "2147483647"], labels=dict(labels), host_config=host_config)
        container_id = str(raw["Id"])
        await self.engine.start(container_id)
        return container_id

    async def services_of_run(self, project: str, run_id: str) -> list[str]:
        """Ids of the services one `up` created or last updated (by its run label)."""
        raw = await self.engine._call(
            "list services", self._client.services, retry=True,
            filters={"label": [f"{LABEL_PROJECT}={project}", f"{LABEL_RUN}={run_id}"]})
        return [str(service["ID"]) for service in raw]

    async def objects(self, kind: ObjectKind, *, names: Sequence[str] = (),
                      project: str | None = None) -> list[ObservedObject]:
        """The swarm's secrets or configs whose names begin with one of `names`, or that
        carry `project`'s label (a prefix: the configs' listing has no exact names)."""
        filters: dict[str, Any] = {"name": list(names)} if names else {}
        if project is not None:
            filters["label"] = f"{LABEL_PROJECT}={project}"
        listing = self._client.secrets if kind == "secrets" else self._client.configs
        raw = await self.engine._call(f"list {kind}", listing, filters=filters, retry=True)
        return [_object(kind, item) for item in raw]

    async def create_object(self, kind: ObjectKind, name: str, content: bytes,
                            labels: Mapping[str, str], template_driver: str = "") -> str:
        """A secret or config made, templated by `template_driver` when given; the error
        names it, never its content."""
        create: Callable[..., Any] = (
            self._client.create_secret if kind == "secrets" else self._client.create_config)
        more: dict[str, Any] = {}
        if template_driver:
            more["templating"] = {"Name": template_driver}
            if kind == "secrets":
                create = self._create_templated_secret
        raw = await self.engine._call(f"create {kind[:-1]} {name}", create, name=name,
                                      data=content, labels=dict(labels), **more)
        return str(raw["ID"])

    def _create_templated_secret(self, name: str, data: bytes, labels: dict[str, str],
                                 templating: dict[str, str]) -> Any:
        """The engine's secrets/create with Templating (API 1.37), which the SDK's
        create_secret cannot send (its create_config can): the same body, by the SDK's
        own request helpers."""
        body = {"Name": name, "Labels": labels, "Templating": templating,
                "Data": base64.b64encode(data).decode("ascii")}
        url = self._client._url("/secrets/create")
        return self._client._result(self._client._post_json(url, data=body), True)

    async def remove_object(self, kind: ObjectKind, object_id: str) -> None:
        """StillInUse while a service's spec refers to it."""
        remove = self._client.remove_secret if kind == "secrets" else self._client.remove_config
        await self.engine._call(f"remove {kind[:-1]} {object_id[:12]}", remove, object_id,
                                retry=True)


def _object(kind: ObjectKind, raw: dict[str, Any]) -> ObservedObject:
    spec = raw.get("Spec") or {}
    labels = spec.get("Labels") or {}
    return ObservedObject(kind, str(raw["ID"]), str(spec.get("Name", "")),
                          labels.get(LABEL_DIGEST, ""), labels.get(LABEL_PROJECT, ""))


def _node(raw: dict[str, Any]) -> SwarmNode:
    spec, status = raw.get("Spec") or {}, raw.get("Status") or {}
    return SwarmNode(id=str(raw["ID"]),
                     hostname=str((raw.get("Description") or {}).get("Hostname", "")),
                     role=str(spec.get("Role", "")), state=str(status.get("State", "")),
                     availability=str(spec.get("Availability", "")),
                     labels=dict(spec.get("Labels") or {}), address=str(status.get("Addr", "")))


def _service(raw: dict[str, Any]) -> ObservedService:
    labels = (raw.get("Spec") or {}).get("Labels") or {}
    return ObservedService(id=str(raw["ID"]), name=str(raw["Spec"]["Name"]),
                           service=labels.get(LABEL_SERVICE, ""),
                           config_hash=labels.get(LABEL_HASH, ""),
                           version=int((raw.get("Version") or {}).get("Index", 0)),
                           run=labels.get(LABEL_RUN, ""),
                           depends_on=tuple(filter(None, labels.get(LABEL_DEPENDS, "").split(","))))


def _task(raw: dict[str, Any]) -> TaskState:
    status = raw.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    code = container.get("ExitCode")
    addresses = {str((attachment.get("Network") or {}).get("Spec", {}).get("Name", "")):
                 str(attachment["Addresses"][0]).partition("/")[0]
                 for attachment in raw.get("NetworksAttachments") or ()
                 if attachment.get("Addresses")}
    return TaskState(id=str(raw["ID"]), slot=raw.get("Slot"), node=str(raw.get("NodeID", "")),
                     state=str(status.get("State", "")),
                     desired=str(raw.get("DesiredState", "")),
                     message=str(status.get("Message", "")), error=str(status.get("Err", "")),
                     container_id=container.get("ContainerID") or None,
                     exit_code=int(code) if code is not None else None,
                     addresses=addresses, service_id=str(raw.get("ServiceID", "")))
