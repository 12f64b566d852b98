"""The flow file's schema: allowed keys, value kinds and how found values are named."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
    "tasks",
)
INPUT_KEYS = ("type", "default", "required", "description")
DEFAULT_KEYS = ("retry", "timeout")
RETRY_KEYS = (
    "attempts",
    "delay",
    "backoff",
    "max_delay",
    "jitter",
    "on_exit_codes",
    "on_timeout",
    "budget",
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
)
TYPE_KEYS: Mapping[str, tuple[str, ...]] = {
    "shell": ("command", "cwd", "inherit_env"),
    "python": ("function", "script", "cwd", "inherit_env"),
    "sql": ("url", "query", "script", "params", "max_rows"),
    "http": ("method", "url", "headers", "json", "body", "params", "expect_status"),
}


def plain(node: Any) -> Any:
    """ruamel's nodes as plain JSON types."""
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
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


KINDS: Mapping[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "map": (lambda v: isinstance(v, Mapping), "a mapping"),
    "scalar_map": (
        lambda v: (
            isinstance(v, Mapping)
            and all(isinstance(x, str | int | float | bool) for x in v.values())
        ),
        "a mapping of names to strings",
    ),
    "duration": (
        lambda v: is_number(v) or isinstance(v, str),
        "a duration like 500ms, 2s, 1m, 1h",
    ),
    "positive_int": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "a whole number of at least 1",
    ),
    "positive_number": (lambda v: is_number(v) and v > 0, "a number above 0"),
    "fraction": (lambda v: is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "int_list": (
        lambda v: (
            isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ),
        "a list of whole numbers",
    ),
    "command": (
        lambda v: (
            (isinstance(v, str) and v.strip() != "")
            or (isinstance(v, list) and v != [] and all(isinstance(x, str) for x in v))
        ),
        "a command string or a list of strings",
    ),
    "str_or_list": (
        lambda v: (
            isinstance(v, bool | list)
            and (isinstance(v, bool) or all(isinstance(x, str) for x in v))
        ),
        "true, false or a list of variable names",
    ),
    "params": (lambda v: isinstance(v, list | Mapping), "a list or a mapping of parameters"),
    "status": (
        lambda v: (
            (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, list) and all(isinstance(x, int) for x in v))
        ),
        "a status code or a list of them",
    ),
    "any": (lambda v: True, "a value"),
}

TYPE_RULES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "shell": (("command", "command"), ("cwd", "str"), ("inherit_env", "str_or_list")),
    "python": (
        ("function", "str"),
        ("script", "str"),
        ("cwd", "str"),
        ("inherit_env", "str_or_list"),
    ),
    "sql": (
        ("url", "str"),
        ("query", "str"),
        ("script", "str"),
        ("params", "params"),
        ("max_rows", "positive_int"),
    ),
    "http": (
        ("method", "str"),
        ("url", "str"),
        ("headers", "scalar_map"),
        ("json", "any"),
        ("body", "any"),
        ("params", "scalar_map"),
        ("expect_status", "status"),
    ),
}
