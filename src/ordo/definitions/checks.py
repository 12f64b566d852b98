"""A task's ``pre_checks`` and ``post_checks``: lists of one-key mappings, the key naming
the kind of check, validated into :class:`~ordo.model.Check` values.

```yaml
pre_checks:
  - file_exists: {path: data/in.csv}        # or: file_exists: data/in.csv
  - command: {run: "test -s data/in.csv", timeout: 30s}   # or: command: "test ..."
post_checks:
  - no_match: {path: "logs/*.log", pattern: "ORA-[0-9]+"}
  - function: checks:rows_loaded
```

Fields are templates (their syntax is checked here); a ``pattern`` without a template is
compiled here, so a bad regular expression is a definition error.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from ordo import templating
from ordo.definitions.document import DocumentChecker, template_problems
from ordo.definitions.schema import FUNCTION_RE, plain
from ordo.model import CHECK_KINDS, Check

#: The fields of each kind (the first ones required) and the one a plain string gives.
CHECK_FIELDS: Mapping[str, tuple[str, ...]] = {
    "file_exists": ("path", "type"),
    "no_match": ("path", "pattern", "missing"),
    "command": ("run", "timeout"),
}
#: Optional fields with a fixed set of values (the first is the default).
CHOICES: Mapping[str, tuple[str, ...]] = {
    "type": ("any", "file", "dir"),
    "missing": ("pass", "fail"),
}
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "file_exists": ("path",),
    "no_match": ("path", "pattern"),
    "command": ("run",),
}
_SHORTHAND = {"file_exists": "path", "command": "run"}
_EXAMPLE = "{file_exists: {path: data/in.csv}}"


def check_list(
    checker: DocumentChecker, node: Mapping[str, Any], key: str, field: str
) -> tuple[Check, ...] | None:
    """``node[key]`` as checks; None when absent. Every problem is reported; checks that
    have one are left out."""
    if key not in node:
        return None
    items = node[key]
    name = f"{field}.{key}" if field else key
    if not isinstance(items, list):
        checker.expect(f"a list of checks like [{_EXAMPLE}]", name, items, node, key)
        return ()
    found = []
    for i, item in enumerate(items):
        check = _one(checker, items, i, item, f"{name}[{i}]")
        if check is not None:
            found.append(check)
    return tuple(found)


def _one(checker: DocumentChecker, items: list[Any], i: int, item: Any, field: str) -> Check | None:
    if not isinstance(item, Mapping) or len(item) != 1:
        what = f"a check: a mapping with one key, its kind ({', '.join(CHECK_KINDS)}), like "
        if isinstance(item, Mapping) and item:
            keys = ", ".join(str(k) for k in item)
            checker.problem(f"expected {what}{_EXAMPLE}, found keys {keys}", field, items, i)
        else:
            checker.expect(what + _EXAMPLE, field, item, items, i)
        return None
    ((kind, value),) = item.items()
    if kind not in CHECK_KINDS:
        hint = difflib.get_close_matches(str(kind), CHECK_KINDS, n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        checker.problem(
            f"unknown check kind '{kind}'{tip}: expected one of {', '.join(CHECK_KINDS)}",
            f"{field}.{kind}",
            item,
            ("key", kind),
        )
        return None
    where = f"{field}.{kind}"
    if kind == "function":
        return _function(checker, item, value, where)
    fields = _fields(checker, item, str(kind), value, where)
    if fields is None:
        return None
    return Check(str(kind), fields)


def _function(checker: DocumentChecker, item: Any, value: Any, where: str) -> Check | None:
    if isinstance(value, str) and FUNCTION_RE.match(value):
        return Check("function", {"function": str(value)})
    checker.expect("module:function (like checks:rows_loaded)", where, value, item, "function")
    return None


def _fields(
    checker: DocumentChecker, item: Any, kind: str, value: Any, where: str
) -> dict[str, Any] | None:
    """A kind's fields from a mapping, or from a plain string where the kind allows."""
    shorthand = _SHORTHAND.get(kind)
    if isinstance(value, str) and shorthand is not None:
        value, node = {shorthand: value}, None
    elif isinstance(value, Mapping):
        node = value
    else:
        form = f"a mapping {{{', '.join(f'{k}: ...' for k in _REQUIRED[kind])}}}"
        if shorthand is not None:
            form += f" or a string (the {shorthand})"
        checker.expect(form, where, value, item, kind)
        return None
    at = (node, None) if node is not None else (item, kind)
    allowed = CHECK_FIELDS[kind]
    if node is not None:
        checker.keys(value, allowed, where)
    ok = True
    for key in _REQUIRED[kind]:
        if key not in value:
            checker.problem(f"missing required key '{key}' for a {kind} check", where, *at)
            ok = False
    fields: dict[str, Any] = {}
    for key in allowed:
        if key not in value:
            continue
        place = (node, key) if node is not None else at
        if key == "timeout":
            seconds = checker.get(value, "timeout", "duration", where)
            if seconds is None:
                ok = False
            fields["timeout"] = seconds
            continue
        text = value[key]
        if key in CHOICES:
            if text not in CHOICES[key]:
                checker.expect(" or ".join(CHOICES[key]), f"{where}.{key}", text, *place)
                ok = False
            fields[key] = text
            continue
        if not isinstance(text, str) or not text.strip():
            checker.expect("a non-empty string", f"{where}.{key}", text, *place)
            ok = False
            continue
        for message in template_problems(text):
            checker.problem(message, f"{where}.{key}", *place)
            ok = False
        fields[key] = plain(text)
    if ok and kind == "no_match":
        ok = _pattern(checker, fields["pattern"], f"{where}.pattern", node, "pattern")
    return fields if ok and not set(value) - set(allowed) else None


def _pattern(checker: DocumentChecker, pattern: str, field: str, node: Any, key: str) -> bool:
    """A regular expression without templates must compile."""
    if templating.has_template(pattern):
        return True
    try:
        re.compile(pattern)
    except re.error as exc:
        checker.problem(f"invalid regular expression {pattern!r}: {exc}", field, node, key)
        return False
    return True
