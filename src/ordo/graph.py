"""The task graph: duplicates, unknown dependencies, cycles, order and waves. Pure."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from ordo.errors import Problem
from ordo.model import Task


def check_graph(tasks: Sequence[Task], path: str | None = None) -> list[Problem]:
    """Every problem with how ``tasks`` connect, each located at the task's line."""
    problems: list[Problem] = []
    seen: dict[str, Task] = {}
    for i, task in enumerate(tasks):
        if task.id in seen:
            first = seen[task.id].line
            where = f" (first defined at line {first})" if first else ""
            problems.append(
                Problem(
                    f"duplicate task id '{task.id}'{where}", path, task.line, field=f"tasks[{i}].id"
                )
            )
        else:
            seen[task.id] = task
    for i, task in enumerate(tasks):
        for dep in task.depends_on:
            if dep not in seen:
                hint = difflib.get_close_matches(dep, list(seen), n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else ""
                problems.append(
                    Problem(
                        f"task '{task.id}' depends on unknown task '{dep}'{tip}",
                        path,
                        task.line,
                        field=f"tasks[{i}].depends_on",
                    )
                )
            elif dep == task.id:
                problems.append(
                    Problem(
                        f"task '{task.id}' depends on itself",
                        path,
                        task.line,
                        field=f"tasks[{i}].depends_on",
                    )
                )
    if not problems:
        cycle = find_cycle(tasks)
        if cycle:
            line = next((t.line for t in tasks if t.id == cycle[0]), None)
            problems.append(
                Problem("dependency cycle: " + " -> ".join(cycle), path, line, field="tasks")
            )
    return problems


def find_cycle(tasks: Sequence[Task]) -> list[str] | None:
    """A cycle as a closed path (``[a, b, c, a]``), or None. Ignores unknown deps."""
    deps = {t.id: [d for d in t.depends_on] for t in tasks}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in deps:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            children = deps.get(node, [])
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if child in deps and not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def waves(tasks: Sequence[Task]) -> list[list[str]]:
    """Tasks grouped by the earliest moment they can run: wave 1 has no dependencies,
    wave n depends only on earlier waves. File order inside a wave. Assumes a DAG."""
    level: dict[str, int] = {}
    remaining = {t.id: set(t.depends_on) for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in t.depends_on:
            dependents.setdefault(d, []).append(t.id)
    current = [t.id for t in tasks if not t.depends_on]
    number = 1
    while current:
        nxt: list[str] = []
        for task_id in current:
            level[task_id] = number
            for child in dependents.get(task_id, []):
                remaining[child].discard(task_id)
                if not remaining[child]:
                    nxt.append(child)
        current, number = nxt, number + 1
    result: list[list[str]] = [[] for _ in range(number - 1)]
    for task in tasks:
        if task.id in level:
            result[level[task.id] - 1].append(task.id)
    return result


def topological_order(tasks: Sequence[Task]) -> list[str]:
    """Every task after its dependencies; file order where free."""
    return [task_id for wave in waves(tasks) for task_id in wave]
