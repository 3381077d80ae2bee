"""Compose's secrets and configs, against compose v2 and on the real engine.

Referee (no engine): for one file with every source and form, `docker compose config` and
ollamatopo resolve the same definitions (a file's absolute path, the variable's name, the
inline content) and put each service's files at the same places with the same owner and
mode; what `ollamatopo config` prints passes compose and means the same to it; both refuse
an undeclared secret.

Engine: a stand-in gets a file secret (bind-mounted read-only at /run/secrets/NAME), an
environment secret and an inline config (copied in before the start, with their mode and
owner) and a file config; the container reads each. No value appears in any output of
`up`, `status`, `config`, `logs`, `exec`, the report or the container's labels, although
the container prints them. A changed secret file recreates the container at the next `up`;
an unchanged one keeps it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ollamatopo.plan._loading import load_plan
from tests.conftest import Project
from tests.test_compose_referee import ENV, compose_binary, theirs  # noqa: F401 (a fixture)

IMAGE = "ollamatopo-standin:latest"
FILE_VALUE = "file-Secret-5e8b1d"
CHANGED_VALUE = "file-Secret-9c2f7a"
ENV_VALUE = "env-Secret-3a7c4e"
ENVIRONMENT = {"OT_TEST_API_KEY": ENV_VALUE, "OT_TEST_GREETING": "hello"}
# The container prints what it was given ($$: the container's shell reads the files).
PRINT = ("cat /run/secrets/db_pw /run/secrets/api/key; exec /bin/sh /standin.sh")
COMPOSE = f"""\
services:
  app:
    image: {IMAGE}
    entrypoint: [/bin/sh, -c, "{PRINT}"]
    secrets:
      - db_pw
      - {{source: api_key, target: api/key, uid: "1000", gid: "1001", mode: 0440}}
    configs:
      - {{source: inline, target: /etc/app/inline.conf, mode: "0600"}}
      - app_conf
secrets:
  db_pw: {{file: ./pw.txt}}
  api_key: {{environment: OT_TEST_API_KEY}}
configs:
  app_conf: {{file: ./app.conf}}
  inline:
    content: |
      greeting=${{OT_TEST_GREETING}}
      home=$$HOME
"""


def write(folder: Path, secret: str = FILE_VALUE) -> Path:
    (folder / "pw.txt").write_text(secret + "\n", encoding="utf-8")
    (folder / "app.conf").write_text("listen 8080\n", encoding="utf-8")
    path = folder / "compose.yaml"
    path.write_text(COMPOSE, encoding="utf-8")
    return path


# --- the referee ----------------------------------------------------------------------------


def their_files(document: dict[str, Any]) -> dict[str, Any]:
    """compose's model of secrets and configs, with its mount rules applied (a secret's
    relative target under /run/secrets, a config's default target /<source>)."""
    def placed(kind: str, entry: dict[str, Any]) -> tuple[Any, ...]:
        base = "/run/secrets" if kind == "secrets" else ""
        target = entry.get("target", f"{base}/{entry['source']}")
        if not target.startswith("/"):
            target = f"{base}/{target}"
        mode = entry.get("mode")
        return (entry["source"], target, entry.get("uid"), entry.get("gid"),
                None if mode is None else int(mode, 8))

    return {
        "objects": {kind: {name: {key: value.replace("$$", "$") for key, value in spec.items()
                                  if key in ("file", "environment", "content")}
                           for name, spec in (document.get(kind) or {}).items()}
                    for kind in ("secrets", "configs")},
        "services": {name: {kind: [placed(kind, entry) for entry in spec.get(kind) or []]
                            for kind in ("secrets", "configs")}
                     for name, spec in document["services"].items()},
    }


def our_files(path: Path, env: dict[str, str]) -> dict[str, Any]:
    plan = load_plan(path, environ=env).plan
    return {
        "objects": {kind: {name: {key: str(path.parent / value) if key == "file" else value
                                  for key, value in spec.model_dump(
                                      include={"file", "environment", "content"},
                                      exclude_none=True).items()}
                           for name, spec in getattr(plan, kind).items()}
                    for kind in ("secrets", "configs")},
        "services": {name: {kind: [(g.source, g.target, g.uid, g.gid, g.mode)
                                   for g in getattr(spec, f"{kind[:-1]}_files")]
                            for kind in ("secrets", "configs")}
                     for name, spec in plan.services.items()},
    }


def test_compose_and_ollamatopo_place_the_same_files(compose_binary: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    path = write(tmp_path)
    ours = our_files(path, ENVIRONMENT)
    ours["objects"]["secrets"]["db_pw"]["file"] = str(tmp_path / "pw.txt")  # ./ resolved
    ours["objects"]["configs"]["app_conf"]["file"] = str(tmp_path / "app.conf")
    assert ours == their_files(theirs(compose_binary, path, ENVIRONMENT))
    assert ours["services"]["app"]["secrets"][1] == ("api_key", "/run/secrets/api/key", "1000",
                                                     "1001", 0o440)


def test_ollamatopo_config_passes_compose_and_means_the_same(
        compose_binary: Path, project: Project) -> None:  # noqa: F811
    path = write(project.folder)
    printed = project.run("config", "--plan", str(path), "--project", "sec", env=ENVIRONMENT)
    assert printed.code == 0, printed.stderr
    assert ENV_VALUE not in printed.stdout and FILE_VALUE not in printed.stdout
    converted = project.folder / "converted" / "compose.yaml"
    converted.parent.mkdir()
    converted.write_text(printed.stdout, encoding="utf-8")
    assert their_files(theirs(compose_binary, converted, ENVIRONMENT)) \
        == their_files(theirs(compose_binary, path, ENVIRONMENT))


def test_both_refuse_an_undeclared_secret(compose_binary: Path,  # noqa: F811
                                          project: Project) -> None:
    path = project.write(f"services:\n  app: {{image: {IMAGE}, secrets: [nope]}}\n",
                         "compose.yaml")
    done = subprocess.run([str(compose_binary), "-f", str(path), "config"], capture_output=True,
                          text=True, env=ENV, check=False, timeout=120)
    assert done.returncode != 0 and "undefined secret nope" in done.stderr
    ours = project.run("plan", "--plan", str(path))
    assert ours.code == 2
    assert "services.app.secrets[0] (line 2): secret 'nope' is not declared" in ours.stderr


# --- on the engine --------------------------------------------------------------------------


def read(container: Any, *argv: str) -> str:
    code, output = container.exec_run(list(argv))
    assert code == 0, output
    return str(output.decode())


def test_secrets_and_configs_reach_the_container_and_no_output(project: Project) -> None:
    path = write(project.folder)
    up = ["up", "--plan", str(path), "--project", project.name]
    outputs = {"up": project.run(*up, env=ENVIRONMENT)}
    assert outputs["up"].code == 0, outputs["up"].stderr
    app = project.containers()["app"]

    assert read(app, "cat", "/run/secrets/db_pw") == FILE_VALUE + "\n"
    assert read(app, "cat", "/run/secrets/api/key") == ENV_VALUE
    assert read(app, "cat", "/etc/app/inline.conf") == "greeting=hello\nhome=$HOME\n"
    assert read(app, "cat", "/app_conf") == "listen 8080\n"
    assert read(app, "stat", "-c", "%a %u %g", "/run/secrets/api/key",
                "/etc/app/inline.conf").split("\n")[:2] == ["440 1000 1001", "600 0 0"]
    code, _ = app.exec_run(["sh", "-c", "echo x > /run/secrets/db_pw"])
    assert code != 0  # the bind mount is read-only
    mounts = {m["Destination"]: m for m in app.attrs["Mounts"]}
    assert mounts["/run/secrets/db_pw"]["Source"] == str(project.folder / "pw.txt")
    assert mounts["/run/secrets/db_pw"]["RW"] is False

    plan = ["--plan", str(path), "--project", project.name]
    for args in (("status",), ("config",), ("logs", "app"),
                 ("exec", "app", "cat", "/run/secrets/api/key")):
        outputs[args[0]] = result = project.run(args[0], *plan, *args[1:], env=ENVIRONMENT)
        assert result.code == 0, result.stderr
    assert "***" in outputs["logs"].stdout and "***" in outputs["exec"].stdout

    texts = [text for result in outputs.values() for text in (result.stdout, result.stderr)]
    texts += [json.dumps(project.report(outputs["up"])), json.dumps(app.attrs["Config"])]
    texts += [path.read_text(encoding="utf-8")
              for path in (project.folder / "state").rglob("*.json")]
    assert [text for text in texts if ENV_VALUE in text or FILE_VALUE in text] == []

    again = project.run(*up, env=ENVIRONMENT)
    assert again.code == 0, again.stderr
    assert project.containers()["app"].id == app.id  # nothing changed: kept

    write(project.folder, CHANGED_VALUE)
    changed = project.run(*up, env=ENVIRONMENT)
    assert changed.code == 0, changed.stderr
    assert [e.get("cause") for e in changed.named("container created", "app")] \
        == ["config changed"]
    recreated = project.containers()["app"]
    assert recreated.id != app.id
    assert read(recreated, "cat", "/run/secrets/db_pw") == CHANGED_VALUE + "\n"
    assert CHANGED_VALUE not in changed.stdout + changed.stderr


def test_a_missing_secret_file_fails_before_anything_is_made(project: Project) -> None:
    path = write(project.folder)
    (project.folder / "pw.txt").unlink()
    result = project.run("up", "--plan", str(path), "--project", project.name,
                         env=ENVIRONMENT)
    assert result.code == 2
    assert f"secrets.db_pw.file (line 12): cannot read {project.folder / 'pw.txt'}: no such " \
           "file" in result.stderr
    assert project.containers() == {}


def test_an_external_secret_is_a_swarms_and_one_engine_refuses_it(project: Project) -> None:
    """compose refuses it too ("unsupported external secret"); `--backend swarm` looks it
    up (tests/test_swarm_secrets.py)."""
    path = write(project.folder)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "db_pw: {file: ./pw.txt}", "db_pw: {external: true}"), encoding="utf-8")
    result = project.run("up", "--plan", str(path), "--project", project.name,
                         env=ENVIRONMENT)
    assert result.code == 2, result.stderr
    assert "services.app.secrets[0]: secret 'db_pw' is external: a swarm's" in result.stderr
    assert project.containers() == {}


def test_the_document_printed_by_config_is_yaml_compose_reads(project: Project) -> None:
    """The inline content's `$` comes back as `$$`, as compose's own config writes it."""
    path = write(project.folder)
    printed = project.run("config", "--plan", str(path), env=ENVIRONMENT)
    document = yaml.safe_load(printed.stdout)
    assert document["configs"]["inline"] == {"content": "greeting=hello\nhome=$$HOME\n"}
    assert document["secrets"]["api_key"] == {"environment": "OT_TEST_API_KEY"}
