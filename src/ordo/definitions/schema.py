"""The flow file's schema: allowed keys, value kinds and how found values are named."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct

ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

TOP_KEYS = (
    "id",
    "namespace",
    "description",
    "labels",
    "inputs",
    "vars",
    "defaults",
    "timeout",
    "sequential",
    "continue_on_error",
    "queue",
    "outputs",
    "run_if",
    "concurrency",
    "triggers",
    "notify",
    "active",
    "allow_manual",
    "tasks",
)
CONCURRENCY_KEYS = ("limit", "behavior")
INPUT_KEYS = ("type", "default", "required", "description")
DEFAULT_KEYS = ("retry", "timeout", "pre_checks", "post_checks")
RETRY_KEYS = (
    "attempts",
    "delay",
    "backoff",
    "max_delay",
    "jitter",
    "on_exit_codes",
    "on_timeout",
    "budget",
    "on_post_check",
    "on_exit",
)
#: A task group: ``for_each`` over a chain of ``tasks`` (each value runs the chain).
GROUP_KEYS = (
    "id",
    "description",
    "depends_on",
    "for_each",
    "concurrency",
    "run_if",
    "allow_failure",
    "retry",
    "timeout",
    "queue",
    "sequential",
    "tasks",
)
COMMON_KEYS = (
    "id",
    "type",
    "description",
    "depends_on",
    "with",
    "env",
    "retry",
    "timeout",
    "allow_failure",
    "queue",
    "for_each",
    "concurrency",
    "run_if",
    "concurrency_key",
    "concurrency_limit",
    "pre_checks",
    "post_checks",
)
TYPE_KEYS: Mapping[str, tuple[str, ...]] = {
    "shell": ("command", "cwd", "inherit_env"),
    "python": ("function", "script", "handler", "cwd", "inherit_env"),
    "sql": ("url", "connection", "query", "script", "params", "max_rows"),
    "http": (
        "method",
        "url",
        "connection",
        "headers",
        "json",
        "body",
        "params",
        "expect_status",
    ),
    "flow": ("flow", "revision", "wait"),
}
#: Fields a task of the type must have, and groups of which it must have exactly one.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "shell": ("command",),
    "http": ("url",),
    "flow": ("flow",),
}
ONE_OF: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "python": (("function", "script", "handler"),),
    "sql": (("query", "script"), ("url", "connection")),
}


def plain(node: Any) -> Any:
    """A parsed document's nodes as plain JSON types."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return str(node)


def describe(value: Any) -> str:
    """How a found value is named in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) < 60 else f"string {value[:57]!r}..."
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, datetime.date):
        return f"date {value.isoformat()} (quote it to make it a string)"
    tag = getattr(getattr(value, "tag", None), "value", None)
    if isinstance(tag, str):
        return f"a value tagged {tag}"
    return type(value).__name__


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool)


def _list_of(item: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(item(x) for x in v)


class Kind(Struct, frozen=True):
    """A kind of value: its test and how it is named; for containers also the test and
    name of one element, so that a message can point at the element that is wrong."""

    check: Callable[[Any], bool]
    what: str
    item: Callable[[Any], bool] | None = None
    item_what: str = ""
    in_mapping: bool = False  # the elements are a mapping's values, not a list's items


KINDS: Mapping[str, Kind] = {
    "str": Kind(_is_str, "a string"),
    "bool": Kind(lambda v: isinstance(v, bool), "true or false"),
    "map": Kind(lambda v: isinstance(v, Mapping), "a mapping"),
    "list": Kind(lambda v: isinstance(v, list), "a list"),
    "scalar_map": Kind(
        lambda v: isinstance(v, Mapping) and all(_is_scalar(x) for x in v.values()),
        "a mapping of names to strings",
        _is_scalar,
        "a string",
        in_mapping=True,
    ),
    "duration": Kind(
        lambda v: is_number(v) or isinstance(v, str), "a duration like 500ms, 2s, 1m, 1h"
    ),
    "positive_int": Kind(lambda v: _is_int(v) and v >= 1, "a whole number of at least 1"),
    "positive_number": Kind(lambda v: is_number(v) and v > 0, "a number above 0"),
    "fraction": Kind(lambda v: is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "int_list": Kind(_list_of(_is_int), "a list of whole numbers", _is_int, "a whole number"),
    "command": Kind(
        lambda v: (isinstance(v, str) and v.strip() != "") or (_list_of(_is_str)(v) and v != []),
        "a command string or a non-empty list of strings",
        _is_str,
        "a string",
    ),
    "str_or_list": Kind(
        lambda v: isinstance(v, bool) or _list_of(_is_str)(v),
        "true, false or a list of variable names",
        _is_str,
        "a variable name (a string)",
    ),
    "params": Kind(lambda v: isinstance(v, list | Mapping), "a list or a mapping of parameters"),
    "status": Kind(
        lambda v: _is_int(v) or _list_of(_is_int)(v),
        "a status code or a list of them",
        _is_int,
        "a status code (a whole number)",
    ),
    "task_ids": Kind(
        lambda v: isinstance(v, str) or _list_of(_is_str)(v),
        "a task id or a list of task ids",
        _is_str,
        "a task id (a string)",
    ),
    "any": Kind(lambda v: True, "a value"),
}

TYPE_RULES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "shell": (("command", "command"), ("cwd", "str"), ("inherit_env", "str_or_list")),
    "python": (
        ("function", "str"),
        ("script", "str"),
        ("handler", "str"),
        ("cwd", "str"),
        ("inherit_env", "str_or_list"),
    ),
    "sql": (
        ("url", "str"),
        ("connection", "str"),
        ("query", "str"),
        ("script", "str"),
        ("params", "params"),
        ("max_rows", "positive_int"),
    ),
    "http": (
        ("method", "str"),
        ("url", "str"),
        ("connection", "str"),
        ("headers", "scalar_map"),
        ("json", "any"),
        ("body", "any"),
        ("params", "scalar_map"),
        ("expect_status", "status"),
    ),
    "flow": (("flow", "str"), ("revision", "positive_int"), ("wait", "bool")),
}
