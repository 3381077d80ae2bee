"""Settings from the environment (prefix OLLAMATOPO_) and the command line, in one object."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ollamatopo.app._control import DEFAULT_PLAN, default_plan_files, default_state_dir
from ollamatopo.app._lock import default_lock_dir


class Settings(BaseSettings):
    """Every knob of ollamatopo; a command-line flag overrides the environment."""

    model_config = SettingsConfigDict(env_prefix="OLLAMATOPO_", extra="ignore",
                                      validate_default=True)

    plan: Path = DEFAULT_PLAN
    # More compose files merged over the plan (-f given again; compose.override.yaml).
    plan_overrides: list[Path] = []
    profiles: list[str] = Field(default_factory=lambda: [
        name for name in os.environ.get("COMPOSE_PROFILES", "").split(",") if name])
    env_file: Path | None = None  # instead of the .env beside the plan
    project: str | None = None
    # Where the plan runs: the engine's own containers, or a swarm whose manager it is.
    backend: Literal["engine", "swarm"] = "engine"
    # On a swarm, the image of ollamatopo's probe containers on the overlays (it needs
    # `sh` and `nc`, as busybox has them); unset: the swarm's own readiness only.
    swarm_probe_image: str | None = None
    docker_host: str | None = Field(default_factory=lambda: os.environ.get("DOCKER_HOST"))
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    progress: Literal["auto", "tty", "plain"] = "auto"
    probe_timeout: float = Field(default=60.0, gt=0, description="default readiness deadline (s)")
    probe_initial_backoff: float = Field(default=0.05, gt=0, le=1.0)
    probe_max_backoff: float = Field(default=0.15, gt=0, le=10.0)
    connect_timeout: float = Field(
        default=5.0, gt=0, le=300, description="seconds to connect to the engine and ping it")
    engine_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="seconds any other engine call may go unanswered")
    api_concurrency: int = Field(default=8, ge=1, le=64)
    start_concurrency: int = Field(
        default=8, ge=1, le=64, description="creates and starts at once, earliest deadline first")
    state_dir: Path = Field(default_factory=default_state_dir)
    lock_dir: Path = Field(default_factory=default_lock_dir,
                           description="where up, down and scale lock a project, per engine")
    keep_runs: int = Field(default=100, ge=1, le=100_000,
                           description="run reports kept in the state directory")
    # Supervision (up --supervise)
    liveness_interval: float = Field(default=10.0, gt=0, description="seconds between checks")
    failure_threshold: int = Field(default=3, ge=1, le=100)
    restart_backoff_initial: float = Field(default=0.5, gt=0, le=60)
    restart_backoff_max: float = Field(default=60.0, gt=0, le=3600)
    restart_stable_after: float = Field(default=60.0, gt=0)
    on_stop: Literal["leave", "stop"] = "leave"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_address: str = "127.0.0.1"

    @model_validator(mode="after")
    def _discovered_plan(self) -> Settings:
        """No plan named: compose's files in the working directory, as compose finds them."""
        if "plan" not in self.model_fields_set:
            self.plan, *self.plan_overrides = default_plan_files(Path.cwd())
        return self

    @field_validator("log_format", "log_level", "progress", "backend", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
