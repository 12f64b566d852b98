"""A warm host process for python tasks (run as a script; standard library only).

Reads one JSON request per line on its original standard input, runs the function or
script with the task's environment and working directory, then flushes, writes an end
marker on fd 1 and fd 2 (so the parent knows every line of this task has arrived) and a
JSON reply on the reply descriptor named by ``argv[1]``.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import resource
import runpy
import sys
import traceback
from typing import Any

MARKER = "\x1eORDO-END"
_HOST_FILES = (os.path.abspath(__file__), "runpy.py", "<frozen runpy>")
_mtimes: dict[str, float] = {}


def main() -> None:
    reply_fd = int(sys.argv[1])
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    replies = os.fdopen(reply_fd, "wb", buffering=0)
    base = (dict(os.environ), os.getcwd(), list(sys.path))
    for line in requests:
        request = json.loads(line)
        reply = handle(request, base)
        sys.stdout.flush()
        sys.stderr.flush()
        marker = f"{MARKER} {request['seq']}\n".encode()
        os.write(1, marker)
        os.write(2, marker)
        replies.write((json.dumps(reply) + "\n").encode())


def handle(request: dict[str, Any], base: tuple[dict[str, str], str, list[str]]) -> dict[str, Any]:
    environ, cwd, path = base
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = [request["base_dir"], *(p for p in path if p != request["base_dir"])]
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        os.chdir(request["cwd"])
        reply = execute(request)
    except BaseException as exc:  # the task's failure is the reply, never the host's end
        reply = failure(exc)
    finally:
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
    after = resource.getrusage(resource.RUSAGE_SELF)
    reply["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    reply["rss"] = after.ru_maxrss
    return reply


def execute(request: dict[str, Any]) -> dict[str, Any]:
    with_ = request["with"]
    this = sys.modules.get("ordo.this")
    if this is None:
        try:
            this = importlib.import_module("ordo.this")
        except ImportError:
            this = None
    if this is not None:
        this.inputs._set(with_)
    if request.get("script"):
        return run_script(request["script"])
    func = load_function(request["function"])
    result = func(**with_)
    if result is None:
        return {"ok": True, "result": {}}
    if not isinstance(result, dict):
        return {
            "ok": False,
            "error": f"function {request['function']} returned "
            f"{type(result).__name__}, expected a dict of outputs or None",
        }
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return {
            "ok": False,
            "error": f"function {request['function']} returned outputs that are not JSON: {exc}",
        }
    return {"ok": True, "result": result}


def run_script(script: str) -> dict[str, Any]:
    if not os.path.isfile(script):
        return {"ok": False, "error": f"script not found: {script}"}
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code in (None, 0):
            return {"ok": True, "result": {}}
        if isinstance(exc.code, int):
            return {"ok": False, "exit_code": exc.code, "error": f"exit code {exc.code}"}
        print(exc.code, file=sys.stderr)
        return {"ok": False, "exit_code": 1, "error": str(exc.code)}
    return {"ok": True, "result": {}}


class LoadError(Exception):
    pass


def load_function(target: str) -> Any:
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        module = fresh(module)
    except Exception as exc:
        raise LoadError(
            f"cannot import module '{module_name}' (from function '{target}'): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(func_name, names, n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise LoadError(f"module '{module_name}' has no function '{func_name}'{tip}")
    return func


def fresh(module: Any) -> Any:
    """The module, reloaded if its file changed since it was imported here."""
    path = getattr(module, "__file__", None)
    if not path:
        return module
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return module
    known = _mtimes.get(path)
    _mtimes[path] = mtime
    if known is not None and known != mtime:
        return importlib.reload(module)
    return module


def failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, LoadError):
        return {"ok": False, "error": str(exc)}
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0:
            return {"ok": True, "result": {}}
        return {"ok": False, "exit_code": code, "error": f"exit code {code}"}
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(_HOST_FILES)
    ]
    lines = [
        "Traceback (most recent call last):\n",
        *traceback.format_list(frames),
        *traceback.format_exception_only(type(exc), exc),
    ]
    sys.stderr.write("".join(lines))
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return {"ok": False, "error": last}


if __name__ == "__main__":
    main()
