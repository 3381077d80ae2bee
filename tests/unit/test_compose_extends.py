"""Compose's `extends` and `include`, without an engine: what they bring into the plan, from
which folder relative paths count, which variables interpolate each file, and what is
refused (cycles, missing files, a name defined twice), with the file and line of each
problem. tests/test_compose_referee_files.py checks the same forms against compose v2."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import Condition


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "compose.yaml"


def load(root: Path, files: dict[str, str], env: dict[str, str] | None = None,
         overrides: tuple[str, ...] = ()) -> LoadedPlan:
    return load_plan(write(root, files), environ=env or {},
                     overrides=[root / name for name in overrides])


def refused(root: Path, files: dict[str, str], env: dict[str, str] | None = None,
            overrides: tuple[str, ...] = ()) -> PlanError:
    with pytest.raises(PlanError) as caught:
        load(root, files, env, overrides)
    return caught.value


# --- extends ----------------------------------------------------------------------------------


def test_extends_in_the_same_file_merges_the_base_under_the_service(tmp_path: Path) -> None:
    plan = load(tmp_path, {"compose.yaml": """
services:
  base:
    image: app:1
    command: [serve, --port, "80"]
    environment: {LOG: info, REGION: eu}
    ports: ["80"]
    labels: [tier=app]
    depends_on: [db]
  api:
    extends: base
    command: [serve, --port, "81"]
    environment: [LOG=debug]
    ports: ["8081:81"]
    labels: {team: shop}
  db: {image: db:1}
"""}).plan
    api = plan.services["api"]
    assert api.image == "app:1"
    assert api.command == ["serve", "--port", "81"]  # command replaced, not appended
    assert api.environment == {"LOG": "debug", "REGION": "eu"}
    assert [(port.container_port, port.host_port) for port in api.ports] == [(80, None),
                                                                             (81, 8081)]
    assert api.labels == {"tier": "app", "team": "shop"}
    # compose v2 copies depends_on too (the dependency must be in the project)
    assert plan.dependencies("api") == {"db": Condition.STARTED}
    assert plan.services["base"].command == ["serve", "--port", "80"]  # the base unchanged


def test_a_chain_of_extends_resolves_from_the_root(tmp_path: Path) -> None:
    plan = load(tmp_path, {"compose.yaml": """
services:
  worker: {extends: {service: api}, command: [work]}
  api: {extends: base, environment: {ROLE: api}}
  base: {image: app:1, environment: {ROLE: base, LOG: info}}
"""}).plan
    worker = plan.services["worker"]
    assert (worker.image, worker.command) == ("app:1", ["work"])
    assert worker.environment == {"ROLE": "api", "LOG": "info"}


def test_a_base_in_another_file_keeps_its_relative_paths_to_its_own_folder(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, {
        "compose.yaml": """
services:
  db:
    extends: {file: common/services.yaml, service: postgres}
    environment: {POSTGRES_DB: shop}
  cache:
    extends: {file: common/services.yaml, service: tuned}
volumes:
  pgdata: {}
""",
        "common/services.yaml": """
services:
  postgres:
    image: postgres:16
    env_file: db.env
    volumes: [./initdb:/docker-entrypoint-initdb.d:ro, pgdata:/var/lib/postgresql/data]
  tuned:
    extends: {file: ../shared/redis.yaml, service: redis}
    command: [redis-server, --maxmemory, 64mb]
""",
        "common/db.env": "POSTGRES_USER=shop\n",
        "shared/redis.yaml": """
services:
  redis:
    image: redis:7
    volumes: [{type: bind, source: ./conf, target: /etc/redis, read_only: true}]
""",
    })
    db, cache = loaded.plan.services["db"], loaded.plan.services["cache"]
    assert db.environment == {"POSTGRES_USER": "shop", "POSTGRES_DB": "shop"}
    assert [(m.source, m.named) for m in db.volumes] == [
        (str(tmp_path / "common" / "initdb"), False), ("pgdata", True)]
    assert cache.image == "redis:7"
    assert cache.command == ["redis-server", "--maxmemory", "64mb"]
    assert [(m.source, m.read_only) for m in cache.volumes] == [
        (str(tmp_path / "shared" / "conf"), True)]


def test_a_file_from_elsewhere_is_interpolated_once_and_keeps_its_literal_dollars(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, {
        "compose.yaml": """
services:
  api: {extends: {file: other.yaml, service: base}}
""",
        "other.yaml": """
services:
  base:
    image: "app:${TAG:-1}"
    command: [sh, -c, "echo $$HOME ${GREETING}"]
""",
    }, env={"TAG": "2", "GREETING": "$hello"})
    api = loaded.plan.services["api"]
    assert api.image == "app:2"
    assert api.command == ["sh", "-c", "echo $HOME $hello"]  # neither read again


@pytest.mark.parametrize(("files", "where", "what"), [
    ({"compose.yaml": "services:\n  a:\n    extends: b\n  b:\n    extends: a\n"},
     "services.a.extends (line 3)", "extends comes back to a service: a (compose.yaml) "
                                    "extends b (compose.yaml) extends a (compose.yaml)"),
    ({"compose.yaml": "services:\n  a:\n    image: a:1\n    extends: nope\n"},
     "services.a.extends (line 4)", "cannot extend 'nope': there is no such service"),
    ({"compose.yaml": "services:\n  a:\n    extends: {service: b, file: gone.yaml}\n"},
     "services.a.extends.file (line 3)", "no such file: "),
    ({"compose.yaml": "services:\n  a:\n    extends: {service: b, files: x.yaml}\n"},
     "services.a.extends (line 3)", "expected the name of a service, or a mapping"),
])
def test_what_extends_refuses_names_the_key_and_its_line(
        tmp_path: Path, files: dict[str, str], where: str, what: str) -> None:
    error = refused(tmp_path, files)
    assert error.source == str(tmp_path / "compose.yaml")
    [problem] = [str(problem) for problem in error.problems]
    assert problem.startswith(f"{where}: {what}"), problem


def test_a_cycle_through_files_names_the_chain(tmp_path: Path) -> None:
    error = refused(tmp_path, {
        "compose.yaml": "services:\n  web: {extends: {service: mid, file: sub/b.yaml}}\n",
        "sub/b.yaml": "services:\n  mid: {extends: {service: web, file: ../compose.yaml}}\n",
    })
    assert "web (compose.yaml) extends mid (sub/b.yaml) extends web (compose.yaml)" in str(error)


def test_extends_sees_only_its_own_files_services(tmp_path: Path) -> None:
    """As compose: an override file cannot extend a service of the file it overrides, and a
    service cannot extend one that an include brings."""
    error = refused(tmp_path, {
        "compose.yaml": "services:\n  base: {image: a:1}\n",
        "override.yaml": "services:\n  web: {extends: base}\n",
    }, overrides=("override.yaml",))
    assert error.source == str(tmp_path / "override.yaml")
    assert "cannot extend 'base'" in str(error)
    error = refused(tmp_path, {
        "compose.yaml": "include: [inc.yaml]\nservices:\n  web: {extends: base}\n",
        "inc.yaml": "services:\n  base: {image: a:1}\n",
    })
    assert "cannot extend 'base'" in str(error)


def test_a_problem_in_an_inherited_key_names_where_it_was_written(tmp_path: Path) -> None:
    error = refused(tmp_path, {
        "compose.yaml": """
services:
  web:
    extends: base
  base:
    image: a:1
    restrat: always
  api:
    extends: {file: other.yaml, service: api}
""",
        "other.yaml": "services:\n  api:\n    image: a:1\n    ports: [nope]\n",
    })
    problems = {problem.path: str(problem) for problem in error.problems}
    assert problems["services.web.restrat"].startswith("services.web.restrat (line 7): unknown")
    assert problems["services.web.restrat"].endswith("(inherited from services.base.restrat)")
    assert problems["services.api.ports[0]"].endswith("(written in other.yaml line 4)")


# --- include ----------------------------------------------------------------------------------


def test_include_brings_a_part_with_its_own_env_and_folder(tmp_path: Path) -> None:
    loaded = load(tmp_path, {
        "compose.yaml": """
include:
  - monitoring/compose.yaml
services:
  api:
    image: "api:${TAG}"
    depends_on: {prometheus: {condition: service_healthy}}
""",
        ".env": "TAG=1.4\nSHARED=main\n",
        "monitoring/compose.yaml": """
services:
  prometheus:
    image: "prom:${PROM_TAG}"
    command: ["--scrape=${SCRAPE}", "--from=${SHARED}", "--literal=$$x"]
    environment: [SCRAPE, UNSET_HERE]
    volumes: [./prometheus.yml:/etc/prometheus.yml:ro, metrics:/prometheus]
    env_file: exporter.env
    healthcheck: {test: [CMD, wget, -q, localhost:9090], interval: 5s}
volumes:
  metrics: {}
""",
        "monitoring/.env": "PROM_TAG=2.51\nSCRAPE=5s\nSHARED=monitoring\n",
        "monitoring/exporter.env": "EXPORTER=on\n",
    })
    plan = loaded.plan
    prometheus = plan.services["prometheus"]
    assert plan.services["api"].image == "api:1.4"
    assert prometheus.image == "prom:2.51"
    # the including part's variables win over the part's own .env, as in compose
    assert prometheus.command == ["--scrape=5s", "--from=main", "--literal=$x"]
    assert prometheus.environment == {"EXPORTER": "on", "SCRAPE": "5s"}
    assert [m.source for m in prometheus.volumes] == [
        str(tmp_path / "monitoring" / "prometheus.yml"), "metrics"]
    assert set(plan.volumes) == {"metrics"}
    assert plan.dependencies("api") == {"prometheus": Condition.HEALTHY}


def test_the_long_form_path_list_project_directory_and_env_file(tmp_path: Path) -> None:
    plan = load(tmp_path, {
        "compose.yaml": """
include:
  - path: [data/compose.yaml, data/compose.override.yaml]
    project_directory: data-root
    env_file: [data/settings.env]
services:
  api: {image: api:1}
""",
        "data/compose.yaml": """
services:
  db:
    image: "postgres:${PG}"
    volumes: [./initdb:/docker-entrypoint-initdb.d]
    environment: {A: one}
""",
        "data/compose.override.yaml": """
services:
  db:
    environment: {B: two}
    volumes: [./more:/more]
""",
        "data/settings.env": "PG=16\n",
        "data-root/.env": "PG=not-read\n",  # env_file given: the folder's .env is not read
    }).plan
    db = plan.services["db"]
    assert db.image == "postgres:16"
    assert db.environment == {"A": "one", "B": "two"}
    assert [m.source for m in db.volumes] == [str(tmp_path / "data-root" / "initdb"),
                                             str(tmp_path / "data-root" / "more")]


def test_includes_nest_and_variables_name_the_files(tmp_path: Path) -> None:
    plan = load(tmp_path, {
        "compose.yaml": "include: ['${STACK}/compose.yaml']\n",
        "stack/compose.yaml": "include: [cache/compose.yaml]\nservices:\n  a: {image: a:1}\n",
        "stack/cache/compose.yaml": "services:\n  cache: {image: redis:7}\n",
    }, env={"STACK": "stack"}).plan
    assert set(plan.services) == {"a", "cache"}


def test_the_same_definition_twice_is_one_and_a_different_one_is_refused(
        tmp_path: Path) -> None:
    files = {"compose.yaml": "include: [inc.yaml]\nservices:\n  db: {image: db:1}\n",
             "inc.yaml": "services:\n  db: {image: db:1}\n"}
    assert set(load(tmp_path, files).plan.services) == {"db"}
    files["inc.yaml"] = "services:\n  db: {image: db:2}\n"
    error = refused(tmp_path, files)
    [problem] = error.problems
    assert (problem.path, problem.line) == ("services.db", 3)
    assert "defined here and again in inc.yaml, which include[0] brings in" in problem.message


def test_an_override_file_may_change_what_an_include_brings(tmp_path: Path) -> None:
    plan = load(tmp_path, {
        "compose.yaml": "include: [inc.yaml]\n",
        "inc.yaml": "services:\n  db: {image: db:1}\n",
        "override.yaml": "services:\n  db: {image: db:2}\n",
    }, overrides=("override.yaml",)).plan
    assert plan.services["db"].image == "db:2"


@pytest.mark.parametrize(("files", "where", "what"), [
    ({"compose.yaml": "include:\n  - gone.yaml\n"}, "include[0] (line 2)", "no such file: "),
    ({"compose.yaml": "include:\n  - path: a.yaml\n    env_file: gone.env\n",
      "a.yaml": "services: {}\n"},
     "include[0].env_file (line 3)", "no such file: "),
    ({"compose.yaml": "include:\n  - path: a.yaml\n    projectdir: x\n"},
     "include[0].projectdir (line 3)", "unknown key: an include takes path"),
    ({"compose.yaml": "include: a.yaml\n"}, "include (line 1)", "expected a list of paths"),
])
def test_what_include_refuses_names_the_key_and_its_line(
        tmp_path: Path, files: dict[str, str], where: str, what: str) -> None:
    error = refused(tmp_path, files)
    [problem] = [str(problem) for problem in error.problems]
    assert problem.startswith(f"{where}: {what}"), problem


def test_an_include_cycle_names_the_chain(tmp_path: Path) -> None:
    error = refused(tmp_path, {
        "compose.yaml": "include: [sub/compose.yaml]\nservices:\n  a: {image: a:1}\n",
        "sub/compose.yaml": "include: [../compose.yaml]\nservices:\n  b: {image: b:1}\n",
    })
    assert error.source == str(tmp_path / "sub" / "compose.yaml")
    assert "include comes back to a file: compose.yaml includes sub/compose.yaml includes " \
           "compose.yaml" in str(error)


def test_problems_in_an_included_file_name_it(tmp_path: Path) -> None:
    error = refused(tmp_path, {
        "compose.yaml": "include:\n  - inc.yaml\n",
        "inc.yaml": "services:\n  db:\n    image: db:1\n    restrat: always\n",
    })
    [problem] = error.problems
    assert problem.message.endswith("(written in inc.yaml line 4, included at line 2)")
    error = refused(tmp_path, {"inc.yaml": "services:\n  db:\n    image: ${TAG:?set TAG}\n"})
    assert error.source == str(tmp_path / "inc.yaml")
    assert [(p.path, p.line) for p in error.problems] == [("services.db.image", 3)]


def test_a_secret_used_in_an_included_file_stays_out_of_problems(tmp_path: Path) -> None:
    error = refused(tmp_path, {
        "compose.yaml": "include: [inc.yaml]\n",
        "inc.yaml": "services:\n  db:\n    image: db:1\n    command: [run, '${DB_PASSWORD}']\n"
                    "    ports: ['${DB_PASSWORD}']\n",
    }, env={"DB_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in str(error)


def test_the_x_anchors_of_a_file_from_elsewhere_are_not_interpolated(tmp_path: Path) -> None:
    loaded = load(tmp_path, {
        "compose.yaml": "services:\n  a: {extends: {file: b.yaml, service: b}}\n",
        "b.yaml": "x-env: &env {NOTE: '${UNSET_IN_ANCHOR}'}\n"
                  "x-must: '${REQUIRED_ONLY_HERE:?never used}'\n"
                  "services:\n  b: {image: b:1, environment: *env}\n",
    })
    assert loaded.plan.services["a"].environment == {"NOTE": ""}
    assert [w for w in loaded.warnings if "UNSET_IN_ANCHOR" in w] == [
        f"{tmp_path / 'b.yaml'}: services.b.environment.NOTE: variable UNSET_IN_ANCHOR is "
        "not set, using an empty string"]


def test_a_problem_written_in_an_override_file_names_it(tmp_path: Path) -> None:
    error = refused(tmp_path, {
        "compose.yaml": "services:\n  web:\n    image: a:1\n",
        "override.yaml": "services:\n  web:\n    ports: [nope]\n",
    }, overrides=("override.yaml",))
    [problem] = error.problems
    assert (problem.path, problem.line) == ("services.web.ports[0]", None)
    assert problem.message.endswith("(written in override.yaml line 3)")
