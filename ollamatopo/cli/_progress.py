"""The live progress board of `up` on a terminal.

`render_board` is pure: from the run's timeline (the `RunRecorder`), the graph and the
clock it gives the lines to show, per phase and service: waiting (and for what),
pulling, created, starting, probing, ready, failed, with seconds. `LiveBoard` is the
terminal side: it keeps the board at the bottom of the screen and writes log lines
above it, so warnings stay readable while the board redraws.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TextIO

import anyio

from ollamatopo.plan._model import Condition
from ollamatopo.plan._quantities import format_bytes
from ollamatopo.report._recorder import ImagePull, RunRecorder, ServiceTiming

REFRESH_S = 0.1
CLEAR_BELOW = "\x1b[J"
MARKS = {"ready": "✔", "failed": "✘", "skipped": "-"}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def render_board(recorder: RunRecorder, dependencies: Mapping[str, Mapping[str, Condition]],
                 images: Mapping[str, str], now: float, width: int = 100) -> list[str]:
    """The board at `now` (seconds since the run began), each line at most `width` wide."""
    services = recorder.services
    name_width = max((len(name) for name in services), default=0)
    spin = SPINNER[int(now * 10) % len(SPINNER)]
    statuses = Counter(timing.status for timing in services.values())
    lines = [f"{recorder.command} {recorder.project}  {now:5.1f}s  "
             f"{statuses['ready']}/{len(services)} ready"
             + (f", {statuses['failed']} failed" if statuses["failed"] else "")]
    for image, pull in sorted(recorder.pulls.items()):
        if pull.status == "pulling":
            amount = (f"{format_bytes(pull.downloaded)}/{format_bytes(pull.total)}"
                      if pull.total else "")
            lines.append(f"  {spin} pulling {image} {amount}".rstrip())
    for phase in recorder.phase_order:
        members = [(name, t) for name, t in services.items() if t.phase == phase]
        if not members:
            continue
        lines.append(f"{phase}")
        for name, timing in members:
            state = _service_state(name, timing, dependencies.get(name, {}), services,
                                   recorder.pulls.get(images.get(name, "")), now)
            mark = MARKS.get(timing.status, spin)
            lines.append(f"  {mark} {name.ljust(name_width)}  {state}")
    return [_fit(line, width) for line in lines]


def _service_state(name: str, timing: ServiceTiming, needs: Mapping[str, Condition],
                   services: Mapping[str, ServiceTiming], pull: ImagePull | None,
                   now: float) -> str:
    kept = " (kept)" if timing.action == "keep" else ""
    if timing.status == "ready":
        return f"ready{kept}  {_at(timing.ready_s)}"
    if timing.status == "failed":
        first_line = (timing.error.splitlines() or [""])[0]
        return f"failed{' (optional)' if timing.optional else ''}  {first_line}"
    checks = f", {timing.probe_attempts} checks" if timing.probe_attempts else ""
    if timing.started_s is not None:
        return f"probing  {now - timing.started_s:4.1f}s{checks}"
    if timing.created_s is None and pull is not None and pull.status == "pulling":
        return "waiting for its image"  # created once the image is there, before its deps hold
    waiting = _waiting_for(needs, services)
    if waiting:
        created = "created, " if timing.created_s is not None else ""
        return f"{created}waiting for {', '.join(waiting)}"
    if timing.action == "keep":
        return f"checking the running container{checks}"
    return "starting" if timing.created_s is not None else "creating"


def _waiting_for(needs: Mapping[str, Condition],
                 services: Mapping[str, ServiceTiming]) -> list[str]:
    def holds(dependency: str, condition: Condition) -> bool:
        other = services.get(dependency)
        if other is None or other.status == "ready":
            return True
        if other.status == "failed":
            return other.optional
        return condition is Condition.STARTED and other.started_s is not None

    return [dependency for dependency, condition in needs.items()
            if not holds(dependency, condition)]


def _at(seconds: float | None) -> str:
    return "" if seconds is None else f"at {seconds:.2f}s"


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[:max(width - 1, 0)] + "…"


class LiveBoard:
    """A board redrawn at the bottom of a terminal, with log lines written above it.

    It is also the stream the log lines are printed to (`write`, `flush`), so a line
    never lands in the middle of the board. Writes come from the event loop and from
    the engine's worker threads; one lock orders them.
    """

    def __init__(self, stream: TextIO, width: Callable[[], int]) -> None:
        self._stream, self._width = stream, width
        self._draw: Callable[[int], list[str]] | None = None
        self._drawn = 0
        self._partial = ""
        self._lock = threading.Lock()

    def show(self, draw: Callable[[int], list[str]]) -> None:
        """Start showing what `draw(width)` returns."""
        with self._lock:
            self._draw = draw
            self._redraw()

    def refresh(self) -> None:
        with self._lock:
            self._redraw()

    async def keep_refreshing(self) -> None:
        """Redraw until finished or cancelled (the seconds move even when nothing is
        logged)."""
        while self._draw is not None:
            await anyio.sleep(REFRESH_S)
            self.refresh()

    def finish(self) -> None:
        """Draw the last frame and leave it on the screen; later output goes below it."""
        with self._lock:
            self._redraw()
            self._draw, self._drawn = None, 0

    # --- the stream the log lines are written to ------------------------------------------

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            if "\n" in self._partial:
                complete, self._partial = self._partial.rsplit("\n", 1)
                self._erase()
                self._stream.write(complete + "\n")
                self._redraw(erase=False)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    # --- drawing, under the lock -----------------------------------------------------------

    def _erase(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F{CLEAR_BELOW}")
            self._drawn = 0

    def _redraw(self, erase: bool = True) -> None:
        if self._draw is None:
            return
        lines = self._draw(max(self._width(), 20))
        if erase:
            self._erase()
        self._stream.write("".join(f"{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)
