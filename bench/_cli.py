"""`python -m bench [startup|seed|compose|scale|daemon|swarm|all ...] [--sizes 10,50,100,200]`.

Runs the chosen sub-benchmarks (all by default) in a fixed order, prints each table as
it completes, and writes every figure to bench/results/<timestamp>.json and
bench/results/latest.json. A sub-benchmark that cannot run is reported as such and the
others go on. Whatever the benchmark created is swept by label after each
sub-benchmark, and on any exception, Ctrl-C or SIGTERM.

Exit status: 0 when every chosen sub-benchmark ran (however slow), 1 when one could not
run, 2 on bad usage, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench._docker import Engine
    from bench._peers import Compose
    from bench._plans import SeedTopology

BENCHMARKS = ("startup", "seed", "compose", "scale", "daemon", "swarm")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes like 10,50,100") from None
    if not sizes or any(size < 1 or size > 1000 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be between 1 and 1000")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    from bench._scale import BASELINE_THREADS, DEFAULT_SIZES

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark ollamatopo: the seed topology against its critical-path bound "
                    "and docker-compose, scale against the engine's own throughput, and "
                    "interpreter start-up. Reports; never fails on a slow machine.")
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"any of {', '.join(BENCHMARKS)} or all (default: all)")
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                        help="N for the scale benchmark, comma-separated "
                             f"(default {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--threads", type=int, default=BASELINE_THREADS,
                        help="threads of the engine baseline in scale (default "
                             f"{BASELINE_THREADS})")
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 21),
                        metavar="N", help="seed: cold and warm runs N times and report the "
                                          "median one with all N beside it (default 3)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not install docker-compose when it is missing")
    parser.add_argument("--no-write", action="store_true",
                        help="print the tables only; write no JSON")
    return parser


def _chosen(names: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    wanted = set(names or ["all"])
    unknown = wanted - {*BENCHMARKS, "all"}
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}: choose from "
                     f"{', '.join(BENCHMARKS)} or all")
    return list(BENCHMARKS) if "all" in wanted else [b for b in BENCHMARKS if b in wanted]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    chosen = _chosen(arguments.benchmarks, parser)
    signal.signal(signal.SIGTERM, _terminate)

    from bench import _report
    from bench._child import compile_package
    from bench._docker import BenchError, Engine

    compile_package()
    session = uuid.uuid4().hex[:8]
    stamp = _report.timestamp()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "session": session,
        "chosen": chosen,
        "notes": [
            "readiness is the benchmark's own poller (GET /health about every 10 ms)",
            "stand-in readiness is the engine's timestamp of its 'standin ready' line",
            "the stand-in image is used without its HEALTHCHECK (as the images it replaces)",
            "figures are noisy when other work shares the machine",
        ],
        "benchmarks": {},
    }
    try:
        engine = Engine(session)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    failures = 0
    try:
        results["machine"] = engine.facts()
        print(_report.render({"machine": results["machine"]}), flush=True)
        image = engine.ensure_image()
        runner = _Runner(engine, image, arguments, results)
        for name in chosen:
            began = time.monotonic()
            ok = runner.run(name)
            failures += 0 if ok else 1
            results["benchmarks"][name]["elapsed_s"] = round(time.monotonic() - began, 2)
            print("\n" + runner.render(name), flush=True)
    except KeyboardInterrupt:
        print("\nbench: interrupted; removing what it created", file=sys.stderr)
        results["interrupted"] = True
        return 130
    finally:
        try:
            engine.sweep()
            if engine.leaks:
                results["leftovers"] = dict(engine.leaks)
                print("\nbench: the engine refused to remove (labelled "
                      f"{engine.selector}):", file=sys.stderr)
                for item, why in engine.leaks.items():
                    print(f"  {item[:12]}: {why}", file=sys.stderr)
        finally:
            engine.close()
        results["machine_after"] = {"load_average": _load()}
        if not arguments.no_write and results["benchmarks"]:
            path = _report.write_results(results, stamp=stamp)
            print(f"\nbench: results written to {path} (and latest.json)")
    return 1 if failures else 0


def _load() -> list[float]:
    import os

    return [round(x, 2) for x in os.getloadavg()]


class _Runner:
    """Runs one sub-benchmark by name into `results`, turning a failure into a note."""

    def __init__(self, engine: Engine, image: str, arguments: argparse.Namespace,
                 results: dict[str, Any]) -> None:
        self.engine, self.image, self.arguments, self.results = engine, image, arguments, results
        self.topology: SeedTopology | None = None

    def run(self, name: str) -> bool:
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "startup": self.startup, "seed": self.seed, "compose": self.compose,
            "scale": self.scale, "daemon": self.daemon, "swarm": self.swarm}
        try:
            self.results["benchmarks"][name] = steps[name]()
            return not self.results["benchmarks"][name].get("failed")
        except KeyboardInterrupt:
            self.results["benchmarks"][name] = {"error": "interrupted"}
            raise
        except Exception as error:
            self.results["benchmarks"][name] = {"error": _describe(error),
                                                "traceback": traceback.format_exc()}
            return False
        finally:
            self.engine.sweep()

    def render(self, name: str) -> str:
        from bench import _report

        result = self.results["benchmarks"][name]
        if name == "startup":
            return _report.render_startup(result)
        if name == "seed":
            return _report.render_seed(result)
        if name == "compose":
            return _report.render_compose(result, self.results["benchmarks"].get("seed"))
        if name == "daemon":
            return _report.render_daemon(result, self.results["benchmarks"].get("seed"))
        if name == "swarm":
            from bench._swarm import render_swarm

            return render_swarm(result)
        return _report.render_scale(result)

    def _topology(self) -> SeedTopology:
        from bench._plans import load_seed

        if self.topology is None:
            self.topology = load_seed()
        return self.topology

    def startup(self) -> dict[str, Any]:
        from bench._child import startup_times
        from bench._stats import median

        samples = startup_times(5)
        return {"samples_s": samples, "median_s": median(samples)}

    def seed(self) -> dict[str, Any]:
        from bench._seed import run_seed

        return run_seed(self.engine, self.image, self._topology(),
                        repeat=self.arguments.repeat)

    def compose(self) -> dict[str, Any]:
        """Compose v1 (Debian's, the issue's peer) and v2, each with both healthcheck
        variants; runs of v2 are keyed `v2-<variant>`."""
        from bench._peers import find_compose, find_compose_v2

        install = not self.arguments.no_install
        tool = find_compose(install=install)
        result: dict[str, Any] = {"tool": tool.__dict__, "runs": {}}
        if tool.path is None:
            result["error"] = f"skipped: {tool.note}"
            result["failed"] = False
            return result
        v2 = find_compose_v2(install=install)
        result["tool_v2"] = v2.__dict__
        self._compose_runs(tool, "", result)
        if v2.path is not None:
            self._compose_runs(v2, "v2-", result)
        if v2.path is not None:
            from bench._peers import run_same_file

            try:
                result["same_file"] = run_same_file(self.engine, v2, self.image,
                                                    self._topology(),
                                                    repeat=self.arguments.repeat)
            except Exception as error:
                result["same_file"] = {"error": _describe(error)}
                result["failed"] = True
        if (self.results["benchmarks"].get("seed") or {}).get("all_ready_s") is None:
            result["note"] = "run `seed` in the same invocation for the ratios"
        return result

    def _compose_runs(self, tool: Compose, prefix: str, result: dict[str, Any]) -> None:
        from bench._peers import VARIANTS, run_compose
        from bench._stats import ratio

        ours = (self.results["benchmarks"].get("seed") or {}).get("all_ready_s")
        for variant in VARIANTS:
            try:
                run = run_compose(self.engine, tool, self.image, self._topology(), variant)
            except KeyboardInterrupt:
                raise
            except Exception as error:
                run = {"description": VARIANTS[variant], "tool_version": tool.version,
                       "error": _describe(error)}
                result["failed"] = True
            run["speedup"] = ratio(run.get("all_ready_s"), ours)
            result["runs"][prefix + variant] = run

    def daemon(self) -> dict[str, Any]:
        from bench._daemon import run_daemon_bench

        return run_daemon_bench(self.engine, self.image, self._topology())

    def swarm(self) -> dict[str, Any]:
        from bench._swarm import run_swarm_bench

        return run_swarm_bench(self.engine, self.image, self._topology())

    def scale(self) -> dict[str, Any]:
        from bench._scale import run_scale, scale_fits

        result: dict[str, Any] = {"threads": self.arguments.threads, "runs": []}
        for n in self.arguments.sizes:
            try:
                run = run_scale(self.engine, self.image, n, self.arguments.threads)
            except KeyboardInterrupt:
                raise
            except Exception as error:
                run = {"n": n, "error": _describe(error)}
                result["failed"] = True
            finally:
                self.engine.sweep()
            result["runs"].append(run)
            print(f"bench: scale N={n} done", flush=True)
        result["fits"] = scale_fits(result["runs"])
        return result


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
