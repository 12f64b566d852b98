"""The task graph: duplicates, unknown dependencies, cycles, order and waves. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ordo.errors import Problem, did_you_mean
from ordo.model import Task


def check_graph(tasks: Sequence[Task], path: str | None = None) -> list[Problem]:
    """Every problem with how ``tasks`` connect, each located at the task's line.

    Duplicate ids, dependencies on unknown tasks (with a "did you mean" hint), a task
    depending on itself, and one dependency cycle written as its closed path
    (``dependency cycle: a -> b -> c -> a``). ``path`` is the file the problems name;
    fields are ``tasks[<index in tasks>].id`` or ``tasks[<index in tasks>].depends_on``.
    """
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for i, task in enumerate(tasks):
        if task.id in first:
            line = tasks[first[task.id]].line
            where = f" (first defined at line {line})" if line else ""
            message = f"duplicate task id '{task.id}'{where}"
            problems.append(Problem(message, path, task.line, field=f"tasks[{i}].id"))
        else:
            first[task.id] = i
    for i, task in enumerate(tasks):
        for message in _dependency_problems(task, first):
            problems.append(Problem(message, path, task.line, field=f"tasks[{i}].depends_on"))
    cycle = _cycle(tasks, first)
    if cycle:
        index = first[cycle[0]]
        problems.append(
            Problem(
                "dependency cycle: " + " -> ".join(cycle),
                path,
                tasks[index].line,
                field=f"tasks[{index}].depends_on",
            )
        )
    return problems


def _dependency_problems(task: Task, known: Mapping[str, int]) -> list[str]:
    messages = []
    for dep in task.depends_on:
        if dep == task.id:
            messages.append(f"task '{task.id}' depends on itself")
        elif dep not in known:
            tip = did_you_mean(dep, known)
            messages.append(f"task '{task.id}' depends on unknown task '{dep}'{tip}")
    return messages


def _cycle(tasks: Sequence[Task], first: Mapping[str, int]) -> list[str] | None:
    """A cycle among the first task of each id, leaving out self-loops (named already)."""
    graph = [
        Task(t.id, t.type, depends_on=tuple(d for d in t.depends_on if d != t.id))
        for t in (tasks[i] for i in first.values())
    ]
    return find_cycle(graph)


def find_cycle(tasks: Sequence[Task]) -> list[str] | None:
    """A cycle as a closed path (``[a, b, c, a]``), or None. Ignores unknown deps.

    Iterative, so a chain of 10,000 tasks does not hit the recursion limit."""
    deps = {t.id: list(t.depends_on) for t in tasks}
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
    wave n depends only on earlier waves. File order inside a wave.

    For a checked flow (see :func:`check_graph`); ValueError if some task can never run
    (a cycle or an unknown dependency)."""
    level: dict[str, int] = {}
    remaining = {t.id: set(t.depends_on) for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in dict.fromkeys(t.depends_on):  # a dependency listed twice counts once
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
    if len(level) < len(remaining):
        stuck = [t.id for t in tasks if t.id not in level]
        raise ValueError(f"not a DAG: cannot order {', '.join(stuck)}")
    result: list[list[str]] = [[] for _ in range(number - 1)]
    for task in tasks:
        result[level[task.id] - 1].append(task.id)
    return result


def topological_order(tasks: Sequence[Task]) -> list[str]:
    """Every task after its dependencies; file order where free. ValueError like
    :func:`waves`."""
    return [task_id for wave in waves(tasks) for task_id in wave]
