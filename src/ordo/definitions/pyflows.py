"""Flows written in Python (``@flow`` functions, see :mod:`ordo.pyflow`), read from
their file without running it.

The file is parsed (Python's own parser): every function decorated with ``@flow`` (or
``@ordo.flow``, ``@flow(...)``) is a flow. Its decorator's options must be literals;
its parameters are the flow's inputs (``str`` -> string, ``int``, ``float``, ``bool``,
anything else json; a default makes it optional); its ``@task`` functions are listed for
``ordo plan``. The flow is checked exactly as a flow file holding the same keys would
be: one python task, named for the function, that calls it with the inputs, and whose
returned dict is the flow's outputs. ``file.py`` names the file's only flow,
``file.py:name`` one of several.

Before a flow of a file is stored, the file is imported once in a separate Python
process, so that an import error (a missing module, a name error at the top) is
reported at its line, as a syntax error is, instead of failing the first run.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import Struct

from ordo.errors import DefinitionError, Problem
from ordo.model import Flow, Task

#: Annotations that give an input's type (anything else, or none: json).
INPUT_TYPES = {"str": "string", "int": "int", "float": "float", "bool": "bool"}
#: ``@flow`` options and the flow-file keys they stand for.
FLOW_OPTIONS = (
    "id",
    "namespace",
    "description",
    "labels",
    "triggers",
    "notify",
    "timeout",
    "concurrency",
    "retry",
    "queue",
    "active",
    "allow_manual",
)
TASK_OPTIONS = ("name", "retry", "timeout", "queue")
_ID = re.compile(r"[A-Za-z0-9_.-]+")
#: How long importing a flow's file may take when it is checked (seconds).
IMPORT_TIMEOUT = 60.0


class PyFlow(Struct, frozen=True):
    """One ``@flow`` of a file: the function's name and the flow it defines."""

    function: str
    flow: Flow


def read(path: str, text: str) -> list[PyFlow]:
    """Every ``@flow`` of the file ``path`` holding ``text``; DefinitionError names every
    problem (a syntax error, an option that is not a literal, a bad input, what a flow
    file with the same keys would be told)."""
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        where = Problem(f"Python syntax error: {exc.msg}", path, exc.lineno, exc.offset)
        raise DefinitionError([where]) from None
    module = os.path.splitext(os.path.basename(path))[0]
    problems: list[Problem] = []
    steps = [_task(node, module, path, problems) for node in _functions(tree, "task")]
    folder = os.path.dirname(os.path.abspath(path))
    for name in local_imports(path, text):  # @task functions of the modules beside it
        beside = os.path.join(folder, name)
        dotted = name.removesuffix("/__init__.py").removesuffix(".py").replace("/", ".")
        try:
            with open(beside, encoding="utf-8") as f:
                found_tree = ast.parse(f.read(), filename=beside)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue  # its import reports it
        steps += [_task(n, dotted, beside, problems) for n in _functions(found_tree, "task")]
    found = []
    for node in _functions(tree, "flow"):
        made = _flow(node, module, path, steps, problems)
        if made is not None:
            found.append(made)
    if problems:
        raise DefinitionError(problems)
    if not found and _has_handler(tree):
        return [PyFlow("handler", _script(tree, module, path))]
    if not found:
        why = (
            "no @flow function in this file (decorate one with @ordo.flow), and no "
            "handler(system, this, inputs) to run as a script"
        )
        raise DefinitionError([Problem(why, path)])
    seen: dict[str, PyFlow] = {}
    for item in found:
        other = seen.get(item.flow.key)
        if other is not None:
            raise DefinitionError(
                [
                    Problem(
                        f"two @flow functions define flow {item.flow.key}: "
                        f"{other.function} and {item.function}",
                        path,
                    )
                ]
            )
        seen[item.flow.key] = item
    return found


def flow_functions(text: str) -> list[str] | None:
    """The names of a file's ``@flow`` functions; None when it does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return [node.name for node in _functions(tree, "flow")]


def choose(path: str, flows: list[PyFlow], name: str | None) -> Flow:
    """The flow ``name`` names (a function's name or the flow's id), or the file's
    only one."""
    if name is None:
        if len(flows) > 1:
            names = ", ".join(f.function for f in flows)
            raise DefinitionError(
                [
                    Problem(
                        f"this file has {len(flows)} @flow functions ({names}): name one as "
                        f"{os.path.basename(path)}:NAME",
                        path,
                    )
                ]
            )
        return flows[0].flow
    for item in flows:
        if name in (item.function, item.flow.id):
            return item.flow
    names = ", ".join(f.function for f in flows)
    raise DefinitionError(
        [Problem(f"no @flow named {name!r} in this file (it has: {names})", path)]
    )


def check_import(path: str) -> None:
    """Import the file once in a separate Python process (its folder first on the
    path): an error its import raises is a DefinitionError at its line."""
    folder, name = os.path.split(os.path.abspath(path))
    module = os.path.splitext(name)[0]
    code = (
        "import sys, traceback\n"
        f"sys.path.insert(0, {folder!r})\n"
        "try:\n"
        f"    __import__({module!r})\n"
        "except BaseException as exc:\n"
        "    line = None\n"
        "    for frame in traceback.extract_tb(exc.__traceback__):\n"
        f"        if frame.filename == {os.path.abspath(path)!r}:\n"
        "            line = frame.lineno\n"
        "    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:\n"
        "        line = line or exc.lineno\n"
        "    message = traceback.format_exception_only(type(exc), exc)[-1].strip()\n"
        "    print(f'{line or 0}\\t{message}')\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        why = f"importing it took longer than {IMPORT_TIMEOUT:g}s (does it run work at import?)"
        raise DefinitionError([Problem(why, path)]) from None
    if done.returncode == 3:
        line_text, _, message = done.stdout.strip().rpartition("\n")[-1].partition("\t")
        line = int(line_text) if line_text.isdigit() and int(line_text) else None
        raise DefinitionError([Problem(f"importing it fails: {message}", path, line)])


def local_imports(path: str, text: str) -> list[str]:
    """The modules beside ``path`` its code imports, directly or through each other
    (relative paths: ``steps.py``, ``pkg/__init__.py``): a change to one of them is a new
    revision of its flows."""
    folder = os.path.dirname(os.path.abspath(path))
    found: set[str] = set()
    todo = [text]
    while todo:
        try:
            tree = ast.parse(todo.pop())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
                    full = os.path.join(folder, candidate)
                    if candidate not in found and os.path.isfile(full):
                        found.add(candidate)
                        try:
                            with open(full, encoding="utf-8") as f:
                                todo.append(f.read())
                        except (OSError, UnicodeDecodeError):
                            pass
    return sorted(found)


# -- reading one function -----------------------------------------------------------
def _functions(tree: ast.Module, decorator: str) -> list[ast.FunctionDef]:
    """The module's top-level functions decorated with ``decorator``."""
    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and _decorator(node, decorator) is not None
    ]


def _decorator(node: ast.FunctionDef, name: str) -> ast.expr | None:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Name) and target.id == name:
            return deco
        if isinstance(target, ast.Attribute) and target.attr == name:
            return deco
    return None


def _options(
    node: ast.FunctionDef, name: str, allowed: tuple[str, ...], path: str, problems: list[Problem]
) -> dict[str, Any]:
    deco = _decorator(node, name)
    if not isinstance(deco, ast.Call):
        return {}
    found: dict[str, Any] = {}
    for arg in deco.args:
        problems.append(
            Problem(f"@{name} of {node.name}: give options by name (id=...)", path, arg.lineno)
        )
    for keyword in deco.keywords:
        if keyword.arg is None or keyword.arg not in allowed:
            known = ", ".join(allowed)
            problems.append(
                Problem(
                    f"@{name} of {node.name}: unknown option {keyword.arg!r} (known: {known})",
                    path,
                    keyword.value.lineno,
                )
            )
            continue
        try:
            found[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            problems.append(
                Problem(
                    f"@{name} of {node.name}: option {keyword.arg!r} must be written as a "
                    "literal (a string, number, list or dict), not computed",
                    path,
                    keyword.value.lineno,
                )
            )
    return found


def _has_handler(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == "handler" for n in tree.body)


def _script(tree: ast.Module, module: str, path: str) -> Flow:
    """A file that defines ``handler`` and no ``@flow``, run directly: an execution of
    kind SCRIPT with one task, the handler (named for the file)."""
    from ordo.definitions.flowfile import FlowChecker

    name = module if _ID.fullmatch(module) else "script"
    root = {
        "id": name,
        "description": (ast.get_docstring(tree) or "").split("\n\n")[0].strip(),
        "tasks": [{"id": name, "type": "python", "handler": f"{module}:handler"}],
    }
    checker = FlowChecker(path)
    flow = checker.flow(root)
    if flow is None or checker.problems:
        raise DefinitionError(checker.problems or [Problem("not a script ordo can run", path)])
    return msgspec.structs.replace(flow, kind="SCRIPT")


def _task(node: ast.FunctionDef, module: str, path: str, problems: list[Problem]) -> dict[str, Any]:
    """A ``@task`` function: its name, ``module:function`` and options."""
    options = _options(node, "task", TASK_OPTIONS, path, problems)
    return {
        "name": options.get("name", node.name),
        "function": f"{module}:{node.name}",
        "options": {k: options[k] for k in ("retry", "timeout", "queue") if k in options},
    }


def _inputs(node: ast.FunctionDef, path: str, problems: list[Problem]) -> dict[str, Any]:
    """The function's parameters as a flow file's ``inputs:``."""
    args = node.args
    for extra, what in ((args.vararg, "*"), (args.kwarg, "**")):
        if extra is not None:
            problems.append(
                Problem(
                    f"@flow {node.name}: a flow's parameters are its inputs, each named: "
                    f"{what}{extra.arg} cannot be one",
                    path,
                    extra.lineno,
                )
            )
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    pairs = [
        *zip(positional, defaults, strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    inputs: dict[str, Any] = {}
    for arg, default in pairs:
        spec: dict[str, Any] = {"type": _input_type(arg.annotation)}
        if default is None:
            spec["required"] = True
        else:
            try:
                spec["default"] = ast.literal_eval(default)
            except ValueError:
                problems.append(
                    Problem(
                        f"@flow {node.name}: the default of {arg.arg!r} must be a literal",
                        path,
                        default.lineno,
                    )
                )
        inputs[arg.arg] = spec
    return inputs


def _input_type(annotation: ast.expr | None) -> str:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        text = annotation.value
    elif isinstance(annotation, ast.Name):
        text = annotation.id
    elif isinstance(annotation, ast.Attribute):
        text = annotation.attr
    else:
        return "json"
    return INPUT_TYPES.get(text.strip(), "json")


def _flow(
    node: ast.FunctionDef,
    module: str,
    path: str,
    steps: list[dict[str, Any]],
    problems: list[Problem],
) -> PyFlow | None:
    from ordo.definitions.flowfile import FlowChecker

    options = _options(node, "flow", FLOW_OPTIONS, path, problems)
    inputs = _inputs(node, path, problems)
    doc = ast.get_docstring(node) or ""
    task: dict[str, Any] = {
        "id": node.name,
        "type": "python",
        "function": f"{module}:{node.name}",
        "with": {name: "{{ inputs.%s }}" % name for name in inputs},  # noqa: UP031
    }
    if "retry" in options:
        task["retry"] = options.pop("retry")
    root: dict[str, Any] = {
        "id": options.pop("id", node.name),
        "description": options.pop("description", doc.split("\n\n")[0].strip()),
        **options,
        "tasks": [task],
    }
    if inputs:
        root["inputs"] = inputs
    checker = FlowChecker(path)
    flow = checker.flow(root)
    for p in checker.problems:
        problems.append(msgspec.structs.replace(p, line=p.line or node.lineno))
    if flow is None or checker.problems:
        return None
    step_tasks: tuple[Task, ...] = ()
    if steps:  # each @task as the python task its calls are, checked as such
        listed = [
            {"id": s["name"], "type": "python", "function": s["function"], **s["options"]}
            for s in steps
        ]
        inner = FlowChecker(path)
        built = inner.flow({"id": flow.id, "tasks": listed})
        for p in inner.problems:
            problems.append(msgspec.structs.replace(p, line=p.line or node.lineno))
        if built is None or inner.problems:
            return None
        step_tasks = tuple(
            msgspec.structs.replace(t, spec={**t.spec, "step": True}) for t in built.tasks
        )
    main = flow.tasks[0]
    spec: Mapping[str, Any] = {**main.spec, "flow_function": True}
    made = msgspec.structs.replace(
        flow,
        tasks=(msgspec.structs.replace(main, spec=spec, line=node.lineno),),
        python=f"{module}:{node.name}",
        steps=step_tasks,
    )
    return PyFlow(node.name, made)
