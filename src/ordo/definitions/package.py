"""Packages: a folder of scripts becomes a flow whose tasks are the scripts, in name order.

``*.py`` runs as a python script (as a handler when it defines ``handler``), ``*.sql`` on
the package's connection, ``*.sh`` with bash; a file of any other type becomes a task
run that ends SKIPPED with reason "no handler for .xyz". Hidden files, ``__pycache__``,
sub-folders, ``config.json`` and ``flow.yaml`` are not tasks.

``config.json``, when present, is parsed and given to every script: handlers receive it
as ``inputs["config"]`` (functions as ``config=``), scripts find its path in
``$ORDO_CONFIG``. ``flow.yaml`` (optional) sets ``id`` (default: the folder's name),
``namespace``, ``description``, ``labels``, the ``connection`` of ``.sql`` scripts,
``defaults`` (retry, timeout, pre and post checks) or ``retry`` (every script's),
``timeout`` (the execution's), and, as in a flow file, ``triggers``, ``notify``,
``active``, ``allow_manual``, ``concurrency`` and ``inputs``. Inputs reach ``.py``
scripts as ``ordo.this.inputs`` (handlers: ``inputs``), ``.sh`` scripts as
``$ORDO_INPUT_<NAME>`` and ``.sql`` scripts as bound parameters ``:name``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ordo.definitions.bounded import load_json
from ordo.definitions.document import DocumentChecker, load_document
from ordo.definitions.files import FILE_LIMITS, FileLimits, Unreadable, read_regular
from ordo.definitions.flowfile import FlowChecker
from ordo.definitions.triggers import read_notify, read_triggers
from ordo.errors import DefinitionError, Problem
from ordo.model import Flow, InputSpec, RetryPolicy, Task, Trigger

META_FILES = ("flow.yaml", "flow.yml")
CONFIG_FILE = "config.json"
PACKAGE_KEYS = (
    "id",
    "namespace",
    "description",
    "labels",
    "connection",
    "defaults",
    "retry",
    "timeout",
    "inputs",
    "triggers",
    "notify",
    "active",
    "allow_manual",
    "concurrency",
)
#: The input a trigger type passes beside the declared ones (as in a flow file).
_PASSED = {"schedule": "schedule", "event": "event", "webhook": "body"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def scripts(folder: str) -> list[str]:
    """The folder's task files, by name."""
    names = []
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if name.startswith((".", "_")) or name in (*META_FILES, CONFIG_FILE):
            continue
        if os.path.isfile(full) and not name.endswith((".pyc", "~")):
            names.append(name)
    return names


def package_files(folder: str) -> list[str]:
    """Every file of the package that makes its revision: ``flow.yaml``, ``config.json``
    and the task files."""
    names = [n for n in (*META_FILES, CONFIG_FILE) if os.path.isfile(os.path.join(folder, n))]
    return [*names, *scripts(folder)]


def package_hash(folder: str, limit: int = FILE_LIMITS.referenced) -> str:
    """Changes whenever a task file, ``config.json`` or ``flow.yaml`` changes."""
    digest = hashlib.sha256()
    for name in package_files(folder):
        digest.update(name.encode() + b"\0")
        try:
            content = read_regular(os.path.join(folder, name), limit)
        except Unreadable:
            content = b"-"  # refused when the package is prepared
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def load_package(path: str | os.PathLike[str], limits: FileLimits = FILE_LIMITS) -> Flow:
    """The flow of a package folder; DefinitionError names every problem."""
    folder = os.path.abspath(path)
    meta, problems = _meta(folder, limits.flow)
    config_path = os.path.join(folder, CONFIG_FILE)
    config: Any = None
    if os.path.isfile(config_path):
        try:
            config = load_json(read_regular(config_path, limits.referenced), config_path)
        except Unreadable as exc:
            problems.append(Problem(f"cannot read: {exc.reason}", config_path))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    names = scripts(folder)
    if not names:
        problems.append(Problem("the folder has no scripts (.py, .sql, .sh) to run", folder))
    connection = meta.get("connection")
    if any(n.endswith(".sql") for n in names) and not connection:
        problems.append(
            Problem(
                "a package with .sql scripts needs their connection: set connection: NAME "
                "in flow.yaml",
                os.path.join(folder, META_FILES[0]),
            )
        )
    if problems:
        raise DefinitionError(problems)
    tasks: list[Task] = []
    for name in names:
        task = _task(name, meta, config, config_path if config is not None else None)
        task = _given_inputs(task, meta.get("inputs", ()), meta.get("triggers", ()))
        if tasks:
            task = msgspec.structs.replace(task, depends_on=(tasks[-1].id,))
        tasks.append(task)
    return Flow(
        id=meta.get("id") or _safe(os.path.basename(folder)) or "package",
        namespace=meta.get("namespace") or "default",
        description=meta.get("description") or f"the scripts of {folder}",
        labels=meta.get("labels") or {},
        tasks=tuple(tasks),
        inputs=tuple(meta.get("inputs") or ()),
        sequential=True,
        timeout=meta.get("flow_timeout"),
        concurrency=meta.get("concurrency"),
        triggers=tuple(meta.get("triggers") or ()),
        notify=tuple(meta.get("notify") or ()),
        active=meta.get("active", True),
        allow_manual=meta.get("allow_manual", True),
        base_dir=folder,
        path=folder,
    )


def _given_inputs(task: Task, inputs: Sequence[InputSpec], triggers: Sequence[Trigger]) -> Task:
    """The package's inputs (and what its triggers pass: ``event``, ``body``,
    ``schedule``) given to a script: to ``.py`` as ``with`` values (``this.inputs``, a
    handler's ``inputs``), to ``.sh`` as ``$ORDO_INPUT_<NAME>`` (JSON text unless a
    string; empty when none) and to ``.sql`` as bound parameters ``:name``."""
    names = [spec.name for spec in inputs]
    names += [_PASSED[t.type] for t in triggers if _PASSED[t.type] not in names]
    if not names or task.run_if is not None:
        return task
    kinds = {spec.name: spec.type for spec in inputs}
    # inputs.get: what a trigger passes is absent from a run started by hand
    value = {name: f"inputs.get('{name}')" for name in names}
    if task.type == "python":
        given = {name: f"{{{{ {value[name]} }}}}" for name in names}
        return msgspec.structs.replace(task, with_={**given, **task.with_})
    if task.type == "sql":
        params = {name: f"{{{{ {value[name]} }}}}" for name in names}
        return msgspec.structs.replace(task, spec={**task.spec, "params": params})
    json_text = {name: "" if kinds.get(name) == "string" else " | tojson" for name in names}
    env = {
        f"ORDO_INPUT_{name.upper()}": (
            f"{{{{ '' if {value[name]} is none else {value[name]}{json_text[name]} }}}}"
        )
        for name in names
    }
    return msgspec.structs.replace(task, env={**task.env, **env})


def _task(name: str, meta: Mapping[str, Any], config: Any, config_path: str | None) -> Task:
    extension = os.path.splitext(name)[1].lower()
    env = {"ORDO_CONFIG": config_path} if config_path else {}
    with_ = {"config": config} if config_path else {}
    common: dict[str, Any] = {
        "id": _safe(name),
        "retry": meta.get("retry") or RetryPolicy(),
        "timeout": meta.get("timeout"),
        "env": env,
        "pre_checks": meta.get("pre_checks", ()),
        "post_checks": meta.get("post_checks", ()),
    }
    if extension == ".py":
        return Task(type="python", spec={"script": name}, with_=with_, **common)
    if extension == ".sql":
        spec = {"connection": meta["connection"], "script": name}  # read when it runs
        return Task(type="sql", spec=spec, **common)
    if extension == ".sh":
        return Task(type="shell", spec={"command": ["bash", name]}, **common)
    what = extension or "files without an extension"
    return Task(
        type="shell", spec={"command": "true"}, run_if=f"SKIP: no handler for {what}", **common
    )


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("_")


def _meta(folder: str, limit: int) -> tuple[dict[str, Any], list[Problem]]:
    """``flow.yaml``'s settings, checked."""
    path = next(
        (os.path.join(folder, n) for n in META_FILES if os.path.isfile(os.path.join(folder, n))),
        None,
    )
    if path is None:
        return {}, []
    try:
        text = read_regular(path, limit).decode("utf-8")
    except Unreadable as exc:
        return {}, [Problem(f"cannot read: {exc.reason}", path)]
    except UnicodeDecodeError as exc:
        return {}, [Problem(f"not UTF-8 text (byte {exc.start})", path)]
    try:
        root = load_document(text, path, "yaml")
    except DefinitionError as exc:
        return {}, list(exc.problems)
    if root is None:
        return {}, []
    checker = _MetaChecker(path)
    if not isinstance(root, Mapping):
        checker.expect("a mapping of package settings", "", root, None, None)
        return {}, checker.problems
    return checker.meta(root), checker.problems


class _MetaChecker(DocumentChecker):
    def meta(self, root: Mapping[str, Any]) -> dict[str, Any]:
        self.keys(root, PACKAGE_KEYS, "")
        flow_checker = FlowChecker(self.path)
        defaults = flow_checker.defaults(root, "default")
        retry = flow_checker.retry(root, "")
        if retry and defaults.retry:
            flow_checker.problem(
                "give retry or defaults.retry, not both (both are every script's)",
                "retry",
                root,
                "retry",
            )
        inputs = flow_checker.inputs(root)
        concurrency = flow_checker.flow_concurrency(root)
        self.problems.extend(flow_checker.problems)
        for spec in inputs:
            if spec.name == "config":
                self.problem(
                    "an input of a package cannot be named 'config': handlers get "
                    "config.json as inputs['config']",
                    "inputs.config",
                    root["inputs"],
                    ("key", "config"),
                )
        labels = self.get(root, "labels", "scalar_map", "") or {}
        return {
            "id": self.identifier(root, "id", "id"),
            "namespace": self.identifier(root, "namespace", "namespace"),
            "description": self.get(root, "description", "str", "", ""),
            "labels": {k: str(v) for k, v in labels.items()},
            "connection": self.get(root, "connection", "str", ""),
            "retry": RetryPolicy.from_dict(retry or defaults.retry),
            "timeout": defaults.timeout,
            "flow_timeout": self.get(root, "timeout", "duration", ""),
            "pre_checks": defaults.pre_checks,
            "post_checks": defaults.post_checks,
            "inputs": inputs,
            "concurrency": concurrency,
            "triggers": read_triggers(self, root),
            "notify": read_notify(self, root),
            "active": bool(self.get(root, "active", "bool", "", True)),
            "allow_manual": bool(self.get(root, "allow_manual", "bool", "", True)),
        }
