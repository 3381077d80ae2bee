"""Secrets: which names are secret, values from *_FILE variables, permission warnings, and
the redaction that keeps secret values out of problems, warnings, reports and output."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.engine._payloads import container_config
from ollamatopo.engine._snapshot import ObservedContainer, Snapshot
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._secrets import (
    REDACTED,
    RedactingStream,
    Redactor,
    is_secret_name,
    loose_permissions,
    redactor,
)
from ollamatopo.report._recorder import write_report
from ollamatopo.run._reconcile import reconcile

Load = Callable[..., LoadedPlan]
Refuse = Callable[..., PlanError]


@pytest.mark.parametrize("name", [
    "JWT_SECRET", "DB_PASSWORD", "db_password", "MINIO_ROOT_PASSWORD", "PASSWD", "API_KEY",
    "APIKEY", "ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "ACCESSTOKEN",
    "TOKENS", "GOOGLE_APPLICATION_CREDENTIALS", "DB_PASS", "SSH_PASSPHRASE", "clientSecret",
    "PRIVATE-KEY", "KEYS",
])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "KEYBOARD_LAYOUT", "TOKENIZERS_PARALLELISM", "SECRETARY", "BYPASS", "COMPASS", "PATH",
    "NODE_ID", "MINIO_ROOT_USER", "POSTGRES_PASSWORD_FILE", "JWT_SECRET_FILE", "PWD",
])
def test_names_that_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_a_service_marks_more_names_secret() -> None:
    assert is_secret_name("MINIO_ROOT_USER", ["MINIO_ROOT_USER"])


def test_redactor_hides_values_as_written_escaped_and_line_by_line() -> None:
    hide = Redactor(["s3cr3t-value", 'with "quotes" and \\', "first line\nsecond line", "abc"])
    assert hide.text("token=s3cr3t-value;") == f"token={REDACTED};"
    assert hide.text(json.dumps({"v": 'with "quotes" and \\'})) == json.dumps({"v": REDACTED})
    assert hide.text(repr('with "quotes" and \\')) == f"'{REDACTED}'"
    assert hide.text("    | second line") == f"    | {REDACTED}"
    assert hide.text("abc is too short to search for") == "abc is too short to search for"
    tree = {"a": ["s3cr3t-value", 1, None], "s3cr3t-value": {"b": "x s3cr3t-value"}}
    assert hide.tree(tree) == {"a": [REDACTED, 1, None], REDACTED: {"b": f"x {REDACTED}"}}
    assert not Redactor([""])


def test_redacting_stream() -> None:
    target = io.StringIO()
    stream = RedactingStream(target, Redactor(["hunter22"]))
    print("password is hunter22", file=stream)  # type: ignore[arg-type]
    assert target.getvalue() == f"password is {REDACTED}\n"
    assert stream.isatty() is False


def test_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(0o600)
    assert not loose_permissions(path)
    for mode in (0o640, 0o604, 0o700, 0o644):
        path.chmod(mode)
        assert loose_permissions(path)
    assert not loose_permissions(tmp_path / "absent")


# --- secrets of a loaded plan ---------------------------------------------------------------

PLAN = """
project: p
services:
  a:
    image: x
    environment:
      DB_PASSWORD: direct-secret-1
      API_TOKEN: "${TOKEN_FROM_ENV}"
      FROM_FILE_PASSWORD: "${FILE_SECRET}"
      MINIO_ROOT_USER: marked-user
      LOG_LEVEL: info
    env_file: [a.env]
    secrets: [MINIO_ROOT_USER]
    command: [serve, "--key=${SIGNING_KEY}"]
phases: [{name: one, services: [a]}]
"""


def test_the_secrets_of_a_plan_come_from_every_source(write_plan: Callable[..., Path],
                                                      tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("JWT_SECRET=from-env-file\nPLAIN=not-secret\n")
    (tmp_path / "a.env").chmod(0o600)
    (tmp_path / "secret.txt").write_text("from-a-file\n\n")
    (tmp_path / "secret.txt").chmod(0o600)
    loaded = load_plan(write_plan(PLAN), {"TOKEN_FROM_ENV": "env-token-2",
                                          "FILE_SECRET_FILE": "secret.txt",
                                          "SIGNING_KEY": "signing-key-3"})
    assert loaded.secrets == {"direct-secret-1", "env-token-2", "from-a-file\n",
                              "marked-user", "from-env-file", "signing-key-3"}
    environment = loaded.plan.services["a"].environment
    assert environment["FROM_FILE_PASSWORD"] == "from-a-file\n"  # one newline stripped
    assert environment["PLAIN"] == "not-secret"
    assert loaded.warnings == ()


def test_a_file_variable_that_cannot_be_read_is_a_plan_error_at_its_use(
        write_plan: Callable[..., Path]) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan(PLAN), {"FILE_SECRET_FILE": "absent.txt"})
    (problem,) = caught.value.problems
    assert problem.path == "services.a.environment.FROM_FILE_PASSWORD"
    assert "${FILE_SECRET}: FILE_SECRET_FILE names" in problem.message
    assert "absent.txt, which cannot be read: no such file" in problem.message


def test_a_set_variable_wins_over_its_file(write_plan: Callable[..., Path]) -> None:
    loaded = load_plan(write_plan(PLAN.replace("    env_file: [a.env]\n", "")),
                       {"FILE_SECRET": "direct", "FILE_SECRET_FILE": "absent.txt"})
    assert loaded.plan.services["a"].environment["FROM_FILE_PASSWORD"] == "direct"


def test_files_with_secrets_that_others_may_read_give_warnings(
        write_plan: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("JWT_SECRET=from-env-file\n")
    (tmp_path / "a.env").chmod(0o644)
    (tmp_path / ".env").write_text("TOKEN_FROM_ENV=dotenv-token\nOTHER=1\n")
    (tmp_path / ".env").chmod(0o664)
    (tmp_path / "secret.txt").write_text("from-a-file")
    (tmp_path / "secret.txt").chmod(0o640)
    loaded = load_plan(write_plan(PLAN), {"FILE_SECRET_FILE": "secret.txt",
                                          "SIGNING_KEY": "k"})
    assert sorted(loaded.warnings) == sorted([
        f"{tmp_path / '.env'} holds secrets (TOKEN_FROM_ENV) but others may read it (mode "
        f"0664): chmod 600 {tmp_path / '.env'}",
        f"{tmp_path / 'a.env'} holds secrets (JWT_SECRET) but others may read it (mode 0644): "
        f"chmod 600 {tmp_path / 'a.env'}",
        f"{tmp_path / 'secret.txt'} holds the value of FILE_SECRET but others may read it "
        f"(mode 0640): chmod 600 {tmp_path / 'secret.txt'}",
    ])


def test_files_without_secrets_give_no_warning(write_plan: Callable[..., Path],
                                               tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=16\n")
    (tmp_path / ".env").chmod(0o644)
    assert load_plan(write_plan("project: p\nservices: {a: {image: 'x:${TAG}'}}\n"
                                "phases: [{name: one, services: [a]}]\n"), {}).warnings == ()


@pytest.mark.parametrize(("service", "shown"), [
    ("{image: '${REGISTRY_TOKEN}'}", "is not an image reference"),
    ("{image: x, environment: {DB_PASSWORD: \"p$-ssw0rd-9\"}}", "has a '$' that is not"),
    ("{image: x, environment: [\"API_KEY=k3y$ssw0rd\"]}", "a variable in this secret value"),
    ("{image: x, hostname: '${DB_PASSWORD}'}", "is not a valid hostname"),
])
def test_problems_and_warnings_never_show_a_secret(write_plan: Callable[..., Path],
                                                   service: str, shown: str) -> None:
    text = f"project: p\nservices:\n  a: {service}\nphases: [{{name: one, services: [a]}}]\n"
    environ = {"REGISTRY_TOKEN": "Registry-Token-77", "DB_PASSWORD": "Host Name Secret"}
    try:
        loaded = load_plan(write_plan(text), environ)
    except PlanError as error:
        output = str(error)
    else:
        output = "\n".join(loaded.warnings)
    assert shown in output
    for secret in ("Registry-Token-77", "p$-ssw0rd-9", "Host Name Secret", "ssw0rd"):
        assert secret not in output


def test_a_dotenv_line_that_may_hold_a_secret_is_not_echoed(write_plan: Callable[..., Path],
                                                            tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_PASSWORD hunter2-hunter2\nTAG 16\n")
    with pytest.raises(PlanError) as caught:
        load_plan(write_plan("project: p\nservices: {a: {image: x}}\n"
                             "phases: [{name: one, services: [a]}]\n"), {})
    messages = [problem.message for problem in caught.value.problems]
    assert messages == ["a line with a secret-looking name (not shown) is not KEY=value",
                        "'TAG 16' is not KEY=value"]


def test_secrets_lists_names(plan_error: Refuse) -> None:
    error = plan_error("project: p\nservices: {a: {image: x, secrets: ['A=B']}}\n"
                       "phases: [{name: one, services: [a]}]\n")
    assert [problem.path for problem in error.problems] == ["services.a.secrets"]


# --- what leaves the process ----------------------------------------------------------------


def test_a_changed_secret_recreates_and_the_cause_does_not_show_it(load: Load) -> None:
    text = PLAN.replace("    env_file: [a.env]\n", "")
    environ = {"TOKEN_FROM_ENV": "t", "FILE_SECRET": "f", "SIGNING_KEY": "k"}
    before = load(text, environ).plan
    after = load(text.replace("direct-secret-1", "direct-secret-2"), environ).plan
    old = container_config(before, "a", Path("/srv"))
    new = container_config(after, "a", Path("/srv"))
    assert old.config_hash != new.config_hash
    observed = ObservedContainer(id="c1", name=old.name, service="a",
                                 config_hash=old.config_hash, state="running", exit_code=0,
                                 image_id="sha256:1")
    plan = reconcile({"a": new}, [], Snapshot("p", (observed,)))
    assert "direct-secret" not in " ".join(plan.lines())
    assert "direct-secret" not in old.config_hash + new.config_hash


def test_reports_are_written_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redactor, "_needles", list(redactor._needles))  # restored after
    redactor.add(["report-secret-5"])
    path = write_report({"services": {"a": {"error": "exited; | report-secret-5"}}},
                        tmp_path / "r.json")
    assert "report-secret-5" not in path.read_text()
    assert json.loads(path.read_text())["services"]["a"]["error"] == f"exited; | {REDACTED}"
