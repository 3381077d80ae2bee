"""The dependency graph: cycles, order, critical path, phase bound, reversal."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._model import Condition

HEALTHY, STARTED = Condition.HEALTHY, Condition.STARTED


def graph(**edges: dict[str, Condition]) -> DependencyGraph:
    return DependencyGraph(edges)


# db <- api <- web, db <- worker; cache stands alone.
SHOP = graph(db={}, cache={}, api={"db": HEALTHY}, worker={"db": HEALTHY},
             web={"api": HEALTHY})


def test_nodes_and_dependents() -> None:
    assert SHOP.nodes == ["db", "cache", "api", "worker", "web"]
    assert SHOP.dependents("db") == ["api", "worker"]
    assert SHOP.dependents("web") == []


# --- cycles ---------------------------------------------------------------------------------


def test_no_cycle() -> None:
    assert SHOP.find_cycle() is None


def test_two_node_cycle() -> None:
    assert graph(a={"b": HEALTHY}, b={"a": STARTED}).find_cycle() == ["a", "b", "a"]


def test_cycle_reached_from_outside_lists_only_the_cycle() -> None:
    cyclic = graph(entry={"a": HEALTHY}, a={"b": HEALTHY}, b={"c": HEALTHY}, c={"a": HEALTHY})
    assert cyclic.find_cycle() == ["a", "b", "c", "a"]


def test_self_loop_is_a_cycle() -> None:
    assert graph(a={"a": HEALTHY}).find_cycle() == ["a", "a"]


def test_edges_to_unknown_nodes_are_ignored() -> None:
    assert graph(a={"ghost": HEALTHY}).find_cycle() is None


# --- topological order ----------------------------------------------------------------------


def test_topological_order_puts_dependencies_first_and_keeps_plan_order() -> None:
    assert SHOP.topological_order() == ["db", "cache", "api", "worker", "web"]


def test_topological_order_of_a_reversed_listing() -> None:
    chain = graph(c={"b": HEALTHY}, b={"a": STARTED}, a={})
    assert chain.topological_order() == ["a", "b", "c"]


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        graph(a={"b": HEALTHY}, b={"a": HEALTHY}).topological_order()


# --- critical path --------------------------------------------------------------------------


def test_critical_path_of_an_empty_graph() -> None:
    assert graph().critical_path({}) == ([], 0.0)


def test_critical_path_sums_durations_along_healthy_edges() -> None:
    durations = {"db": 10.0, "cache": 1.0, "api": 5.0, "worker": 20.0, "web": 2.0}
    assert SHOP.critical_path(durations) == (["db", "worker"], 30.0)


def test_critical_path_follows_the_slowest_dependency() -> None:
    durations = {"db": 10.0, "cache": 1.0, "api": 5.0, "worker": 1.0, "web": 2.0}
    assert SHOP.critical_path(durations) == (["db", "api", "web"], 17.0)


def test_missing_durations_count_as_one() -> None:
    assert SHOP.critical_path({}) == (["db", "api", "web"], 3.0)


def test_started_edge_lets_the_dependent_begin_with_its_dependency() -> None:
    durations = {"db": 10.0, "app": 3.0}
    healthy = graph(db={}, app={"db": HEALTHY})
    started = graph(db={}, app={"db": STARTED})
    assert healthy.critical_path(durations) == (["db", "app"], 13.0)
    # app begins when db begins, so it is done at 3; db alone (10) is the longest chain.
    assert started.critical_path(durations) == (["db"], 10.0)


def test_started_edge_when_the_dependent_is_the_slow_one() -> None:
    durations = {"db": 2.0, "app": 5.0, "web": 1.0}
    chain = graph(db={}, app={"db": STARTED}, web={"app": HEALTHY})
    path, length = chain.critical_path(durations)
    assert length == 6.0  # app 0..5 (started with db), web 5..6
    assert path[-2:] == ["app", "web"]


def test_mixed_conditions_take_the_latest_begin() -> None:
    durations = {"slow": 10.0, "quick": 4.0, "app": 1.0}
    mixed = graph(slow={}, quick={}, app={"slow": STARTED, "quick": HEALTHY})
    assert mixed.critical_path(durations) == (["slow"], 10.0)
    durations["app"] = 8.0  # app: begins at 4 (quick healthy), done at 12
    assert mixed.critical_path(durations) == (["quick", "app"], 12.0)


# --- phase bound ----------------------------------------------------------------------------


def test_phase_bound_sums_the_slowest_service_of_each_phase() -> None:
    durations = {"db": 10.0, "cache": 1.0, "api": 5.0, "worker": 20.0, "web": 2.0}
    phases = [["db", "cache"], ["api", "worker"], ["web"]]
    assert SHOP.phase_bound(phases, durations) == 32.0
    assert SHOP.phase_bound(phases, {}) == 3.0  # missing durations count as one
    alone = DependencyGraph({})
    assert alone.phase_bound([[], ["web"]], durations) == 2.0  # an empty phase costs nothing
    assert alone.phase_bound(phases, durations) == 32.0


def test_phase_bound_is_never_below_the_critical_path() -> None:
    durations = {"db": 10.0, "cache": 1.0, "api": 5.0, "worker": 20.0, "web": 2.0}
    phases = [["db", "cache"], ["api", "worker"], ["web"]]
    assert SHOP.phase_bound(phases, durations) >= SHOP.critical_path(durations)[1]


def test_phase_bound_keeps_the_dependencies_within_a_phase() -> None:
    # One phase: db, then api once db is healthy, then web: the barrier is no help to
    # anyone, and the chain (10 + 5 + 2) is what it costs, not the slowest service (10).
    durations = {"db": 10.0, "cache": 1.0, "api": 5.0, "worker": 1.0, "web": 2.0}
    one = [["db", "cache", "api", "worker", "web"]]
    assert SHOP.critical_path(durations)[1] == 17.0
    assert SHOP.phase_bound(one, durations) == 17.0  # was 10.0
    # Two phases: db alone, then the rest, where web still waits for api.
    assert SHOP.phase_bound([["db", "cache"], ["api", "worker", "web"]], durations) == 17.0
    # A started edge within a phase: app begins with db.
    started = graph(db={}, app={"db": STARTED}, web={"app": HEALTHY})
    durations = {"db": 2.0, "app": 5.0, "web": 1.0}
    assert started.phase_bound([["db", "app", "web"]], durations) == 6.0
    assert started.phase_bound([["db"], ["app", "web"]], durations) == 8.0


def test_phase_bound_counts_services_in_no_phase_by_their_dependencies() -> None:
    durations = {"db": 10.0, "cache": 1.0, "api": 5.0, "worker": 20.0, "web": 2.0}
    assert SHOP.phase_bound([[], ["web"]], durations) == 30.0  # db then worker, unphased


def test_phase_bound_refuses_a_service_waiting_for_a_later_phase() -> None:
    backwards = graph(a={"b": HEALTHY}, b={})
    with pytest.raises(ValueError, match="a waits for b, which is in a later phase"):
        backwards.phase_bound([["a"], ["b"]], {})
    through = graph(a={"u": STARTED}, u={"b": HEALTHY}, b={})  # u is in no phase
    with pytest.raises(ValueError, match="through services in no phase"):
        through.phase_bound([["a"], ["b"]], {})
    assert backwards.phase_bound([["b"], ["a"]], {}) == 2.0


@st.composite
def phased_graphs(draw: st.DrawFn) -> tuple[DependencyGraph, list[list[str]], dict[str, float]]:
    """A random acyclic graph, phases that respect it (a service is in the phase of its
    dependencies or a later one, with empty phases now and then) and random durations (some
    missing)."""
    count = draw(st.integers(0, 9))
    names = [f"s{i}" for i in range(count)]
    edges: dict[str, dict[str, Condition]] = {}
    rank: dict[str, int] = {}
    for name in draw(st.permutations(names)):
        earlier = sorted(edges)
        chosen = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        edges[name] = {dep: draw(st.sampled_from([HEALTHY, STARTED])) for dep in chosen}
        rank[name] = max([draw(st.integers(0, 4)), *(rank[dep] for dep in chosen)])
    phases: list[list[str]] = [[] for _ in range(max(rank.values(), default=0) + 1)]
    for name in names:
        phases[rank[name]].append(name)
    durations = {name: draw(st.floats(0, 10)) for name in names
                 if draw(st.booleans()) or draw(st.booleans())}
    return DependencyGraph(edges), phases, durations


@given(phased_graphs())
@settings(max_examples=300, deadline=None)
def test_phases_as_barriers_never_beat_the_graph(
        case: tuple[DependencyGraph, list[list[str]], dict[str, float]]) -> None:
    shown, phases, durations = case
    barrier = shown.phase_bound(phases, durations)
    assert barrier >= shown.critical_path(durations)[1] - 1e-9
    # Each phase begins once the one before is done, so it costs the critical path of its
    # own services (dependencies on earlier phases hold by then).
    within = sum(DependencyGraph({name: {dep: condition
                                         for dep, condition in shown.dependencies[name].items()
                                         if dep in phase}
                                  for name in phase}).critical_path(durations)[1]
                 for phase in phases)
    assert barrier == pytest.approx(within)
    # All in one phase: the barrier is no constraint at all.
    everything = [name for phase in phases for name in phase]
    assert shown.phase_bound([everything], durations) == pytest.approx(
        shown.critical_path(durations)[1])


# --- reversal -------------------------------------------------------------------------------


def test_reversed_flips_every_edge_to_healthy() -> None:
    flipped = graph(db={}, api={"db": STARTED}, web={"api": HEALTHY, "db": HEALTHY}).reversed()
    assert flipped.dependencies == {
        "db": {"api": HEALTHY, "web": HEALTHY},
        "api": {"web": HEALTHY},
        "web": {},
    }
    assert flipped.topological_order() == ["web", "api", "db"]


def test_reversed_drops_edges_to_unknown_nodes() -> None:
    assert graph(a={"ghost": HEALTHY}).reversed().dependencies == {"a": {}}


def test_reversed_twice_restores_the_edges_of_a_healthy_graph() -> None:
    assert SHOP.reversed().reversed().dependencies == SHOP.dependencies


# --- long chains (found by test_hostile_plans) ----------------------------------------------


def chain(length: int, *, closed: bool = False) -> DependencyGraph:
    """s0 waits for s1, which waits for s2, ...; closed: the last waits for s0."""
    last = {"s0": HEALTHY} if closed else {}
    return graph(**{f"s{i}": {f"s{i + 1}": HEALTHY} if i < length - 1 else last
                    for i in range(length)})


def test_a_chain_of_thousands_has_no_recursion_limit_and_takes_no_quadratic_time() -> None:
    started = time.process_time()
    long = chain(20_000)
    assert long.find_cycle() is None
    assert long.topological_order() == [f"s{i}" for i in reversed(range(20_000))]
    assert long.critical_path({})[1] == 20_000.0
    cycle = chain(20_000, closed=True).find_cycle()
    assert cycle is not None and len(cycle) == 20_001
    assert time.process_time() - started < 2


def test_latest_starts_are_the_earliest_on_the_critical_path_and_later_off_it() -> None:
    graph = DependencyGraph({
        "db": {}, "cache": {}, "ui": {},
        "api": {"db": Condition.HEALTHY, "cache": Condition.HEALTHY},
        "worker": {"api": Condition.STARTED},
    })
    durations = {"db": 3, "cache": 1, "api": 4, "worker": 2, "ui": 1}
    latest = graph.latest_starts(durations)
    assert latest["db"] == 0 and latest["api"] == 3  # the earliest they can: critical
    assert latest["cache"] == 2       # may begin 2 s late and still be ready for api
    assert latest["worker"] == 5      # begins with api (started edge), ends 2 s before it
    assert latest["ui"] == 6
    assert graph.critical_path(durations)[0] == ["db", "api"]


def test_latest_starts_put_a_root_with_room_before_a_dependent_on_the_critical_path() -> None:
    graph = DependencyGraph({
        "db": {}, "cache": {}, "api": {"db": Condition.HEALTHY},
        "worker": {"api": Condition.STARTED}, "ui": {},
    })
    durations = {"db": 3, "cache": 1, "api": 4, "worker": 2, "ui": 1}
    latest = graph.latest_starts(durations)
    assert latest == {"db": 0, "cache": 6, "api": 3, "worker": 5, "ui": 6}
    # api is on the critical path, yet it cannot start before db is ready at 3 s: db's
    # work comes first, and cache, a root with 6 s of room, after api's
