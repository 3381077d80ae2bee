"""Compose's secrets and configs without an engine: where each lands (compose v2's rules),
what the engine is asked for (bind mounts, files copied before the start), the config
hash following their contents, every problem at its key and line, and no value in any
output (config, warnings, problems, payload reprs, labels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ollamatopo._errors import PlanError
from ollamatopo.engine._payloads import ContainerConfig, FileCopy, container_config
from ollamatopo.plan import _file_objects as file_objects
from ollamatopo.plan._compose_out import to_compose
from ollamatopo.plan._loading import LoadedPlan, load_plan

VALUE = "env-Secret-4f9a2c"  # of the variable API_KEY
FILE_VALUE = "file-Secret-7d1e3b"
COMPOSE = """\
services:
  app:
    image: app:1
    secrets:
      - db_pw
      - source: api_key
        target: custom/key
        uid: "1000"
        gid: "1001"
        mode: 0440
      - {source: db_pw, target: /etc/db/password}
    configs:
      - app_conf
      - {source: inline, target: conf/inline.ini, mode: "0600"}
  other:
    image: other:1
secrets:
  db_pw:
    file: ./pw.txt
  api_key:
    environment: API_KEY
configs:
  app_conf:
    file: conf/app.conf
  inline:
    content: |
      greeting=${GREETING}
      literal=$$HOME
"""


def write(tmp_path: Path, text: str = COMPOSE, secret: str = FILE_VALUE) -> Path:
    (tmp_path / "pw.txt").write_text(secret + "\n", encoding="utf-8")
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "conf" / "app.conf").write_text("listen 80\n", encoding="utf-8")
    path = tmp_path / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = COMPOSE, environ: dict[str, str] | None = None,
         secret: str = FILE_VALUE) -> LoadedPlan:
    environ = {"API_KEY": VALUE, "GREETING": "hello"} if environ is None else environ
    return load_plan(write(tmp_path, text, secret), environ=environ)


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, text, environ)
    return [str(problem) for problem in caught.value.problems]


def config_of(loaded: LoadedPlan, service: str = "app") -> ContainerConfig:
    return container_config(loaded.plan, service, loaded.path.parent)


# --- where they land ------------------------------------------------------------------------


def test_targets_as_compose_v2_resolves_them(tmp_path: Path) -> None:
    app = load(tmp_path).plan.services["app"]
    assert [(g.source, g.target, g.uid, g.gid, g.mode) for g in app.secret_files] == [
        ("db_pw", "/run/secrets/db_pw", None, None, None),
        ("api_key", "/run/secrets/custom/key", "1000", "1001", 0o440),  # YAML's 0440: octal
        ("db_pw", "/etc/db/password", None, None, None)]
    assert [(g.source, g.target, g.mode) for g in app.config_files] == [
        ("app_conf", "/app_conf", None), ("inline", "/conf/inline.ini", 0o600)]


def test_file_sources_are_bind_mounted_read_only(tmp_path: Path) -> None:
    mounts = config_of(load(tmp_path)).create_kwargs["host_config"]["Mounts"]
    assert {(m["Type"], m["Source"], m["Target"], m["ReadOnly"]) for m in mounts} == {
        ("bind", str(tmp_path / "pw.txt"), "/run/secrets/db_pw", True),
        ("bind", str(tmp_path / "pw.txt"), "/etc/db/password", True),
        ("bind", str(tmp_path / "conf" / "app.conf"), "/app_conf", True)}


def test_environment_and_content_sources_are_copied_in_with_mode_and_owner(
        tmp_path: Path) -> None:
    copies = config_of(load(tmp_path)).copies
    assert copies == (
        FileCopy("/run/secrets/custom/key", VALUE.encode(), 0o440, 1000, 1001),
        FileCopy("/conf/inline.ini", b"greeting=hello\nliteral=$HOME\n", 0o600))


def test_a_copy_is_0444_by_default_and_an_empty_value_makes_no_file(tmp_path: Path) -> None:
    loaded = load(tmp_path, """\
services:
  app: {image: app:1, secrets: [token, empty]}
secrets:
  token: {environment: TOKEN}
  empty: {environment: EMPTY}
""", {"TOKEN": VALUE, "EMPTY": ""})
    assert config_of(loaded).copies == (FileCopy("/run/secrets/token", VALUE.encode(), 0o444),)
    assert loaded.warnings == ("secrets.empty: its value is empty, so no file is written for "
                               "it (compose writes none either)",)


def test_a_service_without_them_keeps_its_hash(tmp_path: Path) -> None:
    """Payload keys only when used: a container made before keeps its hash."""
    other = config_of(load(tmp_path), "other")
    (tmp_path / "alone").mkdir()
    alone = load(tmp_path / "alone", f"name: {tmp_path.name.lower()}\n"
                 "services:\n  other: {image: other:1}\n")
    assert other.labels["ollamatopo.project"] == alone.plan.project
    assert other.config_hash == config_of(alone, "other").config_hash
    assert other.copies == ()


# --- the config hash follows the contents -------------------------------------------------


def test_a_changed_secret_file_changes_the_hash(tmp_path: Path) -> None:
    before = config_of(load(tmp_path)).config_hash
    assert config_of(load(tmp_path)).config_hash == before  # stable
    assert config_of(load(tmp_path, secret="another")).config_hash != before


def test_a_changed_environment_value_changes_the_hash(tmp_path: Path) -> None:
    before = config_of(load(tmp_path)).config_hash
    changed = config_of(load(tmp_path, environ={"API_KEY": "other", "GREETING": "hello"}))
    assert changed.config_hash != before


def test_a_changed_inline_content_changes_the_hash(tmp_path: Path) -> None:
    before = config_of(load(tmp_path)).config_hash
    changed = config_of(load(tmp_path, environ={"API_KEY": VALUE, "GREETING": "bye"}))
    assert changed.config_hash != before


# --- no value shown -------------------------------------------------------------------------


def test_values_are_hidden_and_never_printed(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert {VALUE, FILE_VALUE + "\n"} <= loaded.secrets  # the redactor gets them
    assert "listen 80\n" not in loaded.secrets  # a config file is no secret
    config = config_of(loaded)
    shown = " ".join([repr(config), json.dumps(config.labels), json.dumps(config.create_kwargs),
                      repr(loaded.plan.secrets), *loaded.warnings,
                      yaml.safe_dump(to_compose(loaded.declared or loaded.plan,
                                                loaded.path.parent))])
    assert VALUE not in shown and FILE_VALUE not in shown


def test_config_prints_the_definitions_as_compose_does(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    document = to_compose(loaded.declared or loaded.plan, loaded.path.parent)
    assert document["secrets"] == {"db_pw": {"file": str(tmp_path / "pw.txt")},
                                   "api_key": {"environment": "API_KEY"}}
    assert document["configs"] == {
        "app_conf": {"file": str(tmp_path / "conf" / "app.conf")},
        "inline": {"content": "greeting=hello\nliteral=$$HOME\n"}}  # $ escaped, as compose
    assert document["services"]["app"]["secrets"][1] == {
        "source": "api_key", "target": "/run/secrets/custom/key", "uid": "1000", "gid": "1001",
        "mode": "0440"}


def test_config_output_loads_back_into_the_same_plan(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    again = tmp_path / "again"
    again.mkdir()
    (again / "compose.yaml").write_text(yaml.safe_dump(to_compose(
        loaded.declared or loaded.plan, loaded.path.parent), sort_keys=False), encoding="utf-8")
    reloaded = load_plan(again / "compose.yaml", environ={"API_KEY": VALUE},
                         project=loaded.plan.project)
    for service in ("app", "other"):
        ours, theirs = config_of(loaded, service), config_of(reloaded, service)
        assert (ours.config_hash, ours.copies) == (theirs.config_hash, theirs.copies)


# --- problems, each at its key and line -----------------------------------------------------


def test_a_missing_file_names_the_key_the_line_and_the_fix(tmp_path: Path) -> None:
    text = COMPOSE.replace("./pw.txt", "./missing.txt")
    assert problems(tmp_path, text) == [
        f"secrets.db_pw.file (line 19): cannot read {tmp_path / 'missing.txt'}: no such file; "
        "create it, or correct the path (relative to the compose file's folder)"]


def test_an_unset_variable_names_the_key_the_line_and_the_fix(tmp_path: Path) -> None:
    assert problems(tmp_path, COMPOSE, {"GREETING": "x"}) == [
        "secrets.api_key.environment (line 21): the variable API_KEY is not set: export it, or "
        "write it in the .env beside the compose file (or the --env-file)"]


def test_a_secret_of_a_service_left_out_by_its_profile_is_not_read(tmp_path: Path) -> None:
    loaded = load(tmp_path, """\
services:
  app: {image: app:1}
  debug: {image: app:1, profiles: [debug], secrets: [token]}
secrets:
  token: {environment: UNSET_TOKEN}
""", {})
    assert set(loaded.plan.services) == {"app"}


def test_an_undeclared_secret_is_refused_as_compose_refuses_it(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
services:
  app:
    image: app:1
    secrets: [nope]
    configs: [{source: nada}]
""") == ["services.app.secrets[0] (line 4): secret 'nope' is not declared: declare it under "
         "the top-level secrets, or correct the name (compose refuses it too)",
         "services.app.configs[0] (line 5): config 'nada' is not declared: declare it under "
         "the top-level configs, or correct the name (compose refuses it too)"]


@pytest.mark.parametrize(("declaration", "expected"), [
    ("{external: true, file: ./pw.txt}", "secrets.s (line 4): an external one has no file"),
    ("{name: 3, file: ./pw.txt}", "secrets.s.name (line 4): expected a name"),
    ("{external: yes please}", "secrets.s.external (line 4): expected true or false"),
    ("{file: ./pw.txt, driver: vault}", "secrets.s.driver (line 4): not supported yet: a "
                                        "secrets driver plugin installed on the swarm"),
    ("{file: ./pw.txt, driver_opts: {a: b}}", "secrets.s.driver_opts (line 4): not supported "
                                              "yet: a secrets driver plugin"),
    ("{file: ./pw.txt, template_driver: jinja}", "secrets.s.template_driver (line 4): 'jinja' "
                                                 "is no template driver of the swarm: golang"),
    ("{file: ./pw.txt, labels: {ollamatopo.run: x}}", "secrets.s.labels (line 4): label "
                                                      "'ollamatopo.run': labels starting with"),
    ("{file: ./pw.txt, environment: X}", "secrets.s (line 4): give exactly one of file, "
                                         "environment (found: file, environment)"),
    ("{content: inline}", "secrets.s.content (line 4): unknown key: a secret takes file, "
                          "environment"),
    ("{file: ./pw.txt, flie: x}", "secrets.s.flie (line 4): unknown key"),
])
def test_what_a_secret_cannot_be(tmp_path: Path, declaration: str, expected: str) -> None:
    found = problems(tmp_path, f"""\
services:
  app: {{image: app:1, secrets: [s]}}
secrets:
  s: {declaration}
""")
    assert any(problem.startswith(expected) for problem in found), found


def test_a_swarms_name_and_external_ones_load_and_one_engine_refuses_an_external_one(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, """\
services:
  app: {image: app:1, secrets: [db_pw, shared], configs: [site]}
secrets:
  db_pw: {file: ./pw.txt, name: shop_db_password}
  shared: {external: true, name: vault_token}
configs:
  site: {external: true}
""")
    shared = loaded.plan.secrets["shared"]
    assert (shared.external, shared.name, shared.digest) == (True, "vault_token", None)
    assert [str(problem) for problem in file_objects.on_one_engine(loaded.plan)] == [
        "services.app.secrets[1]: secret 'shared' is external: a swarm's (--backend swarm "
        "looks it up); one engine has none (compose refuses it too)",
        "services.app.configs[0]: config 'site' is external: a swarm's (--backend swarm "
        "looks it up); one engine has none (compose refuses it too)"]
    assert to_compose(loaded.plan, tmp_path)["secrets"] == {
        "db_pw": {"file": str(tmp_path / "pw.txt"), "name": "shop_db_password"},
        "shared": {"name": "vault_token", "external": True}}


def test_a_config_has_no_driver_as_compose_has_none(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
services:
  app: {image: app:1, configs: [c]}
configs:
  c: {content: x, driver: vault}
""")
    assert found[0] == ("configs.c.driver (line 4): unknown key: a config takes file, "
                        "environment, content, name, external, labels, template_driver")


SHAPED = """\
services:
  app: {image: app:1, secrets: [db_pw], configs: [site]}
secrets:
  db_pw: {file: ./pw.txt, labels: [team=db, "tier=gold"]}
  shared: {external: true, labels: {a: b}, template_driver: golang}
configs:
  site:
    content: "name={{ .Service.Name }}"
    template_driver: golang
    labels: {team: web, replicas: 3}
"""


def test_labels_and_template_driver_load_warn_and_one_engine_refuses_a_template(
        tmp_path: Path) -> None:
    """Both label forms read as compose reads them; on one engine labels are ignored with
    a warning (compose ignores them) and a templated one is refused (compose refuses
    it); an external one's are ignored, as docker stack deploy ignores them."""
    loaded = load(tmp_path, SHAPED)
    secret, config = loaded.plan.secrets["db_pw"], loaded.plan.configs["site"]
    assert (secret.labels, secret.template_driver) == ({"team": "db", "tier": "gold"}, None)
    assert (config.labels, config.template_driver) == ({"team": "web", "replicas": "3"},
                                                       "golang")
    assert loaded.plan.secrets["shared"].labels == {}
    one_engine = "a swarm setting; docker compose ignores it on one engine, and so does ollamatopo"
    assert [w for w in loaded.warnings if one_engine in w] == [
        f"secrets.db_pw.labels: {one_engine}; `--backend swarm` carries it out",
        f"configs.site.labels: {one_engine}; `--backend swarm` carries it out"]
    assert ("secrets.shared: labels and template_driver of an external one are ignored: it is "
            "only looked up, as the swarm holds it (docker stack deploy ignores them too)"
            ) in loaded.warnings
    assert [str(p) for p in file_objects.on_one_engine(loaded.plan)] == [
        "services.app.configs[0]: config 'site' has template_driver: golang: the swarm "
        "renders it in each task (--backend swarm); one engine cannot (compose refuses it "
        "too): drop template_driver to get the text as written"]
    assert config_of(loaded).config_hash == config_of(load(tmp_path, SHAPED.replace(
        "team: web", "team: ops"))).config_hash  # one engine's container: labels play no part
    printed = to_compose(loaded.plan, tmp_path)
    assert printed["secrets"]["db_pw"]["labels"] == {"team": "db", "tier": "gold"}
    assert printed["configs"]["site"] == {"content": "name={{ .Service.Name }}",
                                          "labels": {"team": "web", "replicas": "3"},
                                          "template_driver": "golang"}


def test_labels_and_template_driver_are_not_warned_about_for_a_swarm(tmp_path: Path) -> None:
    loaded = load_plan(write(tmp_path, SHAPED), environ={}, on_swarm=True)
    assert not [w for w in loaded.warnings if "labels: a swarm setting" in w]


@pytest.mark.parametrize(("entry", "expected"), [
    ("{source: s, uid: 1000}", "services.app.secrets[0].uid (line 5): expected a number in "
                               'quotes, for example uid: "1000"'),
    ("{source: s, mode: rwx}", "services.app.secrets[0].mode (line 5): expected a file mode"),
    ("{source: s, mode: 0o77777}", "services.app.secrets[0].mode (line 5): expected a file "
                                   "mode"),
    ("{source: s, targte: /x}", "services.app.secrets[0].targte (line 5): unknown key"),
    ("{target: /x}", "services.app.secrets[0].source (line 5): name one of the top-level"),
])
def test_what_a_service_entry_cannot_be(tmp_path: Path, entry: str, expected: str) -> None:
    found = problems(tmp_path, f"""\
services:
  app:
    image: app:1
    secrets:
      - {entry}
secrets:
  s: {{environment: API_KEY}}
""")
    assert any(problem.startswith(expected) for problem in found), found


def test_two_at_one_target_and_a_read_only_container_are_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
services:
  app:
    image: app:1
    read_only: true
    secrets: [s, {source: f, target: s}, f]
secrets:
  s: {environment: API_KEY}
  f: {file: ./pw.txt}
""") == ["services.app.secrets[0] (line 5): a read_only container cannot take a secret from "
         "environment or content (it is copied in; compose refuses it too): use a file: "
         "source, or drop read_only",
         "services.app.secrets[1] (line 5): /run/secrets/s is also the target of secrets[0]: "
         "give each its own target"]


def test_uid_gid_mode_of_a_file_source_warn_as_compose_ignores_them(tmp_path: Path) -> None:
    loaded = load(tmp_path, """\
services:
  app: {image: app:1, secrets: [{source: f, mode: 0400}]}
secrets:
  f: {file: ./pw.txt}
""")
    assert loaded.warnings == (
        "services.app.secrets[0]: uid, gid and mode do not apply to a file source: it is "
        "bind-mounted read-only with the file's own owner and mode (compose ignores them too; "
        "a swarm applies them)",)


def test_no_problem_shows_a_value(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
services:
  app: {image: app:1, hostname: "${API_KEY}", secrets: [k]}
secrets:
  k: {environment: API_KEY}
""", {"API_KEY": "not a host name!"})
    assert found and not any("not a host name!" in problem for problem in found)


# --- several files --------------------------------------------------------------------------


def test_an_override_replaces_the_entry_at_the_same_target(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "compose.override.yaml").write_text("""\
services:
  app:
    secrets:
      - {source: api_key, target: custom/key, mode: "0400"}
""", encoding="utf-8")
    loaded = load_plan(path, environ={"API_KEY": VALUE, "GREETING": "x"},
                       overrides=[tmp_path / "compose.override.yaml"])
    grants = loaded.plan.services["app"].secret_files
    assert [(g.target, g.mode) for g in grants] == [
        ("/run/secrets/db_pw", None), ("/run/secrets/custom/key", 0o400),
        ("/etc/db/password", None)]
