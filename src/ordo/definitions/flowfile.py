"""Flow files (YAML or JSON, one schema) -> validated :class:`~ordo.model.Flow`.

Every problem is collected, not just the first, and located: ``file:line:col``, the field
(a dotted path with list indexes, ``tasks[2].retry.attempts``; see
:mod:`ordo.definitions.document`), what was expected and what was found. Unknown keys get a
"did you mean" hint.

Normalization, so that the engine sees one shape: ``sequential: true`` is turned into
``depends_on`` chains in listed order (an explicit ``depends_on`` is then an error);
``depends_on`` given as one string becomes a tuple, a dependency listed twice counts once;
``defaults.retry`` is merged key by key under each task's ``retry``; ``defaults.timeout``
fills a task's missing ``timeout``, ``defaults.pre_checks`` and ``defaults.post_checks``
its missing check lists (flow tasks have none); durations are float seconds; ``env`` values are
strings. ``continue_on_error`` is kept as given on the Flow for the engine.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from msgspec import Struct

from ordo import graph
from ordo.definitions.checks import check_list
from ordo.definitions.document import DocumentChecker, load_document
from ordo.definitions.files import FILE_LIMITS, read_definition
from ordo.definitions.inputs import convert_input
from ordo.definitions.schema import (
    COMMON_KEYS,
    CONCURRENCY_KEYS,
    DEFAULT_KEYS,
    FUNCTION_RE,
    GROUP_KEYS,
    HTTP_METHODS,
    ID_RE,
    INPUT_KEYS,
    NAME_RE,
    ONE_OF,
    REQUIRED,
    RETRY_KEYS,
    TOP_KEYS,
    TYPE_KEYS,
    TYPE_RULES,
    describe,
    plain,
)
from ordo.definitions.templaterefs import ReferenceCheck
from ordo.definitions.triggers import read_notify, read_triggers
from ordo.errors import DefinitionError, Problem
from ordo.model import (
    CONCURRENCY_BEHAVIORS,
    INPUT_TYPES,
    TASK_TYPES,
    Check,
    Flow,
    FlowConcurrency,
    InputSpec,
    RetryPolicy,
    Task,
)
from ordo.templating import has_template

#: The input each trigger type passes beside the declared ones (docs/triggers.md).
_PASSED = {"schedule": "schedule", "event": "event", "webhook": "body"}
_TASK_FIELD = re.compile(r"^tasks\[(\d+)\]\.(\w+)$")
_RETRY_KINDS = (
    ("attempts", "positive_int"),
    ("delay", "duration"),
    ("backoff", "positive_number"),
    ("max_delay", "duration"),
    ("jitter", "fraction"),
    ("on_exit_codes", "int_list"),
    ("on_timeout", "bool"),
    ("budget", "duration"),
    ("on_post_check", "bool"),
    ("on_exit", "bool"),
)


class _Defaults(Struct, frozen=True):
    """What ``defaults:`` gives every task (the task's own keys win)."""

    retry: Mapping[str, Any] = msgspec.field(default_factory=dict)
    timeout: float | None = None
    pre_checks: tuple[Check, ...] = ()
    post_checks: tuple[Check, ...] = ()
    queue: str = "default"


def content_hash(data: bytes) -> str:
    """The key under which the store finds an already validated revision of a file:
    the sha256 hex digest of its bytes."""
    return hashlib.sha256(data).hexdigest()


def load_flow_file(path: str | os.PathLike[str]) -> Flow:
    """Read, parse and validate one flow file named on purpose (a FIFO such as
    ``/dev/stdin`` too, at most the flow file limit); DefinitionError names every
    problem (a missing or unreadable file is one too)."""
    absolute = os.path.abspath(path)
    data = read_definition(absolute, str(path), FILE_LIMITS.flow, streams=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(f"file is not UTF-8 text (byte {exc.start})", str(path))
        raise DefinitionError([problem]) from exc
    return parse_flow(text, absolute)


def parse_flow(text: str, path: str, *, fmt: Literal["yaml", "json"] | None = None) -> Flow:
    """Validate ``text``: YAML, or JSON when ``fmt`` says so or ``path`` ends in .json.

    ``path`` names the file in messages; the flow's ``path`` and ``base_dir`` are its
    absolute form. Raises DefinitionError with every problem found, sorted by position.
    """
    fmt = fmt or ("json" if path.lower().endswith(".json") else "yaml")
    text = text.removeprefix("\ufeff")
    # JSON is first read without positions (json.loads alone), and again with them
    # only when there is a problem to locate
    root = load_document(text, path, fmt, positions=fmt != "json")
    checker = FlowChecker(path)
    flow = checker.flow(root)
    if fmt == "json" and (checker.problems or flow is None):
        checker = FlowChecker(path)
        flow = checker.flow(load_document(text, path, fmt))
    if checker.problems or flow is None:
        raise DefinitionError(sorted(checker.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return flow


class FlowChecker(DocumentChecker):
    """Walks the parsed document, collecting problems and building the Flow."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.task_nodes: list[Any] = []
        self.task_index: list[int] = []  # for each built task, its index in the file
        # what a task group's chain takes from its flow
        self.flow_id = ""
        self.namespace = "default"
        self.flow_inputs: list[InputSpec] = []

    def flow(self, root: Any) -> Flow | None:
        if not isinstance(root, Mapping):
            self.expect("a mapping with id and tasks at the top", "", root, None, None)
            return None
        self.keys(root, TOP_KEYS, "")
        flow_id = self.identifier(root, "id", "id", required=True)
        namespace = self.identifier(root, "namespace", "namespace") or "default"
        labels = {k: str(v) for k, v in (self.get(root, "labels", "scalar_map", "") or {}).items()}
        inputs = self.inputs(root)
        self.flow_id, self.namespace, self.flow_inputs = flow_id or "", namespace, inputs
        vars_ = self.get(root, "vars", "map", "") or {}
        if vars_:
            self.names(root["vars"], "a var", "vars")
            self.templates(vars_, "vars", root["vars"], None)
        sequential = bool(self.get(root, "sequential", "bool", "", False))
        queue = self.identifier(root, "queue", "queue") or "default"
        defaults = self.defaults(root, queue)
        description = self.get(root, "description", "str", "", "") or ""
        flow_timeout = self.get(root, "timeout", "duration", "")
        continue_on_error = bool(self.get(root, "continue_on_error", "bool", "", False))
        outputs = self.get(root, "outputs", "map", "") or {}
        if outputs:
            self.names(root["outputs"], "an output", "outputs")
            self.templates(outputs, "outputs", root["outputs"], None)
        run_if = self.run_if(root, "")
        concurrency = self.flow_concurrency(root)
        triggers = read_triggers(self, root)
        notify = read_notify(self, root)
        active = bool(self.get(root, "active", "bool", "", True))
        allow_manual = bool(self.get(root, "allow_manual", "bool", "", True))
        tasks = self.tasks(root, defaults, sequential)
        if flow_id is None or tasks is None:
            return None
        before = len(self.problems)
        self.graph_problems(tasks)
        if len(self.problems) == before:
            declared = root.get("inputs")
            names = [str(n) for n in declared] if isinstance(declared, Mapping) else []
            names += [_PASSED[t.type] for t in triggers if t.type in _PASSED]
            check = ReferenceCheck(self, root, names)
            check.run(tasks, self.task_nodes, self.task_index)
        return Flow(
            id=flow_id,
            namespace=namespace,
            tasks=tuple(tasks),
            description=description,
            labels=labels,
            inputs=tuple(inputs),
            vars=vars_,
            sequential=sequential,
            timeout=flow_timeout,
            continue_on_error=continue_on_error,
            outputs=outputs,
            run_if=run_if,
            concurrency=concurrency,
            triggers=triggers,
            notify=notify,
            active=active,
            allow_manual=allow_manual,
            base_dir=os.path.dirname(os.path.abspath(self.path)),
            path=os.path.abspath(self.path),
        )

    def names(self, node: Mapping[str, Any], what: str, field: str) -> None:
        """Input and var names must be usable as ``inputs.<name>`` in templates."""
        for name in node:
            if not isinstance(name, str) or not NAME_RE.match(name):
                self.problem(
                    f"{what} name must match {NAME_RE.pattern}, found {name!r}",
                    f"{field}.{name}",
                    node,
                    ("key", name),
                )

    def inputs(self, root: Mapping[str, Any]) -> list[InputSpec]:
        node = root.get("inputs")
        if node is None:
            return []
        if not isinstance(node, Mapping):
            self.expect("a mapping of input names", "inputs", node, root, "inputs")
            return []
        self.names(node, "an input", "inputs")
        specs = []
        for name, spec in node.items():
            field = f"inputs.{name}"
            if not isinstance(spec, Mapping):
                self.expect("a mapping like {type: string, default: ...}", field, spec, node, name)
                continue
            found = self.input_spec(str(name), spec, field)
            if found is not None:
                specs.append(found)
        return specs

    def input_spec(self, name: str, spec: Mapping[str, Any], field: str) -> InputSpec | None:
        self.keys(spec, INPUT_KEYS, field)
        kind = self.get(spec, "type", "str", field, "string")
        if kind not in INPUT_TYPES:
            self.problem(
                f"expected one of {', '.join(INPUT_TYPES)}, found {kind!r}",
                f"{field}.type",
                spec,
                "type",
            )
            return None
        default = plain(spec.get("default"))
        if default is not None:
            try:
                default = convert_input(kind, default)
            except ValueError as exc:
                self.problem(str(exc), f"{field}.default", spec, "default")
        return InputSpec(
            name,
            kind,
            default,
            bool(self.get(spec, "required", "bool", field, False)),
            self.get(spec, "description", "str", field, "") or "",
        )

    def defaults(self, root: Mapping[str, Any], queue: str) -> _Defaults:
        node = root.get("defaults")
        if node is None:
            return _Defaults(queue=queue)
        if not isinstance(node, Mapping):
            what = "a mapping with retry, timeout, pre_checks or post_checks"
            self.expect(what, "defaults", node, root, "defaults")
            return _Defaults(queue=queue)
        self.keys(node, DEFAULT_KEYS, "defaults")
        return _Defaults(
            retry=self.retry(node, "defaults"),
            timeout=self.get(node, "timeout", "duration", "defaults"),
            pre_checks=check_list(self, node, "pre_checks", "defaults") or (),
            post_checks=check_list(self, node, "post_checks", "defaults") or (),
            queue=queue,
        )

    def retry(self, node: Mapping[str, Any], field: str) -> dict[str, Any]:
        """The retry keys given here, checked (merged over defaults by the caller)."""
        if "retry" not in node:
            return {}
        spec = node["retry"]
        name = f"{field}.retry" if field else "retry"
        if not isinstance(spec, Mapping):
            self.expect("a mapping of retry settings", name, spec, node, "retry")
            return {}
        self.keys(spec, RETRY_KEYS, name)
        found: dict[str, Any] = {}
        for key, kind in _RETRY_KINDS:
            value = self.get(spec, key, kind, name)
            if value is not None:
                found[key] = value
        return found

    def tasks(
        self, root: Mapping[str, Any], defaults: _Defaults, sequential: bool
    ) -> list[Task] | None:
        node = root.get("tasks")
        if node is None:
            self.problem("missing required key 'tasks'", "tasks", root, None)
            return None
        if not isinstance(node, list) or not node:
            self.expect("a non-empty list of tasks", "tasks", node, root, "tasks")
            return None
        tasks = []
        self.task_nodes = node
        for i, item in enumerate(node):
            task = self.task(node, i, item, defaults)
            if task is not None:
                tasks.append(task)
                self.task_index.append(i)
        return self.chain(tasks) if sequential else tasks

    def chain(self, tasks: list[Task]) -> list[Task]:
        """``sequential: true``: each task depends on the one listed before it."""
        chained = []
        for i, task in enumerate(tasks):
            if task.depends_on:
                index = self.task_index[i]
                self.problem(
                    "depends_on is not allowed when the flow is sequential: true",
                    f"tasks[{index}].depends_on",
                    self.task_nodes[index],
                    "depends_on",
                )
            deps = (tasks[i - 1].id,) if i else ()
            chained.append(msgspec.structs.replace(task, depends_on=deps))
        return chained

    def graph_problems(self, tasks: list[Task]) -> None:
        """:func:`graph.check_graph`'s problems, placed at the file's own task index and
        at the ``id`` or ``depends_on`` value (tasks that failed to build are missing)."""
        for found in graph.check_graph(tasks):
            match = _TASK_FIELD.match(found.field or "")
            if match is None:
                self.problem(found.message, found.field or "tasks", self.task_nodes, None)
                continue
            index = self.task_index[int(match[1])]
            node, key = self.task_nodes[index], match[2]
            self.problem(found.message, f"tasks[{index}].{key}", node, key if key in node else None)

    def task(self, seq: list[Any], i: int, node: Any, defaults: _Defaults) -> Task | None:
        field = f"tasks[{i}]"
        if not isinstance(node, Mapping):
            self.expect("a task mapping with id and type", field, node, seq, i)
            return None
        if "tasks" in node:
            return self.group(node, field, defaults)
        task_id = self.identifier(node, "id", f"{field}.id", required=True)
        kind = self.task_type(node, field)
        if kind is None:
            return None
        spec = {k: plain(node[k]) for k in TYPE_KEYS[kind] if k in node}
        self.type_fields(kind, node, field)
        deps = self.get(node, "depends_on", "task_ids", field, [])
        with_ = self.get(node, "with", "map", field) or {}
        env = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in (self.get(node, "env", "scalar_map", field) or {}).items()
        }
        for_each = self.for_each(node, field)
        concurrency = self.get(node, "concurrency", "positive_int", field)
        if concurrency is not None and for_each is None:
            self.problem(
                "concurrency limits for_each items: give for_each too",
                f"{field}.concurrency",
                node,
                "concurrency",
            )
        run_if = self.run_if(node, field)
        key = self.identifier(node, "concurrency_key", f"{field}.concurrency_key")
        key_limit = self.get(node, "concurrency_limit", "positive_int", field, 1)
        if "concurrency_limit" in node and "concurrency_key" not in node:
            self.problem(
                "concurrency_limit limits the task runs sharing a concurrency_key: "
                "give concurrency_key too",
                f"{field}.concurrency_limit",
                node,
                "concurrency_limit",
            )
        pre_checks, post_checks = self.checks(kind, node, field, defaults)
        checked = {**spec, "with": with_, "env": env, "for_each": for_each, "run_if": run_if}
        self.templates(checked, field, node, None)
        if task_id is None:
            return None
        return Task(
            id=task_id,
            type=kind,
            spec=spec,
            description=self.get(node, "description", "str", field, "") or "",
            depends_on=tuple(dict.fromkeys([deps] if isinstance(deps, str) else deps)),
            with_=with_,
            env=env,
            retry=RetryPolicy.from_dict({**defaults.retry, **self.retry(node, field)}),
            timeout=self.get(node, "timeout", "duration", field, defaults.timeout),
            allow_failure=bool(self.get(node, "allow_failure", "bool", field, False)),
            queue=self.identifier(node, "queue", f"{field}.queue") or defaults.queue,
            for_each=for_each,
            concurrency=concurrency,
            run_if=run_if,
            concurrency_key=key,
            concurrency_limit=key_limit,
            pre_checks=pre_checks,
            post_checks=post_checks,
            line=node.lc.line + 1 if hasattr(node, "lc") else None,
        )

    def group(self, node: Mapping[str, Any], field: str, defaults: _Defaults) -> Task | None:
        """A task group: ``for_each`` over a chain of ``tasks``. Each value runs the
        chain on its own (as a child execution of the flow this builds, its tasks
        seeing ``fork.value``, the flow's inputs and vars), as soon as its own previous
        step ends; ``concurrency`` caps whole chains; the task after the group sees
        the list of each value's last outputs. Its tasks are listed in chain order
        (``sequential: false``: they give their own ``depends_on``, among themselves)."""
        if "type" in node:
            self.problem(
                "a task group has no type (its tasks have theirs): remove 'type' or 'tasks'",
                f"{field}.type",
                node,
                "type",
            )
        self.keys(node, (*GROUP_KEYS, "type"), field)
        task_id = self.identifier(node, "id", f"{field}.id", required=True)
        for_each = self.for_each(node, field)
        if for_each is None:
            self.problem(
                "a task group runs its tasks once per value: give for_each",
                f"{field}.tasks",
                node,
                "tasks",
            )
        deps = self.get(node, "depends_on", "task_ids", field, [])
        run_if = self.run_if(node, field)
        self.templates({"for_each": for_each, "run_if": run_if}, field, node, None)
        sequential = bool(self.get(node, "sequential", "bool", field, True))
        chain = self.chain_flow(node, field, task_id or "", defaults, sequential)
        if task_id is None or chain is None or for_each is None:
            return None
        return Task(
            id=task_id,
            type="flow",
            spec={"flow": chain.id, "group": chain.to_dict()},
            description=self.get(node, "description", "str", field, "") or "",
            depends_on=tuple(dict.fromkeys([deps] if isinstance(deps, str) else deps)),
            retry=RetryPolicy.from_dict({**defaults.retry, **self.retry(node, field)}),
            timeout=self.get(node, "timeout", "duration", field),
            allow_failure=bool(self.get(node, "allow_failure", "bool", field, False)),
            queue=self.identifier(node, "queue", f"{field}.queue") or defaults.queue,
            for_each=for_each,
            concurrency=self.get(node, "concurrency", "positive_int", field),
            run_if=run_if,
            line=node.lc.line + 1 if hasattr(node, "lc") else None,
        )

    def chain_flow(
        self,
        node: Mapping[str, Any],
        field: str,
        group_id: str,
        defaults: _Defaults,
        sequential: bool,
    ) -> Flow | None:
        """The flow a task group's values each run: its tasks, checked as a flow's
        (problems placed at ``<field>.tasks[i]...``), depending only on each other."""
        inner = FlowChecker(self.path)
        tasks = inner.tasks({"tasks": node["tasks"]}, defaults, sequential)
        if tasks is not None:
            ids = {t.id for t in tasks}
            kept = []
            for task, i in zip(tasks, inner.task_index, strict=True):
                outside = [d for d in task.depends_on if d not in ids]
                for other in outside:
                    inner.problem(
                        f"task '{task.id}' of group '{group_id}' depends on '{other}', outside "
                        f"the group: a group's tasks depend only on each other; make the "
                        f"group depend on '{other}' instead",
                        f"tasks[{i}].depends_on",
                        inner.task_nodes[i],
                        "depends_on",
                    )
                kept.append(
                    msgspec.structs.replace(
                        task, depends_on=tuple(d for d in task.depends_on if d in ids)
                    )
                )
            tasks = kept
            before = len(inner.problems)
            inner.graph_problems(tasks)
            if len(inner.problems) == before:
                names = [i.name for i in self.flow_inputs]
                check = ReferenceCheck(inner, {"tasks": node["tasks"]}, names)
                check.run(tasks, inner.task_nodes, inner.task_index)
        for p in inner.problems:
            where = f"{field}.{p.field}" if p.field else f"{field}.tasks"
            self.problems.append(msgspec.structs.replace(p, field=where))
        if not tasks or inner.problems:
            return None
        return Flow(
            id=f"{self.flow_id}--{group_id}",
            namespace=self.namespace,
            tasks=tuple(tasks),
            description=f"the chain of task group '{group_id}' of {self.flow_id}",
            inputs=tuple(self.flow_inputs),
            base_dir=os.path.dirname(os.path.abspath(self.path)),
            path=os.path.abspath(self.path),
            group=group_id,
        )

    def flow_concurrency(self, root: Mapping[str, Any]) -> FlowConcurrency | None:
        """``concurrency: {limit: N, behavior: queue|cancel|fail}`` at the top."""
        node = self.get(root, "concurrency", "map", "")
        if node is None:
            return None
        self.keys(root["concurrency"], CONCURRENCY_KEYS, "concurrency")
        if "limit" not in node:
            self.problem("limit is required", "concurrency", root, "concurrency")
            return None
        limit = self.get(root["concurrency"], "limit", "positive_int", "concurrency")
        behavior = node.get("behavior", "queue")
        if behavior not in CONCURRENCY_BEHAVIORS:
            self.expect(
                "one of " + ", ".join(CONCURRENCY_BEHAVIORS),
                "concurrency.behavior",
                behavior,
                root["concurrency"],
                "behavior",
            )
            return None
        return FlowConcurrency(limit, behavior) if limit is not None else None

    def checks(
        self, kind: str, node: Mapping[str, Any], field: str, defaults: _Defaults
    ) -> tuple[tuple[Check, ...], tuple[Check, ...]]:
        """The task's pre and post checks, else the defaults' (a flow task has none: the
        tasks of its child flow may)."""
        if kind == "flow":
            for key in ("pre_checks", "post_checks"):
                if key in node:
                    self.problem(
                        f"{key} are not supported on flow tasks: give them to the tasks of "
                        "the child flow",
                        f"{field}.{key}",
                        node,
                        ("key", key),
                    )
            return (), ()
        pre = check_list(self, node, "pre_checks", field)
        post = check_list(self, node, "post_checks", field)
        return (
            defaults.pre_checks if pre is None else pre,
            defaults.post_checks if post is None else post,
        )

    def for_each(self, node: Mapping[str, Any], field: str) -> Any:
        """A template producing a list, or a literal list."""
        if "for_each" not in node:
            return None
        value = plain(node["for_each"])
        if isinstance(value, list) or (isinstance(value, str) and has_template(value)):
            return value
        self.expect(
            'a list, or a template producing one (like "{{ outputs.list_files.files }}")',
            f"{field}.for_each",
            value,
            node,
            "for_each",
        )
        return None

    def run_if(self, node: Mapping[str, Any], field: str) -> Any:
        """true/false, RUN/SKIP/STOP (optionally ``SKIP: why``), a template answering one
        of those, or ``{function: module:function}``."""
        if "run_if" not in node:
            return None
        name = f"{field}.run_if" if field else "run_if"
        value = plain(node["run_if"])
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and (has_template(value) or _answer(value)):
            return value
        if isinstance(value, Mapping) and set(value) == {"function"}:
            function = value["function"]
            if isinstance(function, str) and FUNCTION_RE.match(function):
                return value
            self.expect(
                "module:function (like checks:ready)",
                f"{name}.function",
                function,
                node["run_if"],
                "function",
            )
            return None
        self.expect(
            "true, false, RUN, SKIP, STOP, a template answering one of them, "
            "or {function: module:function}",
            name,
            value,
            node,
            "run_if",
        )
        return None

    def task_type(self, node: Mapping[str, Any], field: str) -> str | None:
        """The task's type, its keys checked against that type's; None if unknown."""
        kind = node.get("type")
        if isinstance(kind, str) and kind in TASK_TYPES:
            self.keys(node, (*COMMON_KEYS, *TYPE_KEYS[kind]), field)
            return kind
        if "type" not in node:
            self.problem("missing required key 'type'", f"{field}.type", node, None)
        else:
            hint = difflib.get_close_matches(str(kind), TASK_TYPES, n=1)
            tip = f" (did you mean '{hint[0]}'?)" if hint else ""
            self.problem(
                f"unknown task type {describe(kind)}{tip}: expected one of {', '.join(TASK_TYPES)}",
                f"{field}.type",
                node,
                "type",
            )
        self.keys(node, (*COMMON_KEYS, *sorted({k for v in TYPE_KEYS.values() for k in v})), field)
        return None

    def type_fields(self, kind: str, node: Mapping[str, Any], field: str) -> None:
        """The type's own fields: required ones present, each of the right shape."""
        for key, what in TYPE_RULES[kind]:
            self.get(node, key, what, field)
        for one_of in ONE_OF.get(kind, ()):
            given = [k for k in one_of if k in node]
            if len(given) != 1:
                names = ", ".join(one_of[:-1]) + f" or {one_of[-1]}"
                found = (
                    "neither" if not given else "both" if len(one_of) == 2 else " and ".join(given)
                )
                if not given and len(one_of) > 2:
                    found = "none"
                self.problem(
                    f"{_a(kind)} task needs exactly one of {names}, found {found}",
                    field,
                    node,
                    None,
                )
        for key in REQUIRED.get(kind, ()):
            if key not in node:
                message = f"missing required key '{key}' for {_a(kind)} task"
                self.problem(message, f"{field}.{key}", node, None)
        if kind == "http" and "json" in node and "body" in node:
            self.problem("give json or body, not both", f"{field}.body", node, "body")
        self.type_values(node, field)

    def type_values(self, node: Mapping[str, Any], field: str) -> None:
        """Values of the right kind that must also have the right form."""
        for key in ("function", "handler"):
            function = node.get(key)
            if isinstance(function, str) and not FUNCTION_RE.match(function):
                self.problem(
                    f"expected module:function (like etl.steps:transform), found {function!r}",
                    f"{field}.{key}",
                    node,
                    key,
                )
        flow_ref = node.get("flow")
        if isinstance(flow_ref, str) and not has_template(flow_ref):
            parts = flow_ref.split("/")
            if len(parts) > 2 or not all(ID_RE.match(p) for p in parts):
                self.problem(
                    f"expected a flow id or namespace/id (like etl/daily), found {flow_ref!r}",
                    f"{field}.flow",
                    node,
                    "flow",
                )
        method = node.get("method")
        if isinstance(method, str) and method.upper() not in HTTP_METHODS:
            self.problem(
                f"expected one of {', '.join(HTTP_METHODS)}, found {method!r}",
                f"{field}.method",
                node,
                "method",
            )


def _answer(text: str) -> bool:
    """``RUN``, ``SKIP``, ``STOP``, in any case, optionally followed by ``: why``."""
    return text.split(":", 1)[0].strip().upper() in ("RUN", "SKIP", "STOP")


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "http" else f"a {kind}"
