"""Executioner checks and ``dependency_plugins``.

A plugin is a Python file named in a config's ``dependency_plugins`` (a path, or
``{"name": ..., "path": ...}``, relative to ``working_dir``). It registers, at module
level, any of:

- ``CHECKS``: ``{name: function}``; a check named so in ``pre_checks``/``post_checks``
  calls ``function(**params)``: a truthy value passes, ``(ok, message)`` says both,
  raising fails.
- ``DEPENDENCY_TYPES``: ``{name: function}``; a job's ``dependencies`` entry
  ``{"type": name, ...}`` calls ``function(**the other keys)`` before the job runs:
  true = satisfied, false = not yet (asked again every ``poll_interval`` seconds for
  at most ``max_wait``), raising fails the job.
- ``PLUGIN_CLASS`` (the Executioner's own shape): a dependency type named after the
  entry's ``name`` (else the file's name): ``PLUGIN_CLASS(params).check()``.

Every plugin is imported once when a run starts (a file that cannot be imported stops
the run, naming it); each check and dependency then runs as a command check of its job:
``python -m ordo.cli.executioner_plugins check|depend NAME PAYLOAD`` in ``working_dir``,
the payload being base64 JSON (no quoting, no template markers). This module imports only the
standard library, so that command starts fast.
"""

from __future__ import annotations

import base64
import difflib
import glob
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from msgspec import Struct, field


def check_file_exists(path: str) -> bool:
    """The Executioner's built-in: ``path`` is a file."""
    return os.path.isfile(path)


def check_no_ora_errors(log_file: str) -> bool:
    """The Executioner's built-in: some file matches the glob and none holds ``ORA-``."""
    found = glob.glob(log_file)
    return bool(found) and not any(_holds(f, ("ORA-",)) for f in found)


def check_no_ora_or_sp2_errors(log_file: str) -> bool:
    """The Executioner's built-in: the file exists and holds neither ``ORA-`` nor ``SP2-``."""
    return os.path.isfile(log_file) and not _holds(log_file, ("ORA-", "SP2-"))


def _holds(path: str, marks: tuple[str, ...]) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(m in line for line in f for m in marks)
    except OSError:
        return True  # unreadable: fails, as in the engine


BUILT_IN: Mapping[str, Callable[..., Any]] = {
    "check_file_exists": check_file_exists,
    "check_no_ora_errors": check_no_ora_errors,
    "check_no_ora_or_sp2_errors": check_no_ora_or_sp2_errors,
}


class PluginError(Exception):
    """A plugin that cannot be imported or registers something unusable; the message
    names the file."""


class Registry(Struct):
    """What the plugins registered: checks and dependency types, and which file each
    came from."""

    checks: dict[str, Callable[..., Any]] = field(default_factory=lambda: dict(BUILT_IN))
    types: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


def load_plugins(plugins: Sequence[tuple[str, str]]) -> Registry:
    """Import each ``(name, absolute path)`` and gather what it registers; PluginError
    names the file that cannot be imported or whose registration is wrong."""
    registry = Registry()
    for n, (name, path) in enumerate(plugins):
        module = _import(name, path, n)
        checks = _table(module, "CHECKS", path)
        types = _table(module, "DEPENDENCY_TYPES", path)
        for check, function in checks.items():
            if check in BUILT_IN:
                raise PluginError(f"{path}: CHECKS: '{check}' is a built-in check; rename yours")
            _claim(registry, f"check '{check}'", path)
            registry.checks[check] = function
        for kind, function in types.items():
            _claim(registry, f"dependency type '{kind}'", path)
            registry.types[kind] = _calling(function)
        plugin_class = getattr(module, "PLUGIN_CLASS", None)
        if plugin_class is not None:
            if not callable(plugin_class):
                raise PluginError(f"{path}: PLUGIN_CLASS must be a class, found {plugin_class!r}")
            _claim(registry, f"dependency type '{name}'", path)
            registry.types[name] = _instance(plugin_class)
    return registry


def _import(name: str, path: str, n: int) -> Any:
    if not os.path.isfile(path):
        raise PluginError(f"{path}: dependency plugin not found (no such file)")
    spec = importlib.util.spec_from_file_location(f"ordo_executioner_plugin_{n}_{name}", path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # its helper modules beside it
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # user code: any failure is reported
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(f"{path}: import failed: {_said(exc)}") from None
    return module


def _table(module: Any, key: str, path: str) -> dict[str, Callable[..., Any]]:
    value = getattr(module, key, None)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and callable(v) for k, v in value.items()
    ):
        raise PluginError(f"{path}: {key} must map names to functions")
    return dict(value)


def _claim(registry: Registry, what: str, path: str) -> None:
    if what in registry.origin:
        raise PluginError(f"{path}: {what} is registered by {registry.origin[what]} already")
    registry.origin[what] = path


def _calling(function: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda params: function(**params)


def _instance(plugin_class: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda params: plugin_class(params).check()


def _decode(word: str) -> dict[str, Any]:
    value = json.loads(base64.urlsafe_b64decode(word.encode()))
    assert isinstance(value, dict)
    return value


def _said(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _call_text(name: str, params: Mapping[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def run_check(registry: Registry, name: str, params: dict[str, Any]) -> tuple[bool, str]:
    """Call check ``name`` with ``params``: whether it passed and what it said."""
    function = registry.checks.get(name)
    if function is None:
        hint = difflib.get_close_matches(name, list(registry.checks), n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        return False, f"unknown check '{name}'{tip}; known: {', '.join(sorted(registry.checks))}"
    try:
        value = function(**params)
    except Exception as exc:  # a check that raises fails
        return False, _said(exc)
    if isinstance(value, tuple) and len(value) == 2:
        return bool(value[0]), str(value[1])
    return bool(value), "returned true" if value else f"returned {value!r}"


def wait_for(
    registry: Registry,
    kind: str,
    params: dict[str, Any],
    poll: float,
    max_wait: float,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    """Ask dependency type ``kind`` until it answers true (satisfied), raises, or
    ``max_wait`` seconds pass: whether it was satisfied and why not."""
    resolver = registry.types.get(kind)
    shown = _call_text(kind, params)
    if resolver is None:
        known = ", ".join(sorted(registry.types)) or "none"
        return False, (
            f"dependency type '{kind}' is not registered by any plugin (registered: {known})"
        )
    end = now() + max_wait
    asked = 0
    while True:
        try:
            value = resolver(params)
        except Exception as exc:  # a resolver that raises fails the job
            return False, f"dependency {shown} failed: {_said(exc)}"
        asked += 1
        if value:
            return True, f"dependency {shown} satisfied"
        if now() + poll > end:
            return False, f"dependency {shown} not satisfied after {max_wait:g}s ({asked} looks)"
        if asked == 1:
            say(f"dependency {shown} not satisfied yet: asking every {poll:g}s")
        sleep(poll)


def main(argv: Sequence[str] | None = None) -> int:
    """``check NAME PAYLOAD`` or ``depend NAME PAYLOAD`` (the name is for the reader):
    exit 0 when it passed, 1 when not; the last line printed says why."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] not in ("check", "depend"):
        usage = "usage: python -m ordo.cli.executioner_plugins check|depend NAME PAYLOAD"
        print(usage, file=sys.stderr)
        return 2
    payload = _decode(args[2])
    try:
        registry = load_plugins([(str(n), str(p)) for n, p in payload.get("plugins", ())])
    except PluginError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    params = dict(payload.get("params") or {})
    if args[0] == "check":
        ok, message = run_check(registry, str(payload["name"]), params)
        shown = _call_text(str(payload["name"]), params)
        print(f"{shown}: {message}" if not ok else f"{shown}: passed ({message})")
        return 0 if ok else 1
    ok, message = wait_for(
        registry,
        str(payload["type"]),
        params,
        float(payload["poll_interval"]),
        float(payload["max_wait"]),
        lambda line: print(line, flush=True),
    )
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
