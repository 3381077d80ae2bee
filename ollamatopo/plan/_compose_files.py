"""Compose's `extends` and `include`: services and resources written in other places, brought
into the plan's compose tree as compose v2 (compose-go's loader) brings them, before the plan
is interpolated and translated.

- `extends` (a service's name, or `{service, file}`): the base service, itself extended first,
  merged under the extending one by the rules `-f` files merge with (`merge_compose`). Every
  key is taken, `depends_on` and `volumes_from` too: compose v2 copies them (the service they
  name must then be in the project). A base in another file is read with the same variables,
  and its relative paths count from that file's folder. A chain that comes back to a service
  is refused, naming the chain.
- `include` (paths, or `{path, project_directory, env_file}`): each entry is a part of the
  project on its own. Its files (`path` as a list: the later ones merged over the first) are
  read with the including part's variables over the part's own `.env` (in its project
  directory) or `env_file`s; its relative paths count from its project directory (the first
  file's folder unless `project_directory` says otherwise); its own extends and includes are
  resolved, and a bare `KEY` in a list-form `environment` takes the part's value. Its services,
  networks, volumes, secrets and configs join the including file's; a name the file (or an
  earlier include) defines otherwise is refused, as compose refuses it. An include that comes
  back to a file is refused, naming the chain.
- File by file, in compose's order: extends, then include; then the `-f` files are merged.
  Extends sees the services of its own file only (not those of an include or of another `-f`
  file), as in compose.
- A file's `!reset` and `!override` values (_compose_tags) take their places out of what it
  is merged over: an `-f` file's out of the files before it, a later file's of an include's
  path list out of the earlier ones, a service's own out of the base it extends.

A file from elsewhere is interpolated on its own, with its part's variables, and its `$`
written `$$` again: the plan's own interpolation, which comes after, gives back exactly that
text. Where each value was written is kept (`Origins`), so that a problem found later names the
file and line it comes from. Pure: the loader reads the files (`Files`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ollamatopo._errors import PlanError, PlanProblem
from ollamatopo.plan._compose import EXTENSION, TOP_LEVEL, merge_compose
from ollamatopo.plan._compose_canonical import Folders, canonical
from ollamatopo.plan._compose_tags import KeyPath, under, without
from ollamatopo.plan._interpolate import escaped

RESOURCES = ("services", "volumes", "networks", "secrets", "configs")  # what include brings
INCLUDE_KEYS = {"path", "project_directory", "env_file"}
EXTENDS_KEYS = {"service", "file"}
# Build contexts compose leaves as they are: URLs, git references, other services' images.
REMOTE = ("https://", "http://", "git://", "ssh://", "github.com/", "git@", "service:")
# List items are matched to the item they came from by content, within this many (a plan's
# lists are short; past it an item is placed by its list only).
MAX_MATCHED_ITEMS = 200

_LAST_PART = re.compile(r"(?:\.[^.\[]*|\[\d+\])$")  # .key or [index]
T = TypeVar("T")


def nearest(path: str, known: Mapping[str, T]) -> tuple[str, T] | None:
    """The entry of `path` in `known`, else of the nearest part that holds it (the mapping of
    a missing key, an entry written through a variable), short of a whole top-level section."""
    while path not in known:
        parent = _LAST_PART.sub("", path)
        if parent == path or not _LAST_PART.search(parent):
            return None
        path = parent
    return path, known[path]


@dataclass(frozen=True)
class Origin:
    """Where a value of the merged compose tree was written."""

    file: Path
    path: str  # its path in that file
    line: int | None
    via: int | None = None  # the line of the plan file's `include` that brought it in


class Origins:
    """Where each path of the plan's compose tree was written: the plan file, an override, an
    extended service, an included file. A problem found in the merged tree names that place."""

    def __init__(self, main: Path) -> None:
        self.main = main
        self.paths: dict[str, Origin] = {}

    def alias(self, sources: Mapping[str, str]) -> None:
        """The plan's paths that came from other compose paths (`after` from `depends_on`)."""
        for plan, source in sources.items():
            origin = self.paths.get(source)
            if origin is not None and plan not in self.paths:
                self.paths[plan] = replace(origin, path=plan) if origin.path == source else origin

    def explained(self, error: PlanError) -> PlanError:
        """`error` (about the plan file) with each problem that is about a value written
        elsewhere naming where: the line of the same file, or another file and its line."""
        if error.source != str(self.main) or not self.paths:
            return error  # raised while reading another file (which it names), or no compose
        problems = [self._explained(problem) for problem in error.problems]
        if problems == list(error.problems):
            return error
        return PlanError(error.source, problems, error.summary)

    def _explained(self, problem: PlanProblem) -> PlanProblem:
        found = nearest(problem.path, self.paths)
        if found is None:
            return problem
        at, origin = found
        if origin.file == self.main:
            if origin.path == at:
                return problem
            return PlanProblem(problem.path, f"{problem.message} (inherited from "
                                             f"{origin.path})", origin.line)
        where = _shown(origin.file, self.main)
        if origin.line is not None:
            where += f" line {origin.line}"
        if origin.via is not None:
            where += f", included at line {origin.via}"
        return PlanProblem(problem.path, f"{problem.message} (written in {where})")


@dataclass(frozen=True)
class Written:
    """A compose file as read: its tree, the line of each of its paths, and the places whose
    value in the files before it this file removes or replaces whole (its `!reset` and
    `!override` values, _compose_tags)."""

    tree: dict[str, Any]
    lines: dict[str, int]
    overridden: frozenset[KeyPath] = frozenset()


class Files(Protocol):
    """What resolving needs read; the loader gives it (this module reads nothing itself)."""

    def read(self, path: Path) -> Written | None:
        """The compose file at `path`; None when there is no such file."""

    def exists(self, path: Path) -> bool:
        """Whether `path` is a file."""

    def interpolated(self, tree: Any, lines: Mapping[str, int], path: Path,
                     variables: Mapping[str, str]) -> Any:
        """`tree` (of the file at `path`) with its variables replaced; a PlanError naming
        `path` when a required one is not set."""

    def variables(self, parent: Mapping[str, str], env_files: Sequence[Path],
                  base: Path) -> Mapping[str, str]:
        """`parent`'s variables over those of `env_files` (an included part's)."""


@dataclass(frozen=True)
class Part:
    """A part of the project: the folder its relative paths count from, and its variables."""

    base: Path
    variables: Mapping[str, str]


@dataclass
class _Doc:
    """A compose file as it is being resolved."""

    path: Path
    tree: dict[str, Any]
    lines: Mapping[str, int]
    part: Part
    origins: dict[str, Origin]
    overridden: frozenset[KeyPath] = frozenset()  # its `!reset` and `!override` places
    # Each definition an include brought, as compose compares it with a later one (its
    # canonical form): `services.db` -> definition.
    compared: dict[str, Any] = field(default_factory=dict)


def resolve(files: Files, origins: Origins, main: Written,
            overrides: Sequence[tuple[Path, Written]],
            variables: Mapping[str, str]) -> dict[str, Any]:
    """The compose tree of the plan file (`origins.main`, read: `main`), with the
    `overrides` (-f files, read) merged over it, each file's `extends` and `include` resolved
    first. Relative paths of the plan's own files still count from its folder; `origins` gets
    where every path was written."""
    part = Part(origins.main.parent, variables)
    resolver = _Resolver(files, origins.main)
    done = resolver.file(_doc(origins.main, main, part), top=True)
    for path, over in overrides:
        done = _merged(done, resolver.file(_doc(path, over, part)))
    origins.paths = done.origins
    return done.tree


class _Resolver:
    def __init__(self, files: Files, main: Path) -> None:
        self.files = files
        self.main = main  # the plan file: problems show paths from its folder
        self._read: dict[tuple[Path, Path, int], _Doc] = {}  # (file, base, variables) -> doc

    def file(self, doc: _Doc, chain: tuple[Path, ...] = (), top: bool = False) -> _Doc:
        """`doc` with its services' extends resolved, then its includes brought in. `chain`:
        the files that include it; `top`: it is the plan file (its include lines are shown)."""
        doc.tree = dict(doc.tree)  # aliases share what they repeat: change copies only
        doc.compared = {}
        services = doc.tree.get("services")
        if isinstance(services, dict):
            doc.tree["services"] = dict(services)
            for name in services:
                self._extended(doc, name, ())
        if "include" in doc.tree:
            self._include(doc, doc.tree.pop("include"), (*chain, _identity(doc.path)), top)
        return doc

    # --- extends ------------------------------------------------------------------------------

    def _extended(self, doc: _Doc, name: Any, chain: tuple[tuple[Path, str], ...]) -> Any:
        """The service `name` of `doc` with its extends resolved; written back into `doc`, so
        each is resolved once. `chain`: the services that extend it, for cycles."""
        at = f"services.{name}"
        service = doc.tree["services"][name]
        if not isinstance(service, dict) or "extends" not in service:
            return service
        link = (_identity(doc.path), str(name))
        if link in chain:
            steps = [f"{step} ({_shown(path, self.main)})" for path, step in (*chain, link)]
            raise _problem(doc, f"{at}.extends", "extends comes back to a service: "
                           + " extends ".join(steps) + "; remove one of these extends")
        base_doc, ref = self._base(doc, name, service["extends"])
        base = self._extended(base_doc, ref, (*chain, link))
        if not isinstance(base, dict):
            raise _problem(doc, f"{at}.extends", f"the service {ref!r} it extends is not a "
                                                 "mapping")
        own = {key: value for key, value in service.items() if key != "extends"}
        base = without(base, under(doc.overridden, ("services", str(name))))
        merged = merge_compose({"services": {name: base}}, {"services": {name: own}})
        service = merged["services"][name]
        doc.tree["services"][name] = service
        doc.origins.update(_traced(service, at, [(base, f"services.{ref}", base_doc.origins),
                                                 (own, at, doc.origins)]))
        return service

    def _base(self, doc: _Doc, name: Any, extends: Any) -> tuple[_Doc, str]:
        """The file and the name of the service that `extends` (of service `name`) names."""
        at = f"services.{name}.extends"
        value = self._value(doc, extends, "services", name, "extends")
        if isinstance(value, dict) and set(value) <= EXTENDS_KEYS \
                and isinstance(value.get("service"), str) \
                and isinstance(value.get("file", ""), str):
            ref, file = value["service"], value.get("file")
        elif isinstance(value, str):
            ref, file = value, None
        else:
            raise _problem(doc, at, "expected the name of a service, or a mapping with "
                                    "service (and file)")
        base_doc = doc
        if file is not None:
            path = _join(doc.part.base, file)
            base_doc = self._load(path, Part(path.parent, doc.part.variables), doc,
                                  f"{at}.file")
        services = base_doc.tree.get("services")
        if not isinstance(services, dict) or ref not in services:
            place = "" if file is None else f" in {_shown(base_doc.path, self.main)}"
            raise _problem(doc, at, f"cannot extend {ref!r}: there is no such service{place} "
                                    "(extends sees the services of its file only)")
        return base_doc, ref

    # --- include ------------------------------------------------------------------------------

    def _include(self, doc: _Doc, entries: Any, chain: tuple[Path, ...], top: bool) -> None:
        entries = self._value(doc, entries, "include")
        if not isinstance(entries, list):
            raise _problem(doc, "include", "expected a list of paths, or of mappings with "
                                           "path, project_directory, env_file")
        for index, entry in enumerate(entries):
            where = f"include[{index}]"
            part_doc = self._project(doc, where, entry, chain)
            self._import(doc, where, part_doc, top)

    def _project(self, doc: _Doc, where: str, entry: Any, chain: tuple[Path, ...]) -> _Doc:
        """The project part an include entry names: its files read, resolved and merged."""
        path_at = f"{where}.path"
        if isinstance(entry, str):  # the short form
            entry, path_at = {"path": entry}, where
        if not isinstance(entry, dict) or "path" not in entry:
            raise _problem(doc, where, "expected a path, or a mapping with path (and "
                                       "project_directory, env_file)")
        unknown = sorted(set(entry) - INCLUDE_KEYS, key=str)
        if unknown:
            raise _problem(doc, f"{where}.{unknown[0]}", "unknown key: an include takes path, "
                                                         "project_directory, env_file")
        paths = _listed(doc, entry["path"], path_at)
        directory = entry.get("project_directory")
        if directory is not None and not isinstance(directory, str):
            raise _problem(doc, f"{where}.project_directory", "expected a path")
        first = paths[0][0]
        base = _join(doc.part.base, directory) if directory else first.parent
        if _identity(first) in chain:
            steps = [_shown(path, self.main) for path in (*chain, first)]
            raise _problem(doc, where, "include comes back to a file: "
                           + " includes ".join(steps) + "; remove one of these includes")
        part = Part(base, self.files.variables(doc.part.variables,
                                               self._env_files(doc, where, entry, base), base))
        merged: _Doc | None = None
        for path, at in paths:
            loaded = self._load(path, part, doc, at)
            _check_top_level(loaded)
            loaded = self.file(replace(loaded, origins=dict(loaded.origins)), chain)
            merged = loaded if merged is None else _merged(merged, loaded)
        assert merged is not None  # _listed gives one path at least
        return replace(merged, tree=_bare_environment(merged.tree, part.variables))

    def _env_files(self, doc: _Doc, where: str, entry: dict[Any, Any],
                   base: Path) -> list[Path]:
        """An include's env_files (relative to the including part's folder; each must
        exist), else the `.env` of its project directory when there is one."""
        if entry.get("env_file") is None:
            default = base / ".env"
            return [default] if self.files.exists(default) else []
        found = []
        for path, at in _listed(doc, entry["env_file"], f"{where}.env_file"):
            if not self.files.exists(path):
                raise _problem(doc, at, f"no such file: {path} (the include's env_file)")
            found.append(path)
        return found

    def _import(self, doc: _Doc, where: str, part_doc: _Doc, top: bool) -> None:
        """The resources of an included part, into `doc`; a name `doc` has otherwise is
        refused, as compose refuses it (_compose_canonical: the same definition twice is
        one)."""
        via = nearest(where, doc.lines) if top else None
        folders = Folders(part_doc.part.base, doc.part.base)
        for key in RESOURCES:
            section = part_doc.tree.get(key)
            if section is None:
                continue
            mine = doc.tree.get(key)
            if not isinstance(section, dict) or not isinstance(mine, dict | None):
                place = part_doc if not isinstance(section, dict) else doc
                raise _problem(place, key, "expected a mapping")
            mine = dict(mine or {})
            for name, value in section.items():
                at = f"{key}.{name}"
                theirs = canonical(key, value, folders)
                if name in mine and self._compared(doc, key, name, mine[name]) != theirs:
                    there = part_doc.origins.get(at)
                    other = _shown(there.file if there else part_doc.path, self.main)
                    raise _problem(doc, at, f"defined here and again in {other}, which {where} "
                                            "brings in; compose refuses a name defined twice: "
                                            "rename one, or remove one of them")
                if name not in mine:
                    mine[name] = value
                    doc.compared[at] = theirs
                    doc.origins.update({path: replace(origin, via=via[1] if via else None)
                                        for path, origin in part_doc.origins.items()
                                        if _within(path, at)})
            doc.tree[key] = mine

    def _compared(self, doc: _Doc, key: str, name: Any, value: Any) -> Any:
        """`doc`'s definition of `name`, as compose compares an included one with it: as an
        earlier include brought it, else as written, interpolated (and its `$` written `$$`
        as the part's are). A file from elsewhere that includes has its relative paths
        absolute already, where compose has them as written: a path is all that may
        compare otherwise there."""
        at = f"{key}.{name}"
        if at in doc.compared:
            return doc.compared[at]
        return escaped(self._value(doc, value, key, name))

    # --- reading ------------------------------------------------------------------------------

    def _load(self, path: Path, part: Part, doc: _Doc, where: str) -> _Doc:
        """Another compose file, read once for each part: interpolated with the part's
        variables, its relative paths made absolute from the part's folder, its `$` written
        `$$` again. `where`, in `doc`: what names it (for a missing file)."""
        key = (_identity(path), part.base, id(part.variables))
        if key not in self._read:
            read = self.files.read(path)
            if read is None:
                raise _problem(doc, where, f"no such file: {path}")
            value = self.files.interpolated(read.tree, read.lines, path, part.variables)
            self._read[key] = replace(_doc(path, read, part),
                                      tree=escaped(_absolute(value, part.base)))
        return self._read[key]

    def _value(self, doc: _Doc, value: Any, *keys: Any) -> Any:
        """A value `doc` has at `keys`, its variables replaced: the plan's own files are
        interpolated after resolving, and another file's `$` is written `$$`."""
        tree: Any = value
        for key in reversed(keys):
            tree = {key: tree}
        tree = self.files.interpolated(tree, doc.lines, doc.path, doc.part.variables)
        for key in keys:
            tree = tree[key]
        return tree


# --- merging and where each value was written --------------------------------------------------


def _merged(base: _Doc, over: _Doc) -> _Doc:
    """`over` merged over `base` by compose's rules (what `over` tags `!reset` or
    `!override` taken out of `base` first), and where each value now comes from."""
    kept = without(base.tree, over.overridden)
    tree = merge_compose(kept, over.tree)
    return replace(base, tree=tree, origins=_traced(tree, "", [(kept, "", base.origins),
                                                               (over.tree, "", over.origins)]))


Side = tuple[Any, str, Mapping[str, Origin]]  # a merged tree's source: value, path, origins


def _traced(value: Any, at: str, sides: Sequence[Side],
            out: dict[str, Origin] | None = None) -> dict[str, Origin]:
    """Where each path of `value` (at `at`, merged from `sides`, the later ones winning) was
    written: a key where the last side that has it wrote it; a list item where a side wrote an
    equal item (merging appends lists, so items move)."""
    out = {} if out is None else out
    for _, path, origins in reversed(sides):
        if path in origins:
            out[at] = origins[path]
            break
    if isinstance(value, dict):
        for key, item in value.items():
            _traced(item, _key(at, key), [(written[key], _key(path, key), origins)
                                          for written, path, origins in sides
                                          if isinstance(written, dict) and key in written], out)
    elif isinstance(value, list):
        for index, item in enumerate(value[:MAX_MATCHED_ITEMS]):
            matched = [(written[found], f"{path}[{found}]", origins)
                       for written, path, origins in sides if isinstance(written, list)
                       for found in [_index(written, item)] if found is not None]
            _traced(item, f"{at}[{index}]", matched[-1:], out)
    return out


def _index(items: list[Any], item: Any) -> int | None:
    for index, candidate in enumerate(items[:MAX_MATCHED_ITEMS]):
        if candidate == item:
            return index
    return None


def _key(at: str, key: Any) -> str:
    return f"{at}.{key}" if at else str(key)


def _within(path: str, at: str) -> bool:
    return path == at or path.startswith((f"{at}.", f"{at}["))


def _doc(path: Path, read: Written, part: Part) -> _Doc:
    return _Doc(path, read.tree, read.lines, part, _written(path, read.lines), read.overridden)


def _written(path: Path, lines: Mapping[str, int]) -> dict[str, Origin]:
    return {at: Origin(path, at, line) for at, line in lines.items()}


# --- a file from elsewhere ----------------------------------------------------------------------


def _absolute(tree: Any, base: Path) -> Any:
    """The relative paths compose resolves (build contexts, env and label files, bind mounts,
    extends files, secret and config files), and ollamatopo's load balancer templates, made
    absolute from `base`: a file from elsewhere keeps meaning its own folder's files."""
    if not isinstance(tree, dict):
        return tree
    out = dict(tree)
    services = tree.get("services")
    if isinstance(services, dict):
        out["services"] = {name: _service_paths(spec, base) if isinstance(spec, dict) else spec
                           for name, spec in services.items()}
    for key in ("secrets", "configs"):
        section = tree.get(key)
        if isinstance(section, dict):
            out[key] = {name: _at(item, "file", base, _path) for name, item in section.items()}
    return out


def _service_paths(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(spec)
    build = spec.get("build")
    if isinstance(build, str):
        out["build"] = _context(build, base)
    elif isinstance(build, dict):
        contexts = build.get("additional_contexts")
        build = _at(build, "context", base, _context)
        if isinstance(contexts, dict):
            build["additional_contexts"] = {name: _context(text, base) if isinstance(text, str)
                                            else text for name, text in contexts.items()}
        out["build"] = build
    for key in ("env_file", "label_file"):
        if key in spec:
            out[key] = _files(spec[key], base)
    if isinstance(spec.get("volumes"), list):
        out["volumes"] = [_mount(mount, base) for mount in spec["volumes"]]
    if "extends" in spec:
        out["extends"] = _at(spec["extends"], "file", base, _path)
    extension = spec.get(EXTENSION)
    if isinstance(extension, dict) and "load_balance" in extension:
        out[EXTENSION] = {**extension, "load_balance": _at(extension["load_balance"],
                                                           "template", base, _path)}
    return out


def _at(value: Any, key: str, base: Path, absolute: Callable[[str, Path], str]) -> Any:
    """`value[key]` made absolute, when `value` is a mapping with text there."""
    if isinstance(value, dict) and isinstance(value.get(key), str):
        return {**value, key: absolute(value[key], base)}
    return value


def _files(value: Any, base: Path) -> Any:
    """env_file or label_file: a path, a list of paths, or of `{path, required}`."""
    if isinstance(value, str):
        return _path(value, base)
    if isinstance(value, list):
        return [_path(item, base) if isinstance(item, str) else _at(item, "path", base, _path)
                for item in value]
    return value


def _mount(mount: Any, base: Path) -> Any:
    """A bind mount's host path (`./data:/data`, or `type: bind` with `source`)."""
    if isinstance(mount, str):
        source, colon, rest = mount.partition(":")
        return f"{_path(source, base)}:{rest}" if colon and source.startswith(".") else mount
    if isinstance(mount, dict) and mount.get("type") == "bind":
        return _at(mount, "source", base, _path)
    return mount


def _context(text: str, base: Path) -> str:
    return text if "://" in text or text.startswith(REMOTE) else _path(text, base)


def _path(text: str, base: Path) -> str:
    if not text or text.startswith("~") or os.path.isabs(text):
        return text  # `~` stays for the plan's own expansion, as in the plan file
    return str(_join(base, text))


def _bare_environment(tree: dict[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
    """compose-go's ResolveEnvironment for an included part: a bare `KEY` in a list-form
    `environment` takes the part's value (its .env's too); the map form's `KEY:` is left to the
    plan's own variables, as compose leaves it."""
    services = tree.get("services")
    if not isinstance(services, dict):
        return tree
    resolved = dict(services)
    for name, spec in services.items():
        items = spec.get("environment") if isinstance(spec, dict) else None
        if isinstance(items, list):
            resolved[name] = {**spec, "environment": [_bare(item, variables) for item in items]}
    return {**tree, "services": resolved}


def _bare(item: Any, variables: Mapping[str, str]) -> Any:
    if not isinstance(item, str) or "=" in item or "$" in item:
        return item
    value = variables.get(item)
    return item if value is None else f"{item}={escaped(value)}"


def _check_top_level(doc: _Doc) -> None:
    for key in doc.tree:
        if key not in TOP_LEVEL and not str(key).startswith("x-"):
            raise _problem(doc, str(key), "unknown key: the Compose Specification has no such "
                                          "top-level key")


# --- paths and problems ------------------------------------------------------------------------


def _listed(doc: _Doc, value: Any, where: str) -> list[tuple[Path, str]]:
    """A path or a list of them (relative to `doc`'s part), each with where it is written."""
    if isinstance(value, str) and value:
        return [(_join(doc.part.base, value), where)]
    if isinstance(value, list) and value and all(isinstance(item, str) and item
                                                 for item in value):
        return [(_join(doc.part.base, item), f"{where}[{index}]")
                for index, item in enumerate(value)]
    raise _problem(doc, where, "expected a path or a list of paths")


def _join(base: Path, text: str) -> Path:
    """`text` from `base`, absolute (as compose writes them): a relative path written in a
    file from elsewhere would mean the plan's folder, or a named volume, to the plan."""
    return Path(os.path.abspath(os.path.join(base, text)))


def _identity(path: Path) -> Path:
    """One name for one file, however it was reached (`a/../b.yaml`, relative or not)."""
    return Path(os.path.abspath(path))


def _shown(path: Path, relative_to: Path) -> str:
    """`path` as a problem shows it: from the plan file's folder when it is inside it."""
    try:
        return str(_identity(path).relative_to(_identity(relative_to).parent))
    except ValueError:
        return str(path)


def _problem(doc: _Doc, where: str, message: str) -> PlanError:
    found = nearest(where, doc.lines)
    return PlanError(str(doc.path), [PlanProblem(where, message,
                                                 found[1] if found is not None else None)])
