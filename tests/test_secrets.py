"""Secret values never leave ollamatopo, against a real engine.

Two stand-ins get distinctive secret values in their environment: written in the plan,
through `${VAR}`, through `VAR_FILE`, from an env_file, and a name the plan marks under
`secrets:`. A probe's command carries one, and the containers print them. Every output
of `up` (JSON logs), `status`, `status --json`, `plan`, `plan --json`, an `up` that
recreates a service whose secret changed, two failing `up`s (a probe that prints the
secrets and fails, a service that prints them and crashes) and `down`, and every JSON
report in the state directory, is searched for the values: none is there. The
containers did get them (their Env in `docker inspect`), so the test cannot pass by
dropping them.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Project, Result

IMAGE = "ollamatopo-standin:latest"

DIRECT = "direct-Secret-7f3a9c"
CHANGED = "direct-Secret-8a4b6d"
FROM_VARIABLE = "interp-Token-2b8c1e"
FROM_FILE = "file-Passwd-9d2e4f"
FROM_ENV_FILE = "envfile-Key-5c7b3a"
MARKED = "marked-User-1e6f80"
SECRETS = (DIRECT, CHANGED, FROM_VARIABLE, FROM_FILE, FROM_ENV_FILE, MARKED)

# The containers print every secret they hold ($$ is a literal $ for the container's sh).
PRINT = ("echo db=$$DB_PASSWORD token=$$API_TOKEN jwt=$$JWT_SECRET key=$$ACCESS_KEY "
         "user=$$MINIO_ROOT_USER")
PLAN = f"""
project: PROJECT
services:
  db:
    image: {IMAGE}
    entrypoint: [/bin/sh, -c, "{PRINT}; exec /bin/sh /standin.sh"]
    environment:
      DB_PASSWORD: DB_VALUE
      API_TOKEN: "${{OT_TEST_TOKEN}}"
      JWT_SECRET: "${{OT_TEST_JWT}}"
      MINIO_ROOT_USER: {MARKED}
    secrets: [MINIO_ROOT_USER]
    env_file: [db.env]
    ready: {{log: "standin ready", timeout: 20s}}
  api:
    image: {IMAGE}
    environment: {{API_TOKEN: "${{OT_TEST_TOKEN}}", LOG_LEVEL: info}}
    env_file: [db.env]
    after: {{db: healthy}}
    ready: API_READY
  CRASHER
phases: [{{name: one, services: [db, api CRASHER_NAME]}}]
"""
READY = '{exec: [test, -n, "${OT_TEST_TOKEN}"], timeout: 20s}'
BAD_PROBE = ('{exec: [/bin/sh, -c, "echo ${OT_TEST_JWT}; echo $$API_TOKEN $$ACCESS_KEY; '
             'exit 1"], timeout: 2s}')
CRASHER = f"""crasher:
    image: {IMAGE}
    entrypoint: [/bin/sh, -c, "{PRINT.replace("DB_PASSWORD", "API_TOKEN")}; exit 7"]
    environment: {{API_TOKEN: "${{OT_TEST_TOKEN}}", JWT_SECRET: "${{OT_TEST_JWT}}"}}
    env_file: [db.env]
    after: {{}}
    ready: {{log: never, timeout: 20s}}"""


def write(project: Project, db_password: str = DIRECT, api_ready: str = READY,
          crasher: bool = False) -> Path:
    text = (PLAN.replace("DB_VALUE", db_password).replace("API_READY", api_ready)
            .replace("CRASHER_NAME", ", crasher" if crasher else "")
            .replace("CRASHER", CRASHER if crasher else ""))
    return project.write(text)


def test_secret_values_appear_in_no_output_and_reach_the_containers(project: Project) -> None:
    secret_file = project.folder / "jwt.txt"
    secret_file.write_text(FROM_FILE + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    env_file = project.folder / "db.env"
    env_file.write_text(f"ACCESS_KEY={FROM_ENV_FILE}\nPLAIN=plain-Value-3c9d\n", encoding="utf-8")
    env_file.chmod(0o644)  # looser than 0600: a warning, not an error
    env = {"OT_TEST_TOKEN": FROM_VARIABLE, "OT_TEST_JWT_FILE": str(secret_file)}
    outputs: dict[str, Result] = {}

    write(project)
    outputs["up"] = up = project.run("up", env=env)
    assert up.code == 0, up.stderr
    warning = " ".join(e.get("detail", "") for e in up.named("plan warning"))
    assert f"holds secrets (ACCESS_KEY) but others may read it (mode 0644): chmod 600 " \
           f"{env_file}" in warning
    assert "exec test -n ***" in [e.get("probe") for e in up.named("service healthy", "api")]

    for args in (("status",), ("status", "--json"), ("plan",), ("plan", "--json")):
        outputs[" ".join(args)] = result = project.run(*args, env=env)
        assert result.code == 0, result.stderr
    assert "exec test -n ***" in outputs["status"].stdout

    containers = project.containers()
    db_env = containers["db"].attrs["Config"]["Env"]
    assert {f"DB_PASSWORD={DIRECT}", f"API_TOKEN={FROM_VARIABLE}", f"JWT_SECRET={FROM_FILE}",
            f"ACCESS_KEY={FROM_ENV_FILE}", f"MINIO_ROOT_USER={MARKED}"} <= set(db_env)
    assert f"API_TOKEN={FROM_VARIABLE}" in containers["api"].attrs["Config"]["Env"]

    write(project, db_password=CHANGED)
    outputs["up again"] = again = project.run("up", env=env)
    assert again.code == 0, again.stderr
    assert [e.get("cause") for e in again.named("container created", "db")] == ["config changed"]
    assert f"DB_PASSWORD={CHANGED}" in project.containers()["db"].attrs["Config"]["Env"]

    write(project, db_password=CHANGED, api_ready=BAD_PROBE)
    outputs["up with a bad probe"] = failed = project.run("up", env=env)
    assert failed.code == 1, failed.stderr
    assert "service 'api' failed" in failed.stderr
    assert "echo ***; echo $API_TOKEN $ACCESS_KEY; exit 1: exit 1 *** ***" in failed.stderr

    write(project, db_password=CHANGED, crasher=True)
    outputs["up with a crash"] = crashed = project.run("up", env=env)
    assert crashed.code == 1, crashed.stderr
    assert "service 'crasher' failed: container exited with code 7" in crashed.stderr
    assert "token=*** jwt=*** key=*** user=" in crashed.stderr

    outputs["down"] = down = project.run("down", env=env)
    assert down.code == 0, down.stderr

    texts = {f"{name} {stream}": text for name, result in outputs.items()
             for stream, text in (("stdout", result.stdout), ("stderr", result.stderr))}
    reports = sorted((project.folder / "state").rglob("*.json"))
    assert len(reports) == 4  # one per up
    texts.update({str(path): path.read_text(encoding="utf-8") for path in reports})
    leaks = [(where, secret) for where, text in texts.items() for secret in SECRETS
             if secret in text]
    assert leaks == []
    assert "plain-Value-3c9d" not in "".join(texts.values())  # no value is printed at all
