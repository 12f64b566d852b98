"""Parsing YAML and JSON that may be hostile: bounded in size, depth, alias expansion and
number length, and fast.

YAML goes through libyaml's event parser (PyYAML's C extension) and a small builder that
keeps every node's position, resolves plain scalars as YAML 1.2 does (``yes`` and ``on``
are strings), supports anchors, aliases and merge keys (``<<``), and refuses:

- nesting deeper than :attr:`Limits.depth` levels;
- aliases that expand to more than :attr:`Limits.alias_factor` times the nodes written
  (plus :attr:`Limits.alias_allowance`), and an alias inside the node it names;
- integers longer than :data:`MAX_DIGITS` digits;
- duplicate keys and keys that are not scalars.

JSON goes through :func:`json.loads` with the same depth and number limits. Every refusal
is a :class:`~ordo.errors.DefinitionError` naming the place (line and column when known).
Nothing here is recursive, so no input can exhaust the stack.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from msgspec import Struct

from ordo.errors import DefinitionError, Problem

#: Python refuses to turn longer digit strings into integers (sys.int_info).
MAX_DIGITS = 4300


class Limits(Struct, frozen=True):
    """What a parsed document may hold. ``size`` counts characters of text."""

    size: int = 8 * 1024 * 1024
    depth: int = 100
    alias_factor: int = 10
    alias_allowance: int = 10_000


LIMITS = Limits()


class Position:
    """Positions (0-based, as ruamel's ``lc``) of a container and of its keys, values
    and items: ``line``/``col`` of the node, ``key(k)``, ``value(k)``, ``item(i)``."""

    __slots__ = ("col", "data", "line")

    def __init__(self, line: int, col: int) -> None:
        self.line = line
        self.col = col
        self.data: dict[Any, tuple[int, int, int, int]] = {}

    def key(self, key: Any) -> tuple[int, int]:
        found = self.data[key]
        return found[0], found[1]

    def value(self, key: Any) -> tuple[int, int]:
        found = self.data[key]
        return found[2], found[3]

    def item(self, index: int) -> tuple[int, int]:
        found = self.data[index]
        return found[0], found[1]


class Map(dict[Any, Any]):
    """A mapping read from a document, with its positions in ``lc``."""

    lc: Position


class Seq(list[Any]):
    """A sequence read from a document, with its positions in ``lc``."""

    lc: Position


def too_deep(where: str, limit: int, line: int | None = None, col: int | None = None) -> Problem:
    return Problem(f"nested deeper than {limit} levels", where, line, col)


# -- JSON --------------------------------------------------------------------------------
class _LongNumber(ValueError):
    pass


def _int(digits: str) -> int:
    if len(digits.lstrip("-+")) > MAX_DIGITS:
        raise _LongNumber(digits)
    return int(digits)


def load_json(text: str | bytes, where: str, limits: Limits = LIMITS) -> Any:
    """``text`` parsed as JSON (plain Python values) within ``limits``; DefinitionError
    at the line and column of what is wrong."""
    if len(text) > limits.size:
        raise DefinitionError([_too_big(where, len(text), limits.size)])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionError([Problem(f"not UTF-8 text (byte {exc.start})", where)]) from None
    try:
        value = json.loads(text, parse_int=_int)
    except json.JSONDecodeError as exc:
        problem = Problem(f"invalid JSON: {exc.msg}", where, exc.lineno, exc.colno)
        raise DefinitionError([problem]) from None
    except _LongNumber:
        found = re.search(f"[0-9]{{{MAX_DIGITS + 1}}}", text)
        line, col = _line_col(text, found.start() if found else 0)
        raise DefinitionError([_long_number(where, line, col)]) from None
    except RecursionError:
        line, col = _line_col(text, _deep_offset(text, limits.depth))
        raise DefinitionError([too_deep(where, limits.depth, line, col)]) from None
    if _depth_over(value, limits.depth):
        line, col = _line_col(text, _deep_offset(text, limits.depth))
        raise DefinitionError([too_deep(where, limits.depth, line, col)])
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` containers (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _deep_offset(text: str, limit: int) -> int:
    """Where in JSON ``text`` the nesting first goes past ``limit`` (0 if not found)."""
    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return m.start()
        elif token in "]}":
            depth -= 1
    return 0


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _too_big(where: str, size: int, limit: int) -> Problem:
    return Problem(f"too large: {size} bytes, at most {limit} are read", where)


def _long_number(where: str, line: int | None, col: int | None) -> Problem:
    return Problem(f"a number longer than {MAX_DIGITS} digits", where, line, col)


# -- YAML --------------------------------------------------------------------------------
_NULL = frozenset(("", "~", "null", "Null", "NULL"))
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False}
_BOOL["FALSE"] = False
_INT = re.compile(r"[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9_]+|[0-9][0-9_]*\.[0-9_]*|[0-9][0-9_]*(?=[eE]))(?:[eE][-+]?[0-9]+)?"
)
_SPECIAL_FLOAT = {".inf": "inf", ".Inf": "inf", ".INF": "inf", ".nan": "nan", ".NaN": "nan"}
_SPECIAL_FLOAT[".NAN"] = "nan"
_DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "null", "timestamp")
)


class _LongInt(ValueError):
    pass


def scalar(value: str) -> Any:
    """A plain scalar's value as YAML 1.2's core schema (as ruamel reads it) gives it."""
    if value in _NULL:
        return None
    if value in _BOOL:
        return _BOOL[value]
    first = value[0]
    if first.isdigit() or first in "-+.":
        if _INT.fullmatch(value):
            return _to_int(value)
        if _FLOAT.fullmatch(value):
            return float(value.replace("_", ""))
        special = _SPECIAL_FLOAT.get(value.lstrip("-+"))
        if special is not None:
            return float(value[0] + special if first in "-+" else special)
        if _DATE.fullmatch(value):
            try:
                return datetime.date.fromisoformat("-".join(p.zfill(2) for p in value.split("-")))
            except ValueError:
                return value
    return value


def _to_int(value: str) -> int:
    digits = value.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("-+")
    if len(digits) > MAX_DIGITS:
        raise _LongInt(value)
    if digits[:2] in ("0b", "0o", "0x"):
        base = {"0b": 2, "0o": 8, "0x": 16}[digits[:2]]
        return sign * int(digits[2:] or "0", base)
    return sign * int(digits or "0")


class _Refused(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _Frame:
    __slots__ = ("anchor", "container", "key", "key_mark", "merges", "size")

    def __init__(self, container: Map | Seq, anchor: str | None) -> None:
        self.container = container
        self.anchor = anchor
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.merges: list[Map] = []
        self.size = 1


_NO_KEY = object()
_MERGE = object()  # the plain key "<<"


def load_yaml(text: str, where: str, limits: Limits = LIMITS, *, kind: str = "YAML") -> Any:
    """``text``'s first document with positions (:class:`Map`, :class:`Seq`, plain
    scalars) within ``limits``; DefinitionError at the line and column of what is wrong."""
    if len(text) > limits.size:
        raise DefinitionError([_too_big(where, len(text.encode("utf-8")), limits.size)])
    from yaml import MarkedYAMLError, YAMLError
    from yaml._yaml import CParser

    try:
        return _build(CParser(text), limits)
    except _Refused as exc:
        line, col = _mark(exc.mark)
        raise DefinitionError([Problem(exc.message, where, line, col)]) from None
    except MarkedYAMLError as exc:
        line, col = _mark(exc.problem_mark or exc.context_mark)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise DefinitionError([Problem(f"invalid {kind}: {what}", where, line, col)]) from None
    except YAMLError as exc:
        raise DefinitionError([Problem(f"invalid {kind}: {exc}", where)]) from None


def _mark(mark: Any) -> tuple[int | None, int | None]:
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def _build(parser: Any, limits: Limits) -> Any:
    from yaml import events

    scalar_event, alias_event = events.ScalarEvent, events.AliasEvent
    map_start, seq_start = events.MappingStartEvent, events.SequenceStartEvent
    ends = (events.MappingEndEvent, events.SequenceEndEvent)
    get_event = parser.get_event
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int]] = {}
    open_anchors: set[str] = set()
    written = 0
    expanded = 0
    root: Any = None
    while parser.check_event():
        event = get_event()
        kind = type(event)
        mark = event.start_mark
        if kind is scalar_event:
            written += 1
            value: Any = event.value
            if event.tag is None and event.implicit[0]:  # plain (unquoted), untagged
                value = _MERGE if value == "<<" else _plain(value, mark)
            elif event.tag in _PLAIN_TAGS:
                value = _plain(value, mark)
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            size = 1
        elif kind is alias_event:
            if event.anchor in open_anchors:
                raise _Refused(f"alias *{event.anchor} is inside the node it names", mark)
            if event.anchor not in anchors:
                raise _Refused(f"alias *{event.anchor} names no anchor before it", mark)
            value, size = anchors[event.anchor]
            expanded += size
            if expanded > limits.alias_factor * written + limits.alias_allowance:
                raise _Refused(
                    f"aliases expand to more than {limits.alias_factor} times the nodes "
                    "written (an alias bomb?)",
                    mark,
                )
        elif kind is map_start or kind is seq_start:
            written += 1
            if len(stack) >= limits.depth:
                raise _Refused(f"nested deeper than {limits.depth} levels", mark)
            container: Map | Seq = Map() if kind is map_start else Seq()
            container.lc = Position(mark.line, mark.column)
            if event.anchor:
                open_anchors.add(event.anchor)
            stack.append(_Frame(container, event.anchor))
            continue
        elif kind in ends:
            frame = stack.pop()
            value, size = frame.container, frame.size
            if frame.merges and isinstance(frame.container, Map):
                _merge(frame.container, frame.merges)
            mark = None
            if frame.anchor:
                open_anchors.discard(frame.anchor)
                anchors[frame.anchor] = (value, size)
        elif kind is events.DocumentEndEvent:
            break
        else:
            continue
        if not stack:
            root = "<<" if value is _MERGE else value
            continue
        _add(stack[-1], value, size, mark)
    return root


def _plain(value: str, mark: Any) -> Any:
    try:
        return scalar(value)
    except _LongInt:
        raise _Refused(f"a number longer than {MAX_DIGITS} digits", mark) from None


def _add(frame: _Frame, value: Any, size: int, mark: Any) -> None:
    frame.size += size
    container = frame.container
    line, col = (mark.line, mark.column) if mark is not None else _start(value)
    if value is _MERGE and (isinstance(container, Seq) or frame.key is not _NO_KEY):
        value = "<<"
    if isinstance(container, Seq):
        container.lc.data[len(container)] = (line, col, line, col)
        container.append(value)
        return
    if frame.key is _NO_KEY:
        if isinstance(value, Map | Seq):
            at = _Mark(line, col)
            raise _Refused("a mapping key must be a scalar, not a mapping or list", at)
        frame.key, frame.key_mark = value, (line, col)
        return
    key, (kline, kcol) = frame.key, frame.key_mark
    frame.key = _NO_KEY
    if key is _MERGE:
        merges = value if isinstance(value, Seq) else [value]
        if not all(isinstance(m, Map) for m in merges):
            raise _Refused("a merge key (<<) takes a mapping or a list of mappings", mark)
        frame.merges.extend(merges)
        return
    if key in container:
        at = _Mark(kline, kcol)
        raise _Refused(f'invalid YAML: found duplicate key "{key}"', at)
    container[key] = value
    container.lc.data[key] = (kline, kcol, line, col)


class _Mark:
    """A 0-based position where the parser gives no mark of its own."""

    def __init__(self, line: int, column: int) -> None:
        self.line = line
        self.column = column


def _start(value: Any) -> tuple[int, int]:
    lc = value.lc
    return lc.line, lc.col


def _merge(target: Map, merges: list[Map]) -> None:
    """Keys of merged mappings the mapping does not have itself (the first merged wins)."""
    for merged in merges:
        for key, value in merged.items():
            if key not in target:
                target[key] = value
                if key in merged.lc.data:
                    target.lc.data[key] = merged.lc.data[key]
