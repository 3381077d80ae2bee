"""Failures of `up`: crashes, deadlines, optional services, bad plans, no engine."""

from __future__ import annotations

import pytest

from tests.conftest import Project

IMAGE = "ollamatopo-standin:latest"


def plan(crasher_env: str, *, optional: bool = False, ready: str = "{none: true}") -> str:
    return f"""
project: PROJECT
networks:
  back: {{}}
services:
  base:
    image: {IMAGE}
    networks: [back]
    ready: {{log: "standin ready", timeout: 20s}}
  flaky:
    image: {IMAGE}
    environment: {crasher_env}
    ports: ["127.0.0.1::8080"]
    networks: [back]
    optional: {str(optional).lower()}
    ready: {ready}
  late:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "30"}}
    networks: [back]
    after: {{}}
    ready: {{log: "standin ready", timeout: 60s}}
phases:
  - {{name: one, services: [base]}}
  - {{name: two, services: [flaky, late]}}
"""


CRASH = '{STANDIN_MODE: crash, STANDIN_DELAY: "1", STANDIN_EXIT_CODE: "7"}'
HTTP_READY = "{http: {port: 8080, path: /health}, timeout: 20s}"


def test_a_crash_mid_start_fails_at_once_and_rolls_back(project: Project) -> None:
    project.write(plan(CRASH, ready=HTTP_READY))
    result = project.run("up")
    assert result.code == 1
    assert "service 'flaky' failed: container exited with code 7" in result.stderr
    assert "standin crashing with code 7" in result.stderr  # the last log lines
    started = result.named("container started", "flaky")[0]["elapsed_s"]
    failed = result.named("service failed", "flaky")[0]["elapsed_s"]
    assert failed - started < 1.0 + 1.0  # the crash comes 1 s after start; seen within 1 s
    # `late` was still waiting for readiness: cancelled, and everything rolled back
    assert project.containers() == {}
    assert project.networks() == []


def test_keep_on_failure_leaves_what_was_created(project: Project) -> None:
    project.write(plan(CRASH, ready=HTTP_READY))
    result = project.run("up", "--keep-on-failure")
    assert result.code == 1
    assert "left what this run created in place" in result.stderr
    assert set(project.containers()) == {"base", "flaky", "late"}
    assert project.containers()["flaky"].attrs["State"]["ExitCode"] == 7
    assert len(project.networks()) == 1


def test_an_expired_deadline_fails_with_the_probes_last_error(project: Project) -> None:
    project.write(plan("{STANDIN_MODE: never}",
                       ready="{http: {port: 8080, path: /health}, timeout: 2s}"))
    result = project.run("up")
    assert result.code == 1
    assert "service 'flaky' failed: not ready after 2s" in result.stderr
    assert "last check: GET http://127.0.0.1:" in result.stderr
    assert project.containers() == {}


def test_an_optional_failure_warns_and_the_run_succeeds(project: Project) -> None:
    project.write(plan(CRASH, optional=True, ready=HTTP_READY).replace(
        'STANDIN_DELAY: "30"', 'STANDIN_DELAY: "0"'))
    result = project.run("up")
    assert result.code == 0, result.stderr
    warning = result.named("service failed", "flaky")[0]
    assert warning["level"] == "warning" and warning["optional"] is True
    assert "exited with code 7" in warning["error"]
    assert set(project.containers()) == {"base", "flaky", "late"}


INVALID = {
    "unknown key": ("    imgae: x\n", "services.base.imgae"),
    "unknown network": ("    networks: [front]\n", "services.base.networks.front"),
    "unknown volume": ('    volumes: ["nodata:/data"]\n', "services.base.volumes[0]"),
    "bad port": ('    ports: ["80:80x"]\n', "services.base.ports[0]"),
    "self cycle": ("    after: {late: healthy}\n", "dependency cycle"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_plans_exit_2_with_the_path_and_touch_nothing(project: Project,
                                                              case: str) -> None:
    addition, expected = INVALID[case]
    text = plan(CRASH).replace("    image: ollamatopo-standin:latest\n    networks: [back]\n"
                               "    ready: {log:",
                               f"    image: {IMAGE}\n{addition}    ready: {{log:", 1)
    if case == "self cycle":
        text = text.replace("    after: {}\n", "    after: {base: started}\n")
    project.write(text)
    result = project.run("up")
    assert result.code == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert project.containers() == {} and project.networks() == []


def test_missing_required_variables_are_reported_together(project: Project) -> None:
    project.write(plan('{A: "${FIRST:?set FIRST}", B: "${SECOND:?set SECOND}"}'))
    result = project.run("up", env={"FIRST": "", "SECOND": ""})
    assert result.code == 2
    assert "required variables are not set: FIRST, SECOND" in result.stderr
    assert project.containers() == {}


def test_an_unreachable_engine_exits_3_with_the_fix(project: Project) -> None:
    project.write(plan(CRASH))
    result = project.run("up", env={"DOCKER_HOST": f"unix://{project.folder}/no.sock"})
    assert result.code == 3
    assert "cannot reach the Docker engine" in result.stderr
    assert "DOCKER_HOST" in result.stderr and "Traceback" not in result.stderr


def test_sigint_during_probes_rolls_back_and_the_next_up_succeeds(project: Project) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    project.write(plan('{STANDIN_DELAY: "${FLAKY_DELAY:-30}"}',
                       ready="{log: standin ready, timeout: 60s}").replace(
        'STANDIN_DELAY: "30"', 'STANDIN_DELAY: "0"'))
    command = [sys.executable, "-m", "ollamatopo", "up", "--plan",
               str(project.folder / "plan.yaml"), "--log-format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "OLLAMATOPO_STATE_DIR": str(project.folder / "state")}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:  # wait until flaky is being probed
            if '"container started"' in line and '"flaky"' in line:
                break
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        finally:
            process.kill()
    assert code == 130
    assert project.containers() == {} and project.networks() == []

    again = project.run("up", env={"FLAKY_DELAY": "0"})
    assert again.code == 0, again.stderr


def test_a_required_service_that_dies_after_it_was_ready_fails_the_run(project: Project) -> None:
    """Issue 15, defect 4: `up` used to return 0 and "succeeded" with a dead service."""
    project.write(f"""
project: PROJECT
services:
  quick:
    image: {IMAGE}
    environment: {{STANDIN_LIFETIME: "1", STANDIN_EXIT_CODE: "3"}}
    ready: {{log: "standin ready", timeout: 20s}}
  slow:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "4"}}
    ready: {{log: "standin ready", timeout: 20s}}
phases:
  - {{name: all, services: [quick, slow]}}
""")
    result = project.run("up")
    assert result.code == 1, result.stderr
    assert "service 'quick' failed: container exited with code 3 after it was ready" \
        in result.stderr
    assert "standin dying after 1s with code 3" in result.stderr  # its last log lines
    ready = result.named("service healthy", "quick")[0]["elapsed_s"]
    failed = result.named("service failed", "quick")[0]["elapsed_s"]
    print(f"measured: failed {failed - ready:.2f} s after ready (it dies 1 s after)")
    assert failed - ready < 1.0 + 1.0  # dies 1 s after ready; the run fails at once
    assert not result.named("service healthy", "slow")  # cut short, not waited out
    assert project.containers() == {}  # rolled back
