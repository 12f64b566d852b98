"""A warm host process for python tasks (loaded by path; standard library only).

Started by :mod:`ordo.runners.python` as ``python -c BOOT pyhost.py REPLY_FD ORDO_ROOT
CALL_FD ANSWER_FD`` in its own session (BOOT loads this file as a module, so its
bytecode is cached, and calls :func:`main`); a task's calls into ordo (``this.flow``,
``this.connect``) go out on CALL_FD and their answers come back on ANSWER_FD. It reads
one JSON request per line on its original standard input and runs the function, handler
or script with the task's environment, working directory and import path; then
flushes Python's and C's buffers and writes a JSON reply line on ``REPLY_FD``: every
line the task wrote to fd 1 and 2 is in those pipes before its reply is in its own, so
the parent reads them to their end once the reply has come. A request marked
``queued`` was sent while the one before it ran: a :data:`NEXT` line on fd 1 and 2 says
where the lines of the one before end, and it is not run (:data:`NOT_RUN`) when the one
before failed (unless its request says ``goes_on``: the task may fail) or the worker
withdrew it (a :data:`DROP` line came after it).
A flow function's ``@task`` calls may run here too (:class:`StepHere`), each between
:data:`STEP` marker lines.

Loaded by path rather than ``-m``: the host then imports nothing of ordo but ``ordo.this``
(and ``ordo.exiting`` to leave once its input ends),
and its own folder (which holds ``http.py``, ``sql.py``...) is taken off ``sys.path`` so
it can never shadow the standard library in user code.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import json
import json.encoder
import os
import resource
import site
import sys
import threading

# A host boots while the parent records the execution, and the first task waits for it:
# modules needed only on some paths (difflib, traceback, runpy, inspect, importlib.util)
# are imported where they are used, and typing only for the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import ModuleType
    from typing import Any

#: Written on fd 1 and 2 around a ``@task`` a flow function runs in this host: ``STEP
#: <attempt>`` before it (its lines are that attempt's), ``STEP -`` after it.
STEP = "\x1eORDO-STEP"
#: Written on fd 1 and 2 before a request the worker queued behind the last one (see
#: :mod:`ordo.worker.hosts`): the lines before it are the last task's, those after it
#: the queued one's.
NEXT = "\x1eORDO-NEXT"
NEXT_LINE = (NEXT + "\n").encode()
#: The reply to a queued request that is not run: the task before it failed, or
#: answered SKIP or STOP (the worker runs it again, or not, once that is recorded).
NOT_RUN = b'{"ok": false, "not_run": true}\n'
#: Written by the worker after requests it queued here: those of them not started yet
#: are not run (a task of their execution failed elsewhere, or its outputs did not
#: read); the host reads ahead for it before each queued request.
DROP = b'{"drop": true}'
#: What a task may answer instead of outputs (``this.Skip``/``Stop``, ``return "SKIP"``).
ANSWERS = ("SKIP", "STOP")
#: The variables naming an attempt's outputs and metrics files.
ATTEMPT_FILES = ("ORDO_OUTPUTS", "ORDO_METRICS")
_HOST_FILES = (os.path.abspath(__file__), "runpy.py", "<frozen runpy>")


class LoadError(Exception):
    """The task's function or script cannot be found or imported (no traceback shown).
    Its reply has reason ``import``, which is never retried: the same files fail the same
    way again. An exception raised by a module's own code while it is imported is not a
    LoadError's cause alone: ``retried`` says that failure may be retried (reason ``error``)."""

    def __init__(self, message: str, *, retried: bool = False) -> None:
        super().__init__(message)
        self.retried = retried


class FlowModules:
    """Modules imported from flow folders. Before each task, modules from other folders
    (a same-named ``tasks.py`` of another flow) and, when any of their files changed, all
    of them are forgotten, so the next import reads the files again."""

    def __init__(self) -> None:
        self.known = set(sys.modules)
        self.stamps: dict[str, tuple[str, int, int]] = {}
        self.dirs: tuple[str, ...] = ()
        roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__)}
        roots.update(site.getsitepackages(), [site.getusersitepackages()])
        roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # ordo
        self.outside = tuple(os.path.join(os.path.realpath(r), "") for r in roots)
        #: the same, as written: most modules are found there without resolving links
        self.outside_as_written = tuple(os.path.join(os.path.abspath(r), "") for r in roots)

    def prepare(self, dirs: tuple[str, ...]) -> None:
        """Forget what must be imported again before a task importing from ``dirs``."""
        stale = (  # (modules are noted only from the folders of their task: the last ones)
            [n for n, (f, *_) in self.stamps.items() if not _under(f, dirs)]
            if dirs != self.dirs
            else []
        )
        changed = [f for f, *rest in self.stamps.values() if _stamp(f) != (f, *rest)]
        if changed:
            stale = list(self.stamps)
            for path in changed:
                _drop_bytecode(path)
        if stale or dirs != self.dirs:
            importlib.invalidate_caches()
        for name in stale:
            del self.stamps[name]
            sys.modules.pop(name, None)
            self.known.discard(name)
        self.dirs = dirs

    def settle(self) -> None:
        """Note the modules the task imported from its folders."""
        new = sys.modules.keys() - self.known
        self.known.update(new)
        for name in new:
            path = getattr(sys.modules.get(name), "__file__", None)
            if not isinstance(path, str) or path.startswith(self.outside_as_written):
                continue  # (the standard library, site-packages, ordo: never reloaded)
            path = os.path.realpath(path)
            if _under(path, self.dirs) and not path.startswith(self.outside):
                self.stamps[name] = _stamp(path)


def _under(path: str, dirs: Iterable[str]) -> bool:
    return any(path.startswith(os.path.join(d, "")) for d in dirs)


def _stamp(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


def _drop_bytecode(path: str) -> None:
    """A file rewritten within the same second at the same size would still pass the
    bytecode cache's check: remove its cached bytecode."""
    if path.endswith(".py"):
        import importlib.util

        with contextlib.suppress(OSError, ValueError, NotImplementedError):
            os.unlink(importlib.util.cache_from_source(path))


class _CLib:
    """The C library's functions the host calls: ``fflush(NULL)`` (C code's buffered
    stdio reaches the pipes before the reply, when the object is called) and ``putenv``,
    which sets an attempt's own variables in the C environment (:class:`Environ`).
    ctypes is loaded on a thread started at boot, so the host is ready sooner; the first
    use waits for it."""

    def __init__(self) -> None:
        self.fflush: Callable[[None], object] | None = None
        self.putenv: Callable[[bytes], int] | None = None
        self.loading = threading.Thread(target=self._load, daemon=True)
        self.loading.start()

    def _load(self) -> None:
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            putenv = libc.putenv
            putenv.argtypes, putenv.restype = [ctypes.c_char_p], ctypes.c_int
            self.fflush = libc.fflush
            self.putenv = putenv  # (last: once it is set, the other is)
        except (ImportError, OSError, AttributeError):
            pass

    def __call__(self) -> None:
        self.loading.join()
        if self.fflush is not None:
            self.fflush(None)


def main() -> None:
    """Serve requests until standard input ends."""
    reply_fd, ordo_root = int(sys.argv[1]), sys.argv[2]
    call_fd, answer_fd = int(sys.argv[3]), int(sys.argv[4])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [ordo_root, *(p for p in sys.path if p and os.path.abspath(p) != here)]
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    requests = Requests(os.dup(0))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    replies = os.fdopen(reply_fd, "wb", buffering=0)
    host = Host(_CLib())
    if host.this is not None:
        setattr(host.this, "_channel", host.this._Channel(call_fd, answer_fd))  # noqa: B010
    went_on = True  # whether a request queued now may run: the last one did not fail
    for line in requests:
        if line == DROP:  # (read after what it withdrew)
            continue
        request = decode_line(line)
        if request.get("queued"):  # sent while the last one ran: its lines start here
            host.flush()
            for fd in (1, 2):
                os.write(fd, NEXT_LINE)
            if not went_on or requests.withdrawn():  # its execution may be failing
                went_on = False  # (the worker decides, and those queued after it go too)
                replies.write(NOT_RUN)
                continue
        reply = host.handle(request)
        went_on = bool(reply.get("ok") or request.get("goes_on")) and not reply.get("answer")
        host.flush()  # (the task's lines are in fd 1 and 2 before the reply is written)
        replies.write((_encode(reply) + "\n").encode())
    host.env.release()  # (a thread a task left may still read the environment)
    try:  # the worker waits for its hosts to end: they leave without the teardown
        from ordo.exiting import leave
    except ImportError:
        return
    leave(0, host.flush)  # (Python's and C's buffers: an atexit function may print)


def json_encoder(key_separator: str = ": ", item_separator: str = ", ") -> Callable[[Any], str]:
    """``json.dumps`` with these separators, its C encoder made once rather than for
    every call (without the check for circular values: what a host and its worker send
    each other has none, and one would fail on the depth of recursion instead). The
    worker's side of the protocol uses it too."""
    make = getattr(json.encoder, "c_make_encoder", None)
    try:  # (the task's python may be another version than the worker's)
        escape = json.encoder.encode_basestring_ascii
        encode = make(  # type: ignore[misc]
            None, _not_json, escape, None, key_separator, item_separator, False, False, True
        )
    except TypeError:  # (None: no C encoder)
        return json.JSONEncoder(separators=(item_separator, key_separator)).encode
    return lambda value: "".join(encode(value, 0))


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def decode_line(line: bytes) -> Any:
    """A protocol line (a request, a reply), decoded: ``json.loads`` without its look at
    the bytes' encoding."""
    return _decoder(line.decode("utf-8", "surrogatepass"))


_encode = json_encoder()
_decoder = json.JSONDecoder().decode


class Requests:
    """The request lines on ``fd``, read as they come; :meth:`withdrawn` reads ahead."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: collections.deque[bytes] = collections.deque()
        self.rest = b""  # the start of a line not complete yet
        self.ended = False

    def __iter__(self) -> Requests:
        return self

    def __next__(self) -> bytes:
        while not self.lines:
            if self.ended:
                raise StopIteration
            self._read()
        return self.lines.popleft()

    def _read(self) -> None:
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.ended = True
            if self.rest.strip():  # (a last line without its newline)
                self.lines.append(self.rest)
            self.rest = b""
            return
        *lines, self.rest = (self.rest + data).split(b"\n")
        self.lines.extend(lines)

    def withdrawn(self) -> bool:
        """Whether the worker withdrew the queued request just read: a :data:`DROP`
        line has come after it (what the pipe holds now is read, without waiting)."""
        import select

        while not self.ended and select.select([self.fd], [], [], 0)[0]:
            self._read()
        return DROP in self.lines


class Host:
    """Runs one request at a time, restoring the process between tasks."""

    def __init__(self, c_lib: _CLib) -> None:
        self.env = Environ(c_lib)
        self.path = list(sys.path)
        self.argv = list(sys.argv)
        self.modules = FlowModules()
        self.c_flush = c_lib
        self.kids_cpu = _kids_usage()[0]  # (reaped children's, after the last task)
        self.paths: dict[tuple[str, ...], list[str]] = {}  # sys.path for each task's dirs
        try:
            self.this: ModuleType | None = importlib.import_module("ordo.this")
        except ImportError:
            self.this = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run the request's task; the reply says how it ended and what it cost."""
        dirs = _import_dirs(request)
        self.modules.prepare(dirs)
        if "env" in request:
            self.env.set(request["env"])
        else:  # what changed since the last request
            self.env.change(request["env_set"], request.get("env_unset") or [])
        path = self.paths.get(dirs)
        if path is None:
            if len(self.paths) >= 256:
                self.paths.clear()
            path = self.paths[dirs] = [*dirs, *(p for p in self.path if p not in dirs)]
        sys.path[:] = path
        if self.this is not None:
            self.this.inputs._set(request["with"])
            self.this._reset_steps()
        before = _own_cpu()
        try:
            os.chdir(request["cwd"])  # (each time: the path may lead elsewhere now)
            reply = execute(request, self.this, self.flush, self.env)
        except BaseException as exc:  # the task's failure is the reply, never the host's end
            reply = failure(exc)
        finally:
            self.restore()
        # (its children's: since the last task, whose end read them; the host reaps none)
        own, kids = resource.getrusage(resource.RUSAGE_SELF), _kids_usage()
        reply["cpu"] = own.ru_utime + own.ru_stime - before + kids[0] - self.kids_cpu
        reply["rss"] = max(own.ru_maxrss, kids[1])
        self.kids_cpu = kids[0]
        # the attempt's files the task wrote: the worker opens only those
        now = self.env.now
        reply["files"] = [n for n in ATTEMPT_FILES if n in now and os.access(now[n], os.F_OK)]
        return reply

    def restore(self) -> None:
        """Put back what a task may have changed: path, argv (the environment is set
        afresh for every task, and so is the working folder: the host stays in the last
        task's between tasks, where nothing it does reads a relative path)."""
        sys.path[:] = self.path
        sys.argv[:] = self.argv
        if self.this is not None:
            self.this.inputs._set(None)
        self.modules.settle()

    def flush(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 (contextlib.suppress costs more, every task)
                stream.flush()
            except (OSError, ValueError):
                pass
        self.c_flush()


class Environ:
    """Sets ``os.environ`` to a task's environment, touching only the variables that
    differ from the last one set (clearing and refilling it costs more than a small
    task). A task that changed ``os.environ`` itself is noticed (its raw bytes differ)
    and the next one starts from what is really there.

    An attempt's own variables (``ORDO_*``: its ids, its files, its inputs) take new
    values every task. Set with ``setenv``, as ``os.environ`` does, each value would stay
    in memory for good: the C library keeps every string it was given, in case someone
    still points at it (290 bytes a task: a host grew by 57 MB over 200,000 tasks). With
    ``c_lib``, they go into the C environment with ``putenv`` instead, which keeps the
    string it is given rather than a copy: a bytes object of ours (it ends with a NUL),
    held while the environment holds it and for :data:`KEPT` more replacements after (a
    thread reading the environment meanwhile finds it still there), then let go. Other
    variables (inherited, a task's ``env:``) go through ``os.environ``: C code may keep
    what ``getenv`` answered for them. Code that keeps it for an ``ORDO_*`` variable
    across tasks reads a value freed since."""

    #: Strings replaced in the environment that are kept a while before being freed.
    KEPT = 16

    def __init__(self, c_lib: _CLib | None = None) -> None:
        self.c = c_lib
        self.owned: dict[str, bytes] = {}  # variable -> our string the environment holds
        #: ours, out of it (the oldest is let go as a new one comes)
        self.replaced: collections.deque[bytes] = collections.deque(maxlen=self.KEPT)
        self.now = dict(os.environ)
        self.raw = dict(os.environ._data)  # type: ignore[attr-defined]

    def set(self, wanted: dict[str, str]) -> None:
        data = os.environ._data  # type: ignore[attr-defined]
        if data != self.raw:
            self.now = dict(os.environ)
        for key in self.now.keys() - wanted.keys():
            self._unset(key)
        for key, value in wanted.items():
            if self.now.get(key) != value:
                self._put(key, value)
        self.now = dict(wanted)
        self.raw = dict(data)

    def change(self, changed: dict[str, str], unset: list[str]) -> None:
        """Set the environment the last one became by ``changed`` and ``unset`` (a
        request sends only what differs from the last)."""
        if os.environ._data != self.raw:  # type: ignore[attr-defined]
            wanted = {**self.now, **changed}  # the last task changed it: set it whole
            for key in unset:
                wanted.pop(key, None)
            self.set(wanted)
            return
        for key in unset:
            if self.now.pop(key, None) is not None:
                self._unset(key)
        for key, value in changed.items():
            self._put(key, value)
            self.now[key] = value
        self.raw = dict(os.environ._data)  # type: ignore[attr-defined]

    def _put(self, key: str, value: str) -> None:
        c = self.c
        if c is not None and c.putenv is not None and key.startswith("ORDO_"):
            name, text = key.encode(*_FS), value.encode(*_FS)  # (as os.environ encodes)
            if b"=" not in name and b"\0" not in name + text:  # (else os.environ says why)
                entry = name + b"=" + text
                if c.putenv(entry) == 0:
                    os.environ._data[name] = text  # type: ignore[attr-defined]
                    self._out(key)
                    self.owned[key] = entry
                    return
        os.environ[key] = value
        self._out(key)  # (the environment holds the C library's copy now)

    def release(self) -> None:
        """The variables set with strings of ours get copies of the C library's
        (``setenv``), so that ours may go with this object: the host is on its way out,
        but what runs until it ends (an ``atexit`` function, a thread a task left) may
        read the environment still."""
        for key in list(self.owned):
            value = os.environ.get(key)
            if value is not None:
                os.environ[key] = value
            self._out(key)

    def _unset(self, key: str) -> None:
        del os.environ[key]
        self._out(key)

    def _out(self, key: str) -> None:
        """Our string for ``key`` is no longer in the environment: let go in turn."""
        entry = self.owned.pop(key, None)
        if entry is not None:
            self.replaced.append(entry)


#: How ``os.environ`` encodes names and values.
_FS = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _import_dirs(request: dict[str, Any]) -> tuple[str, ...]:
    """Where the task's imports come from: the script's folder, the flow's, the cwd."""
    return _real_dirs(request["base_dir"], request["cwd"], request.get("script"))


@functools.lru_cache(maxsize=256)
def _real_dirs(base_dir: str, cwd: str, script: str | None) -> tuple[str, ...]:
    dirs = [base_dir, cwd]
    if script:
        dirs.insert(0, os.path.dirname(script))
    return tuple(dict.fromkeys(os.path.realpath(d) for d in dirs))


def _usage() -> tuple[float, int]:
    """CPU seconds of this process and of its reaped children; peak RSS in KiB."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = _kids_usage()
    return own.ru_utime + own.ru_stime + kids[0], max(own.ru_maxrss, kids[1])


def _own_cpu() -> float:
    """CPU seconds of this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _kids_usage() -> tuple[float, int]:
    """CPU seconds of this process's reaped children, and the peak RSS of the largest."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime, kids.ru_maxrss


def execute(
    request: dict[str, Any],
    this: ModuleType | None = None,
    flush: Callable[[], None] | None = None,
    environ: Environ | None = None,
) -> dict[str, Any]:
    """Run the function, handler or script (a script defining ``handler`` runs as a
    handler); a returned dict becomes the outputs. ``flush``: the host's (a flow
    function's ``@task`` calls may run here, their lines marked as theirs), as is
    ``environ``, what sets their variables."""
    if request.get("evaluate"):
        return evaluate(request["function"], request["with"])
    if request.get("script"):
        found = run_script(request["script"])
        handler = found.get("handler") if isinstance(found, dict) else None
        if not callable(handler):
            return {"ok": True, "result": {}}
        target = f"{os.path.basename(request['script'])}:handler"
        return call_handler(handler, target, request["with"], this)
    if request.get("handler"):
        target = request["handler"]
        return call_handler(load_function(target), target, request["with"], this)
    target = request["function"]
    function = load_function(target)
    if request.get("step"):  # a @task called by a flow function: any JSON value it returns
        function = getattr(function, "fn", function)
        value = function(*request.get("args") or (), **request["with"])
        return {"ok": True, **_outputs({"return": value}, f"task {target}")}
    if request.get("flow_function") and this is not None:
        from ordo import pyflow  # its @task calls are steps of this attempt

        steps = pyflow.Steps(this, StepHere(this, flush or (lambda: None), environ))
        pyflow._runner = steps
        try:
            result = function(**request["with"])
            steps.finish()
        finally:
            pyflow._runner = None
        return _result(result, f"flow function {target}", this)
    return _result(function(**request["with"]), f"function {target}", this)


class StepHere:
    """Runs a ``@task`` its flow function calls in this host, as the task run (and
    attempt) the worker started for it: with that attempt's ``ORDO_*`` variables and
    ``this.inputs``, its lines between :data:`STEP` markers, calls into ordo made as
    that attempt; its reply is what a host running it alone would have replied. What
    it changes of the process (environment, working directory, import path, argv) is
    put back after it, as a host puts it back between tasks."""

    def __init__(
        self, this: ModuleType, flush: Callable[[], None], environ: Environ | None = None
    ) -> None:
        self.this = this
        self.flush = flush
        self.environ = environ or Environ()  # (the host's: see Environ on ORDO_* values)

    def __call__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        attempt: int,
        env: dict[str, str],
    ) -> dict[str, Any]:
        from ordo import pyflow

        this = self.this
        environ, path, argv = dict(os.environ), list(sys.path), list(sys.argv)
        try:
            cwd: str | None = os.getcwd()
        except OSError:  # removed: as it is
            cwd = None
        runner, given = pyflow._runner, this.inputs._given
        self._mark(str(attempt))
        for key, value in env.items():
            self.environ._put(key, value)
        pyflow._runner = None  # a @task it calls is its plain function, as in a host alone
        acting = this._act_as(attempt, 0)
        this.inputs._set(dict(kwargs))
        before = _usage()
        try:
            value = fn(*args, **kwargs)
            what = f"task {fn.__module__}:{fn.__qualname__}"
            reply = {"ok": True, **_outputs({"return": value}, what)}
        except BaseException as exc:  # the task's failure is its reply
            reply = failure(exc)
        finally:
            after = _usage()
            pyflow._runner = runner
            this._act_as(*acting)
            this.inputs._set(given)
            self._put_back(environ)
            if cwd is not None:
                with contextlib.suppress(OSError):
                    os.chdir(cwd)
            sys.path[:], sys.argv[:] = path, argv
            self._mark("-")
        reply["cpu"] = after[0] - before[0]
        reply["rss"] = after[1]
        return reply

    def _mark(self, what: str) -> None:
        self.flush()
        line = f"{STEP} {what}\n".encode()
        os.write(1, line)
        os.write(2, line)

    def _put_back(self, environ: dict[str, str]) -> None:
        """``os.environ`` as it was (only the variables that differ are set)."""
        for key in os.environ.keys() - environ.keys():
            self.environ._unset(key)
        for key, value in environ.items():
            if os.environ.get(key) != value:
                self.environ._put(key, value)


def _result(result: Any, what: str, this: ModuleType | None) -> dict[str, Any]:
    """A task's return value as the reply: None, a dict of outputs, or this.Result."""
    if this is not None and isinstance(result, this.Result):
        state, message = result.state, result.message
        reply = {"ok": state != "FAILED", "state": state, "message": message}
        if state == "FAILED":
            reply.update(_failed(message or "the handler said fail"))
        return {**reply, **_outputs(result.outputs, what)}
    if result is None:
        return {"ok": True, "result": {}}
    if isinstance(result, str) and result.partition(":")[0].strip() in ANSWERS:
        word, _, why = result.partition(":")  # "SKIP", "STOP: why": as run_if answers
        return {"ok": True, "answer": word.strip(), "why": why.strip() or None, "result": {}}
    if not isinstance(result, dict):
        return _failed(
            f"{what} returned {type(result).__name__}, "
            "expected a dict of outputs, None, this.success/warning/fail(...), "
            "or 'SKIP'/'STOP'"
        )
    return {"ok": True, **_outputs(result, what)}


def _outputs(result: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return _failed(f"{what} returned outputs that are not JSON: {exc}")
    return {"result": result}


def call_handler(
    handler: Callable[..., Any], target: str, inputs: dict[str, Any], this: ModuleType | None
) -> dict[str, Any]:
    """``handler(system, this, inputs)``; a clear error when it takes other arguments."""
    import inspect

    if this is None:
        raise LoadError("handlers need the ordo package importable in the task's python")
    try:
        inspect.signature(handler).bind(this.system, this, inputs)
    except TypeError:
        shown = str(inspect.signature(handler))
        raise LoadError(
            f"handler {target} must take (system, this, inputs), it takes {shown}"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin): let the call say
    return _result(handler(this.system, this, inputs), f"handler {target}", this)


def evaluate(target: str, facts: dict[str, Any]) -> dict[str, Any]:
    """A run_if function's answer: called with the facts its parameters name (all of
    them when it takes ``**kwargs``)."""
    import inspect

    func = load_function(target)
    try:
        params = inspect.signature(func).parameters.values()
    except ValueError:
        params = []  # type: ignore[assignment]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        given = dict(facts)
    else:
        given = {p.name: facts[p.name] for p in params if p.name in facts}
    value = func(**given)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = str(value)
    return {"ok": True, "value": value}


def run_script(script: str) -> dict[str, Any] | None:
    """``runpy`` the script as ``__main__``, with ``sys.argv == [script]``; its globals."""
    if not os.path.isfile(script):
        raise LoadError(f"script not found: {script}")
    sys.argv[:] = [script]
    import runpy

    return runpy.run_path(script, run_name="__main__")


def load_function(target: str) -> Callable[..., Any]:
    """Import ``module:function``; LoadError names what is missing."""
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise LoadError(f"function must be 'module:function', found {target!r}")
    module = _import(module_name, target)
    func = getattr(module, func_name, None)
    if not callable(func):
        import difflib

        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(func_name, names, n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise LoadError(f"module '{module_name}' has no function '{func_name}'{tip}")
    return func  # type: ignore[no-any-return]


def _import(module_name: str, target: str) -> ModuleType:
    where = f"cannot import module '{module_name}' (from function '{target}')"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            _log_traceback(exc)  # the module exists but imports something missing
        raise LoadError(f"{where}: {exc}") from exc
    except SyntaxError as exc:
        _log_traceback(exc)
        raise LoadError(f"{where}: {_last_line(exc)}") from exc
    except Exception as exc:
        _log_traceback(exc)
        raise LoadError(f"{where}: {_last_line(exc)}", retried=True) from exc


def _failed(error: str, exit_code: int | None = None, reason: str = "error") -> dict[str, Any]:
    return {"ok": False, "error": error, "exit_code": exit_code, "reason": reason}


def failure(exc: BaseException) -> dict[str, Any]:
    """The reply for an exception out of the task (traceback of user frames to stderr);
    ``this.Skip``/``this.Stop`` are answers, not failures."""
    answer = getattr(type(exc), "ordo_answer", None)
    if answer in ANSWERS:
        return {"ok": True, "answer": answer, "why": str(exc) or None, "result": {}}
    if isinstance(exc, LoadError):
        return _failed(str(exc), reason="error" if exc.retried else "import")
    if isinstance(exc, SystemExit):
        if exc.code is None or exc.code == 0:
            return {"ok": True, "result": {}}
        if isinstance(exc.code, int):
            return _failed(f"exit code {exc.code}", exc.code, "exit_code")
        sys.stderr.write(f"{exc.code}\n")
        return _failed(f"exit code 1: {exc.code}", 1, "exit_code")
    _log_traceback(exc)
    return _failed(_last_line(exc))


def _log_traceback(exc: BaseException) -> None:
    import traceback

    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.endswith(_HOST_FILES) and not f.filename.startswith("<frozen importlib")
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    sys.stderr.write("".join(lines))


def _last_line(exc: BaseException) -> str:
    import traceback

    return traceback.format_exception_only(type(exc), exc)[-1].strip()


if __name__ == "__main__":
    main()
