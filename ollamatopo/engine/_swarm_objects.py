"""Compose's secrets and configs on a swarm, as `docker stack deploy` makes them: each
top-level one that a service gets becomes a swarm secret or config, and the service's
task refers to it. Never an environment variable: the swarm keeps the content encrypted
in its log and gives it only to the nodes that run a task of a service that gets it.

- **Names**: `<project>_<key>`, or `name:` as written. An `external` one is only looked
  up, by `name:` or its key; never made, never removed.
- **Labels**: the plan's `labels:` of it, then the project's, the run that made it, and
  LABEL_DIGEST (ours win; the model refuses a plan label under `ollamatopo.` anyway). The
  digest is the SHA-256 of the content, or, when the plan gives it labels or a
  `template_driver`, of the content's digest with those (`identity`). The swarm never
  gives a content back, so the digest is how ollamatopo knows whether the one the swarm
  has is the plan's. (Whoever can read the label can run a service that reads the secret
  itself: the manager's API is the boundary, not the label.)
- **Templating**: `template_driver: golang` makes the object with the engine's
  `Templating`; the swarm renders it in each task ({{ .Service.Name }}, ...).
- **A changed content, labels or template driver**: a swarm's secrets and configs cannot
  change their content or templating (only their labels can), and `docker stack deploy`
  fails on one whose content changed. So the new one is made beside the old one, as
  `<name>-<8 hex of its digest>`, and the services get that one: their spec changes, so
  their hash does, and they are updated (with their update_config). A labels change is
  made the same way, though the engine could update labels in place (stack deploy does):
  one rule for every change, and a failed run's rollback gives the services back the old
  object with its old labels (an update in place would outlive the rollback; the SDK has
  no update call either). The old one is removed once no service refers to it (the swarm
  refuses to remove one in use). A later change takes the plain name again if it is free.
- **References**: the file at the plan's target (`/run/secrets/<source>`, `/<source>`
  or the long form's), with `uid`/`gid` (default "0") and `mode` (0444), as the services
  API's SecretReferences/ConfigReferences. The service's config hash takes them (by
  name: an id is known only once the object is made, `with_ids`) and each content's
  digest, so a changed secret updates the service.

Pure, but `contents` (reads the plan's files on the host that runs ollamatopo).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamatopo._errors import PlanProblem
from ollamatopo.engine._payloads import LABEL_HASH, LABEL_PROJECT, LABEL_RUN, config_hash
from ollamatopo.engine._swarm import LABEL_DIGEST, ObjectKind, ObservedObject, ServiceConfig
from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._model import FileObjectSpec, Plan

ObjectKey = tuple[str, str]  # (secrets or configs, the plan's name of it)
SUFFIX_HEX = 8  # of the digest, in the name of a changed content's object
ROOT_ID = "0"  # a reference's uid and gid unless the plan gives them (compose's default)
REFERENCES = {"secrets": ("Secrets", "Secret"), "configs": ("Configs", "Config")}
EMPTY_DIGEST = file_objects.digest(b"")


@dataclass(frozen=True)
class SwarmObject:
    """A secret or config the plan's services get, as the swarm is to hold it."""

    kind: ObjectKind
    key: str  # the plan's name
    name: str  # the swarm's
    digest: str = ""  # of its content; "" for an external one
    id: str = ""  # the swarm's; "" while it is still to be made
    external: bool = False
    content: bytes = field(default=b"", repr=False, compare=False)  # what it is made of
    given: Mapping[str, str] = field(default_factory=dict, compare=False)  # the plan's labels
    template_driver: str = ""  # "" for none (the digest takes it)

    def labels(self, project: str, run_id: str) -> dict[str, str]:
        return {**self.given, LABEL_PROJECT: project, LABEL_RUN: run_id,
                LABEL_DIGEST: self.digest}


def wanted(plan: Plan) -> list[ObjectKey]:
    """The secrets and configs some service of the plan gets."""
    return sorted(file_objects.used(plan))


def base_name(plan: Plan, kind: str, key: str) -> str:
    """The swarm's name, as `docker stack deploy` gives it."""
    spec = _spec(plan, kind, key)
    return spec.name or (key if spec.external else f"{plan.project}_{key}")


def identity(spec: FileObjectSpec, content: bytes) -> str:
    """What LABEL_DIGEST holds: the content's SHA-256 when the plan gives neither labels
    nor a template driver (as before they were carried out, so an object made then is
    still the plan's), else the SHA-256 of the content's digest with them."""
    digest = file_objects.digest(content)
    if not spec.labels and not spec.template_driver:
        return digest
    shaped = {"content": digest, "labels": dict(spec.labels),
              "template_driver": spec.template_driver or ""}
    return file_objects.digest(json.dumps(shaped, sort_keys=True).encode())


def object_problems(plan: Plan) -> Iterator[PlanProblem]:
    """What a swarm cannot take: an empty content (one engine writes no file for it)."""
    for kind, key in wanted(plan):
        if _spec(plan, kind, key).digest == EMPTY_DIGEST:
            yield PlanProblem(f"{kind}.{key}", f"it is empty, and a swarm takes no empty "
                                               f"{kind[:-1]} (docker stack deploy fails on "
                                               "it too): give it content")


def contents(plan: Plan, base: Path) -> tuple[dict[ObjectKey, bytes], list[PlanProblem]]:
    """The content of each one to make (`base`: the plan's folder), read now: a file's
    as it is at this `up`, not as the loader digested it."""
    found: dict[ObjectKey, bytes] = {}
    problems = []
    for kind, key in wanted(plan):
        spec = _spec(plan, kind, key)
        if spec.external:
            continue
        if spec.file is None:
            found[kind, key] = file_objects.encoded(spec.value or "")
            continue
        try:
            found[kind, key] = file_objects.source_path(spec, base).read_bytes()
        except OSError as error:
            problems.append(PlanProblem(f"{kind}.{key}.file", f"cannot read it: "
                                        f"{error.strerror or error}"))
    return found, problems


def placed(plan: Plan, content: Mapping[ObjectKey, bytes],
           observed: Sequence[ObservedObject]) -> tuple[dict[ObjectKey, SwarmObject],
                                                        list[PlanProblem]]:
    """Under which name each wanted one is on the swarm, given those the swarm has
    (`observed`: at least those named like the plan's): one holding the same content,
    labels and template driver (its digest) is used as it is; else the plain name if free,
    else the digest-suffixed one. A missing external one is a problem, naming the command
    that makes it."""
    have = {(item.kind, item.name): item for item in observed}
    objects: dict[ObjectKey, SwarmObject] = {}
    problems = []
    for kind, key in wanted(plan):
        name, singular, spec = base_name(plan, kind, key), kind[:-1], _spec(plan, kind, key)
        if spec.external:
            found = have.get((kind, name))
            if found is None:
                problems.append(PlanProblem(f"{kind}.{key}", f"it is external and the swarm "
                                            f"has no {singular} {name}: make it with "
                                            f"docker {singular} create {name} FILE"))
            else:
                objects[kind, key] = SwarmObject(kind, key, name, id=found.id,
                                                 external=True)
            continue
        digest = identity(spec, content[kind, key])
        names = (name, f"{name}-{digest[:SUFFIX_HEX]}")
        same = [have[kind, n] for n in names if (kind, n) in have
                and have[kind, n].digest == digest]
        free = [n for n in names if (kind, n) not in have]
        if same:
            objects[kind, key] = SwarmObject(kind, key, same[0].name, digest,
                                             same[0].id)
        elif free:
            objects[kind, key] = SwarmObject(kind, key, free[0], digest,
                                             content=content[kind, key], given=spec.labels,
                                             template_driver=spec.template_driver or "")
            # another key of the plan with this name and content takes it too
            have[kind, free[0]] = ObservedObject(kind, "", free[0], digest, "")
        else:
            problems.append(PlanProblem(f"{kind}.{key}", f"the swarm's {singular}s {names[0]} "
                                        f"and {names[1]} both hold another one: remove "
                                        f"the one no service uses (docker {singular} rm)"))
    return objects, problems


def with_objects(config: ServiceConfig, plan: Plan,
                 objects: Mapping[ObjectKey, SwarmObject]) -> ServiceConfig:
    """The service's config with the secrets and configs it gets, its hash taking them
    (a service that gets none keeps its config and hash)."""
    granted = list(file_objects.granted(plan, plan.services[config.service]))
    if not granted:
        return config
    references: dict[str, list[dict[str, Any]]] = {}
    for item in granted:
        plural, prefix = REFERENCES[item.kind]
        used = objects[item.kind, item.grant.source]
        references.setdefault(plural, []).append({
            "File": {"Name": item.grant.target, "UID": item.grant.uid or ROOT_ID,
                     "GID": item.grant.gid or ROOT_ID, "Mode": item.mode},
            f"{prefix}Name": used.name})
    kwargs = _with_container(config.create_kwargs, references)
    digest = config_hash({**kwargs, "files": [
        [item.kind, item.grant.source, objects[item.kind, item.grant.source].digest]
        for item in granted]})  # a digest of each content, never a value
    return dataclasses.replace(config, create_kwargs=kwargs, config_hash=digest,
                               labels={**config.labels, LABEL_HASH: digest})


def with_ids(config: ServiceConfig, ids: Mapping[tuple[str, str], str]) -> ServiceConfig:
    """The references given the swarm's ids (`ids`: (kind, swarm name) -> id), as the
    services API wants them; the hash stays (it is taken by name)."""
    container = config.create_kwargs["task_template"]["ContainerSpec"]
    references = {}
    for kind, (plural, prefix) in REFERENCES.items():
        if plural in container:
            references[plural] = [{**reference, f"{prefix}ID": ids[kind, reference[
                f"{prefix}Name"]]} for reference in container[plural]]
    if not references:
        return config
    return dataclasses.replace(config,
                               create_kwargs=_with_container(config.create_kwargs, references))


def stale(observed: Sequence[ObservedObject],
          objects: Mapping[ObjectKey, SwarmObject]) -> list[ObservedObject]:
    """The project's objects the plan no longer gets (an older content, or one the plan
    dropped): to be removed once no service refers to them."""
    current = {(item.kind, item.name) for item in objects.values()}
    return [item for item in observed if (item.kind, item.name) not in current]


def _with_container(kwargs: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    task = kwargs["task_template"]
    return {**kwargs, "task_template": {**task, "ContainerSpec": {**task["ContainerSpec"],
                                                                    **more}}}


def _spec(plan: Plan, kind: str, key: str) -> FileObjectSpec:
    found: FileObjectSpec = getattr(plan, kind)[key]
    return found
