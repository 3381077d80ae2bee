"""compose's lifecycle hooks: `post_start` commands run in a container right after
ollamatopo starts it, `pre_stop` commands right before it stops it.

As compose v2 runs them (`pkg/compose/hook.go`): each an exec in the container, in the
order written, as its `user`, in its `working_dir`, with its `environment` added; the
first that exits non-zero ends the list, and its last output lines say why. A service
counts as started only once its `post_start` hooks passed (a failure fails the service,
as compose fails its start). A `pre_stop` failure is logged and the stop goes on: compose
leaves such a container running, which would block a `down` until the hook is fixed
(Kubernetes' preStop is not allowed to block the stop either).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import structlog

from ollamatopo._errors import EngineError, HookFailed
from ollamatopo.engine._docker import Engine
from ollamatopo.plan._model import Plan, ServiceHook
from ollamatopo.report._recorder import RunRecorder

TAIL_LINES = 10  # of a failing hook's output, as compose keeps
StopHooks = Mapping[str, Sequence[ServiceHook]]  # pre_stop hooks by service
# The runtime's exit codes for a command that never ran; the engine may give no words.
CANNOT_RUN = {126: " (the command could not be run: its user is not in the image's "
                   "/etc/passwd (give a number), or it is not executable)",
              127: " (no such command in the container)"}


def stop_hooks(plan: Plan) -> dict[str, list[ServiceHook]]:
    return {name: spec.pre_stop for name, spec in plan.services.items() if spec.pre_stop}


async def run_hooks(engine: Engine, container_id: str, hooks: Sequence[ServiceHook],
                    moment: str) -> None:
    """Each hook in order (`moment`: post_start or pre_stop, for the message); HookFailed
    at the first that does not exit 0."""
    for index, hook in enumerate(hooks):
        environment = {key: value for key, value in hook.environment.items()
                       if value is not None}
        try:
            code, output = await engine.exec(container_id, list(hook.command), user=hook.user,
                                             privileged=hook.privileged,
                                             workdir=hook.working_dir,
                                             environment=environment)
        except EngineError as error:
            raise HookFailed(moment, index, f"could not run: {error}") from None
        if code != 0:
            tail = "\n".join(output.rstrip().splitlines()[-TAIL_LINES:])
            raise HookFailed(moment, index, f"exited with status {code}"
                             + (f": {tail}" if tail else CANNOT_RUN.get(code, "")))


async def stop_container(engine: Engine, container_id: str, hooks: Sequence[ServiceHook],
                         service: str, recorder: RunRecorder | None = None) -> None:
    """The container's pre_stop hooks when it runs (a failing one is a warning: the run's
    event, or a log line of its own), then the engine's stop."""
    if hooks and (await engine.inspect(container_id)).running:
        try:
            await run_hooks(engine, container_id, hooks, "pre_stop")
        except HookFailed as error:
            warn = (partial(recorder.emit, level="warning") if recorder is not None
                    else structlog.get_logger("ollamatopo").warning)
            warn("hook failed", service=service, error=str(error), note="stopped all the same")
    await engine.stop(container_id)
