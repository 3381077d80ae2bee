"""The one exception hierarchy of ollamatopo and the exit code of each branch.

Every boundary (plan loading, the Docker engine, probes) turns foreign exceptions
into one of these, so the command line maps errors to exit codes in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ollamatopo._printable import printable

EXIT_OK = 0
EXIT_SERVICE_FAILED = 1
EXIT_INVALID = 2
EXIT_ENGINE_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class OllamatopoError(Exception):
    """Base of every error ollamatopo reports to its user."""

    exit_code = EXIT_SERVICE_FAILED


@dataclass(frozen=True)
class PlanProblem:
    """One problem in a plan file: where it is and what is wrong. Shown on one line, with
    the characters that would act on a terminal escaped (a path holds names as written)."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = printable(self.path or "(top level)", multiline=False)
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {printable(self.message, multiline=False)}"


class PlanError(OllamatopoError):
    """The plan file cannot be used: every problem found is listed."""

    exit_code = EXIT_INVALID

    def __init__(self, source: str, problems: Sequence[PlanProblem],
                 summary: str | None = None) -> None:
        self.source = source
        self.problems = tuple(problems)
        self.summary = summary
        count = len(self.problems)
        counted = f"{count} problem{'s' if count != 1 else ''} in the plan"
        head = printable(f"{source}: {summary or counted}", multiline=False)
        body = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{head}\n{body}")


class UsageError(OllamatopoError):
    """The command line or settings are wrong."""

    exit_code = EXIT_INVALID


class ReportNotFound(OllamatopoError):
    """No run report answers to what was asked: none yet, no match, or several matches."""

    exit_code = EXIT_INVALID


class ReportUnreadable(OllamatopoError):
    """A run report file cannot be read, is not JSON, or is not a run report."""

    exit_code = EXIT_INVALID


class ProjectLocked(OllamatopoError):
    """Another `up` (or the daemon) already works on this project."""

    exit_code = EXIT_INVALID


class EngineUnreachable(OllamatopoError):
    """The Docker engine does not answer."""

    exit_code = EXIT_ENGINE_UNREACHABLE


class EngineError(OllamatopoError):
    """The Docker engine refused or failed an operation."""


class NotFound(EngineError):
    """The object named does not exist on the engine."""


class ResourcesDoNotFit(OllamatopoError):
    """The plan asks more CPU or memory than the host has."""

    exit_code = EXIT_INVALID


class ExternalMissing(OllamatopoError):
    """The plan uses networks or volumes made outside it (`external: true`) that the engine
    does not have: nothing is made."""

    exit_code = EXIT_INVALID


class ImageNotBuilt(OllamatopoError):
    """`up --no-build`, and a service's `build:` image is not on the engine: nothing is
    made."""

    exit_code = EXIT_INVALID


class ServiceFailed(OllamatopoError):
    """A service could not be brought up (crashed, never ready, refused by the engine)."""

    def __init__(self, service: str, cause: str) -> None:
        self.service = service
        self.cause = cause
        super().__init__(f"service {service!r} failed: {cause}")


class DependencyFailed(ServiceFailed):
    """A service did not start because something it waits for failed."""


class SupplyFailed(ServiceFailed):
    """A service did not start because something it needs (a network, a volume, an
    image) could not be made; the supply's own failure says why."""


class NetworkFailed(ServiceFailed):
    """A network of the plan could not be made; the services on it cannot start."""

    def __init__(self, network: str, users: list[str], cause: str) -> None:
        super().__init__(f"network {network}", cause)
        used = f" (used by {', '.join(users)})" if users else ""
        self.args = (f"network {network!r}{used} failed: {cause}",)


class ProbeFailed(OllamatopoError):
    """One readiness check did not pass (retried until the service's deadline)."""


class HookFailed(OllamatopoError):
    """A lifecycle hook (post_start, pre_stop) exited non-zero, or could not be run."""

    def __init__(self, moment: str, index: int, reason: str) -> None:
        super().__init__(f"its {moment} hook [{index}] {reason}")


class RunFailed(OllamatopoError):
    """`up` failed: one or more required services failed."""

    def __init__(self, failures: Sequence[ServiceFailed], rolled_back: bool) -> None:
        self.failures = tuple(failures)
        lines = [str(failure) for failure in self.failures]
        lines.append(
            "rolled back what this run created"
            if rolled_back
            else "left what this run created in place (--keep-on-failure)"
        )
        super().__init__("\n".join(lines))
