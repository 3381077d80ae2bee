"""`down`: the project's containers stopped in reverse dependency order and removed, from
the labels alone; under the project's lock, so never beside an `up` or a daemon. The plan
is read only for its services' pre_stop hooks: a plan that cannot be read (gone, broken,
another project's) stops nothing less, and runs no hook."""

from __future__ import annotations

from ollamatopo._errors import OllamatopoError, UsageError
from ollamatopo.app._backend import backend_for
from ollamatopo.app._connect import connect_engine
from ollamatopo.app._lock import ProjectLock
from ollamatopo.app._settings import Settings
from ollamatopo.plan._loading import read_project_name
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._hooks import StopHooks, stop_hooks
from ollamatopo.run._scheduler import DownResult, new_run_id


def project_to_take_down(settings: Settings) -> str:
    project = settings.project or read_project_name(settings.plan)
    if not project:
        raise UsageError(f"cannot tell the project from {settings.plan}: pass --project NAME "
                         "or --plan FILE")
    return project


async def take_down(settings: Settings, project: str, *, volumes: bool) -> DownResult:
    # Not while an `up` brings the project up (it would blame the missing containers on
    # the services) or a daemon restarts what this stops.
    lock = ProjectLock(settings.lock_dir, settings.docker_host, project)
    lock.acquire("down")
    try:
        return await _take_down(settings, project, volumes=volumes)
    finally:
        lock.release()


async def _take_down(settings: Settings, project: str, *, volumes: bool) -> DownResult:
    recorder = RunRecorder(run_id=new_run_id(), project=project, plan_path=str(settings.plan),
                           phases={}, phase_order=[], command="down")
    engine = await connect_engine(settings)
    try:
        result = await backend_for(settings, engine).down(
            project, volumes=volumes, recorder=recorder, hooks=_plan_hooks(settings, project))
    finally:
        engine.close()
    kept = result.kept_volumes
    recorder.emit("down completed", containers=len(result.containers),
                  networks=len(result.networks), volumes=result.volumes, kept_volumes=kept,
                  total_s=recorder.elapsed(),
                  note=f"named volumes kept: {', '.join(kept)} (remove them with --volumes)"
                  if kept else None)
    return result


def _plan_hooks(settings: Settings, project: str) -> StopHooks:
    from ollamatopo.app._up import load

    try:
        loaded = load(settings, warn=False)
    except OllamatopoError:
        return {}
    return stop_hooks(loaded.plan) if loaded.plan.project == project else {}
