"""Compose's secrets and configs on one engine, as compose v2 carries them out.

Top-level `secrets:` and `configs:` name where each one's content comes from: `file:`
(relative to the compose file's folder), `environment:` (a variable of the project's
environment: the process's over `.env`) or, for a config only, `content:` (inline,
interpolated). A service's `secrets:`/`configs:` list the ones it gets, by name or in
the long form `{source, target, uid, gid, mode}`. What compose v2 (pkg/compose, v2.40)
does with them, and so what ollamatopo does:

- where: a secret at `/run/secrets/<source>`, or its `target` (a relative one under
  /run/secrets); a config at `/<source>`, or its `target` (a relative one under /);
- a `file:` source is bind-mounted read-only; `uid`, `gid` and `mode` do not apply to it
  (the file keeps its owner and mode; compose warns and ignores them, so does ollamatopo);
- an `environment:` or `content:` source is copied into the container after it is
  created and before it starts (a tar put at /), with `mode` (default 0444) and, when
  `uid` or `gid` is given, that owner (else root); an empty value makes no file (compose
  skips it too), and a `read_only` container cannot take one (compose refuses it too);
- `name`, `external`, `labels` and `template_driver` shape swarm objects: `--backend swarm`
  makes each one a swarm secret or config (engine/_swarm_objects.py) with those labels and
  that templating. One engine has no use for a name, ignores labels with a warning (compose
  ignores them silently), and refuses an external one or a template driver, as compose
  does (`on_one_engine`). A secret's `driver` and `driver_opts` (a secrets driver plugin
  on the swarm gives the value) are refused: ollamatopo does not carry them out.

Beyond compose: the container's config hash takes a digest of each one's content, so a
changed secret recreates the container at the next `up` (compose's hash has only the
names), and no value is ever printed: `config` shows the definitions, as compose does.

Pure: the compose tree in, the plan's tree and problems out; the loader reads the files.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamatopo._errors import PlanProblem
from ollamatopo.plan._compose import Translation, _mapping, _swarm_only
from ollamatopo.plan._model import FileGrant, FileObjectSpec, Plan, ServiceSpec

KINDS = ("secrets", "configs")
BASE = {"secrets": "/run/secrets", "configs": ""}  # where a relative target goes
SOURCES = {"secrets": ("file", "environment"), "configs": ("file", "environment", "content")}
PLUGIN_KEYS = {"secrets": ("driver", "driver_opts"), "configs": ()}  # refused: PLUGIN
SWARM_KEYS = ("name", "external", "labels", "template_driver")  # engine/_swarm_objects.py
TEMPLATE_DRIVERS = ("golang",)  # the engine's only one (swarmkit's Go templates)
PLUGIN = ("not supported yet: a secrets driver plugin installed on the swarm gives this "
          "secret its value (docker stack deploy asks the one named), and ollamatopo does "
          "not ask one (no such plugin to test it with; compose refuses it on one engine): "
          "give the value with file: or environment:, or make the secret beforehand and "
          "use external: true")
GRANT_KEYS = ("source", "target", "uid", "gid", "mode")
FIELD = {"secrets": "secret_files", "configs": "config_files"}  # the service's, in the plan
DEFAULT_MODE = 0o444  # of a copied file (compose's createTar)


def translate(out: Translation, tree: dict[str, Any], services: dict[Any, Any]) -> None:
    """The top-level secrets and configs, and each enabled service's use of them, into
    `out.tree` (whose services are translated already)."""
    for kind in KINDS:
        declared = tree.get(kind)
        if declared is not None and not isinstance(declared, dict):
            out.problems.append(PlanProblem(kind, f"expected a mapping of names to "
                                            f"{{{' | '.join(SOURCES[kind])}: ...}}"))
        objects = {str(name): _object(out, kind, str(name), spec)
                   for name, spec in _mapping(declared).items()}
        out.tree[kind] = {name: spec for name, spec in objects.items() if spec is not None}
    for name, spec in services.items():
        service = out.tree["services"].get(name)
        if not isinstance(spec, dict) or not isinstance(service, dict):
            continue
        at = f"services.{name}"
        for kind in KINDS:
            if kind in spec:
                service[FIELD[kind]] = _grants(out, kind, at, spec, _mapping(tree.get(kind)))
                out.sources[f"{at}.{FIELD[kind]}"] = f"{at}.{kind}"


def _object(out: Translation, kind: str, name: str, spec: object) -> dict[str, Any] | None:
    at, sources = f"{kind}.{name}", SOURCES[kind]
    if not isinstance(spec, dict):
        out.problems.append(PlanProblem(at, f"expected a mapping with one of "
                                            f"{', '.join(sources)}"))
        return None
    plugin = [key for key in spec if key in PLUGIN_KEYS[kind]]
    for key in plugin:
        out.problems.append(PlanProblem(f"{at}.{key}", PLUGIN))
    for key in spec:
        if key not in (*sources, *PLUGIN_KEYS[kind], *SWARM_KEYS) and not str(
                key).startswith("x-"):
            out.problems.append(PlanProblem(f"{at}.{key}", f"unknown key: a {kind[:-1]} "
                                            f"takes {', '.join((*sources, *SWARM_KEYS))}"))
    given = [key for key in sources if spec.get(key) is not None]
    named = _swarm_keys(out, at, spec, given)
    if plugin or named is None:
        return None
    if named.get("external"):
        return named
    if len(given) != 1:
        out.problems.append(PlanProblem(at, f"give exactly one of {', '.join(sources)} "
                                            f"(found: {', '.join(given) or 'none'}); compose "
                                            "refuses it too"))
        return None
    key = given[0]
    if not isinstance(spec[key], str) or (key != "content" and not spec[key]):
        what = "text" if key == "content" else "a path" if key == "file" else "a variable name"
        out.problems.append(PlanProblem(f"{at}.{key}", f"expected {what}"))
        return None
    return {key: spec[key], **named}


def _swarm_keys(out: Translation, at: str, spec: dict[Any, Any],
                given: list[str]) -> dict[str, Any] | None:
    """`name`, `external`, `labels` and `template_driver`, as written (None, and a
    problem, when they cannot be)."""
    problems = len(out.problems)
    name, external = spec.get("name"), spec.get("external", False)
    shaped = _shaping_keys(out, at, spec, external is True)
    if name is not None and not (isinstance(name, str) and name):
        out.problems.append(PlanProblem(f"{at}.name", "expected a name"))
    if not isinstance(external, bool):
        out.problems.append(PlanProblem(f"{at}.external", "expected true or false (the "
                                        "swarm's name of it goes in name:)"))
    elif external and given:
        out.problems.append(PlanProblem(at, f"an external one has no {given[0]}: the swarm "
                                            "holds its content (compose refuses both too)"))
    if len(out.problems) > problems:
        return None
    named = {key: value for key, value in (("name", name), ("external", external)) if value}
    return {**named, **shaped}


def _shaping_keys(out: Translation, at: str, spec: dict[Any, Any],
                  external: bool) -> dict[str, Any]:
    """`labels` (the model reads their two forms) and `template_driver`: what the swarm's
    object is made with besides its content. Labels are a swarm setting one engine ignores,
    and says so; a template driver one engine refuses (`on_one_engine`). An external one's
    are ignored, and said: it is only looked up."""
    shaped = {key: spec[key] for key in ("labels", "template_driver") if spec.get(key)}
    if external and shaped:
        out.warnings.append(f"{at}: {' and '.join(shaped)} of an external one are ignored: "
                            "it is only looked up, as the swarm holds it (docker stack deploy "
                            "ignores them too)")
        return {}
    if "labels" in shaped:
        _swarm_only(out, f"{at}.labels", shaped["labels"])
    driver = shaped.get("template_driver")
    if driver is not None and driver not in TEMPLATE_DRIVERS:
        out.problems.append(PlanProblem(f"{at}.template_driver", f"{driver!r} is no template "
                                        "driver of the swarm: golang is its only one (Go "
                                        "templates, {{ .Service.Name }} and the like)"))
    return shaped


def _grants(out: Translation, kind: str, at: str, spec: dict[str, Any],
            declared: dict[Any, Any]) -> list[dict[str, Any]]:
    items = spec[kind]
    if not isinstance(items, list):
        out.problems.append(PlanProblem(f"{at}.{kind}", f"expected a list of {kind} names, "
                                        "or of {source, target, uid, gid, mode}"))
        return []
    grants: list[dict[str, Any]] = []
    targets: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"{at}.{kind}[{index}]"
        grant = _grant(out, kind, where, item, declared)
        if grant is None:
            continue
        if grant["target"] in targets:
            out.problems.append(PlanProblem(where, f"{grant['target']} is also the target "
                                            f"of {kind}[{targets[grant['target']]}]: give "
                                            "each its own target"))
            continue
        targets[grant["target"]] = index
        source = _mapping(declared.get(grant["source"]))
        if source.get("file") is not None:
            if set(grant) & {"uid", "gid", "mode"}:
                out.warnings.append(f"{where}: uid, gid and mode do not apply to a file "
                                    "source: it is bind-mounted read-only with the file's own "
                                    "owner and mode (compose ignores them too; a swarm "
                                    "applies them)")
        elif spec.get("read_only") is True and not source.get("external"):
            out.problems.append(PlanProblem(where, "a read_only container cannot take a "
                                            f"{kind[:-1]} from environment or content (it is "
                                            "copied in; compose refuses it too): use a file: "
                                            "source, or drop read_only"))
            continue
        grants.append(grant)
    return grants


def _grant(out: Translation, kind: str, where: str, item: object,
           declared: dict[Any, Any]) -> dict[str, Any] | None:
    """One entry of a service's list, with its target resolved; None (and a problem)
    when it cannot be used."""
    problems = len(out.problems)
    grant = {"source": item} if isinstance(item, str) else dict(_mapping(item))
    if not isinstance(item, str | dict):
        out.problems.append(PlanProblem(where, "expected a name, or {source, target, uid, "
                                               "gid, mode}"))
        return None
    for key in grant:
        if key not in GRANT_KEYS and not str(key).startswith("x-"):
            out.problems.append(PlanProblem(f"{where}.{key}", "unknown key: takes "
                                            + ", ".join(GRANT_KEYS)))
    source = grant.get("source")
    if not isinstance(source, str) or not source:
        out.problems.append(PlanProblem(f"{where}.source", f"name one of the top-level {kind}"))
    elif source not in declared:
        out.problems.append(PlanProblem(where, f"{kind[:-1]} {source!r} is not declared: "
                                        f"declare it under the top-level {kind}, or correct "
                                        "the name (compose refuses it too)"))
    target = grant.get("target", source)
    if not isinstance(target, str) or not target:
        out.problems.append(PlanProblem(f"{where}.target", "expected a path"))
    for key in ("uid", "gid"):
        if key in grant and not (isinstance(grant[key], str) and grant[key].isascii()
                                 and grant[key].isdigit()):
            out.problems.append(PlanProblem(f"{where}.{key}", f"expected a number in quotes, "
                                            f'for example {key}: "1000" (compose wants text)'))
    mode = _mode(grant.get("mode"))
    if mode is None and grant.get("mode") is not None:
        out.problems.append(PlanProblem(f"{where}.mode", "expected a file mode: 0440, or "
                                                         "\"0440\" (octal)"))
    if len(out.problems) > problems or str(source) not in declared:
        return None
    resolved = {key: grant[key] for key in ("uid", "gid") if key in grant}
    if mode is not None:
        resolved["mode"] = mode
    path = str(target) if str(target).startswith("/") else f"{BASE[kind]}/{target}"
    return {"source": source, "target": posixpath.normpath(path), **resolved}


def _mode(value: object) -> int | None:
    """compose-go's reading: a number as it is (YAML's 0440 is octal already), text as
    octal."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            return None
    return value if isinstance(value, int) and 0 <= value <= 0o7777 else None


# --- what the engine side and `config` use -------------------------------------------------


@dataclass(frozen=True)
class Granted:
    """One file a service's container gets: which object, and how."""

    kind: str  # secrets or configs
    grant: FileGrant
    spec: FileObjectSpec

    @property
    def bound(self) -> bool:
        """A file source, bind-mounted (else copied in before the start)."""
        return self.spec.file is not None

    @property
    def mode(self) -> int:
        return DEFAULT_MODE if self.grant.mode is None else self.grant.mode


def granted(plan: Plan, spec: ServiceSpec) -> Iterator[Granted]:
    for kind in KINDS:
        objects: dict[str, FileObjectSpec] = getattr(plan, kind)
        for grant in getattr(spec, FIELD[kind]):
            if grant.source in objects:
                yield Granted(kind, grant, objects[grant.source])


def undeclared(plan: Plan) -> Iterator[PlanProblem]:
    """A service's entry naming no top-level one (a compose file's are refused when it is
    translated; this is for a plan written in ollamatopo's own dialect)."""
    for name, spec in plan.services.items():
        for kind in KINDS:
            for index, grant in enumerate(getattr(spec, FIELD[kind])):
                if grant.source not in getattr(plan, kind):
                    yield PlanProblem(f"services.{name}.{FIELD[kind]}[{index}]",
                                      f"{kind[:-1]} {grant.source!r} is not declared: declare "
                                      f"it under the top-level {kind}")


def on_one_engine(plan: Plan) -> Iterator[PlanProblem]:
    """A service getting an external one (a swarm's, which one engine cannot read) or a
    templated one (the swarm renders it per task; one engine has no renderer)."""
    for name, spec in plan.services.items():
        for kind in KINDS:
            for index, grant in enumerate(getattr(spec, FIELD[kind])):
                found = getattr(plan, kind).get(grant.source)
                at, what = f"services.{name}.{kind}[{index}]", f"{kind[:-1]} {grant.source!r}"
                if found is not None and found.external:
                    yield PlanProblem(at, f"{what} is external: a swarm's (--backend swarm "
                                          "looks it up); one engine has none (compose "
                                          "refuses it too)")
                elif found is not None and found.template_driver:
                    yield PlanProblem(at, f"{what} has template_driver: "
                                          f"{found.template_driver}: the swarm renders it "
                                          "in each task (--backend swarm); one engine "
                                          "cannot (compose refuses it too): drop "
                                          "template_driver to get the text as written")


def used(plan: Plan) -> set[tuple[str, str]]:
    """(kind, name) of the secrets and configs some service gets."""
    return {(item.kind, item.grant.source) for spec in plan.services.values()
            for item in granted(plan, spec)}


def encoded(value: str) -> bytes:
    """A value as the container gets it (a variable's undecodable bytes as they were)."""
    return value.encode("utf-8", "surrogateescape")


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def source_path(spec: FileObjectSpec, base: Path) -> Path:
    """A file source's path on the host (`base`: the compose file's folder), as a bind
    mount's source is found."""
    return (base / Path(spec.file or "").expanduser()).resolve()


def definition(spec: FileObjectSpec, base: Path) -> dict[str, Any]:
    """A top-level secret or config as compose's `config` prints it: its source (a file's
    path absolute), never a value."""
    named: dict[str, Any] = {"name": spec.name} if spec.name else {}
    if spec.external:
        return {**named, "external": True}
    if spec.labels:
        named["labels"] = dict(spec.labels)
    if spec.template_driver:
        named["template_driver"] = spec.template_driver
    if spec.file is not None:
        return {"file": str(source_path(spec, base)), **named}
    if spec.environment is not None:
        return {"environment": spec.environment, **named}
    return {"content": spec.content, **named}


def usage(grant: FileGrant) -> dict[str, Any]:
    """A service's entry, in the long form (the target resolved; the mode in octal text,
    as compose prints it)."""
    written = grant.model_dump(exclude_none=True)
    if grant.mode is not None:
        written["mode"] = f"0{grant.mode:o}"
    return written
