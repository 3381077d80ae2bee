"""The dependency graph of a plan's services, and what is computed on it.

One small graph type: nodes are services, an edge says a service waits for a
dependency to be `started` or `healthy`. Pure data in, data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ollamatopo.plan._model import Condition, Plan


@dataclass(frozen=True)
class DependencyGraph:
    """Services and, for each, the services it waits for and on what condition."""

    dependencies: Mapping[str, Mapping[str, Condition]]
    # (dependent, dependency) edges of compose's `required: false` and `restart: true`.
    not_required: frozenset[tuple[str, str]] = frozenset()
    restarting: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_plan(cls, plan: Plan) -> DependencyGraph:
        services = dict(plan.ordered_services())
        edges = [(name, dependency, options)
                 for name, spec in services.items()
                 for dependency, options in spec.dependency_options.items()]
        return cls({name: plan.dependencies(name) for name in services},
                   frozenset((a, b) for a, b, options in edges if not options.required),
                   frozenset((a, b) for a, b, options in edges if options.restart))

    def subgraph(self, names: Iterable[str]) -> DependencyGraph:
        """The graph of `names` (which hold their dependencies), edges' options kept."""
        kept = set(names)
        return DependencyGraph({name: dict(self.dependencies[name]) for name in kept},
                               frozenset(e for e in self.not_required if e[0] in kept),
                               frozenset(e for e in self.restarting if e[0] in kept))

    def restarted_with(self, names: Iterable[str]) -> list[str]:
        """`names` and, transitively, the dependents that `restart: true` restarts with
        them, dependencies first."""
        chosen = set(names)
        grew = True
        while grew:
            more = {a for a, b in self.restarting if b in chosen} - chosen
            chosen |= more
            grew = bool(more)
        return [name for name in self.topological_order() if name in chosen]

    @property
    def nodes(self) -> list[str]:
        return list(self.dependencies)

    def dependents(self, name: str) -> list[str]:
        return [node for node, deps in self.dependencies.items() if name in deps]

    def jobs(self) -> set[str]:
        """One-shot services: some dependent waits for them to complete (exit with 0)."""
        return {dependency for deps in self.dependencies.values()
                for dependency, condition in deps.items() if condition is Condition.COMPLETED}

    def reversed(self) -> DependencyGraph:
        """Edges flipped, each waiting for the other end to be done (HEALTHY): what `down`
        walks, so a service is stopped before what it needs."""
        flipped: dict[str, dict[str, Condition]] = {node: {} for node in self.dependencies}
        for node, deps in self.dependencies.items():
            for dependency in deps:
                if dependency in flipped:
                    flipped[dependency][node] = Condition.HEALTHY
        return DependencyGraph(flipped)

    def find_cycle(self) -> list[str] | None:
        """A cycle as a list of services (first repeated at the end), or None.

        Depth-first without recursion: a chain of thousands of `after:` is no RecursionError."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in self.dependencies:
            if root in state:
                continue
            state[root] = 1
            path = [root]
            pending = [iter(self.dependencies[root])]
            while pending:
                dependency = next(pending[-1], None)
                if dependency is None:
                    state[path.pop()] = 2
                    pending.pop()
                elif state.get(dependency) == 1:
                    return [*path[path.index(dependency):], dependency]
                elif dependency in self.dependencies and dependency not in state:
                    state[dependency] = 1
                    path.append(dependency)
                    pending.append(iter(self.dependencies[dependency]))
        return None

    def topological_order(self) -> list[str]:
        """Dependencies before dependents; ties keep plan order. The graph must be acyclic.

        In rounds: each round takes, in plan order, every node whose dependencies are all
        placed. Linear in the edges (a chain of thousands is no quadratic scan)."""
        position = {node: index for index, node in enumerate(self.dependencies)}
        waiting = {node: len(deps) for node, deps in self.dependencies.items()}
        dependents: dict[str, list[str]] = {node: [] for node in self.dependencies}
        for node, deps in self.dependencies.items():
            for dependency in deps:
                if dependency in dependents:
                    dependents[dependency].append(node)
        order: list[str] = []
        ready = [node for node, count in waiting.items() if count == 0]
        while ready:
            order.extend(ready)
            released = []
            for node in ready:
                for dependent in dependents[node]:
                    waiting[dependent] -= 1
                    if waiting[dependent] == 0:
                        released.append(dependent)
            ready = sorted(released, key=position.__getitem__)
        if len(order) < len(self.dependencies):
            placed = set(order)
            remaining = [node for node in self.dependencies if node not in placed]
            raise ValueError(f"dependency cycle among {remaining}")
        return order

    def critical_path(self, durations: Mapping[str, float]) -> tuple[list[str], float]:
        """The longest chain by summed duration (missing durations count as 1), and its length.

        A `started` edge lets the dependent begin when the dependency begins; the cost
        of the dependency's own readiness then is not on the dependent's path.
        """
        finish: dict[str, float] = {}
        begin: dict[str, float] = {}
        via: dict[str, str | None] = {}
        for node in self.topological_order():
            earliest, previous = 0.0, None
            for dependency, condition in self.dependencies[node].items():
                at = finish[dependency] if condition.waits_for_the_end else begin[dependency]
                if previous is None or at > earliest:
                    earliest, previous = at, dependency
            begin[node] = earliest
            finish[node] = earliest + durations.get(node, 1.0)
            via[node] = previous
        if not finish:
            return [], 0.0
        last = max(finish, key=lambda node: finish[node])
        path: list[str] = []
        cursor: str | None = last
        while cursor is not None:
            path.append(cursor)
            cursor = via[cursor]
        return list(reversed(path)), finish[last]

    def latest_starts(self, durations: Mapping[str, float]) -> dict[str, float]:
        """The latest moment, from the beginning of the run, each service can start
        without making the whole longer: its deadline. Work ordered by it (earliest
        deadline first) does the critical path first, and compares a root that must start
        now with a dependent that can only start seconds later correctly (by slack alone,
        both would look as urgent)."""
        end = self.critical_path(durations)[1]
        latest: dict[str, float] = {}
        for node in reversed(self.topological_order()):
            latest[node] = end - durations.get(node, 1.0)
            for dependent in self.dependents(node):
                condition = self.dependencies[dependent][node]
                room = latest[dependent] - (durations.get(node, 1.0)
                                            if condition.waits_for_the_end else 0.0)
                latest[node] = min(latest[node], room)
        return {node: round(at, 6) for node, at in latest.items()}

    def phase_bound(self, phases: Iterable[Iterable[str]], durations: Mapping[str, float]) -> float:
        """How long the same durations take if every phase were a barrier for the next: a
        service starts once every service of the earlier phases is ready AND its own
        dependencies hold (as on the graph). So it is never below the critical path, and
        with one phase it is the critical path. Missing durations count as 1; a service in
        no phase waits for its dependencies only.

        Raises ValueError when a service waits for one of a later phase: with barriers it
        would never start.
        """
        rank: dict[str, int] = {}
        for index, phase in enumerate(phases):
            for name in phase:
                rank.setdefault(name, index)
        for node, deps in self.dependencies.items():
            for dependency in deps:
                if node in rank and rank.get(dependency, -1) > rank[node]:
                    raise ValueError(f"{node} waits for {dependency}, which is in a later phase")
        # The barrier before phase k (k >= 1) is a node of no duration that waits for every
        # service of phase k-1 and for the barrier before that; each service of phase k
        # waits for it. The bound is the critical path of that larger graph.
        taken = set(self.dependencies) | set(rank)
        barriers: dict[int, str] = {}
        for index in range(1, max(rank.values(), default=0) + 1):
            name = f"(barrier before phase {index + 1})"
            while name in taken:
                name += "'"
            barriers[index] = name
        edges: dict[str, dict[str, Condition]] = {
            name: ({barriers[index - 1]: Condition.HEALTHY} if index > 1 else {})
            for index, name in barriers.items()}
        for name in [*self.dependencies, *(n for n in rank if n not in self.dependencies)]:
            own = {dependency: condition
                   for dependency, condition in self.dependencies.get(name, {}).items()
                   if dependency in self.dependencies or dependency in rank}
            if name in rank:
                if rank[name] in barriers:
                    own[barriers[rank[name]]] = Condition.HEALTHY
                if rank[name] + 1 in barriers:
                    edges[barriers[rank[name] + 1]][name] = Condition.HEALTHY
            edges[name] = own
        weights = {**durations, **dict.fromkeys(barriers.values(), 0.0)}
        try:
            return DependencyGraph(edges).critical_path(weights)[1]
        except ValueError:
            if self.find_cycle() is not None:
                raise
            # The cycle goes through a barrier, and a service in no phase.
            raise ValueError("a service waits, through services in no phase, for one of a "
                             "later phase") from None
