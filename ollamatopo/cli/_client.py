"""The thin client: when a daemon supervises the project, `status`, `scale`, `up`, `down`
and `daemon stop` ask it through its control socket (`app._control`) instead of doing
the work in this process.

Standard library only, and no plan reading: the socket is found from `--project` (or
OLLAMATOPO_PROJECT), else from the plan file's path, which the daemon links to its
socket. So `status` against a daemon costs an interpreter start and one round trip.
Without a daemon (no socket, or nobody answers it), the command runs as before.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ollamatopo._errors import EXIT_INVALID, EXIT_OK, EXIT_SERVICE_FAILED
from ollamatopo._printable import printable
from ollamatopo.app._control import (
    MAX_LINE,
    Op,
    decode,
    default_plan_files,
    default_state_dir,
    encode,
    plan_link,
    socket_path,
)

CONNECT_TIMEOUT_S = 2.0


class NoDaemon(Exception):
    """No daemon answers for the project: do the work here."""


def daemon_socket(arguments: argparse.Namespace) -> Path | None:
    """The socket of the daemon that supervises the project, if there is one."""
    state_dir = Path(os.environ.get("OLLAMATOPO_STATE_DIR") or default_state_dir())
    project = arguments.project or os.environ.get("OLLAMATOPO_PROJECT")
    if project:
        path = socket_path(state_dir, project)
    else:
        named = arguments.plan[0] if arguments.plan else os.environ.get("OLLAMATOPO_PLAN")
        plan = Path(named) if named else default_plan_files(Path.cwd())[0]
        path = plan_link(state_dir, plan)
    try:
        owner = path.stat().st_uid  # through the plan's link
    except OSError:
        return None
    # Another user's socket: not ours to talk to (the daemon would refuse us anyway);
    # root may talk to any.
    return path if os.getuid() in (owner, 0) else None


def ask(path: Path, op: Op, timeout_s: float | None = None,
        **arguments: Any) -> Iterator[dict[str, Any]]:
    """Send one request; yield each message of the answer (events, then done or error)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(CONNECT_TIMEOUT_S)
    try:
        connection.connect(str(path))
    except OSError as error:  # refused: the daemon is gone (its socket is stale)
        connection.close()
        raise NoDaemon(str(error)) from None
    with connection:
        connection.settimeout(timeout_s)
        connection.sendall(encode({"op": op.value, **arguments}))
        with connection.makefile("rb") as answers:
            while line := answers.readline(MAX_LINE):
                message = decode(line)
                yield message
                if "done" in message or "error" in message:
                    return
    raise NoDaemon("the daemon hung up without an answer")


def run_through_daemon(arguments: argparse.Namespace) -> int | None:
    """The command's exit code, when a daemon did it; None when there is no daemon."""
    path = daemon_socket(arguments)
    if path is None:
        return None
    try:
        return _COMMANDS[arguments.command](path, arguments)
    except NoDaemon:
        return None
    except (OSError, ValueError) as error:  # the daemon died mid-answer, or garbled it
        print(f"ollamatopo: the daemon's answer on {path} broke off ({error}); see its log "
              "(journalctl -u ollamatopo)", file=sys.stderr)
        return EXIT_SERVICE_FAILED


def _json_lines(arguments: argparse.Namespace) -> bool:
    chosen = arguments.log_format or os.environ.get("OLLAMATOPO_LOG_FORMAT", "auto")
    return chosen.lower() == "json" or (chosen.lower() == "auto" and not sys.stdout.isatty())


def _follow(path: Path, op: Op, arguments: argparse.Namespace,
            **request: Any) -> tuple[dict[str, Any] | None, int]:
    """Print the events of the request as they come; its answer, or the error's code."""
    json_lines = _json_lines(arguments)
    for message in ask(path, op, getattr(arguments, "timeout", None), **request):
        if "event" in message:
            event = message["event"]
            print(json.dumps(event) if json_lines else _readable(event), flush=True)
        elif "error" in message:
            error = message["error"]
            print(f"ollamatopo: {printable(str(error.get('message')))}", file=sys.stderr)
            return None, int(error.get("exit_code") or EXIT_SERVICE_FAILED)
        else:
            return dict(message["done"]), EXIT_OK
    return None, EXIT_SERVICE_FAILED


def _readable(event: dict[str, Any]) -> str:
    fields = " ".join(f"{key}={value}" for key, value in event.items()
                      if key != "event" and value is not None)
    return printable(f"{event.get('event')} {fields}".rstrip())


def _status(path: Path, arguments: argparse.Namespace) -> int:
    answer, code = _follow(path, Op.STATUS, arguments)
    if answer is not None:
        print(json.dumps({"project": answer["project"], "daemon": answer["daemon"],
                          "services": answer["services"]}, indent=2) if arguments.json
              else answer["text"])
    return code


def _up(path: Path, arguments: argparse.Namespace) -> int:
    answer, code = _follow(path, Op.UP, arguments, services=list(arguments.services or ()))
    if answer is None:
        return code
    if arguments.report is not None:
        arguments.report.write_text(json.dumps(answer["report"], indent=2) + "\n",
                                    encoding="utf-8")
    if not _json_lines(arguments):
        print(answer["table"])
    return EXIT_OK if answer["outcome"] == "succeeded" else EXIT_SERVICE_FAILED


def _down(path: Path, arguments: argparse.Namespace) -> int:
    return _follow(path, Op.DOWN, arguments, volumes=arguments.volumes)[1]


def _scale(path: Path, arguments: argparse.Namespace) -> int:
    from ollamatopo.app._scale import parse_requests  # the standard library only

    answer, code = _follow(path, Op.SCALE, arguments,
                           replicas=parse_requests(arguments.requests))
    if answer is None:
        return code
    summary = answer["summary"]
    if _json_lines(arguments):
        print(json.dumps(summary))
    else:
        from ollamatopo.cli._main import format_scaling

        print(format_scaling(summary))
    return EXIT_OK if summary.get("outcome") == "succeeded" else EXIT_SERVICE_FAILED


def _daemon(path: Path, arguments: argparse.Namespace) -> int:
    if arguments.action != "stop":
        return EXIT_INVALID
    answer, code = _follow(path, Op.STOP, arguments)
    if answer is not None:
        print("the daemon is stopping")
    return code


_COMMANDS = {"status": _status, "ps": _status, "up": _up, "down": _down, "scale": _scale,
             "daemon": _daemon}
