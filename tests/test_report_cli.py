"""`report`: a real run drawn as a waterfall, an SVG chart and an HTML page; its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import ROOT, Project, Result

IMAGE = "ollamatopo-standin:latest"

# worker waits only for node to have started and is the slowest: db -> node -> worker.
PLAN = f"""
project: PROJECT
networks:
  back: {{}}
services:
  db:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "0.5"}}
    networks: [back]
    ready: {{log: "standin ready", timeout: 20s}}
  node:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "0.3"}}
    networks: [back]
    ready: {{log: "standin ready", timeout: 20s}}
  worker:
    image: {IMAGE}
    environment: {{STANDIN_DELAY: "1.5"}}
    after: {{node: started}}
    networks: [back]
    ready: {{log: "standin ready", timeout: 20s}}
  idle:
    image: {IMAGE}
    networks: [back]
    ready: {{none: true}}
phases:
  - {{name: foundation, services: [db]}}
  - {{name: core, services: [node]}}
  - {{name: edge, services: [worker, idle]}}
"""

SVG = "{http://www.w3.org/2000/svg}"


def report(project: Project, *args: str, columns: int = 100) -> Result:
    return project.run("report", "--plan", str(project.folder / "plan.yaml"), *args,
                       env={"COLUMNS": str(columns)})


def test_report_draws_a_real_run_and_finds_runs_by_id_prefix_and_path(
        project: Project) -> None:
    project.write(PLAN)
    first = project.run("up")
    assert first.code == 0, first.stderr
    recorded = project.report(first)
    assert recorded["dependencies"] == {"db": {}, "node": {"db": "healthy"},
                                        "worker": {"node": "started"},
                                        "idle": {"node": "healthy"}}
    assert recorded["phase_order"] == ["foundation", "core", "edge"]
    run_id = recorded["run_id"]

    text = report(project)
    assert text.code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"{project.name} · run {run_id} · succeeded · total ")
    assert max(len(line) for line in lines) <= 100
    rows = {line[2:].split()[0]: line for line in lines[2:6]}
    assert {name for name, row in rows.items() if row.startswith("* ")} == {
        "db", "node", "worker"}
    assert all("█" in row for row in rows.values())
    assert "critical path: db → node → worker (marked *)" in text.stdout
    assert "|" in lines[1]

    figures = report(project, "--json")
    assert figures.code == 0, figures.stderr
    summary = json.loads(figures.stdout)
    assert summary["run_id"] == run_id and summary["critical_path"] == ["db", "node", "worker"]
    durations = {name: s["start_to_ready_s"] for name, s in summary["services"].items()}
    assert durations["worker"] >= 1.5 and durations["db"] >= 0.5
    # worker may begin with node, so the bound is db then worker
    assert abs(summary["graph_bound_s"] - durations["db"] - durations["worker"]) < 0.01
    assert summary["phase_bound_s"] > summary["graph_bound_s"]

    svg_path = project.folder / "out" / "run.svg"
    drawn = report(project, "--svg", str(svg_path))
    assert drawn.code == 0, drawn.stderr
    assert f"wrote the SVG chart of run {run_id} to {svg_path}" in drawn.stdout
    root = ET.parse(svg_path).getroot()
    bars = [r for r in root.iter(f"{SVG}rect") if "bar" in (r.get("class") or "").split()]
    assert len(bars) == 4
    assert sum("critical" in (r.get("class") or "") for r in bars) == 3
    assert len(root.findall(f".//{SVG}line[@class='bound']")) == 1

    html_path = project.folder / "run.html"
    page = report(project, "--html", str(html_path))
    assert page.code == 0, page.stderr
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<table>" in html

    # a second, idle run: it is the newest, and its services were kept, not started
    second = project.run("up")
    assert second.code == 0, second.stderr
    second_id = project.report(second)["run_id"]
    newest = report(project)
    assert newest.code == 0, newest.stderr
    assert f"run {second_id}" in newest.stdout.splitlines()[0]
    assert "ready (kept)" in newest.stdout

    by_prefix = report(project, run_id[:6])
    assert by_prefix.code == 0, by_prefix.stderr
    assert f"run {run_id}" in by_prefix.stdout.splitlines()[0]

    files = sorted((project.folder / "state" / project.name / "runs").glob("*.json"))
    same_day = files[0].name[:8]
    ambiguous = report(project, same_day)
    assert ambiguous.code == 2
    assert f"{same_day!r} matches 2 runs of project {project.name!r}" in ambiguous.stderr
    assert "give more characters" in ambiguous.stderr and "Traceback" not in ambiguous.stderr

    # a path needs no plan
    by_path = project.run("report", str(files[0]), "--plan", "missing.yaml")
    assert by_path.code == 0, by_path.stderr
    assert "critical path:" in by_path.stdout

    unknown = report(project, "nonexistent")
    assert unknown.code == 2
    assert f"no run of project {project.name!r} matches 'nonexistent'" in unknown.stderr
    assert "pass a run id, a unique prefix of one, or a report file" in unknown.stderr
    assert "Traceback" not in unknown.stderr and unknown.stdout == ""


# --- without an engine ----------------------------------------------------------------------


def run_cli(folder: Path, *args: str) -> Result:
    environment = {**os.environ, "PYTHONPATH": str(ROOT),
                   "OLLAMATOPO_STATE_DIR": str(folder / "state"), "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "ollamatopo", *args], capture_output=True,
                          text=True, timeout=60, env=environment, cwd=folder, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def test_report_on_a_project_with_no_runs_says_so(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN.replace("PROJECT", "never-run"), encoding="utf-8")
    result = run_cli(tmp_path, "report", "--plan", "plan.yaml")
    assert result.code == 2
    assert "no run reports for project 'never-run' in " in result.stderr
    assert str(tmp_path / "state" / "never-run" / "runs") in result.stderr
    assert "`ollamatopo up` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_files_that_are_not_reports_are_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"services": ', encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    broken = run_cli(tmp_path, "report", "broken.json")
    assert broken.code == 2
    assert "the run report broken.json is not valid JSON" in broken.stderr
    listed = run_cli(tmp_path, "report", "list.json")
    assert listed.code == 2
    assert "list.json is not an ollamatopo run report: the top level is not a JSON object" \
        in listed.stderr
    missing = run_cli(tmp_path, "report", "gone.json")
    assert missing.code == 2 and "no report file gone.json" in missing.stderr
    for result in (broken, listed, missing):
        assert "Traceback" not in result.stderr


def test_a_report_file_draws_without_a_plan_or_an_engine(tmp_path: Path) -> None:
    data = {"run_id": "feedface0001", "project": "shop", "outcome": "failed", "total_s": 2.0,
            "services": {"db": {"phase": "one", "created_s": 0.1, "started_s": 0.2,
                                "ready_s": None, "status": "failed", "error": "exited 3"}},
            "phases": {"one": {"began_s": 0.1, "completed_s": None}},
            "dependencies": {"db": {}}, "phase_order": ["one"]}
    (tmp_path / "run.json").write_text(json.dumps(data), encoding="utf-8")
    result = run_cli(tmp_path, "report", "run.json", "--svg", "run.svg", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["critical_path"] == ["db"]
    assert "wrote the SVG chart of run feedface0001 to run.svg" in result.stderr
    ET.parse(tmp_path / "run.svg")
    text = run_cli(tmp_path, "report", "run.json")
    assert "░" in text.stdout and "failed" in text.stdout
