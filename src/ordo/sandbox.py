"""A Jinja2 sandbox with bounds: what a template may build, and how much it may write.

Jinja2's immutable sandbox keeps templates away from Python's internals, but not from
asking for a string of a billion characters (``{{ 'x' * 10**9 }}``), a number of a
billion digits (``{{ 9 ** (10 ** 9) }}``) or a loop of a billion turns. This sandbox refuses
those before they are computed, and :func:`bounded` stops a render once its text passes
:data:`MAX_TEXT` characters. The limits are per render (a contextvar holds the budget of
``range()``), so renders in different threads do not share them.

What it cannot bound is listed in docs/security.md: concatenations that grow a string
step by step (``{% set a = a ~ a %}`` repeated) are only stopped by the text limit when
written out, or by a MemoryError that the caller turns into a failed task.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ordo.errors import OrdoError

MAX_TEXT = 1_000_000
"""Characters a rendered template (or one string built inside it) may have."""
MAX_ITEMS = 1_000_000
"""Items a list built by ``*`` may have; numbers ``range()`` may give in one render."""
MAX_INT_BITS = 100_000
"""Bits of an integer built by ``*`` or ``**`` (about 30,000 decimal digits)."""

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_range_left: contextvars.ContextVar[int] = contextvars.ContextVar("ordo_range_left")


class LimitError(OrdoError):
    """A template asked for more than the sandbox allows; the message says what."""


def bounded(template: Any, context: Mapping[str, Any]) -> str:
    """``template`` rendered with ``context``, at most :data:`MAX_TEXT` characters
    (LimitError past that), with a fresh ``range()`` budget."""
    token = _range_left.set(MAX_ITEMS)
    try:
        size = 0
        parts: list[str] = []
        for part in template.generate(**context):
            size += len(part)
            if size > MAX_TEXT:
                raise LimitError(f"the text would be longer than {MAX_TEXT:,} characters")
            parts.append(part)
        return "".join(parts)
    finally:
        _range_left.reset(token)


def evaluate(expression: Any, context: Mapping[str, Any]) -> Any:
    """A compiled expression's value, with a fresh ``range()`` budget; a string longer
    than :data:`MAX_TEXT` is a LimitError."""
    token = _range_left.set(MAX_ITEMS)
    try:
        value = expression(**context)
    finally:
        _range_left.reset(token)
    _check_size(value)
    return value


def _check_size(value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise LimitError(f"a string would be longer than {MAX_TEXT:,} characters")
    if isinstance(value, list | tuple) and len(value) > MAX_ITEMS:
        raise LimitError(f"a list would have more than {MAX_ITEMS:,} items")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise LimitError(f"a number would have more than {MAX_INT_BITS:,} bits")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _times(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        limit = MAX_TEXT if isinstance(seq, str) else MAX_ITEMS
        if (
            isinstance(seq, str | list | tuple)
            and isinstance(count, int)
            and len(seq) * count > limit
        ):
            raise LimitError(f"repeating a value of {len(seq):,} items {count:,} times")
    if _ints(left, right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitError(f"a number would have more than {MAX_INT_BITS:,} bits")
    return left * right


def _ints(left: Any, right: Any) -> bool:
    return isinstance(left, int) and isinstance(right, int)


def _power(left: Any, right: Any) -> Any:
    if _ints(left, right) and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
        raise LimitError(f"a number would have more than {MAX_INT_BITS:,} bits")
    return left**right


def _plus(left: Any, right: Any) -> Any:
    if _size(left) + _size(right) > MAX_TEXT:
        raise LimitError(f"a value would be longer than {MAX_TEXT:,} items")
    return left + right


def _range(*args: int) -> range:
    numbers = range(*args)
    left = _range_left.get(MAX_ITEMS) - len(numbers)
    if left < 0:
        raise LimitError(f"range() would give more than {MAX_ITEMS:,} numbers in one template")
    _range_left.set(left)
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    from jinja2.utils import generate_lorem_ipsum

    if n * max > 100_000:
        raise LimitError("lipsum() asks for more than 100,000 words")
    return str(generate_lorem_ipsum(n, html, min, max))


def quote(value: Any) -> str:
    """The ``quote`` filter: ``value`` as one word of shell text (``shlex.quote``); a list
    as its items quoted one by one, joined by spaces."""
    import shlex

    if isinstance(value, list | tuple):
        return " ".join(shlex.quote(_text(v)) for v in value)
    return shlex.quote(_text(value))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _replace_filter(original: Any) -> Any:
    def checked(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
            _check_replace(s, old, new, count)
        return original(eval_ctx, s, old, new, count)

    checked.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _check_replace(s: str, old: str, new: str, count: Any) -> None:
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    if len(s) + times * (len(new) - len(old)) > MAX_TEXT:
        raise LimitError(f"replace() would make a text longer than {MAX_TEXT:,} characters")


def _join_filter(original: Any) -> Any:
    def checked(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
        if isinstance(value, list | tuple) and attribute is None:
            size = sum(len(v) for v in value if isinstance(v, str))
            if size + len(value) * len(str(d)) > MAX_TEXT:
                raise LimitError(f"join() would make a text longer than {MAX_TEXT:,} characters")
        return original(eval_ctx, value, d, attribute)

    checked.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
    return checked


def _check_method(owner: str, name: str, args: tuple[Any, ...]) -> None:
    """Refuse a string method call whose result would pass the limits, before it runs."""
    if name in _WIDTH_METHODS and any(isinstance(a, int) and a > MAX_TEXT for a in args):
        raise LimitError(f"{name}(): wider than {MAX_TEXT:,} characters")
    if name == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else None)
    if name == "join" and args and isinstance(args[0], list | tuple):
        size = sum(len(v) for v in args[0] if isinstance(v, str))
        if size + len(args[0]) * len(owner) > MAX_TEXT:
            raise LimitError(f"join() would be longer than {MAX_TEXT:,} characters")


def _width_filter(original: Any, name: str) -> Any:
    def checked(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_TEXT:
            raise LimitError(f"{name}({width:,}): wider than {MAX_TEXT:,} characters")
        return original(value, width, *args, **kwargs)

    return checked


@lru_cache(maxsize=1)
def sandbox_class() -> type:
    """The bounded sandbox class (built on first use, so Jinja2 loads only when a
    template is rendered)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+"})
        _binops = {"*": _times, "**": _power, "+": _plus}

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.globals["range"] = _range
            self.globals["lipsum"] = _lipsum
            self.filters["quote"] = quote
            for name in ("center", "indent"):
                self.filters[name] = _width_filter(self.filters[name], name)
            self.filters["replace"] = _replace_filter(self.filters["replace"])
            self.filters["join"] = _join_filter(self.filters["join"])

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            return self._binops[op](left, right)

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            owner = getattr(obj, "__self__", None)
            if isinstance(owner, str):
                _check_method(owner, getattr(obj, "__name__", ""), args)
            result = super().call(context, obj, *args, **kwargs)
            _check_size(result)
            return result

    return BoundedSandbox
