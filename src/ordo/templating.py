"""Task values as templates: Jinja2's immutable sandbox with strict undefined names.

Jinja2 is imported only when a value actually contains ``{{`` or ``{%``, so flows without
templates never pay for it. A string that is exactly one expression
(``"{{ inputs.limit }}"``) renders to the expression's native value (an int stays an int,
a list stays a list); any other string renders to text. A missing name fails with a
:class:`TemplateError` naming the reference as the user wrote it
(``outputs.extract.path``) and what was there instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from ordo.errors import OrdoError

_MARKERS = ("{{", "{%")
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_OUTPUT_REF = re.compile(
    r"outputs\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])"
)
_PATH_KEY = "_ordo_path"


class TemplateError(OrdoError):
    """A template that cannot be rendered; ``reference`` is the missing name, if any."""

    def __init__(self, message: str, reference: str | None = None) -> None:
        super().__init__(message)
        self.reference = reference


def has_template(value: Any) -> bool:
    """Whether any string inside ``value`` (nested dicts and lists too) is a template."""
    if isinstance(value, str):
        return any(m in value for m in _MARKERS)
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


class Scope(dict[str, Any]):
    """A mapping that knows its path (``outputs.extract``) for error messages. The
    attribute starts with ``_`` so templates cannot reach it (the sandbox forbids it)."""

    def __init__(self, path: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        setattr(self, _PATH_KEY, path)


class LazyVars(Mapping[str, Any]):
    """``vars``: each one rendered only when used, against the same context."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = dict(raw)
        self._context: dict[str, Any] = {}
        self._active: list[str] = []
        self._done: dict[str, Any] = {}
        setattr(self, _PATH_KEY, "vars")

    def bind(self, context: dict[str, Any]) -> None:
        self._context = context

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key not in self._raw:
            raise KeyError(key)
        if key in self._active:
            chain = " -> ".join(f"vars.{k}" for k in [*self._active, key])
            raise TemplateError(f"vars refer to each other in a loop: {chain}", f"vars.{key}")
        self._active.append(key)
        try:
            value = render(self._raw[key], self._context)
        finally:
            self._active.pop()
        self._done[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def make_context(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    vars_: Mapping[str, Any],
    execution: Mapping[str, Any],
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The names a template sees: ``inputs``, ``outputs.<task>.<key>``, ``vars``,
    ``execution`` and ``env``."""
    lazy = LazyVars(vars_)
    context: dict[str, Any] = {
        "inputs": Scope("inputs", inputs),
        "outputs": Scope("outputs", {t: Scope(f"outputs.{t}", o) for t, o in outputs.items()}),
        "vars": lazy,
        "execution": Scope("execution", execution),
        "env": Scope("env", env),
    }
    lazy.bind(context)
    return context


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with every template string inside it rendered against ``context``."""
    if isinstance(value, str):
        return _render_string(value, context) if has_template(value) else value
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    from jinja2 import TemplateError as JinjaError
    from jinja2 import Undefined

    try:
        single = _SINGLE.match(text)
        if single and "{%" not in text:
            result = _expression(single.group("expr"))(**context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return _plain(result)
        return _template(text).render(**context)
    except TemplateError:
        raise
    except JinjaError as exc:
        raise TemplateError(f"cannot render {text!r}: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"cannot render {text!r}: {type(exc).__name__}: {exc}") from None


def _plain(value: Any) -> Any:
    """Native results without our wrappers (a Scope becomes a plain dict)."""
    from markupsafe import Markup

    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, Scope | LazyVars):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class NamedUndefined(StrictUndefined):
        """Fails with the reference spelled as the user wrote it."""

        def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
            raise _undefined_error(self._undefined_obj, self._undefined_name)

        __str__ = __iter__ = __len__ = __bool__ = __eq__ = __hash__ = _fail_with_undefined_error
        __getattr__ = __getitem__ = __add__ = __radd__ = __int__ = _fail_with_undefined_error
        __float__ = __lt__ = __le__ = __gt__ = __ge__ = __contains__ = _fail_with_undefined_error

    return ImmutableSandboxedEnvironment(
        undefined=NamedUndefined, autoescape=False, keep_trailing_newline=True
    )


def _undefined_error(parent: Any, name: Any) -> TemplateError:
    from jinja2.utils import missing

    if parent is missing:
        known = ", ".join(("inputs", "outputs", "vars", "execution", "env"))
        return TemplateError(f"undefined reference '{name}' (known names: {known})", str(name))
    base = getattr(parent, _PATH_KEY, None)
    reference = f"{base}.{name}" if base else str(name)
    keys = [str(k) for k in parent] if isinstance(parent, Mapping) else []
    if base == "outputs":
        return TemplateError(
            f"undefined reference '{reference}': task '{name}' has no outputs "
            f"(tasks with outputs so far: {', '.join(keys) or 'none'})",
            reference,
        )
    hint = difflib.get_close_matches(str(name), keys, n=1)
    if hint:
        tip = f" (did you mean '{base}.{hint[0]}'?)" if base else f" (did you mean '{hint[0]}'?)"
    elif base and base.startswith("outputs."):
        tip = f": task '{base[8:]}' has no output '{name}' (it has: {', '.join(keys) or 'none'})"
    elif keys and base != "env":
        tip = f" (it has: {', '.join(keys)})"
    else:
        tip = ""
    return TemplateError(f"undefined reference '{reference}'{tip}", reference)


@lru_cache(maxsize=4096)
def _template(text: str) -> Any:
    return _environment().from_string(text)


@lru_cache(maxsize=4096)
def _expression(expr: str) -> Any:
    return _environment().compile_expression(expr, undefined_to_none=False)


def check_syntax(value: Any) -> list[str]:
    """A message for every template inside ``value`` that does not parse."""
    if isinstance(value, str):
        if not has_template(value):
            return []
        from jinja2 import TemplateSyntaxError

        try:
            _environment().parse(value)
        except TemplateSyntaxError as exc:
            return [f"template syntax error in {value!r}: {exc.message}"]
        return []
    if isinstance(value, Mapping):
        return [m for v in value.values() for m in check_syntax(v)]
    if isinstance(value, list | tuple):
        return [m for v in value for m in check_syntax(v)]
    return []


def referenced_tasks(values: Any, vars_: Mapping[str, Any]) -> set[str]:
    """Task ids whose outputs ``values`` may read, directly or through ``vars``."""
    found: set[str] = set()
    texts = list(_strings(values))
    if any("vars" in t for t in texts):
        texts += list(_strings(vars_))
    for text in texts:
        for dotted, quoted in _OUTPUT_REF.findall(text):
            found.add(dotted or quoted)
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if has_template(value):
            yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
