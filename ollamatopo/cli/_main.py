"""The command line: `up`, `down`, `status`, `plan`, `report`. Errors become exit codes here, once.

Heavy modules (the Docker SDK, httpx, the scheduler) are imported inside the commands
that need them, so `--help` and plan errors answer fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ollamatopo import __version__
from ollamatopo._errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SERVICE_FAILED,
    OllamatopoError,
    ReportUnreadable,
    UsageError,
)

if TYPE_CHECKING:
    from ollamatopo.app._settings import Settings
    from ollamatopo.cli._progress import LiveBoard

T = TypeVar("T")

DESCRIPTION = """\
ollamatopo brings up a phased multi-container topology on a Docker engine:
every service starts as soon as its own dependencies hold, readiness is probed
by ollamatopo itself, and a failed `up` rolls back what it created.

exit codes: 0 success, 1 a required service failed, 2 invalid plan or usage,
3 the Docker engine cannot be reached, 130 interrupted."""


# With a daemon supervising the project, these go through its control socket.
THROUGH_DAEMON = ("status", "ps", "scale", "up", "down", "daemon")


def build_parser() -> argparse.ArgumentParser:
    prog = "ollamatopo" if Path(sys.argv[0]).name == "ollamatopo" else "python -m ollamatopo"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ollamatopo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plan", "-f", type=Path, metavar="FILE", action="append",
                        help="plan file: ollamatopo's own or a compose file; again for compose "
                             "files merged over it (default: compose.yaml and its "
                             "compose.override.yaml in this folder, else "
                             "config/topology.yaml; env OLLAMATOPO_PLAN)")
    common.add_argument("--profile", action="append", metavar="NAME", dest="profiles",
                        help="enable a compose profile (again for more; env COMPOSE_PROFILES)")
    common.add_argument("--env-file", type=Path, metavar="FILE",
                        help="variables from FILE instead of the .env beside the plan")
    common.add_argument("--backend", choices=("engine", "swarm"), default=None,
                        help="where the plan runs: the engine's containers (default) or the "
                             "swarm whose manager the engine is (env OLLAMATOPO_BACKEND)")
    common.add_argument("--project", "-p", metavar="NAME",
                        help="project name (default: the plan's `project`)")
    common.add_argument("--log-format", choices=["auto", "json", "console"],
                        help="log lines: JSON, readable, or auto (JSON unless stdout is a TTY)")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    up = commands.add_parser("up", parents=[common], help="create and start the topology",
                             description="Create what is missing, recreate what changed, start "
                                         "every service once its dependencies hold, and wait "
                                         "until all are ready.")
    up.add_argument("services", nargs="*", metavar="SERVICE",
                    help="only these services and what they wait for (default: all)")
    up.add_argument("--keep-on-failure", action="store_true",
                    help="leave what this run created in place when it fails")
    up.add_argument("--report", type=Path, metavar="FILE",
                    help="also write the JSON report to FILE (it is always kept in the state "
                         "directory, where later runs read their history)")
    up.add_argument("--keep-orphans", action="store_true",
                    help="do not remove the project's containers of services not in the plan")
    up.add_argument("--progress", choices=["auto", "tty", "plain"],
                    help="tty: a live board of every service, log lines above it (warnings "
                         "only unless --log-level says otherwise); plain: log lines only; "
                         "auto: tty on a terminal with readable logs (env OLLAMATOPO_PROGRESS)")
    up.add_argument("--supervise", action="store_true",
                    help="stay in the foreground once up: restart what dies or stops being "
                         "ready, reload the plan on SIGHUP, speak systemd's sd_notify")
    up.add_argument("--on-stop", choices=["leave", "stop"],
                    help="with --supervise, what SIGTERM does to the containers: leave them "
                         "running (default) or stop them in reverse dependency order "
                         "(env OLLAMATOPO_ON_STOP)")
    up.add_argument("--metrics-port", type=int, metavar="PORT",
                    help="with --supervise, serve Prometheus metrics on this port (0: any "
                         "free port; address OLLAMATOPO_METRICS_ADDRESS, default 127.0.0.1)")
    up.add_argument("--clamp-resources", action="store_true",
                    help="scale CPU and memory limits and reservations down to fit this host "
                         "(each change is logged)")
    building = up.add_mutually_exclusive_group()
    building.add_argument("--build", dest="build", action="store_const", const="always",
                          default="auto",
                          help="build the images of services with build: before starting, "
                               "even when present (a container is recreated only if its "
                               "image changed); with --supervise, for the first run only")
    building.add_argument("--no-build", dest="build", action="store_const", const="never",
                          help="never build: a missing image of a service with build: is "
                               "an error")

    scale = commands.add_parser(
        "scale", parents=[common], help="set the replica count of services (kept for later ups)",
        description="Set how many replicas a service runs, e.g. `scale ollama-node-2=4`. The "
                    "count is kept in the state directory and applied by every later up. A "
                    "running daemon (up --supervise) applies it; otherwise scale brings the "
                    "change up itself. New replicas join the load balancers once ready; "
                    "removed ones are drained from them before they stop.")
    scale.add_argument("requests", nargs="+", metavar="SERVICE=N")
    scale.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for a running daemon to apply it (default 300)")
    scale.set_defaults(keep_on_failure=False, keep_orphans=False, clamp_resources=False,
                       report=None, supervise=False, services=[])

    down = commands.add_parser("down", parents=[common],
                               help="stop and remove the topology's containers and networks")
    down.add_argument("--volumes", "-v", action="store_true",
                      help="also remove the project's named volumes (their data is lost)")
    down.add_argument("--remove-orphans", action="store_true",
                      help="accepted for compose's sake: down always removes every container "
                           "of the project, services no longer in the plan included")

    logs = commands.add_parser("logs", parents=[common],
                               help="print services' log lines, each prefixed with its service")
    logs.add_argument("services", nargs="*", metavar="SERVICE")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each")
    # Not compose's `-f`: here `-f` names the plan file after every command.
    logs.add_argument("--follow", action="store_true",
                      help="go on printing lines as they come, until the containers stop "
                           "(Ctrl+C ends it)")
    run_in = commands.add_parser("exec", parents=[common],
                                 help="run a command in a service's running container")
    run_in.add_argument("service", metavar="SERVICE")
    run_in.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    for verb, text in (("stop", "stop services, dependents first (all when none is named)"),
                       ("start", "start services' stopped containers, dependencies first"),
                       ("restart", "stop, then start services in dependency order")):
        commands.add_parser(verb, parents=[common], help=text).add_argument(
            "services", nargs="*", metavar="SERVICE")

    status = commands.add_parser("status", parents=[common], aliases=["ps"],
                                 help="show each service's container, readiness and ports "
                                      "(ps: the same, compose's name)")
    status.add_argument("--json", action="store_true", help="print JSON")

    plan = commands.add_parser("plan", parents=[common],
                               help="validate the plan; show phases, graph, critical path, "
                                    "resources")
    plan.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser(
        "config", parents=[common],
        help="print the resolved plan as a Compose file (like `docker compose config`)",
        description="The plan with variables replaced, env files read and every dependency "
                    "spelled out, as a Compose Specification file with ollamatopo's additions "
                    "under x-ollamatopo. Run on a plan in ollamatopo's own dialect, it is the "
                    "converter to the compose form.")

    daemon = commands.add_parser(
        "daemon", parents=[common], help="talk to the project's daemon (up --supervise)",
        description="stop: end the daemon as SIGTERM does (the containers are left running, "
                    "or stopped with --on-stop stop). A `down` leaves the daemon resident and "
                    "idle; only this or a signal ends it.")
    daemon.add_argument("action", choices=["stop"])

    report = commands.add_parser(
        "report", parents=[common],
        help="draw a run as time: waterfall, Gantt chart (SVG/HTML), critical path",
        description="Show a run report as a waterfall of its services, with the critical "
                    "path and the bounds set by the dependency graph and by phase barriers. "
                    "RUN is a run id, a unique prefix of one, or a report file; default: "
                    "the newest run of the plan's project.")
    report.add_argument("run", nargs="?", metavar="RUN",
                        help="run id, unique prefix of one, or path to a JSON report")
    report.add_argument("--svg", type=Path, metavar="PATH", help="write a Gantt chart as SVG")
    report.add_argument("--html", type=Path, metavar="PATH",
                        help="write a self-contained HTML page with the chart and a table")
    report.add_argument("--json", action="store_true",
                        help="print the computed figures as JSON instead of the waterfall")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ollamatopo.plan._secrets import RedactingStream

    parser = build_parser()
    arguments = parser.parse_args(argv)
    # Every line printed goes through the secrets redactor (filled when a plan is loaded).
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        return _main(arguments)
    finally:
        sys.stdout, sys.stderr = streams


def _main(arguments: argparse.Namespace) -> int:
    if arguments.command in THROUGH_DAEMON and not getattr(arguments, "supervise", False):
        from ollamatopo.cli._client import run_through_daemon

        answered = run_through_daemon(arguments)
        if answered is not None:
            return answered
    try:
        settings = _settings(arguments)
        from ollamatopo.cli._logging import configure_logging

        arguments.board = _live_board(arguments, settings)
        level = settings.log_level
        if arguments.board is not None and "log_level" not in settings.model_fields_set:
            level = "warning"  # the board shows what the info lines would say
        # `config` and `--json` print a document on stdout: their warnings go to stderr.
        printed = arguments.command == "config" or getattr(arguments, "json", False)
        stream = sys.stderr if printed else arguments.board
        configure_logging(settings.log_format, level, stream=stream)
        command: Callable[[argparse.Namespace, Settings], int] = COMMANDS[arguments.command]
        return command(arguments, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        error = _first_error(group)
        if error is None:
            raise
        return _report_error(error)
    except OllamatopoError as error:
        return _report_error(error)


def _first_error(group: BaseExceptionGroup[Any]) -> OllamatopoError | None:
    for error in group.exceptions:
        if isinstance(error, OllamatopoError):
            return error
        if isinstance(error, BaseExceptionGroup):
            found = _first_error(error)
            if found is not None:
                return found
    return None


def _report_error(error: OllamatopoError) -> int:
    from ollamatopo._printable import printable

    print(f"ollamatopo: {printable(str(error))}", file=sys.stderr)
    return error.exit_code


def _settings(arguments: argparse.Namespace) -> Settings:
    from pydantic import ValidationError

    from ollamatopo.app._settings import Settings

    overrides = {key: value for key in ("project", "log_format", "log_level", "progress",
                                        "on_stop", "metrics_port", "profiles", "env_file",
                                        "backend")
                 if (value := getattr(arguments, key, None)) is not None}
    if arguments.plan:
        overrides["plan"], *overrides["plan_overrides"] = arguments.plan
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(f"OLLAMATOPO_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in error.errors(include_url=False))
        raise UsageError(f"invalid settings: {problems}") from None


def _live_board(arguments: argparse.Namespace, settings: Settings) -> LiveBoard | None:
    """The progress board for `up`: asked for, or on a terminal with readable log lines."""
    if arguments.command != "up" or settings.progress == "plain":
        return None
    from ollamatopo.cli._logging import wants_json

    if settings.progress == "auto" and (wants_json(settings.log_format)
                                        or not sys.stdout.isatty()):
        return None
    import shutil

    from ollamatopo.cli._progress import LiveBoard

    return LiveBoard(sys.stdout, lambda: shutil.get_terminal_size().columns)


def _run_async(function: Callable[[], Awaitable[T]],
               alongside: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()) -> T:
    """Run `function` under anyio, with `alongside` tasks (the live board) until it ends;
    SIGINT and SIGTERM cancel it (cleanup runs shielded, and ends early if the engine
    stalls). A second signal ends the process at once, as compose's second Ctrl+C does:
    the cleanup in progress is abandoned, and said so."""
    import anyio

    async def guarded() -> T:
        result: list[T] = []
        work = anyio.CancelScope()
        async with anyio.create_task_group() as group:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for received in signals:
                        name = signal.Signals(received).name
                        if work.cancel_called:
                            print(f"ollamatopo: {name} received again, exiting now; the "
                                  "cleanup in progress is abandoned (run `status` to see what "
                                  "is left)", file=sys.stderr, flush=True)
                            os._exit(EXIT_INTERRUPTED)
                        print(f"ollamatopo: {name} received, stopping (send it again to exit "
                              "at once)", file=sys.stderr, flush=True)
                        work.cancel()

            group.start_soon(watch_signals)
            for task in alongside:
                group.start_soon(task)
            with work:
                result.append(await function())
            group.cancel_scope.cancel()
        if not result:
            raise KeyboardInterrupt
        return result[0]

    return anyio.run(guarded)


# --- commands -------------------------------------------------------------------------------


def command_up(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._up import UpRequest, load, new_recorder, run_up, select

    loaded = select(load(settings), arguments.services)
    if arguments.services and arguments.supervise:
        raise UsageError("up --supervise takes no services: the daemon keeps the whole plan")
    request = UpRequest(keep_on_failure=arguments.keep_on_failure,
                        keep_orphans=arguments.keep_orphans,
                        clamp_resources=arguments.clamp_resources,
                        build=arguments.build)
    recorder = new_recorder(loaded)
    board: LiveBoard | None = arguments.board
    alongside: list[Callable[[], Coroutine[Any, Any, None]]] = []
    if board is not None:
        from ollamatopo.cli._progress import render_board

        dependencies = loaded.graph.dependencies
        images = {name: spec.image for name, spec in loaded.plan.services.items()}
        board.show(lambda width: render_board(recorder, dependencies, images,
                                              recorder.elapsed(), width))
        # The board ends with the first run; a daemon's log lines follow below it.
        recorder.listeners.append(
            lambda event, _: board.finish() if event == "run completed" else None)
        alongside.append(board.keep_refreshing)
    try:
        if arguments.supervise:
            from ollamatopo.daemon._serve import run_daemon

            try:
                _run_async(lambda: run_daemon(settings, loaded, request, recorder,
                                              arguments.report), alongside)
            except KeyboardInterrupt:
                if recorder.outcome != "succeeded":  # a daemon stopped after a good start
                    raise
        else:
            _run_async(lambda: run_up(settings, loaded, request, recorder, arguments.report),
                       alongside)
    finally:
        if board is not None:
            board.finish()
        if recorder.outcome != "running" and not arguments.supervise:
            _print_table(settings, recorder.table())
    return EXIT_OK


def _print_table(settings: Settings, table: str) -> None:
    from ollamatopo.cli._logging import wants_json

    if not wants_json(settings.log_format):
        print(table)


def command_scale(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._scale import parse_requests
    from ollamatopo.app._up import scale

    summary = _run_async(lambda: scale(settings, parse_requests(arguments.requests)))
    _print_scaling(settings.log_format, summary)
    return EXIT_OK if summary.get("outcome") == "succeeded" else EXIT_SERVICE_FAILED


def _print_scaling(log_format: str, summary: dict[str, Any]) -> None:
    from ollamatopo.cli._logging import wants_json

    print(json.dumps(summary) if wants_json(log_format) else format_scaling(summary))


def format_scaling(summary: dict[str, Any]) -> str:
    lines = [f"scaled {', '.join(f'{k}={v}' for k, v in summary['scaled'].items())}: "
             f"{summary['outcome']}"]
    lines += [f"  added   {row['service']}: ready {row['create_to_ready_s']}s after create"
              for row in summary["added"]]
    lines += [f"  removed {name} (drained from the load balancers first)"
              for name in summary["removed"]]
    return "\n".join(lines)


def command_down(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._down import project_to_take_down, take_down

    project = project_to_take_down(settings)
    _run_async(lambda: take_down(settings, project, volumes=arguments.volumes))
    return EXIT_OK


def command_status(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._status import format_status, status
    from ollamatopo.app._up import load

    loaded = load(settings)
    rows = _run_async(lambda: status(settings, loaded))
    if arguments.json:
        print(json.dumps({"project": loaded.plan.project, "services": rows}, indent=2))
    else:
        print(format_status(loaded.plan.project, rows))
    return EXIT_OK


def command_config(arguments: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from ollamatopo.app._up import load
    from ollamatopo.plan._compose_out import to_compose
    from ollamatopo.plan._secrets import redactor

    loaded = load(settings)
    # Secret values are replaced in the document, so the YAML stays valid ('***' quoted).
    document = redactor.tree(to_compose(loaded.declared or loaded.plan, loaded.path.parent))
    print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    return EXIT_OK


def command_logs(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._services import follow, logs
    from ollamatopo.app._up import load

    loaded = load(settings)
    width = max((len(name) for name in loaded.plan.services), default=0)

    def show(service: str, line: str) -> None:
        print(f"{service.ljust(width)} | {line}", flush=arguments.follow)

    if arguments.follow:
        _run_async(lambda: follow(settings, loaded, arguments.services, arguments.tail, show))
        return EXIT_OK
    for service, text in _run_async(lambda: logs(settings, loaded, arguments.services,
                                                 arguments.tail)):
        for line in text.splitlines():
            show(service, line)
    return EXIT_OK


def command_exec(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._services import exec_in
    from ollamatopo.app._up import load

    if not arguments.argv:
        raise UsageError("exec: name the command to run, e.g. exec db pg_isready")
    loaded = load(settings)
    code, output = _run_async(lambda: exec_in(settings, loaded, arguments.service,
                                              arguments.argv))
    print(output, end="" if output.endswith("\n") or not output else "\n")
    return code


def command_stop_start(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app import _services
    from ollamatopo.app._up import load

    loaded = load(settings)
    act = {"stop": _services.stop, "start": _services.start,
           "restart": _services.restart}[arguments.command]
    done = _run_async(lambda: act(settings, loaded, arguments.services))
    past = {"stop": "stopped", "start": "started", "restart": "restarted"}[arguments.command]
    print(f"{past}: {', '.join(done)}" if done else f"nothing to {arguments.command}")
    return EXIT_OK


def command_daemon(arguments: argparse.Namespace, settings: Settings) -> int:
    raise UsageError("no daemon supervises this project (or its socket cannot be reached): "
                     "start one with `up --supervise`; check --plan, --project and "
                     "OLLAMATOPO_STATE_DIR")


def command_plan(arguments: argparse.Namespace, settings: Settings) -> int:
    from ollamatopo.app._backend import check_plan_for
    from ollamatopo.app._up import load
    from ollamatopo.report._plan_view import describe_plan, format_plan
    from ollamatopo.report._recorder import latest_durations

    loaded = load(settings)
    check_plan_for(settings, loaded)
    durations = latest_durations(settings.state_dir, loaded.plan.project, loaded.plan.services)
    view = describe_plan(loaded, durations)
    print(json.dumps(view, indent=2) if arguments.json else format_plan(view))
    return EXIT_OK


def command_report(arguments: argparse.Namespace, settings: Settings) -> int:
    import shutil

    from ollamatopo.app._reports import find_report, read_report
    from ollamatopo.report._gantt import analyse, render_html, render_svg, render_waterfall, summary

    path = find_report(arguments.run, settings)
    try:
        timeline = analyse(read_report(path))
    except ValueError as error:
        raise ReportUnreadable(f"{path} is not an ollamatopo run report: {error}") from None
    to = sys.stderr if arguments.json else sys.stdout
    for target, render, kind in ((arguments.svg, render_svg, "SVG chart"),
                                 (arguments.html, render_html, "HTML page")):
        if target is not None:
            _write_text(target, render(timeline), kind)
            print(f"wrote the {kind} of run {timeline.run_id} to {target}", file=to)
    if arguments.json:
        print(json.dumps({**summary(timeline), "report": str(path)}, indent=2))
    elif arguments.svg is None and arguments.html is None:
        print(render_waterfall(timeline, shutil.get_terminal_size().columns))
    return EXIT_OK


def _write_text(path: Path, text: str, kind: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write the {kind} to {path}: {error.strerror}; choose another "
                         "path") from None


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "up": command_up,
    "scale": command_scale,
    "down": command_down,
    "status": command_status,
    "plan": command_plan,
    "report": command_report,
    "daemon": command_daemon,
    "config": command_config,
    "ps": command_status,
    "logs": command_logs,
    "exec": command_exec,
    "stop": command_stop_start,
    "start": command_stop_start,
    "restart": command_stop_start,
}

__all__ = ["EXIT_INVALID", "build_parser", "main"]
