"""What templates read, checked before anything runs: ``inputs.<name>`` must be a
declared input, and a task's ``outputs.<task>`` must name a task upstream of it (one it
depends on, directly or through others), also when the read is inside a var the task
uses. A post check may read its own task's outputs; a flow's ``outputs:`` may read any
task's.

Templates are parsed (Jinja2's syntax tree, not a text scan), so ``inputs.day``,
``inputs['day']`` and ``outputs.a.rows`` are all seen; a name computed at run time
(``inputs[name]``) is left to the run. Every problem is placed at the string holding
the template (``file:line:col`` and its field) with a "did you mean" where one is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from msgspec import Struct

from ordo.definitions.document import DocumentChecker
from ordo.model import Task
from ordo.templating import has_template

#: Task keys whose values are not templates.
#: (``tasks``: a task group's own tasks, checked as the flow of its chain.)
_PLAIN_KEYS = frozenset({"id", "type", "description", "depends_on", "queue", "tasks"})


class Reads(Struct, frozen=True):
    """What one template string reads by static name."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    vars: tuple[str, ...] = ()


def reads(text: str) -> Reads:
    """The input, task (``outputs.<task>``) and var names ``text``'s templates read;
    empty for a template that does not parse (its syntax error is reported elsewhere)."""
    from jinja2 import Environment, TemplateSyntaxError, nodes

    try:
        tree = Environment().parse(text)
        found_nodes = list(tree.find_all((nodes.Getattr, nodes.Getitem)))
    except (TemplateSyntaxError, RecursionError, MemoryError):
        return Reads()  # too deep or malformed: the syntax check reports it
    found: dict[str, list[str]] = {"inputs": [], "outputs": [], "vars": []}
    for node in found_nodes:
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        base = node.node
        if not isinstance(base, nodes.Name) or base.name not in found:
            continue
        if isinstance(node, nodes.Getattr):
            found[base.name].append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found[base.name].append(node.arg.value)
    return Reads(
        tuple(dict.fromkeys(found["inputs"])),
        tuple(dict.fromkeys(found["outputs"])),
        tuple(dict.fromkeys(found["vars"])),
    )


def strings(node: Any, field: str) -> Iterator[tuple[str, Any, Any, str]]:
    """(field, parent, key, text) of every template string inside ``node``."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(value, str):
                if has_template(value):
                    yield f"{field}.{key}" if field else str(key), node, key, value
            else:
                yield from strings(value, f"{field}.{key}" if field else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, str):
                if has_template(value):
                    yield f"{field}[{i}]", node, i, value
            else:
                yield from strings(value, f"{field}[{i}]")


def _tip(name: str, choices: Sequence[str]) -> str:
    hint = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


class ReferenceCheck:
    """Checks one flow document's references; problems go to ``checker``."""

    def __init__(
        self, checker: DocumentChecker, root: Mapping[str, Any], inputs: Sequence[str]
    ) -> None:
        self.checker = checker
        self.root = root
        self.inputs = list(inputs)
        raw_vars = root.get("vars")
        self.vars: Mapping[str, Any] = raw_vars if isinstance(raw_vars, Mapping) else {}
        self._var_reads: dict[str, Reads] = {}

    def run(self, tasks: Sequence[Task], task_nodes: Sequence[Any], index: Sequence[int]) -> None:
        """Check the flow's vars, outputs and run_if, and every built task (``index``:
        each task's place in ``task_nodes``, the file's task list)."""
        all_ids = [t.id for t in tasks]
        for name in ("vars", "outputs", "run_if", "defaults"):
            if name in self.root:
                self.top(name, all_ids if name == "outputs" else None)
        deps = {t.id: t.depends_on for t in tasks}
        for task, i in zip(tasks, index, strict=True):
            node = task_nodes[i]
            if isinstance(node, Mapping):
                self.task(task.id, node, f"tasks[{i}]", deps, all_ids)

    def top(self, name: str, all_ids: Sequence[str] | None) -> None:
        """The flow's ``name`` reads declared inputs, and with ``all_ids`` (its
        ``outputs:``) existing tasks."""
        wrapper = {name: self.root[name]}
        for field, parent, key, text in strings(wrapper, ""):
            place = (self.root, name) if parent is wrapper else (parent, key)
            found = reads(text)
            self.check_inputs(found.inputs, field, text, *place)
            if all_ids is None:
                continue
            for other in found.outputs:
                if other not in all_ids:
                    message = f"'outputs.{other}' in {text!r}: no task '{other}'"
                    self.checker.problem(message + _tip(other, all_ids), field, *place)

    def task(
        self,
        task_id: str,
        node: Mapping[str, Any],
        field: str,
        deps: Mapping[str, Sequence[str]],
        all_ids: Sequence[str],
    ) -> None:
        for key, value in node.items():
            if key in _PLAIN_KEYS:
                continue
            wrapper = {key: value}
            for where, parent, at, text in strings(wrapper, field):
                place = (node, key) if parent is wrapper else (parent, at)
                found = reads(text)
                self.check_inputs(found.inputs, where, text, *place)
                allowed = Ancestors(deps, task_id, itself=key == "post_checks")
                for other in found.outputs:
                    self.check_task(task_id, other, allowed, all_ids, where, text, place, None)
                for var, other in self.outputs_through_vars(found.vars):
                    self.check_task(task_id, other, allowed, all_ids, where, text, place, var)

    def check_inputs(
        self, names: Sequence[str], field: str, text: str, node: Any, key: Any
    ) -> None:
        for name in names:
            if name in self.inputs:
                continue
            declared = ", ".join(self.inputs) or "none"
            tip = _tip(name, self.inputs).replace("'", "'inputs.", 1)
            self.checker.problem(
                f"undeclared input 'inputs.{name}' in {text!r}{tip}; declared inputs: {declared}",
                field,
                node,
                key,
            )

    def check_task(
        self,
        task_id: str,
        other: str,
        allowed: Ancestors,
        all_ids: Sequence[str],
        field: str,
        text: str,
        place: tuple[Any, Any],
        var: str | None,
    ) -> None:
        if other in allowed:
            return
        via = f" (through vars.{var})" if var else ""
        if other not in all_ids:
            message = (
                f"'outputs.{other}'{via} in {text!r}: no task '{other}'"
                f"{_tip(other, [t for t in all_ids if t != task_id])}"
            )
        elif other == task_id:
            message = f"'outputs.{other}'{via} in {text!r}: task '{task_id}' reads its own outputs"
        else:
            near = _tip(other, sorted(allowed.names() - {task_id}))
            message = (
                f"'outputs.{other}'{via} in {text!r}: task '{other}' is not upstream of "
                f"'{task_id}', so it may not have run yet{near}; add '{other}' to "
                f"depends_on of '{task_id}'"
            )
        self.checker.problem(message, field, *place)

    def outputs_through_vars(self, names: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(var, task) for every task a named var reads, directly or through other vars."""
        seen: set[str] = set()
        todo = [(n, n) for n in names]
        while todo:
            first, name = todo.pop()
            if name in seen or name not in self.vars:
                continue
            seen.add(name)
            found = self._reads_of_var(name)
            for task in found.outputs:
                yield first, task
            todo.extend((first, n) for n in found.vars)

    def _reads_of_var(self, name: str) -> Reads:
        if name not in self._var_reads:
            texts = [text for _, _, _, text in strings({name: self.vars[name]}, "")]
            parts = [reads(t) for t in texts]
            self._var_reads[name] = Reads(
                (),
                tuple(dict.fromkeys(x for p in parts for x in p.outputs)),
                tuple(dict.fromkeys(x for p in parts for x in p.vars)),
            )
        return self._var_reads[name]


class Ancestors:
    """The tasks upstream of one task (those it depends on, directly or not), asked one
    name at a time: every task's whole set would hold 50 million names for a
    10,000-task chain. The graph has been checked: no cycles, no unknown ids."""

    def __init__(
        self, deps: Mapping[str, Sequence[str]], task_id: str, *, itself: bool = False
    ) -> None:
        self.deps = deps
        self.task_id = task_id
        self.itself = itself  # a post check may read its own task's outputs

    def __contains__(self, other: object) -> bool:
        if self.itself and other == self.task_id:
            return True
        seen: set[str] = set()
        stack = list(self.deps.get(self.task_id, ()))
        while stack:  # depth first from the task: a direct dependency is found at once
            d = stack.pop()
            if d == other:
                return True
            if d not in seen:
                seen.add(d)
                stack.extend(self.deps.get(d, ()))
        return False

    def names(self) -> set[str]:
        """All of them (for a did-you-mean)."""
        found: set[str] = {self.task_id} if self.itself else set()
        stack = list(self.deps.get(self.task_id, ()))
        while stack:
            d = stack.pop()
            if d not in found:
                found.add(d)
                stack.extend(self.deps.get(d, ()))
        return found
