"""`python -m ollamatopo`: the command line, as a process.

Two things only a process entry point can do:
- SIGTERM is a stop request from the first instruction on, like SIGINT (exit 130, as
  documented). Until the event loop takes signals over (0.5-1 s of imports and plan
  loading on these machines), Python's default would kill the process with 143.
- The process ends when the command does. The engine's calls run in worker threads,
  which Python joins at exit; a call the engine never answers (a stalled engine) would
  keep the process alive until the client's timeout. The command has already said what
  it abandoned (`Engine.close`), so lingering threads are left to the kernel.
"""

import contextlib
import os
import signal
import sys
import threading
from types import FrameType

EXIT_INTERRUPTED = 130  # the same as _errors.EXIT_INTERRUPTED, without importing it yet
_STOP = threading.Event()  # a stop was requested before the event loop took signals over


def _stop_requested(signum: int, frame: FrameType | None) -> None:
    _STOP.set()
    raise KeyboardInterrupt


def _run() -> int:
    try:
        from ollamatopo.cli._main import main

        return main()
    except KeyboardInterrupt:  # before the command could catch it: nothing was done yet
        print("ollamatopo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException:
        # The interrupt can land inside an extension's import: pydantic_core (Rust) turns
        # it into a panic, which is no KeyboardInterrupt. It is still the stop request.
        if not _STOP.is_set() or isinstance(sys.exc_info()[1], SystemExit):
            raise
        print("ollamatopo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit(code: int) -> None:
    lingering = [thread for thread in threading.enumerate()
                 if thread is not threading.main_thread() and not thread.daemon
                 and thread.is_alive()]
    # An interrupt raised while a module's code ran (an import in the first second) is
    # remembered by CPython as unhandled even once caught, and a normal exit then kills
    # the process with SIGINT (-2) instead of exiting 130: such an exit skips that.
    if not lingering and code != EXIT_INTERRUPTED:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def run() -> None:
    """The process: `python -m ollamatopo` and the `ollamatopo` script."""
    signal.signal(signal.SIGTERM, _stop_requested)
    _exit(_run())


if __name__ == "__main__":
    run()
