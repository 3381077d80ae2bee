"""Hostile plans: malformed and adversarial input always ends in exit 2, never a traceback.

Property-based (hypothesis): arbitrary documents, a valid plan with one part replaced by
something hostile, names of every alphabet, random dependency graphs, references to
nothing, duplicate keys, deep nesting, alias bombs, binary garbage. Every case goes
through the public loading path (`load_plan` on a file) and must either load or raise an
`OllamatopoError` with exit code 2 that names where the problem is, quickly and without
eating memory. A few fixed nasty files also go through the command line, with no Docker
engine to reach: the exit is 2 (refused before any engine call), never 3.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ollamatopo._errors import EXIT_INVALID, OllamatopoError, PlanError
from ollamatopo.engine._payloads import container_config, network_name, plan_networks, volume_name
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import DNS_NAME_RE, IMAGE_RE, LABEL_KEY_RE, control_characters

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 2.0  # of CPU time: the wall clock of a shared machine says little
# The gate runs the same 150 examples of each property every time (about half a minute in
# all); OLLAMATOPO_HYPOTHESIS_EXAMPLES=5000 explores with fresh random examples instead.
EXAMPLES = int(os.environ.get("OLLAMATOPO_HYPOTHESIS_EXAMPLES", "150"))
HOSTILE = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow, HealthCheck.data_too_large])

WHOLE_FILE = ("a plan is a mapping", "the file is larger than")

# Docker's rule for container and volume names (moby daemon/names: RestrictedNamePattern).
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")

BASE: dict[str, Any] = {
    "project": "shop",
    "networks": {"back": {"subnet": "172.30.0.0/24", "gateway": "172.30.0.1", "mtu": 1500},
                 "front": {}},
    "volumes": {"pgdata": {}, "cache": {"driver": "local"}},
    "services": {
        "db": {
            "image": "postgres:16",
            "command": ["postgres", "-c", "max_connections=200"],
            "environment": {"POSTGRES_PASSWORD": "${PG_PASSWORD:-dev}", "PGPORT": 5432},
            "ports": ["127.0.0.1:15432:5432"],
            "volumes": ["pgdata:/var/lib/postgresql/data"],
            "networks": ["back"],
            "ready": {"exec": ["pg_isready"], "timeout": "30s"},
            "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "1G"},
                                     "reservations": {"cpus": 0.25, "memory": "512M"}}},
            "stop_grace_period": "10s",
            "labels": {"team": "data"},
        },
        "api": {
            "image": "registry.local:5000/shop/api:1.2",
            "environment": ["MODE=prod", "API_KEY=abc"],
            "networks": {"back": {"aliases": ["service"]}, "front": None},
            "ports": ["8080", "127.0.0.1::9090/udp"],
            "ready": {"http": {"port": 8080, "path": "/health"}},
            "after": {"db": "healthy"},
            "restart": "on-failure:3",
            "replicas": 2,
        },
        "web": {
            "image": "nginx",
            "networks": ["front"],
            "ready": {"tcp": {"port": 80}},
            "after": ["api"],
            "optional": True,
            "hostname": "www",
        },
    },
    "phases": [{"name": "data", "services": ["db"]},
               {"name": "app", "services": ["api", "web"]}],
}


# --- the harness ----------------------------------------------------------------------------


def _attempt(folder: Path, content: str | bytes,
             environ: dict[str, str] | None = None) -> LoadedPlan | OllamatopoError:
    """Load `content` from a plan file: the plan, or the error; anything else fails."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    started = time.process_time()
    try:
        outcome: LoadedPlan | OllamatopoError = load_plan(path, environ or {})
    except OllamatopoError as error:
        outcome = error
    spent = time.process_time() - started
    assert spent < CASE_SECONDS, f"took {spent:.2f}s of CPU time"
    if isinstance(outcome, OllamatopoError):
        assert outcome.exit_code == EXIT_INVALID, outcome
        assert str(outcome).strip()
        for problem in getattr(outcome, "problems", ()):  # where, unless it is the whole file
            assert problem.path or problem.line or problem.message.startswith(WHOLE_FILE), \
                problem
    else:
        _assert_docker_names(outcome)
    return outcome


def _refused(folder: Path, content: str | bytes,
             environ: dict[str, str] | None = None) -> OllamatopoError:
    outcome = _attempt(folder, content, environ)
    assert isinstance(outcome, OllamatopoError), "a hostile plan was accepted"
    return outcome


def _assert_docker_names(loaded: LoadedPlan) -> None:
    """Whatever loads can only ever produce names and labels the engine takes as they are."""
    plan = loaded.plan
    for key in plan_networks(plan):
        assert DOCKER_NAME.fullmatch(network_name(plan.project, key))
    for key in plan.volumes:
        assert DOCKER_NAME.fullmatch(volume_name(plan.project, key))
    for name, spec in plan.services.items():
        config = container_config(plan, name, loaded.path.parent)
        assert DOCKER_NAME.fullmatch(config.name), config.name
        assert len(config.name) <= 127
        assert IMAGE_RE.fullmatch(spec.image), spec.image
        assert spec.hostname is None or DNS_NAME_RE.fullmatch(spec.hostname)
        for endpoint in config.endpoints:
            assert all(DNS_NAME_RE.fullmatch(alias) for alias in endpoint.aliases)
        for variable in config.create_kwargs["environment"]:
            key, sep, value = variable.partition("=")
            assert key and sep and "\x00" not in variable
        for key, value in config.labels.items():
            assert LABEL_KEY_RE.fullmatch(key) and not control_characters(value), key


def _dump(tree: Any) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False, width=4096)


def _paths(tree: Any, prefix: str = "") -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every (plan path, key route) in a tree, parents before children."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path, (key,)
            for sub, route in _paths(value, path):
                yield sub, (key, *route)
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            path = f"{prefix}[{index}]"
            yield path, (index,)
            for sub, route in _paths(value, path):
                yield sub, (index, *route)


BASE_PATHS = list(_paths(BASE))


def _related(problem: str, mutated: str) -> bool:
    """A problem at the mutated path, above it, or below it."""
    return (problem == mutated or mutated.startswith((problem + ".", problem + "["))
            or problem.startswith((mutated + ".", mutated + "[")))


# --- strategies -----------------------------------------------------------------------------

CONTROL = "".join(chr(c) for c in [*range(0, 32), 127, 0x85, 0x200B, 0x202E, 0xFEFF])
nasty_text = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(CONTROL),
                     max_size=40)
huge_int = st.one_of(st.integers(min_value=2**31, max_value=10**400),
                     st.integers(max_value=-1, min_value=-(10**400)))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), huge_int,
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text, st.sampled_from(["", " ", "-", "0", "1e999", "-1", "NaN", "${X}", "$", "~",
                                 "0x10", "1_000", "9" * 500, "é", "\u202eevil", "a\nb"]),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(nasty_text, st.integers(), st.booleans()), children,
                        max_size=4)),
    max_leaves=25,
)


# --- properties -----------------------------------------------------------------------------


@HOSTILE
@given(tree=trees)
def test_arbitrary_documents(tmp_path: Path, tree: Any) -> None:
    """Random documents (any root, any types) are refused cleanly (or, rarely, load)."""
    _attempt(tmp_path, _dump(tree))


@HOSTILE
@given(tree=st.dictionaries(st.sampled_from(["project", "networks", "volumes", "services",
                                             "phases", "x-any"]), trees, max_size=5))
def test_plan_shaped_documents(tmp_path: Path, tree: Any) -> None:
    _attempt(tmp_path, _dump(tree))


@HOSTILE
@given(choice=st.sampled_from(BASE_PATHS), value=trees)
def test_one_part_of_a_valid_plan_replaced(tmp_path: Path, choice: tuple[str, tuple[Any, ...]],
                                           value: Any) -> None:
    """Replace one value anywhere in a valid plan: it loads, or a problem names that spot
    (or a spot that refers to it)."""
    path, route = choice
    tree = copy.deepcopy(BASE)
    parent = tree
    for key in route[:-1]:
        parent = parent[key]
    parent[route[-1]] = value
    outcome = _attempt(tmp_path, _dump(tree))
    if isinstance(outcome, PlanError):
        assert any(p.path for p in outcome.problems), outcome
        if not _is_name(route):
            assert any(_related(p.path, path) or _refers_to(p.path, path)
                       for p in outcome.problems), (path, str(outcome))
        _assert_no_follow_on_noise(tree, outcome)


def _assert_no_follow_on_noise(tree: dict[str, Any], error: PlanError) -> None:
    """A part the model refused is still there: naming it is no "unknown" problem, and a
    service that a phase lists is not "in no phase" (issue 15: the checks across parts now
    run on what could be read of a refused plan)."""
    for section, kind in (("services", "service"), ("networks", "network"),
                          ("volumes", "volume")):
        part = tree.get(section)
        for name in part if isinstance(part, dict) else ():
            if isinstance(name, str) and "$" not in name:
                assert f"unknown {kind} {name!r}" not in str(error), (name, str(error))
    phases = tree.get("phases") if isinstance(tree.get("phases"), list) else []
    listed = {name for phase in phases if isinstance(phase, dict)
              and isinstance(phase.get("services"), list)
              for name in phase["services"] if isinstance(name, str)}
    assert not [p for p in error.problems if "in no phase" in p.message
                and p.path.removeprefix("services.") in listed], str(error)


def _is_name(route: tuple[Any, ...]) -> bool:
    """The project's name is checked where it is used, with the override of --project."""
    return route[0] == "project"


def _refers_to(problem: str, mutated: str) -> bool:
    """A problem where the mutated part is referred to: a service's networks and volumes
    name the top-level ones, phases name services, and ports and replica names clash
    between services."""
    top = re.split(r"[.\[]", mutated, maxsplit=1)[0]
    if top in ("networks", "volumes"):
        return problem.startswith("services.") and f".{top}" in problem
    if top == "phases":
        return problem.startswith("services.")
    return top == "services" and problem.startswith(("services.", "phases"))


@HOSTILE
@given(choice=st.sampled_from([p for p in BASE_PATHS if isinstance(p[1][-1], str)]),
       extra=nasty_text, value=trees)
def test_an_unknown_key_added_anywhere(tmp_path: Path, choice: tuple[str, tuple[Any, ...]],
                                       extra: str, value: Any) -> None:
    _, route = choice
    tree = copy.deepcopy(BASE)
    parent = tree
    for key in route[:-1]:
        parent = parent[key]
    assume(isinstance(parent, dict) and extra not in parent)
    parent[extra] = value
    _attempt(tmp_path, _dump(tree))


@HOSTILE
@given(data=st.binary(max_size=2000))
def test_binary_garbage(tmp_path: Path, data: bytes) -> None:
    _attempt(tmp_path, data)


YAML_PUNCTUATION = ":-[]{}&*!|>'\"%@`#,?\n "


@HOSTILE
@given(text=st.text(alphabet=st.characters(codec="utf-8")
                    | st.sampled_from(CONTROL + YAML_PUNCTUATION), max_size=300))
def test_text_garbage(tmp_path: Path, text: str) -> None:
    _attempt(tmp_path, text)


@HOSTILE
@given(where=st.sampled_from(["project: ", "  db: {image: ", "  db: {image: x, hostname: ",
                              "  db: {image: x, environment: {A: ",
                              "  db: {image: x, labels: {k: "]),
       raw=nasty_text)
def test_raw_characters_in_names_and_values(tmp_path: Path, where: str, raw: str) -> None:
    """Characters written raw into the file, not escaped by a YAML emitter."""
    quoted = json.dumps(raw)  # escaped in a double-quoted scalar
    phases = "phases: [{name: a, services: [db]}]\n"
    if where.startswith("project"):
        text = f"{where}{quoted}\nservices:\n  db: {{image: x}}\n{phases}"
    else:
        closing = "}" * where.count("{")
        text = f"project: p\nservices:\n{where}{quoted}{closing}\n{phases}"
    _attempt(tmp_path, text)
    unquoted = text.replace(quoted, raw.replace("\n", " "))
    _attempt(tmp_path, unquoted)


names = st.one_of(nasty_text, st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,80}", fullmatch=True))
images = st.one_of(nasty_text, st.from_regex(
    r"([a-z0-9.-]{1,20}(:[0-9]{1,5})?/)?[a-zA-Z0-9._/-]{1,40}(:[\w.-]{0,20})?(@sha256:[0-9a-f]{64})?",
    fullmatch=True))


@HOSTILE
@example(service="a.", network="n", volume="v", project="p", alias="x", hostname="h",
         image="x", label=("k", "v"), replicas=1)  # a service name that is no DNS name
@example(service="a" * 63, network="n", volume="v", project="p", alias="x", hostname="h",
         image="x", label=("k", "\x00"), replicas=2)  # a long replica name, a NUL label
@given(service=names, network=names, volume=names, project=names, alias=names,
       hostname=names, image=images, label=st.tuples(names, nasty_text),
       replicas=st.integers(1, 3))
def test_names_of_every_alphabet(tmp_path: Path, service: str, network: str, volume: str,
                                 project: str, alias: str, hostname: str, image: str,
                                 label: tuple[str, str], replicas: int) -> None:
    """Names reach the engine only when Docker takes them as they are."""
    tree = {"project": project, "networks": {network: {}}, "volumes": {volume: {}},
            "services": {service: {"image": image, "networks": {network: {"aliases": [alias]}},
                                   "volumes": [f"{volume}:/data"], "hostname": hostname,
                                   "labels": dict([label]), "replicas": replicas}},
            "phases": [{"name": "one", "services": [service]}]}
    outcome = _attempt(tmp_path, _dump(tree))
    if isinstance(outcome, PlanError):
        assert all(p.path for p in outcome.problems), outcome


@HOSTILE
@given(edges=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20))
def test_dependency_graphs(tmp_path: Path, edges: list[tuple[int, int]]) -> None:
    """Any `after:` graph loads exactly when it has no cycle, else the cycle is named."""
    after: dict[int, list[int]] = {}
    for source, target in edges:
        after.setdefault(source, []).append(target)
    services = {f"s{i}": {"image": "x", "after": [f"s{t}" for t in dict.fromkeys(after[i])]}
                for i in after}
    for i in range(8):
        services.setdefault(f"s{i}", {"image": "x"})
    tree = {"project": "p", "services": services,
            "phases": [{"name": "one", "services": list(services)}]}
    outcome = _attempt(tmp_path, _dump(tree))
    graph = {f"s{s}": {f"s{t}" for t in ts} for s, ts in after.items()}
    if _has_cycle(graph):
        assert isinstance(outcome, PlanError)
        assert any(p.path.startswith("services.s") and p.path.count(".after") == 1
                   and ("cycle" in p.message or "itself" in p.message)
                   for p in outcome.problems), outcome
        _assert_every_cycle_named(graph, outcome)
    else:
        assert isinstance(outcome, LoadedPlan), outcome


def _assert_every_cycle_named(graph: dict[str, set[str]], error: PlanError) -> None:
    """Each service waiting for itself, and one real cycle for each group of services
    that wait for each other (issue 15: the first one found hid the others)."""
    itself = {p.path for p in error.problems if "itself" in p.message}
    assert itself == {f"services.{s}.after.{s}" for s, targets in graph.items() if s in targets}
    cycles = [p.message.removeprefix("dependency cycle: ").partition(";")[0].split(" -> ")
              for p in error.problems if "cycle" in p.message]
    for cycle in cycles:
        assert cycle[0] == cycle[-1]
        assert all(b in graph.get(a, ()) for a, b in itertools.pairwise(cycle)), cycle
    reach = {s: _reachable(graph, s) for s in graph}
    group_of = {s: frozenset(t for t in reach[s] if s in reach.get(t, ())) for s in graph}
    groups = {group for group in group_of.values() if len(group) > 1}
    named = [group_of[cycle[0]] for cycle in cycles]
    assert len(named) == len(groups) and set(named) == groups, (groups, cycles)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every service `start` waits for, directly or not, and itself."""
    seen, frontier = {start}, [start]
    while frontier:
        for nxt in graph.get(frontier.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def _has_cycle(graph: dict[str, set[str]]) -> bool:
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        reachable, frontier = set(), [start]
        while frontier:
            for nxt in graph.get(frontier.pop(), ()):
                if nxt == start:
                    return True
                if nxt not in reachable:
                    reachable.add(nxt)
                    frontier.append(nxt)
        done.add(start)
    return False


REFERENCES = {
    "after": ("services.web.after.{name}", lambda tree, n: tree["services"]["web"].update(
        after={n: "started"})),
    "phase": ("phases[1].services[2]", lambda tree, n: tree["phases"][1]["services"].append(n)),
    "network": ("services.web.networks.{name}",
                lambda tree, n: tree["services"]["web"].update(networks=[n])),
    "volume": ("services.web.volumes[0]",
               lambda tree, n: tree["services"]["web"].update(volumes=[f"{n}:/data"])),
}


@HOSTILE
@given(kind=st.sampled_from(sorted(REFERENCES)),
       name=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_references_to_nothing(tmp_path: Path, kind: str, name: str) -> None:
    existing = {*BASE["services"], *BASE["networks"], *BASE["volumes"]}
    assume(name not in existing and not name.startswith("api"))
    path, change = REFERENCES[kind]
    tree = copy.deepcopy(BASE)
    change(tree, name)
    error = _refused(tmp_path, _dump(tree))
    assert isinstance(error, PlanError)
    assert path.format(name=name) in [p.path for p in error.problems], str(error)


@HOSTILE
@given(choice=st.sampled_from([p for p in BASE_PATHS if isinstance(p[1][-1], str)]))
def test_duplicate_keys(tmp_path: Path, choice: tuple[str, tuple[Any, ...]]) -> None:
    """A key written twice anywhere is refused, with the line of the second."""
    _, route = choice
    text = yaml.safe_dump(BASE, sort_keys=False, default_flow_style=False)
    lines = text.splitlines()
    # Find the line of the key in block style and write it (with its value) once more.
    depth = 0
    index = 0
    for key in route:
        if isinstance(key, int):
            continue
        pattern = re.compile(r"^(\s*(- )?)" + re.escape(str(key)) + ":")
        while not pattern.match(lines[index]):
            index += 1
        depth = index
        index += 1
    first = lines[depth]
    indent = len(first) - len(first.lstrip(" -"))
    end = depth + 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip(" -")) > indent:
        end += 1
    block = [" " * indent + first[indent:], *lines[depth + 1:end]]
    text = "\n".join([*lines[:end], *block, *lines[end:]]) + "\n"
    error = _refused(tmp_path, text)
    assert isinstance(error, PlanError)
    assert any("duplicate key" in p.message and p.line == end + 1 for p in error.problems), \
        str(error)


@settings(HOSTILE, max_examples=max(20, EXAMPLES // 8))
@given(depth=st.integers(65, 2000), flow=st.booleans())
def test_deep_nesting(tmp_path: Path, depth: int, flow: bool) -> None:
    nested = ("[" * depth + "]" * depth) if flow else "".join(
        f"\n{'  ' * (i + 1)}- " for i in range(depth)) + "x"
    error = _refused(tmp_path, f"project: p\nservices: {nested}\nphases: []\n")
    assert "nests" in str(error) or "deep" in str(error)


# --- expansion bombs: bounded time and memory ------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _laughs(levels: int, fanout: int, leaf: str = "lol") -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"{letters[0]}: &{letters[0]} [{', '.join([leaf] * fanout)}]"]
    for level in range(1, levels):
        alias = ", ".join([f"*{letters[level - 1]}"] * fanout)
        lines.append(f"{letters[level]}: &{letters[level]} [{alias}]")
    return "\n".join(lines)


BOMBS = {  # name: (text, what the problem says)
    "billion laughs": ("project: p\nx-bomb:\n" + "\n".join(
        "  " + line for line in _laughs(10, 10).splitlines()) + "\nservices: {}\nphases: []\n",
        "expands to more than 200000 values"),
    "laughs in a key": ("? {" + _laughs(9, 9).replace("\n", ", ") + "}\n: x\nproject: p\n",
                        "a mapping key must be a plain scalar"),
    "long key over a long list": ("k: &a [" + ",".join(["1"] * 9000) + "]\n? \"" + "K" * 200_000
                                  + "\"\n: *a\nproject: p\n", "a key of 200000 characters"),
    "interpolated long value": ("project: p\nx-v: &v \"${BIG}\"\nx-l: &l ["
                                + ", ".join(["*v"] * 100) + "]\nservices: {a: {image: x, bomb: ["
                                + ", ".join(["*l"] * 1000) + "]}}\n",
                                "variables expand the document past 16 MiB"),
    "merge keys": ("project: p\nx-l0: &l0 {a: lol, b: lol}\n" + "".join(
        f"x-l{n}: &l{n} {{<<: [*l{n - 1}], " + ", ".join(f"m{i}: *l{n - 1}" for i in range(9))
        + "}\n" for n in range(1, 9)) + "services: {}\nphases: []\n",
        "expands to more than 200000 values"),
    "many small values": ("project: p\nx-a: [" + "{}," * 150_000 + "{}]\n",
                          "more than 10000 values"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_expansion_bombs_are_refused_in_bounded_time_and_memory(tmp_path: Path,
                                                                name: str) -> None:
    text, fragment = BOMBS[name]
    before = _rss_mb()
    error = _refused(tmp_path, text, {"BIG": "B" * 100_000})
    assert _rss_mb() - before < 200, f"max RSS grew by {_rss_mb() - before:.0f} MB"
    assert isinstance(error, PlanError)
    assert fragment in str(error)


# --- fixed nasty files through the command line, with no engine to reach --------------------

NASTY_FILES: dict[str, bytes] = {
    "billion laughs": BOMBS["billion laughs"][0].encode(),
    "binary garbage": bytes(range(256)) * 4,
    "NUL in the text": b"project: p\x00\nservices: {}\n",
    "escape sequences": b"project: \"\\e[2J\\e[31mred\"\nservices: {}\nphases: []\n",
    "lone surrogate": b"project: p\nservices:\n  \"\\ud800\": {image: x}\n"
                      b"phases: [{name: one, services: [\"\\ud800\"]}]\n",
    "deep nesting": b"project: p\nservices: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "cycle": b"project: p\nservices:\n  a: {image: x, after: [b]}\n  b: {image: x, after: [a]}\n"
             b"phases: [{name: one, services: [a, b]}]\n",
    "huge numbers": b"project: p\nservices:\n  a: {image: x, stop_grace_period: " + b"9" * 5000
                    + b", deploy: {resources: {limits: {cpus: 1e999, memory: 99999999999P}}}}\n"
                    b"phases: [{name: one, services: [a]}]\n",
    "empty": b"",
    "a list": b"- project: p\n",
}


@pytest.mark.parametrize("name", sorted(NASTY_FILES))
def test_command_line_refuses_nasty_files_before_any_engine_call(tmp_path: Path,
                                                                 name: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(NASTY_FILES[name])
    for command in ("plan", "up"):
        done = _cli(tmp_path, command, "--plan", str(plan))
        assert done.returncode == EXIT_INVALID, (command, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
        assert done.stderr.startswith("ollamatopo: "), done.stderr


def test_command_line_control_reaches_for_the_engine(tmp_path: Path) -> None:
    """The same setup with a valid plan: `up` does try the engine (exit 3), so the exits
    of 2 above mean the plan was refused before any engine call."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("project: p\nservices:\n  a: {image: x}\n"
                    "phases: [{name: one, services: [a]}]\n", encoding="utf-8")
    assert _cli(tmp_path, "plan", "--plan", str(plan)).returncode == 0
    done = _cli(tmp_path, "up", "--plan", str(plan))
    assert done.returncode == 3, done.stderr


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("OLLAMATOPO_", "DOCKER_"))}
    environ.update(DOCKER_HOST="unix:///nonexistent", PYTHONPATH=str(ROOT),
                   OLLAMATOPO_STATE_DIR=str(folder / "state"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "ollamatopo", *args, "--log-format", "json"],
                          capture_output=True, text=True, env=environ, cwd=folder,
                          timeout=60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert spent < CASE_SECONDS + 1, f"{args}: {spent:.2f}s of CPU time"  # + start-up
    return done
