"""Loading plans from files: YAML, `.env`, interpolation, the model and cross-references."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.plan._model import Condition, ProbeKind
from ollamatopo.plan._quantities import PortBinding

Load = Callable[..., LoadedPlan]
Refuse = Callable[..., PlanError]

HEALTHY, STARTED = Condition.HEALTHY, Condition.STARTED

THREE_PHASES = """
project: shop
networks:
  back: {}
volumes:
  pgdata: {}
services:
  postgres:
    image: postgres:${PG_TAG:-16}
    environment: {POSTGRES_PASSWORD: "${PG_PASSWORD:?set PG_PASSWORD}", PGPORT: 5432}
    volumes: ["pgdata:/var/lib/postgresql/data", "./init:/docker-entrypoint-initdb.d:ro"]
    networks: [back]
    ports: ["127.0.0.1:5432:5432"]
    ready: {exec: [pg_isready, -U, postgres], timeout: 30s}
    deploy: {resources: {limits: {cpus: "1.5", memory: 1G}}}
  redis:
    image: redis:7
    networks: [back]
    ready: {tcp: {port: 6379}}
  api:
    image: api:1
    networks: [back]
    ports: ["8080:8080"]
    ready: {http: {port: 8080, path: /health}}
  metrics:
    image: prom/prometheus
    optional: true
  web:
    image: nginx
    ports: ["80:80"]
phases:
  - {name: data, services: [postgres, redis]}
  - {name: app, services: [api, metrics]}
  - {name: edge, services: [web]}
"""

# --- a valid plan ---------------------------------------------------------------------------


def test_valid_three_phase_plan(load: Load) -> None:
    loaded = load(THREE_PHASES, {"PG_PASSWORD": "hunter2"})
    plan = loaded.plan
    assert plan.project == "shop"
    assert [(p.name, p.services) for p in plan.phases] == [
        ("data", ["postgres", "redis"]), ("app", ["api", "metrics"]), ("edge", ["web"])]
    postgres = plan.services["postgres"]
    assert postgres.image == "postgres:16"
    assert postgres.environment == {"POSTGRES_PASSWORD": "hunter2", "PGPORT": "5432"}
    assert postgres.ports == [PortBinding(5432, "tcp", 5432, "127.0.0.1")]
    assert [(m.source, m.named, m.read_only) for m in postgres.volumes] == [
        ("pgdata", True, False), ("./init", False, True)]
    assert postgres.ready.kind is ProbeKind.EXEC
    assert postgres.ready.timeout == 30.0
    assert postgres.deploy.resources.limits.cpus == 1.5
    assert postgres.deploy.resources.limits.memory == 1024**3
    assert plan.services["redis"].ready.kind is ProbeKind.TCP
    assert plan.services["web"].ready.kind is ProbeKind.NONE
    assert plan.services["metrics"].optional
    assert loaded.warnings == ()
    assert loaded.graph.topological_order() == ["postgres", "redis", "api", "metrics", "web"]


def test_phase_default_is_the_required_services_of_the_previous_phase(load: Load) -> None:
    dependencies = load(THREE_PHASES, {"PG_PASSWORD": "x"}).graph.dependencies
    assert dependencies["postgres"] == {}
    assert dependencies["redis"] == {}
    assert dependencies["api"] == {"postgres": HEALTHY, "redis": HEALTHY}
    assert dependencies["metrics"] == {"postgres": HEALTHY, "redis": HEALTHY}
    assert dependencies["web"] == {"api": HEALTHY}  # metrics is optional


def test_phase_default_skips_phases_with_only_optional_services(load: Load) -> None:
    loaded = load("""
        project: p
        services:
          db: {image: x}
          extra: {image: x, optional: true}
          app: {image: x}
        phases:
          - {name: one, services: [db]}
          - {name: two, services: [extra]}
          - {name: three, services: [app]}
    """)
    assert loaded.graph.dependencies == {"db": {}, "extra": {"db": HEALTHY},
                                         "app": {"db": HEALTHY}}


TWO_PHASES_WITH_AFTER = """
project: p
services:
  db: {image: x}
  cache: {image: x}
  app: {image: x, after: AFTER}
phases:
  - {name: one, services: [db, cache]}
  - {name: two, services: [app]}
"""


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("{db: started}", {"db": STARTED}),
        ("{db: healthy, cache: started}", {"db": HEALTHY, "cache": STARTED}),
        ("[db]", {"db": HEALTHY}),
        ("[db, cache]", {"db": HEALTHY, "cache": HEALTHY}),
        ("{}", {}),
        ("[]", {}),
    ],
)
def test_after_replaces_the_phase_default(load: Load, after: str,
                                          expected: dict[str, Condition]) -> None:
    loaded = load(TWO_PHASES_WITH_AFTER.replace("AFTER", after))
    assert loaded.graph.dependencies["app"] == expected


def test_after_with_an_unknown_condition_is_refused(plan_error: Refuse) -> None:
    error = plan_error(TWO_PHASES_WITH_AFTER.replace("AFTER", "{db: ready}"))
    assert [p.path for p in error.problems] == ["services.app.after.db"]


# --- validation: each problem at its path ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        pytest.param("""
            project: p
            services:
              postgres: {image: x, imgae: y}
            phases: [{name: one, services: [postgres]}]
         """, "services.postgres.imgae", "unknown key 'imgae': did you mean 'image'?",
                     id="unknown-key"),
        pytest.param("""
            project: p
            services:
              a: {}
            phases: [{name: one, services: [a]}]
         """, "services.a.image", "required key is missing", id="missing-key"),
        pytest.param("""
            project: p
            networks: {back: {}}
            services:
              a: {image: x, networks: [front]}
            phases: [{name: one, services: [a]}]
         """, "services.a.networks.front", "unknown network 'front'", id="unknown-network"),
        pytest.param("""
            project: p
            volumes: {pgdata: {}}
            services:
              a: {image: x, volumes: ["pgdat:/data"]}
            phases: [{name: one, services: [a]}]
         """, "services.a.volumes[0]", "unknown volume 'pgdat' (did you mean 'pgdata'?)",
                     id="unknown-volume"),
        pytest.param("""
            project: p
            services:
              a: {image: x}
            phases: [{name: one, services: [a, ghost]}]
         """, "phases[0].services[1]", "unknown service 'ghost'", id="unknown-phase-service"),
        pytest.param("""
            project: p
            services:
              a: {image: x}
              b: {image: x}
            phases:
              - {name: one, services: [a, b]}
              - {name: two, services: [b]}
         """, "phases[1].services[0]", "already in phase 'one'", id="service-in-two-phases"),
        pytest.param("""
            project: p
            services:
              a: {image: x}
              b: {image: x}
            phases: [{name: one, services: [a]}]
         """, "services.b", "in no phase", id="service-in-no-phase"),
        pytest.param("""
            project: p
            services:
              a: {image: x, after: [ghost]}
            phases: [{name: one, services: [a]}]
         """, "services.a.after.ghost", "unknown service 'ghost'", id="unknown-after"),
        pytest.param("""
            project: p
            services:
              a: {image: x, after: [b]}
              b: {image: x, after: {a: started}}
            phases: [{name: one, services: [a, b]}]
         """, "services.a.after", "dependency cycle: a -> b -> a", id="cycle"),
        pytest.param("""
            project: p
            services:
              a: {image: x, after: [b]}
              b: {image: x}
            phases:
              - {name: one, services: [a]}
              - {name: two, services: [b]}
         """, "services.a.after", "a -> b -> a", id="cycle-through-phase-default"),
        pytest.param("""
            project: p
            services:
              a: {image: x, ports: ["8080:80"]}
              b: {image: x, ports: ["8080:8080"]}
            phases: [{name: one, services: [a, b]}]
         """, "services.b.ports[0]", "host port 8080/tcp is also published by a",
                     id="host-port-clash"),
        pytest.param("""
            project: p
            services:
              a: {image: x, ports: ["80:80", "80:eighty"]}
            phases: [{name: one, services: [a]}]
         """, "services.a.ports[1]", "'eighty' is not a port number", id="bad-port"),
        pytest.param("""
            project: p
            services:
              a: {image: x, ports: ["80:80/icmp"]}
            phases: [{name: one, services: [a]}]
         """, "services.a.ports[0]", "unknown protocol 'icmp'", id="bad-port-protocol"),
        pytest.param("""
            project: p
            services:
              a: {image: x, ready: {http: {port: 80}, tcp: {port: 80}}}
            phases: [{name: one, services: [a]}]
         """, "services.a.ready", "exactly one of", id="ready-two-kinds"),
        pytest.param("""
            project: p
            services:
              a: {image: x, ready: {timeout: 10s}}
            phases: [{name: one, services: [a]}]
         """, "services.a.ready", "found: none given", id="ready-no-kind"),
        pytest.param("""
            project: p
            services:
              a: {image: x, stop_grace_period: soon}
            phases: [{name: one, services: [a]}]
         """, "services.a.stop_grace_period", "is not a duration", id="bad-duration"),
        pytest.param("""
            project: p
            services:
              a: {image: x, deploy: {resources: {limits: {memory: lots}}}}
            phases: [{name: one, services: [a]}]
         """, "services.a.deploy.resources.limits.memory", "is not a size", id="bad-size"),
        pytest.param("""
            project: Not_Valid
            services:
              a: {image: x}
            phases: [{name: one, services: [a]}]
         """, "project", "not a valid project name", id="bad-project"),
        pytest.param("""
            project: p
            services:
              a: {image: x, networks: [[back]]}
            phases: [{name: one, services: [a]}]
         """, "services.a.networks", "item 0 (['back']) is not a name", id="network-list-item"),
        pytest.param("""
            project: p
            services:
              a: {image: x}
              b: {image: x, after: [a, {a: started}]}
            phases: [{name: one, services: [a, b]}]
         """, "services.b.after", "item 1 ({'a': 'started'}) is not a name",
                     id="after-list-item"),
    ],
)
def test_problem_path(plan_error: Refuse, text: str, path: str, fragment: str) -> None:
    error = plan_error(text)
    assert [problem.path for problem in error.problems] == [path]
    assert fragment in error.problems[0].message
    assert fragment in str(error)


@pytest.mark.parametrize(("where", "path"), [
    ("project: \"p\\n\"\nservices: {a: {image: x}}", "project"),
    ("project: p\nservices: {\"a\\n\": {image: x}}", "services.a\n"),
    ("project: p\nnetworks: {\"n\\n\": {}}\nservices: {a: {image: x}}", "networks.n\n"),
    ("project: p\nservices: {a: {image: x, restart: \"always\\n\"}}", "services.a.restart"),
    ("project: p\nservices: {a: {image: x, restart: \"on-failure:99999999999\"}}",
     "services.a.restart"),
])
def test_a_trailing_newline_is_not_part_of_a_valid_name(plan_error: Refuse, where: str,
                                                         path: str) -> None:
    """Found by test_hostile_plans: `$` matches before a trailing newline."""
    text = where + "\nphases: [{name: one, services: [a]}]\n"
    assert path in [problem.path for problem in plan_error(text).problems]


@pytest.mark.parametrize(("pattern", "fragment"), [
    ("(" * 500 + ")" * 500, "is not a regular expression"),
    ("a{4294967296}", "is not a regular expression: the repetition number is too large"),
    ("(unclosed", "is not a regular expression: missing )"),
    ("x" * 1001, "too long"),
])
def test_a_log_pattern_that_cannot_compile_is_a_plan_error(plan_error: Refuse, pattern: str,
                                                           fragment: str) -> None:
    """Found by test_hostile_plans: RecursionError and OverflowError escaped re.compile."""
    error = plan_error(f"project: p\nservices: {{a: {{image: x, ready: {{log: '{pattern}'}}}}}}\n"
                       "phases: [{name: one, services: [a]}]\n")
    (problem,) = error.problems
    assert problem.path == "services.a.ready.log"
    assert fragment in problem.message


def test_a_key_that_is_not_text_is_named_at_its_path(plan_error: Refuse) -> None:
    """Found by test_hostile_plans: the path read `services[1].[key]`."""
    error = plan_error("""
        project: p
        services:
          a: {image: x, environment: {1: x, 2: y}}
          1: {image: x}
        phases: [{name: one, services: [a]}]
    """)
    assert sorted((p.path, p.message, p.line) for p in error.problems) == [
        ("services.1", "the key 1 must be text: write it in quotes", 5),
        ("services.a.environment.1", "the key 1 must be text: write it in quotes", 4),
        ("services.a.environment.2", "the key 2 must be text: write it in quotes", 4)]


def test_keys_python_takes_as_one_are_refused(plan_error: Refuse) -> None:
    """Found by test_hostile_plans: {1: x, true: y} kept only one of them, and the error
    said "duplicate key True (first at line 0)"."""
    (problem,) = plan_error("project: p\nx: {1: x, true: y}\n").problems
    assert (problem.path, problem.line) == ("x.true", 2)
    assert problem.message == ("not valid YAML: the keys 1 (line 2) and True are one key to "
                               "Python: write keys in quotes")


def test_unknown_key_lists_the_allowed_keys(plan_error: Refuse) -> None:
    error = plan_error("""
        project: p
        services:
          a: {image: x, ready: {http: {port: 80, pth: /x}}}
        phases: [{name: one, services: [a]}]
    """)
    (problem,) = error.problems
    assert problem.path == "services.a.ready.http.pth"
    assert "did you mean 'path'?" in problem.message
    assert "allowed here: path, port, scheme, status" in problem.message


def test_all_reference_problems_are_reported_together(plan_error: Refuse) -> None:
    error = plan_error("""
        project: p
        services:
          a: {image: x, networks: [nope]}
          b: {image: x}
        phases: [{name: one, services: [a, ghost]}]
    """)
    assert {p.path for p in error.problems} == {
        "phases[0].services[1]", "services.b", "services.a.networks.nope"}


def test_problems_carry_their_line(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          a:
            image: x
            imgae: y
        phases: [{name: one, services: [a]}]
    """)
    assert [(p.path, p.line) for p in error.problems] == [("services.a.imgae", 5)]


# --- host ports -----------------------------------------------------------------------------


def test_same_host_port_on_different_addresses_or_protocols_is_allowed(load: Load) -> None:
    loaded = load("""
        project: p
        services:
          a: {image: x, ports: ["127.0.0.1:80:80", "53:53/udp"]}
          b: {image: x, ports: ["127.0.0.2:80:80", "53:53/tcp", "127.0.0.1::80"]}
        phases: [{name: one, services: [a, b]}]
    """)
    assert len(loaded.plan.services["b"].ports) == 3


def test_all_addresses_clash_with_one_address(plan_error: Refuse) -> None:
    error = plan_error("""
        project: p
        services:
          a: {image: x, ports: ["127.0.0.1:80:80"]}
          b: {image: x, ports: ["80:80"]}
        phases: [{name: one, services: [a, b]}]
    """)
    assert [p.path for p in error.problems] == ["services.b.ports[0]"]


def test_host_port_clash_with_the_second_of_two_addresses(plan_error: Refuse) -> None:
    # b and c both publish 127.0.0.2:80; a on 127.0.0.1:80 must not hide that clash.
    error = plan_error("""
        project: p
        services:
          a: {image: x, ports: ["127.0.0.1:80:80"]}
          b: {image: x, ports: ["127.0.0.2:80:80"]}
          c: {image: x, ports: ["127.0.0.2:80:80"]}
        phases: [{name: one, services: [a, b, c]}]
    """)
    assert [p.path for p in error.problems] == ["services.c.ports[0]"]
    assert "also published by b" in error.problems[0].message


def test_explicit_wildcard_address_clashes_with_one_address(plan_error: Refuse) -> None:
    # 0.0.0.0 is "all addresses", like an empty address: the engine cannot bind both.
    error = plan_error("""
        project: p
        services:
          a: {image: x, ports: ["0.0.0.0:80:80"]}
          b: {image: x, ports: ["127.0.0.1:80:80"]}
        phases: [{name: one, services: [a, b]}]
    """)
    assert [p.path for p in error.problems] == ["services.b.ports[0]"]


def test_host_port_clash_names_a_service_with_a_dot(plan_error: Refuse) -> None:
    error = plan_error("""
        project: p
        services:
          web.v1: {image: x, ports: ["80:80"]}
          api: {image: x, ports: ["80:80"]}
        phases: [{name: one, services: [web.v1, api]}]
    """)
    (problem,) = error.problems
    assert problem.path == "services.api.ports[0]"
    assert "also published by web.v1:" in problem.message


# --- YAML -----------------------------------------------------------------------------------


def test_duplicate_keys_are_refused(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          a: {image: x}
          a: {image: y}
        phases: [{name: one, services: [a]}]
    """)
    (problem,) = error.problems
    assert problem.path == "services.a"
    assert "duplicate key 'a' (first at line 3)" in problem.message
    assert problem.line == 4


def test_invalid_yaml_is_refused_with_its_line(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services: {a: {image: x}
        phases: [
    """)
    (problem,) = error.problems
    assert problem.message.startswith("not valid YAML")
    assert problem.line == 3


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\ufffe"])
def test_a_control_character_in_the_text_is_a_plan_error(plan_error: Refuse,
                                                          character: str) -> None:
    """Found by test_hostile_plans: the YAML reader's check ran before the error handling."""
    (problem,) = plan_error(f"project: p\nservices: {{}}\nimage: a{character}b\n").problems
    assert problem.message.startswith("not valid YAML: the character")
    assert problem.line == 3


@pytest.mark.parametrize(("value", "fragment"), [
    ("9" * 5000, "a number with more than 100 digits"),
    ("2001-02-30", "cannot read the value '2001-02-30': day is out of range for month"),
])
def test_a_value_yaml_cannot_build_is_a_plan_error(plan_error: Refuse, value: str,
                                                    fragment: str) -> None:
    """Found by test_hostile_plans: PyYAML's constructors raised ValueError."""
    (problem,) = plan_error(f"project: p\nservices:\n  a: {{image: x, hostname: {value}}}\n"
                            ).problems
    assert fragment in problem.message
    assert (problem.path, problem.line) == ("services.a.hostname", 3)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_a_plan_must_be_a_mapping(plan_error: Refuse, text: str) -> None:
    (problem,) = plan_error(text).problems
    assert "a plan is a mapping" in problem.message


def test_missing_plan_file_is_a_usage_error(tmp_path: Path) -> None:
    from ollamatopo._errors import UsageError
    from ollamatopo.plan._loading import load_plan

    with pytest.raises(UsageError, match="not found"):
        load_plan(tmp_path / "absent.yaml", {})


BILLION_LAUGHS = """
project: p
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
services: {}
phases: []
"""


def test_alias_bomb_is_refused_quickly(plan_error: Refuse) -> None:
    started = time.monotonic()
    (problem,) = plan_error(BILLION_LAUGHS).problems
    assert time.monotonic() - started < 5
    assert "expands to more than" in problem.message


def _laughs(levels: int) -> str:
    """Nine laughs, then each level nine aliases of the one before, as one flow mapping."""
    parts = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    parts += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels)]
    return "{" + ", ".join(parts) + "}"


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param("? " + _laughs(9) + "\n: x\nproject: p\n", "a mapping key must be a plain "
                 "scalar", id="laughs-in-a-key"),
    pytest.param("k: &a [" + ",".join(["1"] * 9000) + "]\n? \"" + "K" * 100_000 + "\"\n: *a\n",
                 "a key of 100000 characters is too long", id="long-key-over-a-long-list"),
    pytest.param("k: &a [" + ",".join(["1"] * 9000) + "]\n" + "".join(
        f"{'  ' * n}k{'x' * 250}{n}:\n" for n in range(60)) + "  " * 60 + "v: *a\n",
                 "expands to more than 16 MiB of text", id="long-paths-over-a-long-list"),
])
def test_expansion_through_keys_is_refused_quickly(plan_error: Refuse, text: str,
                                                   fragment: str) -> None:
    """Found by test_hostile_plans: PyYAML's repr of a key expanded its aliases, and every
    path of an aliased list repeated a long key (gigabytes of paths)."""
    started = time.process_time()
    (problem,) = plan_error(text).problems
    assert time.process_time() - started < 2
    assert fragment in problem.message


def test_a_long_variable_repeated_through_aliases_is_refused(plan_error: Refuse) -> None:
    """Found by test_hostile_plans: 100,000 copies of a 1 MB variable was 100 GB."""
    started = time.process_time()
    error = plan_error("project: p\nx-v: &v \"${BIG}\"\nx-l: &l [" + ", ".join(["*v"] * 100)
                       + "]\nservices:\n  a:\n    image: x\n    bomb: ["
                       + ", ".join(["*l"] * 1000) + "]\n", {"BIG": "B" * 1_000_000})
    (problem,) = error.problems
    assert time.process_time() - started < 2
    assert problem.path == "services.a.bomb[0][16]"
    assert problem.line == 2  # where the repeated value is written
    assert "variables expand the document past 16 MiB" in problem.message


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param("project: p\nx-a: [" + "1," * 100_000 + "1]\n", "the document has more than "
                 "10000 values; a plan has a few hundred", id="many-values"),
    pytest.param("project: p\n" + "#" * 600_000 + "\n", "the file is larger than 512 KiB",
                 id="large-file"),
])
def test_files_that_would_take_seconds_to_parse_are_refused(plan_error: Refuse, text: str,
                                                            fragment: str) -> None:
    """Found by test_hostile_plans: PyYAML's pure-Python parser takes some 40 µs a value; a
    4 MiB file of tiny values took 15 s."""
    started = time.process_time()
    (problem,) = plan_error(text).problems
    assert time.process_time() - started < 2
    assert fragment in problem.message


def _services(count: int, spec: str = "{image: x}") -> str:
    return "".join(f"  s{i}: {spec}\n" for i in range(count))


@pytest.mark.parametrize(("text", "path", "fragment"), [
    pytest.param("project: p\nservices:\n" + _services(1001) + "phases: []\n", "services",
                 "at most 1000 items", id="services"),
    pytest.param("project: p\nservices:\n" + _services(100, "{image: x, replicas: 500}")
                 + "phases: [{name: one, services: [" + ", ".join(f"s{i}" for i in range(100))
                 + "]}]\n", "services", "asks for 50000 containers with its replicas; at most "
                 "1000", id="replicas"),
])
def test_at_most_a_thousand_containers(plan_error: Refuse, text: str, path: str,
                                       fragment: str) -> None:
    """Found by test_hostile_plans: 500 replicas of 100 services took 15 s to expand, and
    two phases of thousands of services were millions of default dependencies."""
    started = time.process_time()
    (problem,) = plan_error(text).problems
    assert time.process_time() - started < 2
    assert (problem.path, fragment in problem.message) == (path, True), problem


def test_thousands_of_unknown_names_are_reported_quickly(plan_error: Refuse) -> None:
    """Found by test_hostile_plans: a "did you mean" for each of thousands of unknown names
    (difflib over every known one) took half a minute; the first twenty get one."""
    started = time.process_time()
    error = plan_error("project: p\nservices:\n" + _services(999, "{image: x, imgae: y}")
                       + "phases: [{name: one, services: [" + ", ".join(
                           f"t{i}" for i in range(3000)) + "]}]\n")
    assert time.process_time() - started < 2
    # Each unknown key, and the phase's unknown names and the services it leaves in no phase,
    # which are checked too although the services have unknown keys (issue 15).
    assert len(error.problems) == 999 + 3000 + 999
    assert sum("did you mean 'image'?" in p.message for p in error.problems) == 20
    error = plan_error("project: p\nservices:\n" + _services(999) + "phases: [{name: one, "
                       "services: [" + ", ".join(f"s{i}x" for i in range(3000)) + "]}]\n")
    assert time.process_time() - started < 4
    assert len(error.problems) == 3000 + 999
    assert sum("did you mean" in p.message for p in error.problems) == 20


def test_deep_nesting_is_refused(plan_error: Refuse) -> None:
    (problem,) = plan_error("project: p\nservices: " + "[" * 100 + "]" * 100 + "\n").problems
    assert "nests deeper than 64 levels" in problem.message


@pytest.mark.parametrize("text", [
    "project: p\nservices: " + "[" * 200_000 + "]" * 200_000 + "\n",
    "project: p\nservices:\n" + "".join(f"{'  ' * n}- \n" for n in range(1, 500)) + "x\n",
])
def test_deep_nesting_is_refused_at_its_line_before_the_recursion_limit(plan_error: Refuse,
                                                                        text: str) -> None:
    """Found by test_hostile_plans: PyYAML's composer recursed to Python's limit (seconds of
    CPU) and the problem had no line."""
    started = time.process_time()
    (problem,) = plan_error(text).problems
    assert time.process_time() - started < 1
    assert problem.message == "the document nests deeper than 64 levels"
    assert problem.line is not None


def test_very_deep_nesting_is_a_plan_error_not_a_crash(plan_error: Refuse) -> None:
    plan_error("project: p\nservices: " + "[" * 1000 + "]" * 1000 + "\n")


def test_extension_fields_and_anchors_are_allowed(load: Load) -> None:
    loaded = load("""
        project: p
        x-common: &common {image: base:1, restart: always}
        services:
          a: *common
          b: {image: other, x-note: anything}
        phases: [{name: one, services: [a, b]}]
    """)
    assert loaded.plan.services["a"].restart == "always"
    assert loaded.plan.services["b"].image == "other"


def test_merge_key_values_can_be_overridden(load: Load) -> None:
    loaded = load("""
        project: p
        x-common: &common {image: base:1, restart: always}
        services:
          a:
            <<: *common
            image: other:2
        phases: [{name: one, services: [a]}]
    """)
    assert loaded.plan.services["a"].image == "other:2"
    assert loaded.plan.services["a"].restart == "always"


# --- variables ------------------------------------------------------------------------------

NEEDS_VARIABLES = """
project: p
services:
  a:
    image: "${IMAGE:?set IMAGE}"
    command: ["--token", "${TOKEN:?}"]
    environment: {X: "${X:?}", Y: "${Y:-y}"}
phases: [{name: one, services: [a]}]
"""


def test_every_missing_required_variable_is_in_one_plan_error(plan_error: Refuse) -> None:
    error = plan_error(NEEDS_VARIABLES)
    assert [p.path for p in error.problems] == [
        "services.a.image", "services.a.command[1]", "services.a.environment.X"]
    assert error.problems[0].message == "${IMAGE}: set IMAGE"
    assert "required variables are not set: IMAGE, TOKEN, X" in str(error)


def test_required_variables_from_the_environment(load: Load) -> None:
    service = load(NEEDS_VARIABLES, {"IMAGE": "img", "TOKEN": "t", "X": "x"}).plan.services["a"]
    assert service.image == "img"
    assert service.command == ["--token", "t"]
    assert service.environment == {"X": "x", "Y": "y"}


def test_dotenv_beside_the_plan_supplies_variables(load: Load, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IMAGE=from-dotenv\nTOKEN=dot\nX=dot\n", encoding="utf-8")
    service = load(NEEDS_VARIABLES, {"TOKEN": "from-process"}).plan.services["a"]
    assert service.image == "from-dotenv"
    assert service.command == ["--token", "from-process"]  # the process environment wins


def test_bad_dotenv_line_is_a_plan_error(plan_error: Refuse, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GOOD=1\nnot an assignment\n", encoding="utf-8")
    error = plan_error(NEEDS_VARIABLES)
    assert error.source == str(tmp_path / ".env")
    assert [p.path for p in error.problems] == ["line 2"]


def test_unset_variable_gives_a_warning(load: Load) -> None:
    loaded = load("""
        project: p
        services:
          a: {image: "img${TAG}"}
        phases: [{name: one, services: [a]}]
    """)
    assert loaded.plan.services["a"].image == "img"
    assert loaded.warnings == ("services.a.image: variable TAG is not set, using an empty string",)


# --- service environments -------------------------------------------------------------------


def test_environment_list_form_takes_bare_keys_from_the_environment(load: Load) -> None:
    loaded = load("""
        project: p
        services:
          a: {image: x, environment: ["A=1", "B", "C", "D=x=y", "E="]}
        phases: [{name: one, services: [a]}]
    """, {"B": "from-env"})
    # C is unset, so it is dropped rather than set empty.
    assert loaded.plan.services["a"].environment == {"A": "1", "B": "from-env", "D": "x=y",
                                                     "E": ""}


def test_env_files_are_merged_under_environment(load: Load, tmp_path: Path) -> None:
    (tmp_path / "common.env").write_text("A=common\nB=common\nC=common\n", encoding="utf-8")
    (tmp_path / "local.env").write_text("# local\nB=local\nexport D='local'\n", encoding="utf-8")
    loaded = load("""
        project: p
        services:
          a:
            image: x
            env_file: [common.env, local.env]
            environment: {C: plan, E: true}
          b: {image: x, env_file: common.env}
        phases: [{name: one, services: [a, b]}]
    """)
    assert loaded.plan.services["a"].environment == {
        "A": "common", "B": "local", "C": "plan", "D": "local", "E": "true"}
    assert loaded.plan.services["b"].environment == {"A": "common", "B": "common", "C": "common"}


def test_unreadable_env_file_is_a_plan_error(plan_error: Refuse) -> None:
    error = plan_error("""
        project: p
        services:
          a: {image: x, env_file: [absent.env]}
        phases: [{name: one, services: [a]}]
    """)
    assert [p.path for p in error.problems] == ["services.a.env_file[0]"]
    assert "cannot read" in error.problems[0].message


@pytest.mark.parametrize(("env_file", "fragment"), [
    ("/dev/zero", "it is not a regular file"),
    ('"bad\\0name.env"', "the file name contains a NUL character"),
    ("latin1.env", "the file is not UTF-8 text (byte 0xe9 on line 2)"),
    ("huge.env", "the file is larger than 1024 KiB"),
    (".", "it is not a regular file"),
])
def test_env_files_that_cannot_be_read_whole_as_text_are_plan_errors(
        plan_error: Refuse, tmp_path: Path, env_file: str, fragment: str) -> None:
    """Found by test_hostile_plans: non-UTF-8 and NUL names raised, /dev/zero never ended."""
    (tmp_path / "latin1.env").write_bytes(b"A=1\nB=caf\xe9\n")
    (tmp_path / "huge.env").write_bytes(b"A=" + b"x" * (1024 * 1024) + b"\n")
    error = plan_error(f"""
        project: p
        services:
          a: {{image: x, env_file: [{env_file}]}}
        phases: [{{name: one, services: [a]}}]
    """)
    assert [p.path for p in error.problems] == ["services.a.env_file[0]"]
    assert fragment in error.problems[0].message


def test_a_dotenv_and_a_plan_that_are_not_utf8_are_plan_errors(write_plan: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    from ollamatopo.plan._loading import load_plan

    plan = write_plan("project: p\nservices: {a: {image: x}}\n"
                      "phases: [{name: one, services: [a]}]\n")
    (tmp_path / ".env").write_bytes(b"\xff\xfeA=1\n")
    with pytest.raises(PlanError, match=r"\.env: the file is not UTF-8 text"):
        load_plan(plan, {})
    (tmp_path / ".env").unlink()
    plan.write_bytes(b"project: p\nimage: caf\xe9\n")
    with pytest.raises(PlanError) as caught:
        load_plan(plan, {})
    (problem,) = caught.value.problems
    assert (problem.line, problem.message) == (2, "the file is not UTF-8 text (byte 0xe9 on "
                                                  "line 2)")


@pytest.mark.parametrize(("environment", "fragment"), [
    ("{'A=B': x}", "'A=B' is not an environment variable name"),
    ("['=x']", "'' is not an environment variable name"),
    ("{\"A\\tB\": x}", "'A\\tB' is not an environment variable name"),
    ("{\"\\u202eA\": x}", "is not an environment variable name"),
    ("{A: \"x\\0y\"}", "the value of A contains a NUL character"),
])
def test_environment_names_the_engine_would_split_or_mangle_are_refused(
        plan_error: Refuse, environment: str, fragment: str) -> None:
    """Found by test_hostile_plans: `A=B: x` reached the engine as A with the value B=x."""
    error = plan_error(f"""
        project: p
        services:
          a: {{image: x, environment: {environment}}}
        phases: [{{name: one, services: [a]}}]
    """)
    assert [p.path for p in error.problems] == ["services.a.environment"]
    assert fragment in error.problems[0].message
    assert "x\0y" not in str(error)


def test_a_nul_in_an_env_file_value_is_refused(plan_error: Refuse, tmp_path: Path) -> None:
    (tmp_path / "a.env").write_bytes(b"A=x\x00y\n")
    error = plan_error("""
        project: p
        services:
          a: {image: x, env_file: a.env}
        phases: [{name: one, services: [a]}]
    """)
    assert [p.path for p in error.problems] == ["services.a.env_file[0]"]
    assert "the value of A contains a NUL character" in error.problems[0].message
