"""A parsed YAML/JSON document with node positions, and the reporting and typed getters
that turn what is wrong in it into located :class:`~ordo.errors.Problem` values.

Fields are named as a dotted path with list indexes: ``tasks[2].retry.attempts``,
``inputs.limit.default``, ``tasks[0].depends_on[1]``, ``tasks[3].headers.X-Token``; a top
level key is bare (``id``). Lines and columns are 1-based. ruamel.yaml is imported only
when a document is actually parsed (YAML 1.2 reads JSON too, keeping positions).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from ordo import templating
from ordo.definitions.schema import ID_RE, KINDS, Kind, describe, plain
from ordo.errors import DefinitionError, Problem
from ordo.model import parse_duration


def load_document(text: str, path: str, fmt: str) -> Any:
    """``text`` parsed with positions (ruamel's round-trip nodes). Malformed YAML or
    JSON is a DefinitionError at the parser's line and column; JSON is checked with
    :func:`json.loads` first so its syntax errors read as JSON ones."""
    if fmt == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            problem = Problem(f"invalid JSON: {exc.msg}", path, exc.lineno, exc.colno)
            raise DefinitionError([problem]) from None
        text = text.replace("\t", " ")  # JSON allows tabs where YAML does not; same columns
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    kind = "JSON" if fmt == "json" else "YAML"
    try:
        return YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise DefinitionError([Problem(f"invalid {kind}: {what}", path, line, col)]) from None
    except YAMLError as exc:
        raise DefinitionError([Problem(f"invalid {kind}: {exc}", path)]) from None
    except RecursionError:  # one bad file must not stop a folder's deploy (or a server)
        raise DefinitionError([Problem(f"invalid {kind}: nested too deeply", path)]) from None


class DocumentChecker:
    """Collects located problems while a document is walked. The getters check a value's
    kind and report it when wrong, returning a default so that the walk goes on and every
    problem is found."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def problem(self, message: str, field: str, node: Any = None, key: Any = None) -> None:
        """Record a problem at ``node[key]`` (see :func:`position`)."""
        line, col = position(node, key)
        self.problems.append(Problem(message, self.path, line, col, field or None))

    def expect(self, what: str, field: str, value: Any, node: Any, key: Any) -> None:
        self.problem(f"expected {what}, found {describe(value)}", field, node, key)

    def wrong(self, rule: Kind, field: str, value: Any, node: Any, key: Any) -> None:
        """Report a value that fails ``rule``: at its wrong element when there is one."""
        item_ok = rule.item
        container = Mapping if rule.in_mapping else list
        if item_ok is not None and isinstance(value, container):
            pairs = value.items() if isinstance(value, Mapping) else enumerate(value)
            for k, item in pairs:
                if not item_ok(item):
                    where = f"{field}[{k}]" if isinstance(value, list) else f"{field}.{k}"
                    self.expect(rule.item_what or rule.what, where, item, value, k)
                    return
        self.expect(rule.what, field, value, node, key)

    def keys(self, node: Mapping[str, Any], allowed: tuple[str, ...], field: str) -> None:
        """Unknown keys of ``node``, each with a "did you mean" hint when one is close."""
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

    def get(
        self, node: Mapping[str, Any], key: str, kind: str, field: str, default: Any = None
    ) -> Any:
        """``node[key]`` as plain data if it is of ``kind`` (a name in ``KINDS``;
        durations become seconds), else ``default`` and a problem. Absent: ``default``."""
        if key not in node:
            return default
        value = node[key]
        name = f"{field}.{key}" if field else key
        rule = KINDS[kind]
        if not rule.check(value):
            self.wrong(rule, name, value, node, key)
            return default
        if kind == "duration":
            try:
                return parse_duration(value)
            except ValueError as exc:
                self.problem(str(exc), name, node, key)
                return default
        return plain(value)

    def identifier(
        self, node: Mapping[str, Any], key: str, field: str, required: bool = False
    ) -> str | None:
        """An id (``[A-Za-z0-9_.-]+``) at ``node[key]``, or None and a problem."""
        if key not in node:
            if required:
                self.problem(f"missing required key '{key}'", field, node, None)
            return None
        value = node[key]
        if not isinstance(value, str) or not ID_RE.match(value):
            self.expect("an id of letters, digits, '_', '.' or '-'", field, value, node, key)
            return None
        return str(value)

    def templates(self, values: Mapping[str, Any], field: str, node: Any, key: Any) -> None:
        """Template syntax errors in ``values``, at ``node[key]`` or else at each name."""
        for name, value in values.items():
            for message in templating.check_syntax(value):
                self.problem(message, f"{field}.{name}", node, name if key is None else key)


def position(node: Any, key: Any) -> tuple[int | None, int | None]:
    """1-based (line, column) of ``node[key]``'s value, of a key with ``("key", k)``, or of
    the node itself; (None, None) for a node without positions."""
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
