"""Task values as templates: Jinja2's immutable sandbox with strict undefined names.

Jinja2 is imported only when a value actually contains ``{{`` or ``{%``, so flows without
templates never pay for it. A string that is exactly one expression
(``"{{ inputs.limit }}"``) renders to the expression's native value (an int stays an int,
a list stays a list); any other string renders to text. A missing name fails with a
:class:`TemplateError` naming the reference as the user wrote it
(``outputs.extract.path``) and what was there instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from msgspec import Struct

from ordo import sandbox
from ordo.errors import OrdoError

_MARKERS = ("{{", "{%")
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_BLOCKS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_OUTPUT_REF = re.compile(
    r"(?<!\.)\boutputs\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])"
)
_VAR_REF = re.compile(
    r"(?<!\.)\bvars\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])"
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PATH_KEY = "_ordo_path"
_TASK_KEY = "_ordo_task"
_RESULTS_KEY = "_ordo_results"


class TemplateError(OrdoError):
    """A template that cannot be rendered; ``reference`` is the missing name, if any
    (``outputs.extract.path``); ``var`` the var being rendered when it failed."""

    def __init__(self, message: str, reference: str | None = None, var: str | None = None) -> None:
        super().__init__(message)
        self.reference = reference
        self.var = var


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
    """A mapping that knows its path (``outputs.extract``) for error messages, and hands
    out nested mappings as Scopes too (``outputs.extract.meta``). ``task`` is set on a
    task's outputs. The attributes start with ``_`` so templates cannot reach them (the
    sandbox forbids it)."""

    def __init__(
        self,
        path: str,
        values: Mapping[str, Any],
        task: str | None = None,
        results: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(values)
        setattr(self, _PATH_KEY, path)
        setattr(self, _TASK_KEY, task)
        setattr(self, _RESULTS_KEY, results)

    def __missing__(self, key: str) -> Any:
        """A flow task's ``tasks`` and ``vars`` (its child's results by path), read from
        the child execution the first time a template uses them."""
        results = getattr(self, _RESULTS_KEY, None)
        child = dict.get(self, "execution_id")
        if results is None or key not in CHILD_RESULTS or not isinstance(child, int):
            raise KeyError(key)
        found = results(child)[key]
        self[key] = found
        return found

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, Mapping) and not isinstance(value, Scope | LazyVars | LazyScope):
            path = f"{getattr(self, _PATH_KEY)}.{key}"
            child = self.get("execution_id") if key in CHILD_RESULTS else None
            if isinstance(child, int):  # a flow task's results by path: name the child
                return Scope(path, value, task=f"child execution {child}")
            return Scope(path, value, results=getattr(self, _RESULTS_KEY, None))
        return value


#: What a flow task's outputs hold of its child execution besides its ``outputs:``:
#: ``outputs.<flowtask>.tasks.<task>.<key>`` and ``outputs.<flowtask>.vars.<name>``.
CHILD_RESULTS = ("tasks", "vars")


class LazyScope(Mapping[str, Any]):
    """A scope whose entries are read only when a template uses them (``parent``: the
    parent execution's outputs and vars are read from the store on first use)."""

    def __init__(self, path: str, loaders: Mapping[str, Callable[[], Any]]) -> None:
        self._loaders = dict(loaders)
        self._done: dict[str, Any] = {}
        setattr(self, _PATH_KEY, path)
        setattr(self, _TASK_KEY, None)

    def __getitem__(self, key: str) -> Any:
        if key not in self._done:
            value = self._loaders[key]()  # KeyError: an unknown name, reported as such
            if isinstance(value, Mapping) and not isinstance(
                value, Scope | LazyVars | DeferredVars
            ):
                value = Scope(f"{getattr(self, _PATH_KEY)}.{key}", value)
            self._done[key] = value
        return self._done[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


class LazyVars(Mapping[str, Any]):
    """``vars``: each one rendered only when used, against the same context, so a var
    that reads a task not yet run fails only if used. A var may read other vars; a loop
    among them is a TemplateError naming the chain."""

    def __init__(self, raw: Mapping[str, Any], inherited: Mapping[str, Any] | None = None) -> None:
        self._raw = dict(raw)
        self._inherited = inherited  # a parent execution's vars: the child's own win
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
            if self._inherited is not None and key in self._inherited:
                return self._inherited[key]
            raise KeyError(key)
        if key in self._active:
            chain = " -> ".join(f"vars.{k}" for k in [*self._active, key])
            message = f"vars refer to each other in a loop: {chain}"
            raise TemplateError(message, f"vars.{key}", f"vars.{key}")
        self._active.append(key)
        try:
            value = render(self._raw[key], self._context)
        except TemplateError as exc:
            if exc.var is not None:
                raise
            message = f"{exc} (in vars.{key})"
            raise TemplateError(message, exc.reference, f"vars.{key}") from None
        finally:
            self._active.pop()
        self._done[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        inherited = [k for k in self._inherited or () if k not in self._raw]
        return iter([*self._raw, *inherited])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return key in self._raw or (self._inherited is not None and key in self._inherited)


class _Deferred(Mapping[str, Any]):
    """A scope read as a whole on first use (``parents``)."""

    def __init__(
        self,
        path: str,
        load: Callable[[], Mapping[str, Any]],
        results: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> None:
        self._load = load
        self._results = results
        self._scope: Scope | None = None
        setattr(self, _PATH_KEY, path)
        setattr(self, _TASK_KEY, None)

    def _loaded(self) -> Scope:
        if self._scope is None:
            self._scope = Scope(getattr(self, _PATH_KEY), self._load(), results=self._results)
        return self._scope

    def __getitem__(self, key: str) -> Any:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


class DeferredVars(Mapping[str, Any]):
    """Another execution's vars (a parent's), rendered against its own context, which
    is built only when one of them is first read."""

    def __init__(
        self,
        names: Iterable[str],
        context: Callable[[], Mapping[str, Any]],
        path: str = "parent.vars",
    ) -> None:
        self._names = list(names)
        self._make = context
        self._vars: Mapping[str, Any] | None = None
        setattr(self, _PATH_KEY, path)
        setattr(self, _TASK_KEY, None)

    def _all(self) -> Mapping[str, Any]:
        if self._vars is None:
            self._vars = self._make()["vars"]
        return self._vars

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._names or key in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class Lineage(Struct, frozen=True):
    """What a child execution's templates see of the execution that started it:
    ``parent.outputs`` / ``parent.vars`` (its results so far), its vars under ``vars``
    (the child's own win a clash), and ``parents.<task>``: the outputs of the flow
    tasks the child's flow task depends on. Each read only when used."""

    outputs: Callable[[], Mapping[str, Any]]
    vars: Mapping[str, Any]
    parents: Callable[[], Mapping[str, Any]]


def make_context(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    vars_: Mapping[str, Any],
    execution: Mapping[str, Any],
    env: Mapping[str, str],
    fork: Mapping[str, Any] | None = None,
    secret: Callable[[str], str] | None = None,
    lineage: Lineage | None = None,
    results: Callable[[int], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The names a template sees: ``inputs``, ``outputs.<task>.<key>`` (a for_each task's
    outputs are a list, one entry per item), ``vars`` (lazy, see :class:`LazyVars`),
    ``execution``, ``env``, in a for_each item ``fork.value`` and ``fork.index``, and
    with ``secret`` the function ``secret('NAME')`` (``secret`` raises OrdoError saying
    why a secret cannot be had; the template fails with that message); in a child
    execution, what :class:`Lineage` gives; ``results(child_id)``: a child execution's
    ``tasks`` and ``vars``, for ``outputs.<flowtask>.tasks.<task>.<key>`` and
    ``outputs.<flowtask>.vars.<name>``."""
    lazy = LazyVars(vars_, lineage.vars if lineage is not None else None)
    context: dict[str, Any] = {
        "inputs": Scope("inputs", inputs),
        "outputs": Scope(
            "outputs",
            {
                t: Scope(f"outputs.{t}", o, task=t, results=results)
                if isinstance(o, Mapping)
                else o
                for t, o in outputs.items()
            },
        ),
        "vars": lazy,
        "execution": Scope("execution", execution),
        "env": Scope("env", env),
    }
    if fork is not None:
        context["fork"] = Scope("fork", fork)
    if secret is not None:
        context["secret"] = _secret_function(secret)
    if lineage is not None:
        context["parent"] = LazyScope(
            "parent", {"outputs": lineage.outputs, "vars": lambda: lineage.vars}
        )
        context["parents"] = _Deferred("parents", lineage.parents, results)
    lazy.bind(context)
    return context


def _secret_function(lookup: Callable[[str], str]) -> Callable[[Any], str]:
    def secret(name: Any) -> str:
        if not isinstance(name, str):
            raise TemplateError(f"secret() takes a secret's name as a string, got {name!r}")
        try:
            return lookup(name)
        except OrdoError as exc:
            raise TemplateError(str(exc), f"secret('{name}')") from None

    return secret


ANSWERS = ("RUN", "SKIP", "STOP")


def run_if_answer(value: Any) -> tuple[str, str | None]:
    """What a run_if value means: ``(answer, why)``. Booleans mean RUN / SKIP; a string
    is RUN, SKIP or STOP (any case), optionally followed by ``: why``. ValueError for
    anything else."""
    if isinstance(value, bool):
        return ("RUN", None) if value else ("SKIP", "run_if is false")
    if isinstance(value, str):
        head, sep, why = value.partition(":")
        word = head.strip().upper()
        if word in ANSWERS:
            return word, (why.strip() if sep and why.strip() else None)
        if word in ("TRUE", "FALSE"):
            return run_if_answer(word == "TRUE")
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ValueError(f"run_if answered {shown}: expected RUN, SKIP, STOP, true or false")


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with every template string inside it (nested dicts and lists too)
    rendered against ``context``; strings without templates are returned as they are."""
    if isinstance(value, str):
        return _render_string(value, context) if has_template(value) else value
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    """One template string rendered. Whatever goes wrong inside (a Jinja2 error, a
    limit of the sandbox, an AssertionError from a filter, a RecursionError from a macro
    that calls itself, a MemoryError) is a TemplateError naming the text: user content
    never raises anything else into a worker, a scheduler or an API request."""
    from jinja2 import Undefined

    try:
        single = _SINGLE.match(text)
        if single and "{%" not in text:
            result = sandbox.evaluate(_expression(single.group("expr")), context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return _plain(result)
        return sandbox.bounded(_template(text), context)
    except TemplateError:
        raise
    except Exception as exc:  # whatever it is: see the docstring
        raise TemplateError(f"cannot render {_shown(text)}: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """An exception from a template as a short message for users: its kind and text,
    with no object addresses (``at 0x7f...``) and at most 300 characters."""
    if isinstance(exc, RecursionError):
        return "recursion or nesting too deep (a macro that calls itself without end?)"
    if isinstance(exc, MemoryError):
        return "out of memory (the template builds a value too large)"
    if isinstance(exc, sandbox.LimitError):
        return f"over a limit of the sandbox: {exc}"
    from jinja2 import TemplateError as JinjaError

    text = _ADDRESS.sub("", str(exc))
    if len(text) > 300:
        text = text[:297] + "..."
    if isinstance(exc, JinjaError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 200 else repr(text[:197] + "...")


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

    class NamedUndefined(StrictUndefined):
        """Fails with the reference spelled as the user wrote it."""

        def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
            raise _undefined_error(self._undefined_obj, self._undefined_name)

        __str__ = __iter__ = __len__ = __bool__ = __eq__ = __hash__ = _fail_with_undefined_error
        __getattr__ = __getitem__ = __add__ = __radd__ = __int__ = _fail_with_undefined_error
        __float__ = __lt__ = __le__ = __gt__ = __ge__ = __contains__ = _fail_with_undefined_error

    class Sandbox(sandbox.sandbox_class()):  # type: ignore[misc]
        """Names in our mappings win over dict methods: an output called ``items`` or
        ``values`` is that output, not ``dict.items``."""

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, Scope | LazyVars) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

    return Sandbox(undefined=NamedUndefined, autoescape=False, keep_trailing_newline=True)


def _undefined_error(parent: Any, name: Any) -> TemplateError:
    from jinja2.utils import missing

    if parent is missing:
        if name == "secret":
            return TemplateError(
                "secret() is not available here: secrets can be read in a task's fields, "
                "with, env, run_if, for_each and checks, not in what is stored as written "
                "(flow outputs, flow run_if, trigger conditions)",
                "secret",
            )
        known = ", ".join(
            ("inputs", "outputs", "vars", "execution", "env", "fork", "secret", "parent")
        )
        return TemplateError(f"undefined reference '{name}' (known names: {known})", str(name))
    base = getattr(parent, _PATH_KEY, None)
    if base is None:
        text = _ADDRESS.sub("", repr(parent))
        shown = text if len(text) <= 40 else text[:37] + "..."
        return TemplateError(
            f"undefined reference '{name}': the {type(parent).__name__} value {shown} "
            f"has no attribute or item {name!r}",
            str(name),
        )
    reference = f"{base}.{name}"
    keys = [str(k) for k in parent] if isinstance(parent, Mapping) else []
    if base == "outputs":
        return TemplateError(
            f"undefined reference '{reference}': task '{name}' has no outputs "
            f"(tasks with outputs so far: {', '.join(keys) or 'none'})",
            reference,
        )
    import difflib  # only when something is misspelt

    hint = difflib.get_close_matches(str(name), keys, n=1)
    task = getattr(parent, _TASK_KEY, None)
    if isinstance(task, str) and task.startswith("child execution "):
        kind = "task with outputs" if base.endswith(".tasks") else "var"
        tip = f" (did you mean '{base}.{hint[0]}'?)" if hint else ""
        return TemplateError(
            f"undefined reference '{reference}': {task} has no {kind} '{name}' "
            f"(it has: {', '.join(keys) or 'none'}){tip}",
            reference,
        )
    if hint:
        tip = f" (did you mean '{base}.{hint[0]}'?)"
    elif task is not None:
        tip = f": task '{task}' has no output '{name}' (it has: {', '.join(keys) or 'none'})"
    elif keys and base != "env":  # the environment's names are not listed in messages
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


_EXPRESSION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
_SAFE_END = re.compile(r"\|\s*(?:quote|int|float|length|count)\s*(?:\([^()]*\))?\s*$")
_COUNTERS = re.compile(r"\b(?:fork|loop)\s*\.\s*(?:index0?|revindex0?|length)\b")
_DATA_ROOTS = ("inputs", "outputs", "fork", "event", "body")
_EXECUTION_DATA = r"|execution\s*\.\s*(?:inputs|labels)\b"
_BOUND = re.compile(r"\{%-?\s*(?:for\s+([\w\s,]+?)\s+in\b|set\s+([\w\s,]+?)\s*=)")


def unquoted_data(text: str, data_vars: Iterable[str] = ()) -> list[str]:
    """The ``{{ ... }}`` expressions of ``text`` (shell text) that put data from outside
    into it without the ``quote`` filter: expressions reading ``inputs``, ``outputs``,
    ``fork``, ``execution`` (its inputs and labels), a name a ``{% for %}`` or
    ``{% set %}`` binds, or one of ``data_vars`` (``vars.NAME``), and not ending in
    ``| quote`` (or ``| int``, ``| float``, ``| length``, ``| count``, which give a
    number). A cheap scan for a warning, not a proof either way."""
    bound = {
        name.strip()
        for match in _BOUND.finditer(text)
        for group in match.groups()
        if group
        for name in group.split(",")
    }
    words = [*_DATA_ROOTS, *sorted(n for n in bound if n.isidentifier())]
    roots = re.compile(
        r"(?<![.\w])(?:(?:" + "|".join(map(re.escape, words)) + r")\b" + _EXECUTION_DATA + ")"
    )
    var_use = re.compile(r"\bvars\s*(?:\.\s*(\w+)|\[\s*['\"]([^'\"]+)['\"]\s*\])")
    risky_vars = set(data_vars)
    found = []
    for match in _EXPRESSION.finditer(text):
        expression = match.group(1)
        if _SAFE_END.search(expression):
            continue
        expression = _COUNTERS.sub("0", expression)  # fork.index, loop.index: numbers
        used_vars = {a or b for a, b in var_use.findall(expression)}
        if roots.search(expression) or used_vars & risky_vars:
            found.append(match.group(0))
    return found


def data_vars(vars_: Mapping[str, Any]) -> set[str]:
    """The vars whose templates read data from outside (see :func:`unquoted_data`),
    directly or through other vars."""
    codes = {name: " ".join(_code(value)) for name, value in vars_.items()}
    roots = re.compile(r"(?<![.\w])(?:(?:" + "|".join(_DATA_ROOTS) + r")\b" + _EXECUTION_DATA + ")")
    risky = {name for name, code in codes.items() if roots.search(code)}
    grown = True
    while grown:
        grown = False
        for name, code in codes.items():
            if name not in risky and any(re.search(rf"\bvars\s*\.\s*{v}\b", code) for v in risky):
                risky.add(name)
                grown = True
    return risky


def check_syntax(value: Any) -> list[str]:
    """A message (naming the bad template text) for every template inside ``value`` that
    does not parse. Renders nothing."""
    if isinstance(value, str):
        if not has_template(value):
            return []
        from jinja2 import TemplateSyntaxError

        try:
            _environment().parse(value)
        except TemplateSyntaxError as exc:
            return [f"template syntax error in {_shown(value)}: {exc.message}"]
        except Exception as exc:  # nesting too deep for the parser, ...
            return [f"template {_shown(value)} cannot be parsed: {describe(exc)}"]
        return _always_fails(value)
    if isinstance(value, Mapping):
        return [m for v in value.values() for m in check_syntax(v)]
    if isinstance(value, list | tuple):
        return [m for v in value for m in check_syntax(v)]
    return []


_DATA_NAMES = re.compile(r"\b(?:inputs|outputs|vars|execution|env|fork|secret|event|body)\b")


def _always_fails(text: str) -> list[str]:
    """A template that reads no data renders the same every time: render it now (in the
    bounded sandbox), so one that can only fail (``{{ 'x' | truncate(-1) }}``, a macro
    calling itself, ``{{ 'x' * 10**10 }}``) is reported before it runs. A missing name is
    left to run time, which says the same with the execution's context."""
    if _DATA_NAMES.search(text):
        return []
    try:
        render(text, {})
    except TemplateError as exc:
        if exc.reference is None:
            return [f"{exc} (it reads no data, so it fails every time)"]
    return []


def referenced_tasks(values: Any, vars_: Mapping[str, Any], every: Iterable[str] = ()) -> set[str]:
    """Task ids whose outputs ``values`` may read: ``outputs.<id>`` and
    ``outputs['<id>']`` inside ``{{ }}`` / ``{% %}``, directly or through the vars they
    name (and the vars those name). A cheap scan, not a parse: a use it cannot read
    (``outputs[name]``, ``{{ outputs }}``) gives all of ``every`` (the flow's task ids)."""
    found: set[str] = set()
    codes = list(_code(values))
    seen_vars: set[str] = set()
    while codes:
        code = codes.pop()
        names = _static_names(_VAR_REF, "vars", code)
        for name in (set(vars_) if names is None else names) - seen_vars:
            seen_vars.add(name)
            codes.extend(_code(vars_.get(name)))
        tasks = _static_names(_OUTPUT_REF, "outputs", code)
        if tasks is None:
            return found | set(every)
        found |= tasks
    return found


def _static_names(pattern: re.Pattern[str], word: str, code: str) -> set[str] | None:
    """The names read after ``word`` in ``code``; None if ``word`` is also used in a way
    the pattern cannot read."""
    matches = pattern.findall(code)
    if len(re.findall(rf"(?<!\.)\b{word}\b", code)) > len(matches):
        return None
    return {dotted or quoted for dotted, quoted in matches}


def _code(value: Any) -> Iterator[str]:
    """The template code (inside the markers) of every template string in ``value``."""
    for text in _strings(value):
        yield " ".join(_BLOCKS.findall(text))


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
