"""Flow files (YAML or JSON, one schema) -> validated :class:`~ordo.model.Flow`.

Every problem is collected, not just the first, and located: ``file:line:col``, the field
as a dotted path with list indexes (``tasks[2].retry.attempts``), what was expected and
what was found. Unknown keys get a "did you mean" hint. ruamel.yaml (imported only here,
only when a file is new or changed) keeps the position of every node.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from ordo import graph, templating
from ordo.definitions.inputs import convert_input
from ordo.definitions.schema import (
    COMMON_KEYS,
    DEFAULT_KEYS,
    FUNCTION_RE,
    HTTP_METHODS,
    ID_RE,
    INPUT_KEYS,
    KINDS,
    NAME_RE,
    RETRY_KEYS,
    TOP_KEYS,
    TYPE_KEYS,
    TYPE_RULES,
    describe,
    plain,
)
from ordo.errors import DefinitionError, Problem
from ordo.model import INPUT_TYPES, TASK_TYPES, Flow, InputSpec, RetryPolicy, Task, parse_duration


def content_hash(data: bytes) -> str:
    """The key under which the store finds an already validated revision of a file."""
    return hashlib.sha256(data).hexdigest()


def load_flow_file(path: str | os.PathLike[str]) -> Flow:
    """Read, parse and validate one flow file; DefinitionError names every problem."""
    absolute = os.path.abspath(path)
    try:
        with open(absolute, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DefinitionError([Problem(f"cannot read flow file: {reason}", str(path))]) from exc
    return parse_flow(text, absolute)


def parse_flow(text: str, path: str, *, fmt: str | None = None) -> Flow:
    """Validate ``text`` (YAML, or JSON when ``fmt`` says so or ``path`` ends in .json)."""
    fmt = fmt or ("json" if path.lower().endswith(".json") else "yaml")
    root = _load(text, path, fmt)
    checker = _Checker(path)
    flow = checker.flow(root)
    if checker.problems or flow is None:
        raise DefinitionError(sorted(checker.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return flow


def _load(text: str, path: str, fmt: str) -> Any:
    if fmt == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DefinitionError(
                [Problem(f"invalid JSON: {exc.msg}", path, exc.lineno, exc.colno)]
            ) from None
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        kind = "JSON" if fmt == "json" else "YAML"
        raise DefinitionError([Problem(f"invalid {kind}: {what}", path, line, col)]) from None
    except YAMLError as exc:
        raise DefinitionError([Problem(f"invalid YAML: {exc}", path)]) from None


class _Checker:
    """Walks the parsed document, collecting problems and building the Flow."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    # -- reporting -----------------------------------------------------------------
    def problem(self, message: str, field: str, node: Any = None, key: Any = None) -> None:
        line, col = _position(node, key)
        self.problems.append(Problem(message, self.path, line, col, field or None))

    def expect(self, what: str, field: str, value: Any, node: Any, key: Any) -> None:
        self.problem(f"expected {what}, found {describe(value)}", field, node, key)

    def keys(self, node: Mapping[str, Any], allowed: tuple[str, ...], field: str) -> None:
        for key in node:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else ""
                where = f"{field}." if field else ""
                self.problem(
                    f"unknown key '{key}'{tip}; allowed: {', '.join(allowed)}",
                    f"{where}{key}",
                    node,
                    ("key", key),
                )

    # -- typed getters ---------------------------------------------------------------
    def get(
        self, node: Mapping[str, Any], key: str, kind: str, field: str, default: Any = None
    ) -> Any:
        if key not in node:
            return default
        value = node[key]
        name = f"{field}.{key}" if field else key
        check = KINDS[kind]
        if not check[0](value):
            self.expect(check[1], name, value, node, key)
            return default
        if kind == "duration":
            try:
                return parse_duration(value)
            except ValueError as exc:
                self.problem(str(exc), name, node, key)
                return default
        return plain(value)

    # -- the document ------------------------------------------------------------------
    def flow(self, root: Any) -> Flow | None:
        if not isinstance(root, Mapping):
            self.expect("a mapping with id and tasks at the top", "", root, None, None)
            return None
        self.keys(root, TOP_KEYS, "")
        flow_id = self.identifier(root, "id", "id", required=True)
        namespace = self.identifier(root, "namespace", "namespace") or "default"
        labels = {k: str(v) for k, v in (self.get(root, "labels", "scalar_map", "") or {}).items()}
        inputs = self.inputs(root)
        vars_ = self.get(root, "vars", "map", "") or {}
        for name in vars_:
            if not NAME_RE.match(name):
                self.problem(
                    f"a var name must match {NAME_RE.pattern}, found {name!r}",
                    f"vars.{name}",
                    root.get("vars"),
                    ("key", name),
                )
        self.templates(vars_, "vars", root, "vars")
        retry, timeout = self.defaults(root)
        sequential = bool(self.get(root, "sequential", "bool", "", False))
        queue = self.identifier(root, "queue", "queue") or "default"
        tasks = self.tasks(root, retry, timeout, sequential, queue)
        if flow_id is None or tasks is None:
            return None
        self.problems.extend(graph.check_graph(tasks, self.path))
        return Flow(
            id=flow_id,
            namespace=namespace,
            tasks=tuple(tasks),
            description=self.get(root, "description", "str", "", "") or "",
            labels=labels,
            inputs=tuple(inputs),
            vars=vars_,
            sequential=sequential,
            timeout=self.get(root, "timeout", "duration", ""),
            continue_on_error=bool(self.get(root, "continue_on_error", "bool", "", False)),
            base_dir=os.path.dirname(self.path),
            path=self.path,
        )

    def identifier(
        self, node: Mapping[str, Any], key: str, field: str, required: bool = False
    ) -> str | None:
        if key not in node:
            if required:
                self.problem(f"missing required key '{key}'", field, node, None)
            return None
        value = node[key]
        if not isinstance(value, str) or not ID_RE.match(value):
            self.expect("an id of letters, digits, '_', '.' or '-'", field, value, node, key)
            return None
        return str(value)

    def inputs(self, root: Mapping[str, Any]) -> list[InputSpec]:
        node = root.get("inputs")
        if node is None:
            return []
        if not isinstance(node, Mapping):
            self.expect("a mapping of input names", "inputs", node, root, "inputs")
            return []
        specs = []
        for name, spec in node.items():
            field = f"inputs.{name}"
            if not NAME_RE.match(str(name)):
                self.problem(
                    f"an input name must match {NAME_RE.pattern}, found {name!r}",
                    field,
                    node,
                    ("key", name),
                )
            if not isinstance(spec, Mapping):
                self.expect("a mapping like {type: string, default: ...}", field, spec, node, name)
                continue
            self.keys(spec, INPUT_KEYS, field)
            kind = self.get(spec, "type", "str", field, "string")
            if kind not in INPUT_TYPES:
                self.problem(
                    f"expected one of {', '.join(INPUT_TYPES)}, found {kind!r}",
                    f"{field}.type",
                    spec,
                    "type",
                )
                continue
            default = plain(spec.get("default"))
            if default is not None:
                try:
                    default = convert_input(kind, default)
                except ValueError as exc:
                    self.problem(str(exc), f"{field}.default", spec, "default")
            specs.append(
                InputSpec(
                    str(name),
                    kind,
                    default,
                    bool(self.get(spec, "required", "bool", field, False)),
                    self.get(spec, "description", "str", field, "") or "",
                )
            )
        return specs

    def defaults(self, root: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
        node = root.get("defaults")
        if node is None:
            return {}, None
        if not isinstance(node, Mapping):
            self.expect("a mapping with retry and timeout", "defaults", node, root, "defaults")
            return {}, None
        self.keys(node, DEFAULT_KEYS, "defaults")
        return self.retry(node, "defaults"), self.get(node, "timeout", "duration", "defaults")

    def retry(self, node: Mapping[str, Any], field: str) -> dict[str, Any]:
        """The retry keys given here, checked (merged over defaults by the caller)."""
        if "retry" not in node:
            return {}
        spec = node["retry"]
        name = f"{field}.retry"
        if not isinstance(spec, Mapping):
            self.expect("a mapping of retry settings", name, spec, node, "retry")
            return {}
        self.keys(spec, RETRY_KEYS, name)
        found: dict[str, Any] = {}
        for key, kind in (
            ("attempts", "positive_int"),
            ("delay", "duration"),
            ("backoff", "positive_number"),
            ("max_delay", "duration"),
            ("jitter", "fraction"),
            ("on_exit_codes", "int_list"),
            ("on_timeout", "bool"),
            ("budget", "duration"),
        ):
            value = self.get(spec, key, kind, name)
            if value is not None:
                found[key] = value
        return found

    def tasks(
        self,
        root: Mapping[str, Any],
        retry: dict[str, Any],
        timeout: float | None,
        sequential: bool,
        queue: str,
    ) -> list[Task] | None:
        node = root.get("tasks")
        if node is None:
            self.problem("missing required key 'tasks'", "tasks", root, None)
            return None
        if not isinstance(node, list) or not node:
            self.expect("a non-empty list of tasks", "tasks", node, root, "tasks")
            return None
        tasks = []
        for i, item in enumerate(node):
            task = self.task(node, i, item, retry, timeout, queue)
            if task is not None:
                tasks.append(task)
        if sequential:
            tasks = self.chain(node, tasks)
        return tasks

    def chain(self, node: list[Any], tasks: list[Task]) -> list[Task]:
        """``sequential: true``: each task depends on the one listed before it."""
        chained = []
        for i, task in enumerate(tasks):
            if task.depends_on:
                self.problem(
                    "depends_on is not allowed when the flow is sequential: true",
                    f"tasks[{i}].depends_on",
                    node[i],
                    "depends_on",
                )
            deps = (tasks[i - 1].id,) if i else ()
            chained.append(dataclasses.replace(task, depends_on=deps))
        return chained

    def task(
        self,
        seq: list[Any],
        i: int,
        node: Any,
        retry: dict[str, Any],
        timeout: float | None,
        queue: str,
    ) -> Task | None:
        field = f"tasks[{i}]"
        if not isinstance(node, Mapping):
            self.expect("a task mapping with id and type", field, node, seq, i)
            return None
        task_id = self.identifier(node, "id", f"{field}.id", required=True)
        kind = node.get("type")
        if kind not in TASK_TYPES:
            if "type" not in node:
                self.problem("missing required key 'type'", f"{field}.type", node, None)
            else:
                hint = difflib.get_close_matches(str(kind), TASK_TYPES, n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.problem(
                    f"unknown task type {describe(kind)}{tip}: expected one of "
                    f"{', '.join(TASK_TYPES)}",
                    f"{field}.type",
                    node,
                    "type",
                )
            self.keys(
                node, (*COMMON_KEYS, *sorted({k for v in TYPE_KEYS.values() for k in v})), field
            )
            return None
        self.keys(node, (*COMMON_KEYS, *TYPE_KEYS[kind]), field)
        spec = {k: plain(node[k]) for k in TYPE_KEYS[kind] if k in node}
        self.type_fields(kind, node, field)
        deps = node.get("depends_on", [])
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            self.expect(
                "a task id or a list of task ids", f"{field}.depends_on", deps, node, "depends_on"
            )
            deps = []
        with_ = self.get(node, "with", "map", field) or {}
        env = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in (self.get(node, "env", "scalar_map", field) or {}).items()
        }
        self.templates({**spec, "with": with_, "env": env}, field, node, None)
        line = node.lc.line + 1 if hasattr(node, "lc") else None
        if task_id is None:
            return None
        return Task(
            id=task_id,
            type=kind,
            spec=spec,
            description=self.get(node, "description", "str", field, "") or "",
            depends_on=tuple(str(d) for d in deps),
            with_=with_,
            env=env,
            retry=RetryPolicy.from_dict({**retry, **self.retry(node, field)}),
            timeout=self.get(node, "timeout", "duration", field, timeout),
            allow_failure=bool(self.get(node, "allow_failure", "bool", field, False)),
            queue=self.identifier(node, "queue", f"{field}.queue") or queue,
            line=line,
        )

    def type_fields(self, kind: str, node: Mapping[str, Any], field: str) -> None:
        """The type's own fields: required ones present, each of the right shape."""
        for key, what in TYPE_RULES[kind]:
            self.get(node, key, what, field)
        one_of = {"python": ("function", "script"), "sql": ("query", "script")}.get(kind)
        if one_of:
            given = [k for k in one_of if k in node]
            if len(given) != 1:
                found = "both" if given else "neither"
                self.problem(
                    f"a {kind} task needs exactly one of {one_of[0]} or {one_of[1]}, found {found}",
                    field,
                    node,
                    None,
                )
        for key in {"shell": ("command",), "sql": ("url",), "http": ("url",)}.get(kind, ()):
            if key not in node:
                self.problem(
                    f"missing required key '{key}' for a {kind} task", f"{field}.{key}", node, None
                )
        if kind == "http" and "json" in node and "body" in node:
            self.problem("give json or body, not both", field, node, "body")
        function = node.get("function")
        if isinstance(function, str) and not FUNCTION_RE.match(function):
            self.problem(
                f"expected module:function (like etl.steps:transform), found {function!r}",
                f"{field}.function",
                node,
                "function",
            )
        method = node.get("method")
        if isinstance(method, str) and method.upper() not in HTTP_METHODS:
            self.problem(
                f"expected one of {', '.join(HTTP_METHODS)}, found {method!r}",
                f"{field}.method",
                node,
                "method",
            )

    def templates(self, values: Mapping[str, Any], field: str, node: Any, key: Any) -> None:
        for name, value in values.items():
            for message in templating.check_syntax(value):
                self.problem(message, f"{field}.{name}", node, name if key is None else key)


def _position(node: Any, key: Any) -> tuple[int | None, int | None]:
    """1-based (line, column) of ``node[key]``'s value, of a key with ``("key", k)``, or of
    the node itself."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None, None
    try:
        if isinstance(key, tuple) and key and key[0] == "key":
            line, col = lc.key(key[1])
        elif isinstance(key, int):
            line, col = lc.item(key)
        elif key is not None:
            line, col = lc.value(key)
        else:
            line, col = lc.line, lc.col
    except (KeyError, IndexError, TypeError):
        line, col = lc.line, lc.col
    return line + 1, col + 1
