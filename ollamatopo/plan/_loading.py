"""From a plan file to a validated plan: YAML, `.env`, interpolation, model, references.

Every problem becomes a `PlanProblem` with its path in the file (and its line when
the YAML tells it); all of them are reported together in one `PlanError`.
Reads files, touches nothing else.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import types
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from ollamatopo._errors import PlanError, PlanProblem, UsageError
from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._compose import (
    EXTENSION,
    compose_lines,
    from_compose,
    is_compose,
    normalize_project_name,
    with_default_platform,
)
from ollamatopo.plan._compose_files import Origins, Written, nearest
from ollamatopo.plan._compose_files import resolve as resolve_files
from ollamatopo.plan._compose_tags import TagError, read_tags
from ollamatopo.plan._dialect import dialect_warnings
from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._interpolate import Interpolation, interpolate, parse_dotenv
from ollamatopo.plan._model import (
    MAX_SERVICES,
    NAME_RE,
    SECTIONS,
    FileObjectSpec,
    Labels,
    Plan,
    ServiceSpec,
    check_cycles,
    check_references,
    risky_settings,
)
from ollamatopo.plan._replicas import expand_replicas, replicated
from ollamatopo.plan._secrets import Redactor, is_secret_name, loose_permissions
from ollamatopo.plan._templates import template_problems

# A plan is a few hundred values; past these limits it is an attack or a mistake, and
# loading stays within about a second and a few hundred megabytes.
MAX_VALUES = 200_000  # as aliases expand them
MAX_DEPTH = 64
MAX_WRITTEN_VALUES = 10_000  # as written, before aliases
MAX_FILE_BYTES = 512 * 1024
MAX_AUX_BYTES = 1024 * 1024  # an env_file, `.env` or load balancer template
MAX_OBJECT_BYTES = 16 * 2**20  # a compose secret's or config's file, read for its digest
MAX_EXPANDED_CHARS = 16 * 2**20  # paths and scalars, counted as aliases expand them
MAX_KEY_CHARS = 256
MAX_DIGITS = 100  # an integer longer than this is no port, size or count
MAX_HINTS = 20  # unknown keys that get a "did you mean"
# Lists of names that the model reads as mappings (`after: [db]` is `after: {db: healthy}`):
# a problem names an entry services.x.after.db, which gets the line of the list's item.
NAME_LISTS = (".after", ".networks")


@dataclass(frozen=True)
class LoadedPlan:
    plan: Plan
    path: Path
    graph: DependencyGraph
    warnings: tuple[str, ...] = field(default=())
    templates: Mapping[str, str] = field(default_factory=dict)  # load balancer -> template
    secrets: frozenset[str] = frozenset()  # values no output may show (see _secrets)
    declared: Plan | None = None  # as written: replicas not yet expanded (for `config`)
    # Services of the plan left out of this run (`up SERVICE...`): theirs are no orphans.
    unselected: frozenset[str] = frozenset()
    # A dialect file's keys, each with the compose key that replaces it (_dialect).
    migration: tuple[str, ...] = ()


def load_plan(path: Path, environ: Mapping[str, str] | None = None,
              project: str | None = None, replicas: Mapping[str, int] | None = None,
              overrides: Sequence[Path] = (), profiles: Collection[str] = (),
              env_file: Path | None = None, *, on_swarm: bool = False) -> LoadedPlan:
    """Read, interpolate and validate the plan at `path`; raise PlanError with every problem.
    `replicas` overrides the plan's replica counts (what `scale` set). A compose file takes
    `overrides` (more compose files merged over it, by compose's rules), `profiles` (the
    active ones) and `env_file` (instead of the `.env` beside it); its `extends` and
    `include` are resolved first (_compose_files), and a problem in what they bring names the
    file and line it was written at. No secret value of the plan appears in a problem or a
    warning (`***` stands in for it). `on_swarm`: the plan is for a swarm (`--backend
    swarm`), whose replicas share their ports as one engine's containers cannot
    (expand_replicas)."""
    origins = Origins(path)
    try:
        return _load_plan(path, environ, project, replicas, overrides, profiles, env_file,
                          origins, on_swarm)
    except PlanError as error:
        raise origins.explained(error) from None


def _load_plan(path: Path, environ: Mapping[str, str] | None, project: str | None,
               replicas: Mapping[str, int] | None, overrides: Sequence[Path],
               profiles: Collection[str], env_file: Path | None,
               origins: Origins, on_swarm: bool) -> LoadedPlan:
    source = str(path)
    written = _read_yaml(path)
    lines = written.lines
    warnings: list[str] = []
    variables = _environment(path, os.environ if environ is None else environ, warnings,
                             env_file)
    files = _ComposeFiles(warnings)
    tree = _merged(path, written, overrides, variables, files, origins)

    compose = is_compose(tree)
    tree = _strip_extensions(tree, keep=EXTENSION if compose else None)
    result = _interpolated(tree, variables, path, lines, warnings)
    result.used |= files.used
    tree = result.value
    translated: list[PlanProblem] = []
    migration: list[str] = []
    if compose:
        translation = from_compose(tree, _compose_project(path, project, environ, tree),
                                   profiles)
        tree, translated = translation.tree, translation.problems
        if variables.get("DOCKER_DEFAULT_PLATFORM") and not on_swarm:
            tree = with_default_platform(tree, variables["DOCKER_DEFAULT_PLATFORM"])
        warnings.extend(translation.warnings)
        if not on_swarm:
            warnings.extend(translation.one_engine_warnings)
        lines.update(compose_lines(lines, translation.sources))
        origins.alias(translation.sources)
    else:
        migration = dialect_warnings(tree)
        if isinstance(tree, dict) and project:
            tree = {**tree, "project": project}
    hide = Redactor(_written_secrets(tree, variables, result.used))
    try:
        try:
            plan, declared, graph, templates, read = _validated(tree, path, lines, variables,
                                                                replicas, warnings, on_swarm)
        except PlanError as error:  # every problem at once: the compose file's first
            raise _located(source, [*translated, *error.problems], lines) from None
        if translated:
            raise _located(source, translated, lines)
    except PlanError as error:
        if not hide:
            raise
        raise PlanError(error.source, [replace(problem, message=hide.text(problem.message))
                                       for problem in error.problems]) from None
    secrets = _plan_secrets(plan, variables, result.used) | read
    warnings.extend(risky_settings(declared, path.parent, secrets))
    hide.add(secrets)
    return LoadedPlan(plan, path, graph, tuple(hide.text(text) for text in warnings), templates,
                      frozenset(secrets), declared, migration=tuple(migration))


def _interpolated(tree: Any, variables: _Variables, path: Path, lines: Mapping[str, int],
                  warnings: list[str]) -> Interpolation:
    """`tree` (of the file at `path`) with its variables replaced; a PlanError when a required
    one is not set or they expand it too far, a warning for each one not set."""
    source = str(path)
    result = interpolate(tree, variables, max_chars=MAX_EXPANDED_CHARS)
    if result.too_large is not None:
        raise PlanError(source, [PlanProblem(
            result.too_large, f"variables expand the document past {MAX_EXPANDED_CHARS // 2**20} "
            "MiB of text (a long value repeated through YAML aliases?)",
            lines.get(result.too_large))])
    if variables.problems:
        where = dict((name, at) for name, at in reversed(result.unset))
        raise PlanError(source, [PlanProblem(where.get(name, ""), problem,
                                             lines.get(where.get(name, "")))
                                 for name, problem in variables.problems.items()])
    if result.missing:
        names = ", ".join(sorted({missing.name for missing in result.missing}))
        problems = [PlanProblem(m.path, f"${{{m.name}}}: {m.message}", lines.get(m.path))
                    for m in result.missing]
        raise PlanError(source, problems, f"required variables are not set: {names}; export "
                        f"them or put them in {path.parent / '.env'}")
    for path_text, text in result.invalid:
        warnings.append(f"{path_text}: {text!r} has a '$' that is not a variable; write $$ for "
                        "a literal $")
    for name, where_used in result.unset:
        if _in_secret_value(tree, where_used):  # `pa$sword` is no variable: name none of it
            warnings.append(f"{where_used}: a variable in this secret value is not set, using "
                            "an empty string (write $$ for a literal $)")
        else:
            warnings.append(f"{where_used}: variable {name} is not set, using an empty string")
    return result


class _Validated(NamedTuple):
    plan: Plan  # replicas expanded, environments resolved
    declared: Plan  # the services as written, for what is said once per declared service
    graph: DependencyGraph
    templates: dict[str, str]
    hidden: set[str]  # what compose's secrets hold, and configs from the environment


def _validated(tree: Any, path: Path, lines: dict[str, int], variables: _Variables,
               replicas: Mapping[str, int] | None, warnings: list[str],
               on_swarm: bool) -> _Validated:
    """The plan, or a PlanError with every problem found at once: the model's, and those
    across parts (names, references, cycles, subnets, replicas, files) in all that could be
    read, also when the model failed for some parts."""
    source = str(path)
    replicas = replicas or {}
    readable, problems = _checked_model(tree)
    too_many: list[PlanProblem] = []
    if readable is not None:
        problems += check_references(readable.plan, readable.unread, lines)
        problems += check_cycles(readable.plan, readable.unsure)
        too_many = _too_many_containers(readable.plan, replicas)
    if readable is None or too_many:  # expanding that many replicas would take seconds
        raise _located(source, problems + too_many, lines)
    declared = readable.plan
    problems += _long_replica_names(declared, replicas)
    # Expanding maps the phases' names, which may be unknown when there are problems: the
    # replicas are then only checked, without the phases (nothing expanded is returned).
    plan, more = expand_replicas(declared.model_copy(update={"phases": []}) if problems
                                 else declared, replicas, on_swarm=on_swarm)
    plan, environment_problems = _resolve_environments(plan, path.parent, variables, warnings)
    templates, templates_problems = _read_templates(plan, path.parent, on_swarm)
    plan, objects_problems, hidden = _read_file_objects(plan, path.parent, variables, warnings)
    plan, label_problems = _read_label_files(plan, path.parent)
    problems += more + environment_problems + templates_problems + objects_problems \
        + label_problems
    if problems:
        raise _located(source, problems, lines)
    return _Validated(plan, declared, DependencyGraph.from_plan(plan), templates, hidden)


def _located(source: str, problems: list[PlanProblem], lines: Mapping[str, int]) -> PlanError:
    return PlanError(source, [problem if problem.line is not None else
                              PlanProblem(problem.path, problem.message,
                                          _line_of(problem.path, lines))
                              for problem in problems])


def _line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """The line of `path`, else of the nearest part that holds it (the mapping of a missing
    key, an `after:` written through a variable), short of a whole top-level section."""
    found = nearest(path, lines)
    return None if found is None else found[1]


# --- secrets --------------------------------------------------------------------------------


def _in_secret_value(tree: Any, where: str) -> bool:
    """Whether the path `where` (services.a.environment.KEY or .environment[3]) is the
    value of a secret environment variable in the plan as written."""
    parts = re.fullmatch(r"services\.([^.\[]+)\.environment(?:\.([^.\[]+)|\[(\d+)\])", where)
    services = tree.get("services") if isinstance(tree, dict) else None
    spec = services.get(parts[1]) if parts and isinstance(services, dict) else None
    if parts is None or not isinstance(spec, dict):
        return False
    marked = spec.get("secrets")
    marked = [marked] if isinstance(marked, str) else marked if isinstance(marked, list) else []
    key = parts[2]
    if key is None:
        items = spec.get("environment")
        index = int(parts[3])
        item = items[index] if isinstance(items, list) and index < len(items) else ""
        key = str(item).partition("=")[0]
    return is_secret_name(key, [str(name) for name in marked])


def _written_secrets(tree: Any, variables: _Variables, used: set[str]) -> set[str]:
    """The secret values known before the plan is validated, to keep them out of its
    problems: variables with secret names that the plan uses, values read from X_FILE
    files, and the values of secret names in the services' `environment` as written."""
    services = tree.get("services") if isinstance(tree, dict) else None
    found: set[str] = set(variables.from_files.values())
    marked: set[str] = set()
    for spec in services.values() if isinstance(services, dict) else ():
        if not isinstance(spec, dict):
            continue
        names = spec.get("secrets")
        names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
        local = {name for name in names if isinstance(name, str)}
        marked |= local
        environment = spec.get("environment")
        if isinstance(environment, list):
            pairs = [str(item).partition("=")[::2] for item in environment]
            environment = dict(pairs)
        if isinstance(environment, dict):
            found.update(str(value) for key, value in environment.items()
                         if isinstance(value, str | int | float)
                         and is_secret_name(str(key), local))
    found.update(value for name in used if is_secret_name(name, marked)
                 and (value := variables.get(name)))
    found.update(value for kind in file_objects.KINDS  # compose's secrets and configs
                 for spec in _dict(tree.get(kind) if isinstance(tree, dict) else None).values()
                 if isinstance(name := _dict(spec).get("environment"), str)
                 and (value := variables.get(name)))
    return {value for value in found if value}


def _dict(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _plan_secrets(plan: Plan, variables: _Variables, used: set[str]) -> set[str]:
    """Every secret value of the loaded plan: each service's environment values with secret
    names (its own `secrets:` included), the variables with such names that the plan uses,
    and whatever X_FILE files held."""
    marked = {name for spec in plan.services.values() for name in spec.secrets}
    found = set(variables.from_files.values())
    for spec in plan.services.values():
        found.update(value for key, value in spec.environment.items()
                     if value is not None and is_secret_name(key, spec.secrets))
    found.update(value for name in used if is_secret_name(name, marked)
                 and (value := variables.get(name)))
    return {value for value in found if value}


def _too_many_containers(plan: Plan, replicas: Mapping[str, int]) -> list[PlanProblem]:
    """At most MAX_SERVICES containers once replicas are counted, checked before they are
    made (500 replicas of 100 services took 15 s to expand)."""
    total = sum(replicas.get(name, spec.replicas) for name, spec in plan.services.items())
    if total > MAX_SERVICES:
        return [PlanProblem("services", f"the plan asks for {total} containers with its "
                                        f"replicas; at most {MAX_SERVICES}")]
    return []


def _long_replica_names(plan: Plan, replicas: Mapping[str, int]) -> list[PlanProblem]:
    """Each replica's name is a valid name (`a` * 63 with two replicas would be 65
    characters). An invalid declared name is a problem of its own."""
    problems = []
    for declared, names in replicated(plan, replicas).items():
        for name in names if NAME_RE.fullmatch(declared) else ():
            if not NAME_RE.fullmatch(name):
                problems.append(PlanProblem(f"services.{declared}.replicas",
                                            f"the replica name {name!r} is longer than 63 "
                                            "characters: shorten the service's name"))
                break
    return problems


def read_project_name(path: Path) -> str | None:
    """The plan's project as written, without interpolation or validation (for `down`):
    `project:`, or for a compose file its name by compose's rules."""
    try:
        tree = _read_yaml(path).tree
    except PlanError:
        return None
    if is_compose(tree):
        value: object = _compose_project(path, None, None, tree)
    else:
        value = tree.get("project") if isinstance(tree, dict) else None
    return value if isinstance(value, str) and "$" not in value else None


# --- YAML -----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one, and turns a
    value its constructors cannot build (a 5000-digit number, February 30th) into a YAML
    error at that value's line."""

    written = 0
    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Count values and nesting as they are parsed: the pure-Python parser takes some
        40 µs a value, so a file of a quarter million tiny values is refused after
        MAX_WRITTEN_VALUES; and the composer recurses, so a document nested thousands deep
        is refused at MAX_DEPTH, long before Python's recursion limit (seconds away)."""
        self.written += 1
        self.depth += 1
        try:
            if self.written > MAX_WRITTEN_VALUES or self.depth > MAX_DEPTH + 1:  # + the root
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Oversized(
                    f"the document nests deeper than {MAX_DEPTH} levels"
                    if self.depth > MAX_DEPTH + 1 else f"the document has more than "
                    f"{MAX_WRITTEN_VALUES} values; a plan has a few hundred", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {_excerpt(node)}: {error}",
                node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if sum(character.isdigit() for character in str(node.value)) > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number with more than {MAX_DIGITS} digits is not a plan value",
                node.start_mark)
        return int(super().construct_yaml_int(node))


class _Oversized(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _excerpt(node: yaml.Node) -> str:
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Explicit keys must be unique; keys merged in with `<<` yield to explicit ones, and
    of several merged mappings the first listed wins, as YAML's merge key says."""
    merged: dict[Any, Any] = {}
    mapping: dict[Any, Any] = {}
    first: dict[Any, tuple[Any, int]] = {}  # key -> (the key as first written, its line)
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            _merge_into(merged, loader.construct_object(value_node, deep=True), key_node)
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain scalar", key_node.start_mark)
        if key in mapping:
            written, line = first[key]
            same = type(written) is type(key)  # 1 == True == 1.0 in a Python dict
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {line})" if same else
                f"the keys {written!r} (line {line}) and {key!r} are one key to Python: write "
                "keys in quotes", key_node.start_mark)
        first[key] = (key, int(key_node.start_mark.line) + 1)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return {**merged, **mapping}


def _merge_into(merged: dict[Any, Any], value: Any, mark_node: yaml.Node) -> None:
    sources = value if isinstance(value, list) else [value]
    for source in sources:
        if not isinstance(source, dict):
            raise yaml.constructor.ConstructorError(
                None, None, "`<<` merges mappings only", mark_node.start_mark)
        for key, item in source.items():
            merged.setdefault(key, item)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _read_yaml(path: Path) -> Written:
    """The YAML file at `path`, with the line of each of its paths and its compose tags
    (`!reset`, `!override`: _compose_tags) read off its nodes before it is built."""
    source = str(path)
    try:
        text = read_text_file(path, MAX_FILE_BYTES, regular_only=False)
    except Unreadable as error:
        if error.missing:
            raise UsageError(f"plan file {source} not found: pass --plan FILE or set "
                             "OLLAMATOPO_PLAN") from None
        if error.content:
            raise PlanError(source, [PlanProblem("", error.reason, error.line)]) from None
        raise UsageError(f"cannot read plan file {source}: {error.reason}") from None
    loader: _StrictLoader | None = None
    positions: dict[tuple[int, int], str] = {}  # where a value or key starts -> its path
    try:
        loader = _StrictLoader(text)  # the reader checks every character here, at once
        node = loader.get_single_node()
        lines = _line_index(node, source, positions)  # first: it refuses what aliases blow up
        overridden = read_tags(node)
        if "!" in text:  # a tag was written: a `!reset` may have taken values out
            positions.clear()
            lines = _line_index(node, source, positions)
        tree = loader.construct_document(node) if node is not None else None
    except RecursionError:  # nesting through aliases while constructing, past MAX_DEPTH
        line = loader.line + 1 if loader is not None else None
        raise PlanError(source, [PlanProblem("", "the document nests too deep to be a plan",
                                             line)]) from None
    except yaml.reader.ReaderError as error:
        at = text.count("\n", 0, error.position) + 1
        raise PlanError(source, [PlanProblem("", f"not valid YAML: the character "
                                                 f"{chr(error.character)!r} is not allowed in "
                                                 "YAML text; write it escaped in a double-quoted "
                                                 "string", at)]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        if not isinstance(error, _Oversized | TagError):
            problem = f"not valid YAML: {problem}"
        where = positions.get((mark.line, mark.column), "") if mark is not None else ""
        raise PlanError(source, [PlanProblem(where, problem, line)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(tree, dict):
        raise PlanError(source, [PlanProblem("", "a plan is a mapping with project, networks, "
                                                 "volumes, services and phases")])
    return Written(tree, lines, overridden)


def _line_index(root: yaml.Node | None, source: str,
                positions: dict[tuple[int, int], str]) -> dict[str, int]:
    """Line of every path in the document, counting values and text as aliases expand them;
    `positions` gets the path of each value and key by where it starts (for the errors of
    constructing the document, which carry only that).

    Keys are plain scalars of at most MAX_KEY_CHARS: a key that is itself a tree of aliases
    (which PyYAML's repr would expand) or a long key over a long aliased list (every path
    repeating it) is refused before it costs anything."""
    lines: dict[str, int] = {}
    values = [MAX_VALUES]
    characters = [MAX_EXPANDED_CHARS]

    def refuse(path: str, node: yaml.Node, what: str) -> PlanError:
        return PlanError(source, [PlanProblem(path, what, int(node.start_mark.line) + 1)])

    def walk(node: yaml.Node, path: str, depth: int) -> None:
        values[0] -= 1
        characters[0] -= len(path) + (len(node.value) if isinstance(node, yaml.ScalarNode)
                                      else 0)
        if depth > MAX_DEPTH:
            raise refuse(path, node, f"the document nests deeper than {MAX_DEPTH} levels")
        if values[0] < 0:
            raise refuse(path, node, f"the document expands to more than {MAX_VALUES} values "
                                     "(YAML aliases?)")
        if characters[0] < 0:
            raise refuse(path, node, "the document expands to more than "
                                     f"{MAX_EXPANDED_CHARS // 2**20} MiB of text (YAML aliases?)")
        lines.setdefault(path, int(node.start_mark.line) + 1)
        positions.setdefault((node.start_mark.line, node.start_mark.column), path)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise refuse(path, key, "a mapping key must be a plain scalar")
                name = str(key.value)
                if len(name) > MAX_KEY_CHARS:
                    raise refuse(path, key, f"a key of {len(name)} characters is too long (at "
                                            f"most {MAX_KEY_CHARS})")
                child = f"{path}.{name}" if path else name
                positions.setdefault((key.start_mark.line, key.start_mark.column), child)
                walk(value, child, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            names = path.endswith(NAME_LISTS)
            for index, item in enumerate(node.value):
                if names and isinstance(item, yaml.ScalarNode):
                    lines.setdefault(f"{path}.{item.value}", int(item.start_mark.line) + 1)
                walk(item, f"{path}[{index}]", depth + 1)

    if root is not None:
        walk(root, "", 0)
    return lines


def _strip_extensions(tree: dict[str, Any], keep: str | None = None) -> dict[str, Any]:
    """Compose's `x-` extension fields hold anchors for reuse; they are not part of the plan
    (but `keep`, ollamatopo's own in a compose file)."""

    def dropped(key: object) -> bool:
        return str(key).startswith("x-") and key != keep

    cleaned = {key: value for key, value in tree.items() if not dropped(key)}
    services = cleaned.get("services")
    if isinstance(services, dict):
        cleaned["services"] = {
            name: {k: v for k, v in spec.items() if not dropped(k)}
            if isinstance(spec, dict) else spec
            for name, spec in services.items()
        }
    return cleaned


def _compose_project(path: Path, project: str | None, environ: Mapping[str, str] | None,
                     tree: dict[str, Any]) -> str:
    """Compose's order: -p (OLLAMATOPO_PROJECT), COMPOSE_PROJECT_NAME, `name:`, the folder."""
    environment = os.environ if environ is None else environ
    chosen = project or environment.get("COMPOSE_PROJECT_NAME") or tree.get("name")
    if isinstance(chosen, str) and chosen:
        return chosen
    return normalize_project_name(path.resolve().parent.name)


# --- files ----------------------------------------------------------------------------------


class Unreadable(Exception):
    """Why a file cannot be used: missing, refused by the system, or not plan-sized text."""

    def __init__(self, reason: str, *, missing: bool = False, content: bool = False,
                 line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.missing, self.content, self.line = reason, missing, content, line


def read_text_file(path: Path, limit: int, *, regular_only: bool = True) -> str:
    """A file's UTF-8 text, reading at most `limit` bytes: a device such as /dev/zero or a
    huge file never fills memory. Files a plan names must be regular files (no FIFO that
    blocks); the plan itself may come from a pipe."""
    data = read_file(path, limit, regular_only=regular_only)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise Unreadable(f"the file is not UTF-8 text (byte {data[error.start]:#04x} on line "
                         f"{line})", content=True, line=line) from None


def read_file(path: Path, limit: int, *, regular_only: bool = True) -> bytes:
    """A file's bytes, at most `limit` of them (see read_text_file)."""
    try:
        if regular_only and not stat.S_ISREG(path.stat().st_mode):
            raise Unreadable("it is not a regular file")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise Unreadable("no such file", missing=True) from None
    except OSError as error:
        raise Unreadable(error.strerror or type(error).__name__) from None
    except ValueError:  # a NUL character in the path
        raise Unreadable("the file name contains a NUL character") from None
    if len(data) > limit:
        raise Unreadable(f"the file is larger than {limit // 1024} KiB", content=True)
    return data


# --- environment ----------------------------------------------------------------------------


class _Variables(Mapping[str, str]):
    """The variables for interpolation: the process environment over the `.env` beside the
    plan. A name that is unset but whose NAME_FILE is set takes its value from that file
    (relative to the plan's folder; one trailing newline stripped), as the official images'
    entrypoints read their *_FILE variables. A file that cannot be read is a problem; one
    that others may read gives a warning."""

    def __init__(self, values: Mapping[str, str], base: Path, warnings: list[str]) -> None:
        self._values, self._base, self._warnings = values, base, warnings
        self.from_files: dict[str, str] = {}
        self.problems: dict[str, str] = {}  # name -> why its file cannot be read

    def over(self, values: Mapping[str, str], base: Path) -> _Variables:
        """These variables over `values` (an included part's .env: compose keeps the
        including part's value of a name both have), with NAME_FILE counting from `base`."""
        child = _Variables({**values, **self._values}, base, self._warnings)
        child.from_files = self.from_files  # one record of the values read from files
        return child

    def __getitem__(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        if name in self.from_files:
            return self.from_files[name]
        pointer = self._values.get(f"{name}_FILE")
        if not pointer or name in self.problems:
            raise KeyError(name)
        path = (self._base / pointer).expanduser()
        try:
            text = read_text_file(path, MAX_AUX_BYTES)
        except Unreadable as error:
            self.problems[name] = (f"${{{name}}}: {name}_FILE names {_shown_path(path)}, which "
                                   f"cannot be read: {error.reason}")
            raise KeyError(name) from None
        value = text[:-1] if text.endswith("\n") else text
        self.from_files[name] = value
        if loose_permissions(path):
            self._warnings.append(_loose(path, f"the value of {name}"))
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _loose(path: Path, what: str) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    return (f"{path} holds {what} but others may read it (mode {mode:04o}): "
            f"chmod 600 {path}")


def _secret_names_in(values: Mapping[str, str]) -> str:
    return ", ".join(sorted(name for name in values if is_secret_name(name)))


def _bad_line(text: str) -> str:
    """A line that is not KEY=value, as the problem shows it: not at all when it may hold a
    secret (`DB_PASSWORD hunter2` lacks its `=`)."""
    words = re.split(r"[^A-Za-z0-9_]+", text)
    if any(is_secret_name(word) for word in words if word):
        return "a line with a secret-looking name (not shown)"
    return repr(text)


def _merged(path: Path, main: Written, overrides: Sequence[Path], variables: _Variables,
            files: _ComposeFiles, origins: Origins) -> Any:
    """The compose files of `overrides` merged over the plan's tree, in order, each with its
    `extends` and `include` resolved first, as compose does; their relative paths count from
    the first file's folder, as compose's do."""
    if overrides and not is_compose(main.tree):
        raise PlanError(str(path), [PlanProblem("", "only a compose file takes more files "
                                                    "merged over it: name one plan file")])
    if not is_compose(main.tree):
        return main.tree
    read = [(extra, _read_yaml(extra)) for extra in overrides]
    return resolve_files(files, origins, main, read, variables)


class _ComposeFiles:
    """What compose's `extends` and `include` read, for _compose_files (which reads nothing
    itself): other compose files, and the env files of included parts. Keeps the warnings
    and the variables used, as the plan file's own reading does."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = warnings
        self.used: set[str] = set()

    def read(self, path: Path) -> Written | None:
        return _read_yaml(path) if path.is_file() else None

    def exists(self, path: Path) -> bool:
        return path.is_file()

    def interpolated(self, tree: Any, lines: Mapping[str, int], path: Path,
                     variables: Mapping[str, str]) -> Any:
        if isinstance(tree, dict):  # as the plan file: its `x-` anchors are not interpolated
            tree = _strip_extensions(tree, keep=EXTENSION)
        said: list[str] = []
        result = _interpolated(tree, _as_variables(variables), path, lines, said)
        self.warnings.extend(f"{path}: {warning}" for warning in said)  # which file's
        self.used |= result.used
        return result.value

    def variables(self, parent: Mapping[str, str], env_files: Sequence[Path],
                  base: Path) -> Mapping[str, str]:
        values: dict[str, str] = {}
        for env_file in env_files:
            values.update(_read_dotenv(env_file, self.warnings))
        return _as_variables(parent).over(values, base)


def _as_variables(variables: Mapping[str, str]) -> _Variables:
    """The variables _compose_files hands back: always those this module made."""
    if not isinstance(variables, _Variables):
        raise TypeError(f"expected the loader's variables, got {type(variables).__name__}")
    return variables


def _environment(path: Path, environ: Mapping[str, str], warnings: list[str],
                 env_file: Path | None = None) -> _Variables:
    """The process environment over the `.env` beside the plan (as compose does), or over
    `env_file` when one is named (it must exist)."""
    dotenv = env_file or path.parent / ".env"
    values: dict[str, str] = {}
    if env_file is not None and not env_file.is_file():
        raise PlanError(str(env_file), [PlanProblem("", "no such file: check --env-file")])
    if dotenv.is_file():
        values = _read_dotenv(dotenv, warnings)
    return _Variables({**values, **environ}, path.parent, warnings)


def _read_dotenv(dotenv: Path, warnings: list[str]) -> dict[str, str]:
    """The variables of a `.env` file; a warning when it holds secrets others may read."""
    try:
        values, bad = parse_dotenv(read_text_file(dotenv, MAX_AUX_BYTES))
    except Unreadable as error:
        raise PlanError(str(dotenv), [PlanProblem("", f"cannot read {dotenv}: "
                                                      f"{error.reason}")]) from None
    if bad:
        raise PlanError(str(dotenv), [PlanProblem(f"line {n}", f"{_bad_line(text)} is not "
                                                               "KEY=value")
                                      for n, text in bad])
    secret = _secret_names_in(values)
    if secret and loose_permissions(dotenv):
        warnings.append(_loose(dotenv, f"secrets ({secret})"))
    return values


def _resolve_environments(plan: Plan, base: Path, env: Mapping[str, str],
                          warnings: list[str]) -> tuple[Plan, list[PlanProblem]]:
    """Each service's final environment: its env_files, then `environment:`; a bare KEY
    takes its value from ollamatopo's environment (and is dropped when unset there). An
    env_file that holds secrets and that others may read gives a warning."""
    loose: set[Path] = set()
    services: dict[str, ServiceSpec] = {}
    problems: list[PlanProblem] = []
    for name, spec in plan.services.items():
        merged: dict[str, str | None] = {}
        for index, env_file in enumerate(spec.env_file):
            file_path = (base / env_file.path).expanduser()
            if not env_file.required and not file_path.exists():
                continue  # compose's `required: false`: a missing file is no problem
            try:
                values, bad = parse_dotenv(read_text_file(file_path, MAX_AUX_BYTES))
            except Unreadable as error:
                problems.append(PlanProblem(f"services.{name}.env_file[{index}]",
                                            f"cannot read {_shown_path(file_path)}: "
                                            f"{error.reason}"))
                continue
            problems.extend(PlanProblem(f"services.{name}.env_file[{index}]",
                                        f"{file_path} line {n}: {_bad_line(text)} is not "
                                        "KEY=value")
                            for n, text in bad)
            secret = ", ".join(sorted(key for key in values
                                      if is_secret_name(key, spec.secrets)))
            if secret and file_path not in loose and loose_permissions(file_path):
                loose.add(file_path)
                warnings.append(_loose(file_path, f"secrets ({secret})"))
            problems.extend(PlanProblem(f"services.{name}.env_file[{index}]",
                                        f"{file_path}: the value of {key} contains a NUL "
                                        "character") for key, value in values.items()
                            if "\x00" in value)
            merged.update(values)
        for key, value in spec.environment.items():
            merged[key] = value if value is not None else env.get(key)
        environment = {key: value for key, value in merged.items() if value is not None}
        update: dict[str, object] = {"environment": environment}
        if spec.build is not None:  # its bare args, as compose resolves them
            update["build"] = spec.build.resolved(env)
        services[name] = spec.model_copy(update=update)
    return plan.model_copy(update={"services": services}), problems


def _shown_path(path: Path) -> str:
    text = repr(str(path))[1:-1]  # control characters escaped
    return text if len(text) <= 200 else text[:200] + "..."


def _read_label_files(plan: Plan, base: Path) -> tuple[Plan, list[PlanProblem]]:
    """Each service's label_file entries (KEY=value lines, as env files) under its labels:
    a later file wins over an earlier one, `labels` over every file (compose-go's order)."""
    services: dict[str, ServiceSpec] = {}
    problems: list[PlanProblem] = []
    for name, spec in plan.services.items():
        merged: dict[str, str] = {}
        for index, label_file in enumerate(spec.label_file):
            where = f"services.{name}.label_file[{index}]"
            file_path = (base / label_file).expanduser()
            try:
                values, bad = parse_dotenv(read_text_file(file_path, MAX_AUX_BYTES),
                                           key=r"[^\s=]+")
                merged.update(_LABELS.validate_python(values))
            except Unreadable as error:
                problems.append(PlanProblem(where, f"cannot read {_shown_path(file_path)}: "
                                                   f"{error.reason}"))
                continue
            except ValidationError as error:
                problems.extend(PlanProblem(where, f"{file_path}: {item['msg']}")
                                for item in error.errors(include_url=False))
                continue
            problems.extend(PlanProblem(where, f"{file_path} line {n}: {_bad_line(text)} is "
                                               "not KEY=value") for n, text in bad)
        services[name] = spec.model_copy(update={"labels": {**merged, **spec.labels},
                                                 "label_file": []}) if spec.label_file else spec
    return plan.model_copy(update={"services": services}), problems


_LABELS: TypeAdapter[dict[str, str]] = TypeAdapter(Labels)


def _read_templates(plan: Plan, base: Path,
                    on_swarm: bool) -> tuple[dict[str, str], list[PlanProblem]]:
    """Each load balancer's template, read now so a missing file or an unknown
    placeholder (or, on a swarm, one that cannot follow its tasks) is a plan error
    before anything starts."""

    templates: dict[str, str] = {}
    problems: list[PlanProblem] = []
    for name, spec in plan.services.items():
        if spec.load_balance is None:
            continue
        where = f"services.{name}.load_balance.template"
        file_path = (base / spec.load_balance.template).expanduser()
        try:
            text = read_text_file(file_path, MAX_AUX_BYTES)
        except Unreadable as error:
            problems.append(PlanProblem(where, f"cannot read {_shown_path(file_path)}: "
                                               f"{error.reason}"))
            continue
        problems.extend(PlanProblem(where, f"{file_path}: {problem}")
                        for problem in template_problems(text, on_swarm=on_swarm))
        templates[name] = text
    return templates, problems


def _read_file_objects(plan: Plan, base: Path, variables: Mapping[str, str],
                       warnings: list[str]) -> tuple[Plan, list[PlanProblem], set[str]]:
    """Each compose secret and config a service gets, read now (see _file_objects): a
    missing file or an unset variable is a plan problem before anything starts. Each gets
    the digest of its content (the container's config hash takes it), an environment's
    value is kept to be copied in; and what is to be hidden: secrets' values, and configs'
    from the environment."""
    problems: list[PlanProblem] = []
    hidden: set[str] = set()
    objects: dict[str, dict[str, FileObjectSpec]] = {kind: dict(getattr(plan, kind))
                                                     for kind in file_objects.KINDS}
    for kind, name in sorted(file_objects.used(plan)):
        spec, at = objects[kind][name], f"{kind}.{name}"
        if spec.external:  # the swarm holds its content
            continue
        if spec.file is not None:
            file_path = file_objects.source_path(spec, base)
            try:
                data = read_file(file_path, MAX_OBJECT_BYTES)
            except Unreadable as error:
                problems.append(PlanProblem(f"{at}.file", f"cannot read "
                                            f"{_shown_path(file_path)}: {error.reason}; create "
                                            "it, or correct the path (relative to the compose "
                                            "file's folder)"))
                continue
            if kind == "secrets":
                hidden.add(data.decode(errors="replace"))
            objects[kind][name] = spec.model_copy(update={"digest": file_objects.digest(data)})
            continue
        value = spec.content if spec.environment is None else variables.get(spec.environment)
        if value is None:
            problems.append(PlanProblem(f"{at}.environment", f"the variable {spec.environment} "
                                        "is not set: export it, or write it in the .env beside "
                                        "the compose file (or the --env-file)"))
            continue
        if value == "":
            warnings.append(f"{at}: its value is empty, so no file is written for it (compose "
                            "writes none either)")
        if spec.environment is not None or kind == "secrets":
            hidden.add(value)
        objects[kind][name] = spec.model_copy(
            update={"digest": file_objects.digest(file_objects.encoded(value)), "value": value})
    problems.extend(file_objects.undeclared(plan))
    return plan.model_copy(update=objects), problems, hidden


# --- pydantic errors as plan problems ---------------------------------------------------------


@dataclass(frozen=True)
class _Readable:
    """A plan for the checks across parts: the valid plan, or what could be read of one the
    model refused (see _Salvage); never returned as a loaded plan."""

    plan: Plan
    unread: frozenset[str] = frozenset()  # SECTIONS whose names are unknown
    unsure: frozenset[str] = frozenset()  # services whose `optional` is unknown


def _checked_model(tree: Any) -> tuple[_Readable | None, list[PlanProblem]]:
    """The plan as the model reads it, and the model's problems; when it has some, what
    could be read of the plan all the same, or None when that is nothing useful."""
    try:
        return _Readable(Plan.model_validate(tree)), []
    except ValidationError as error:
        items = error.errors(include_url=False)
    hints = [MAX_HINTS]  # difflib takes a fraction of a millisecond per unknown key
    problems = [PlanProblem(_loc_path(item["loc"]), _message(item, hints)) for item in items]
    return _Salvage.of(tree, [item["loc"] for item in items]), problems


STAND_IN_PROJECT = STAND_IN_IMAGE = "stand-in"


class _Salvage:
    """A copy of the plan's tree without what the model refused, so the checks across parts
    still run on the rest and report their problems too. A broken service, network or volume
    stays, at its defaults or as a stand-in, so that naming it is no "unknown" problem; a
    broken `after:` waits for nothing (no made-up cycle); a broken phase or list entry is
    left out. What cannot be read is noted, for the checks that would rely on it."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree: dict[Any, Any] = dict(tree)
        self.unread: set[str] = set()
        self.unsure: set[str] = set()
        self._copies = {id(self.tree)}

    @classmethod
    def of(cls, tree: Any, locations: list[tuple[int | str, ...]]) -> _Readable | None:
        salvage = cls(tree)
        for location in locations:
            if not salvage.leave_out(location):
                return None
        try:
            plan = Plan.model_validate(salvage.finished())
        except ValidationError:  # a refusal not foreseen here: the model's problems only
            return None
        return _Readable(plan, frozenset(salvage.unread), frozenset(salvage.unsure))

    def leave_out(self, location: tuple[int | str, ...]) -> bool:
        """Leave out what failed at `location`; False when too little is left to check."""
        section, rest = location[0], location[1:]
        if section == "project":
            self.tree["project"] = STAND_IN_PROJECT
        elif section not in ("services", *SECTIONS):
            self.tree.pop(section, None)  # an unknown top-level key
        elif not rest:  # the whole section: services over the limit, a list for a mapping
            if section == "services":
                return False
            self.tree[section] = [] if section == "phases" else {}
            self.unread.add(str(section))
        elif section == "services":
            self._service(rest)
        elif section == "phases":
            self._phase(rest)
        else:
            self._network_or_volume(str(section), rest)
        return True

    def finished(self) -> dict[Any, Any]:
        """The tree, without the entries left out of lists (marked None)."""
        phases = self.tree.get("phases")
        if isinstance(phases, list) and id(phases) in self._copies:
            self.tree["phases"] = [phase for phase in phases if phase is not None]
        for phase in self.tree["phases"] if isinstance(phases, list) else ():
            names = phase.get("services") if isinstance(phase, dict) else None
            if isinstance(names, list) and id(names) in self._copies:
                phase["services"] = [name for name in names if name is not None]
        return self.tree

    def _service(self, rest: tuple[int | str, ...]) -> None:
        services = self._own(self.tree, "services")
        name = rest[0]
        if name not in services:
            return
        if rest[1:] == ("[key]",):  # a name that is no text: nothing can name it
            del services[name]
        elif len(rest) == 1 or not isinstance(services[name], dict):
            services[name] = {"image": STAND_IN_IMAGE, "after": {}}
            self.unsure.add(str(name))
        elif rest[1] == "image":
            self._own(services, name)["image"] = STAND_IN_IMAGE
        elif rest[1] == "after":
            self._own(services, name)["after"] = {}
        else:
            self._own(services, name).pop(rest[1], None)
            if rest[1] == "optional":
                self.unsure.add(str(name))

    def _phase(self, rest: tuple[int | str, ...]) -> None:
        phases = self._own(self.tree, "phases")
        index = rest[0]
        if not isinstance(index, int) or index >= len(phases) or phases[index] is None:
            return
        if len(rest) == 1 or not isinstance(phases[index], dict):
            phases[index] = None
            self.unread.add("phases")  # the services it lists are in no phase now
            return
        phase = self._own(phases, index)
        field_name = rest[1]
        if field_name == "name":
            phase["name"] = f"phases[{index}]"
        elif field_name == "services" and len(rest) > 2 and isinstance(rest[2], int):
            self._own(phase, "services")[rest[2]] = None
        elif field_name == "services":
            phase["services"] = []
            self.unread.add("phases")
        else:
            phase.pop(field_name, None)

    def _network_or_volume(self, section: str, rest: tuple[int | str, ...]) -> None:
        entries = self._own(self.tree, section)
        if rest[0] not in entries:
            return
        if rest[1:] == ("[key]",):
            del entries[rest[0]]
        else:
            entries[rest[0]] = {}  # the defaults: its subnet, if any, is not checked

    def _own(self, parent: Any, key: Any) -> Any:
        """parent[key], copied the first time it changes: YAML aliases share what they
        repeat, and the tree as read stays as it is."""
        child = parent[key]
        if id(child) not in self._copies:
            child = dict(child) if isinstance(child, dict) else list(child)
            parent[key] = child
            self._copies.add(id(child))
        return child


def _loc_path(loc: tuple[int | str, ...]) -> str:
    if loc and loc[-1] == "[key]":  # pydantic's place for a bad key: (..., key, "[key]")
        parent = _loc_path(loc[:-2])
        return f"{parent}.{loc[-2]}" if parent else str(loc[-2])
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _message(item: Any, hints: list[int]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(item["loc"])
        key = str(item["loc"][-1])
        hints[0] -= 1
        close = difflib.get_close_matches(key, allowed, n=1) if hints[0] >= 0 else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {key!r}: {hint}allowed here: {', '.join(sorted(allowed))}"
    if kind == "missing":
        return "required key is missing"
    if item["loc"] and item["loc"][-1] == "[key]":
        return f"the key {item['loc'][-2]!r} must be text: write it in quotes"
    message = str(item["msg"])
    return message.removeprefix("Value error, ")


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at `loc` (without its last part) accepts."""
    current: Any = Plan
    for part in loc[:-1]:
        current = _step(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _step(annotation: Any, part: int | str) -> Any:
    """The type reached from `annotation` by one part of a location."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return _unwrap(info.annotation)
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and args:
        return _unwrap(args[1])
    if origin is list and args:
        return _unwrap(args[0])
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the model or container type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) == 1:
                annotation = options[0]
                continue
        return annotation
