"""Child processes for runners: own session, streamed lines, tree kill, rusage, and the
``$ORDO_OUTPUTS`` / ``$ORDO_METRICS`` files.

An attempt's pipes are read with poll by a :class:`Pump` (on the attempt's thread, or fed
by the worker's loop for a plain python task), so output is streamed line by line (never
held whole) and a timeout or cancel is noticed within 50 ms.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TextIO

from msgspec import Struct

from ordo.masking import passed_environ
from ordo.model import Metric
from ordo.runners.base import CappedLog, LogSink, RunContext, capped

MAX_LINE = 64 * 1024
READ_SIZE = 64 * 1024
#: Read size once a capped log is full: the rest is counted and dropped in large blocks.
DRAIN_SIZE = 1024 * 1024
#: How often, at most, the folder of attempts' files is looked for (a cleaner of old
#: temporary files may have removed it): a look costs a system call an attempt.
FOLDER_CHECK = 1.0
_BASIC_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")


class OutputFileError(ValueError):
    """A line of ``$ORDO_OUTPUTS`` or ``$ORDO_METRICS`` that cannot be read."""


class Finished(Struct):
    """How a child process ended."""

    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    cpu_seconds: float | None = None
    peak_rss_kb: int | None = None
    last_stderr: deque[str] | None = None  # (a shell task's: its last lines)


class LineSplitter:
    """Bytes in, complete decoded lines out to ``log``; long lines cut at 64 KiB.

    Once ``cap`` (the attempt's log, when it is a :class:`CappedLog`) is full, the rest
    is no longer split or decoded: it is counted and dropped in blocks."""

    def __init__(
        self,
        stream: str,
        log: LogSink,
        tail: deque[str] | None = None,
        *,
        cap: CappedLog | None = None,
    ) -> None:
        self.stream = stream
        self.log = log
        self.tail = tail
        self.buffer = b""
        self.cap = cap
        self.draining = False
        #: when set, the stream's lines end at this line (see :meth:`until`)
        self.mark: bytes | None = None
        self.marked = False  # the mark has come: what follows it is in ``rest``
        self.rest = b""
        self._edge = b""  # the last bytes fed, where a mark may have begun

    @property
    def read_size(self) -> int:
        return DRAIN_SIZE if self.draining else READ_SIZE

    def until(self, mark: bytes) -> None:
        """Take lines up to the ``mark`` line only: the bytes after it, another
        reader's, are kept in :attr:`rest` (a python host writes one before a request
        the worker queued behind the last)."""
        self.mark = mark

    def feed(self, data: bytes) -> None:
        if self.mark is not None:
            data = self._before_mark(data)
        if self.draining:
            self._drain(data)
            return
        self.buffer += data
        while True:
            if self.cap is not None and self.cap.full:
                self.draining = True
                rest, self.buffer = self.buffer, b""
                self._drain(rest)
                return
            cut = self.buffer.find(b"\n")
            if cut < 0:
                if len(self.buffer) >= MAX_LINE:
                    self._emit(self.buffer[:MAX_LINE])
                    self.buffer = self.buffer[MAX_LINE:]
                    continue
                return
            line, self.buffer = self.buffer[:cut], self.buffer[cut + 1 :]
            while len(line) > MAX_LINE:
                self._emit(line[:MAX_LINE])
                line = line[MAX_LINE:]
            self._emit(line)

    def _before_mark(self, data: bytes) -> bytes:
        """What of ``data`` comes before the mark (the rest is kept)."""
        assert self.mark is not None
        if self.marked:
            self.rest += data
            return b""
        seen = self._edge + data
        at = seen.find(self.mark)
        if at < 0:
            self._edge = seen[-(len(self.mark) - 1) :]
            return data
        self.marked = True
        self.rest = seen[at + len(self.mark) :]
        before = at - len(self._edge)
        if before < 0 and not self.draining:  # the mark began in what was fed already
            self.buffer = self.buffer[:before]
        return data[: max(before, 0)]

    def _drain(self, data: bytes) -> None:
        """Count and drop ``data``."""
        assert self.cap is not None
        if data:
            self.cap.dropped(len(data), data.count(b"\n"))

    def close(self) -> None:
        if self.draining:
            return
        if self.buffer:
            self._emit(self.buffer)
            self.buffer = b""

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if self.tail is not None and text.strip():
            self.tail.append(text)
        self.log(self.stream, text)


def grow_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer, so a fast writer is drained in fewer reads (Linux;
    ignored where it is refused)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, DRAIN_SIZE)


class AttemptFiles:
    """The attempt's outputs and metrics files, in one private folder per process. They
    are created by whoever first appends to them; a missing file means nothing written."""

    _folder: str | None = None
    _seen_at = 0.0  # when the folder was last seen there (monotonic)

    def __init__(self, attempt_id: int) -> None:
        folder = AttemptFiles._folder
        now = time.monotonic()
        if folder is None or now - AttemptFiles._seen_at > FOLDER_CHECK:
            if folder is None or not os.path.isdir(folder):
                folder = AttemptFiles._folder = tempfile.mkdtemp(prefix="ordo-")
                atexit.register(shutil.rmtree, folder, True)
            AttemptFiles._seen_at = now
        name = f"{folder}/{attempt_id}-{id(self)}"  # (the folder: mkdtemp's, absolute)
        self.outputs, self.metrics = name + ".outputs", name + ".metrics"
        self.found: list[str] | None = None  # once read: the files there were

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {
            "ORDO_OUTPUTS": self.outputs,
            "ORDO_METRICS": self.metrics,
            "ORDO_EXECUTION_ID": str(ctx.execution_id),
            "ORDO_TASK_RUN_ID": str(ctx.task_run_id),
            "ORDO_TASK_ID": ctx.task.id,
            "ORDO_ATTEMPT": str(ctx.attempt_number),
        }

    def read(
        self, written: Collection[str] | None = None
    ) -> tuple[dict[str, Any], tuple[Metric, ...]]:
        """Parsed outputs and metrics; OutputFileError names the bad line. ``written``:
        the variables (``ORDO_OUTPUTS``, ``ORDO_METRICS``) whose files the task's process
        saw once it had ended (a python host says so), the others are not looked for."""
        self.found = []
        outputs = metrics = None
        if written is None or "ORDO_OUTPUTS" in written:
            outputs = self._open(self.outputs, "$ORDO_OUTPUTS")
        if written is None or "ORDO_METRICS" in written:
            metrics = self._open(self.metrics, "$ORDO_METRICS")
        try:
            return parse_outputs(outputs), parse_metrics(metrics)
        finally:
            if metrics is not None:
                metrics.close()  # (parse_metrics closed it, unless the outputs failed)

    def _open(self, path: str, name: str) -> TextIO | None:
        try:
            f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except FileNotFoundError:  # nothing written
            return None
        except OSError as exc:  # a folder made there, say
            assert self.found is not None
            self.found.append(path)
            raise OutputFileError(f"{name} cannot be read: {exc.strerror}") from None
        assert self.found is not None
        self.found.append(path)
        return f

    def remove(self) -> None:
        """Remove the files (after :meth:`read`: those it found; most tasks write none)."""
        for path in (self.outputs, self.metrics) if self.found is None else self.found:
            with contextlib.suppress(OSError):  # (gone, or the task made it a folder)
                os.unlink(path)


def parse_outputs(f: TextIO | None) -> dict[str, Any]:
    """``key=value`` lines of ``f`` (closed after; None: no file); a value that is valid
    JSON is decoded, else kept as text."""
    result: dict[str, Any] = {}
    if f is None:
        return result
    with f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise OutputFileError(
                    f"$ORDO_OUTPUTS line {number}: expected key=value, found {line[:80]!r}"
                )
            try:
                result[key.strip()] = json.loads(value)
            except ValueError:
                result[key.strip()] = value
    return result


def parse_metrics(f: TextIO | None) -> tuple[Metric, ...]:
    """JSON objects ``{"name", "value", "kind", "tags"}`` or ``name=value`` counters, the
    lines of ``f`` (closed after; None: no file)."""
    metrics: list[Metric] = []
    if f is None:
        return ()
    with f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                metrics.append(_metric(line))
            except (ValueError, TypeError, KeyError) as exc:
                raise OutputFileError(f"$ORDO_METRICS line {number}: {exc}") from None
    return tuple(metrics)


def _metric(line: str) -> Metric:
    if line.startswith("{"):
        d = json.loads(line)
        kind = d.get("kind", "counter")
        if kind not in ("counter", "duration"):
            raise ValueError(f"kind must be counter or duration, found {kind!r}")
        tags = {str(k): str(v) for k, v in (d.get("tags") or {}).items()}
        return Metric(str(d["name"]), float(d["value"]), kind, tags)
    name, sep, value = line.partition("=")
    if not sep:
        raise ValueError(f"expected name=value or a JSON object, found {line[:80]!r}")
    return Metric(name.strip(), float(value))


def child_env(
    inherit: bool | Sequence[str], base: Mapping[str, str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The environment of a task: inherited (all, basics only, or the listed names;
    never ordo's keys, :data:`~ordo.masking.WITHHELD`), then the task's ``env``, then
    the ``ORDO_*`` variables."""
    env = inherited_env(inherit, base)
    env.update(extra)
    return env


def inherited_env(inherit: bool | Sequence[str], base: Mapping[str, str]) -> dict[str, str]:
    """What a task inherits of ``base`` (see :func:`child_env`)."""
    base = passed_environ(base)
    if inherit is True:
        return dict(base)
    if inherit is False:
        return {k: base[k] for k in _BASIC_ENV if k in base}
    env = {k: base[k] for k in inherit if k in base}
    env.setdefault("PATH", base.get("PATH", os.defpath))
    return env


def run_process(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], ctx: RunContext
) -> Finished:
    """Run ``argv`` in its own session, streaming its lines to ``ctx.log``, until it
    ends, times out (``ctx.timeout``) or is cancelled (``ctx.cancel``)."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if ctx.process_started is not None:
        ctx.process_started(proc.pid, group_start(proc.pid))
    tail: deque[str] = deque(maxlen=5)
    assert proc.stdout is not None and proc.stderr is not None
    cap = capped(ctx.log)
    streams = {
        proc.stdout.fileno(): LineSplitter("stdout", ctx.log, cap=cap),
        proc.stderr.fileno(): LineSplitter("stderr", ctx.log, tail, cap=cap),
    }
    result = pump(proc.pid, streams, ctx, lambda: _reaped(proc.pid))
    proc.stdout.close()
    proc.stderr.close()
    if result.exit_code is None:
        result = _finish(proc.pid, result, ctx.kill_grace)
    proc.returncode = -1 if result.exit_code is None else result.exit_code
    result.last_stderr = tail
    return result


_EXITED: dict[int, Finished] = {}


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it has exited (keeping its status); True once it has."""
    if pid in _EXITED:
        return True
    try:
        done, status, usage = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: it has exited, status unknown
        return True
    if done == 0:
        return False
    _EXITED[pid] = Finished(
        os.waitstatus_to_exitcode(status),
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_kb=usage.ru_maxrss,
    )
    return True


class Pump:
    """Reads one process's ``streams`` until they close (or ``until()`` is true), the
    deadline passes or ``ctx.cancel`` is set: blocking (:meth:`run`), or fed by someone
    else's poll (:meth:`read` when an fd is ready, :meth:`over` after each wake-up)."""

    def __init__(
        self,
        pid: int,
        streams: Mapping[int, Any],
        ctx: RunContext,
        exited: Any,
        *,
        until: Any = None,
    ) -> None:
        self.pid = pid
        self.streams = streams
        self.ctx = ctx
        self.exited = exited
        self.until = until
        self.deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
        self.open_fds = set(streams)
        self.exited_at: float | None = None

    def read(self, fd: int, *, wait: bool = True) -> bool:
        """Read what ``fd`` has; False once it is closed (nothing more to poll), and,
        with ``wait=False``, when a non-blocking ``fd`` has nothing now."""
        stream = self.streams[fd]
        size = getattr(stream, "read_size", READ_SIZE)
        try:
            data = os.read(fd, size)
        except BlockingIOError:  # (non-blocking, and empty)
            return wait
        if data:
            stream.feed(data)
            if size == READ_SIZE and getattr(stream, "read_size", READ_SIZE) > size:
                grow_pipe(fd)  # the log is full: drain the rest in blocks
            return True
        self.open_fds.discard(fd)  # closed (POLLHUP with nothing left to read)
        stream.close()
        return False

    def over(self, now: float) -> Finished | None:
        """How the reading ended, or None while it goes on (``now``: monotonic)."""
        if self.complete():
            return self.result()
        if self.deadline is not None and now >= self.deadline:
            return Finished(None, timed_out=True)
        if self.ctx.cancel.is_set():
            return Finished(None, cancelled=True)
        if self.exited_at is None:
            if self.exited():
                self.exited_at = now
        elif now - self.exited_at > 0.5:
            return self.result()  # a background grandchild holds the pipes open
        return None

    def complete(self) -> bool:
        """Every stream closed, or ``until()`` is true."""
        return not self.open_fds or (self.until is not None and bool(self.until()))

    def wait(self, now: float) -> float:
        """How long a poll may wait before :meth:`over` must look again (seconds)."""
        return 0.05 if self.deadline is None else max(min(0.05, self.deadline - now), 0.0)

    def result(self) -> Finished:
        """Ended: the exit status when the process was reaped here."""
        return _EXITED.pop(self.pid, None) or Finished(None)

    def close(self) -> None:
        for splitter in self.streams.values():
            splitter.close()

    def run(self) -> Finished:
        """Read, blocking, until :meth:`over`."""
        poller = select.poll()  # a plain poll: a selector costs more than the task
        for fd in self.open_fds:
            poller.register(fd, select.POLLIN)
        try:
            while True:
                now = time.monotonic()
                ended = self.over(now)
                if ended is not None:
                    return ended
                for fd, _ in poller.poll(self.wait(now) * 1000):
                    if not self.read(fd):
                        poller.unregister(fd)
        finally:
            self.close()


def pump(
    pid: int,
    streams: dict[int, LineSplitter],
    ctx: RunContext,
    exited: Any,
    *,
    until: Any = None,
) -> Finished:
    """Read ``streams`` until they close (or ``until()`` is true), the deadline passes or
    ``ctx.cancel`` is set. Returns the exit status when the process was reaped here."""
    return Pump(pid, streams, ctx, exited, until=until).run()


def _finish(pid: int, result: Finished, grace: float) -> Finished:
    """Reap the child; when it timed out or was cancelled, kill its whole tree first."""
    if result.timed_out or result.cancelled:
        kill_tree(pid, grace)
    if pid in _EXITED:
        done = _EXITED.pop(pid)
    else:
        _, status, usage = os.wait4(pid, 0)
        done = Finished(
            os.waitstatus_to_exitcode(status),
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_kb=usage.ru_maxrss,
        )
    done.timed_out, done.cancelled = result.timed_out, result.cancelled
    if done.timed_out or done.cancelled:
        done.exit_code = None if done.exit_code is None or done.exit_code < 0 else done.exit_code
    return done


def kill_tree(pid: int, grace: float) -> None:
    """SIGTERM to the process group led by ``pid``; SIGKILL to what is left after
    ``grace`` seconds (or at once when the leader is gone)."""
    _signal_group(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and not _reaped(pid):
        time.sleep(0.01)
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# -- the processes of lost attempts ----------------------------------------------------
@functools.cache
def this_machine() -> str:
    """Where a recorded process group can be signalled from: the host name, and (from
    ``/proc``, where there is one) the boot and the PID namespace, so that neither a
    reboot nor a container with the same host name mistakes another's group for its
    own."""
    parts = [os.uname().nodename]
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        parts.append(f.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return " ".join(parts)


def group_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc``); None where
    it cannot be read. With the group id, it tells a later reader whether a process
    group is still the one an attempt started, or a new one that reuses its number."""
    stat = _stat(pid)
    return None if stat is None else stat[2]


def stop_groups(groups: Sequence[tuple[int, int | None]], grace: float) -> list[int]:
    """Stop the process groups of lost attempts (``(group, leader's start)`` as
    :func:`group_start` gave it) and wait until they are gone: SIGTERM, then SIGKILL to
    what is left after ``grace`` seconds. A group whose leader is a newer process (its
    number reused) is left alone. The groups that were still running."""
    alive = [g for g, started in groups if _members(g, started)]
    if not alive:
        return []
    for group in alive:
        _signal_group(group, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(_members(g, None) for g in alive):
        time.sleep(0.02)
    for group in alive:
        _signal_group(group, signal.SIGKILL)
    end = time.monotonic() + max(grace, 5.0)
    while time.monotonic() < end and any(_members(g, None) for g in alive):
        time.sleep(0.02)
    return alive


def _members(group: int, started: int | None) -> bool:
    """Whether processes of ``group`` still run (zombies do not count); with
    ``started``, only if the group is the one whose leader started then."""
    if not os.path.isdir("/proc/self"):  # no /proc: ask the kernel, trust the number
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    leader = _stat(group)
    if leader is not None and started is not None and leader[2] != started:
        return False  # the number is another process's now
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None or stat[1] != group or stat[0] == "Z":
            continue
        if started is None or stat[2] >= started:
            return True
    return False


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, process group, start time in ticks)`` of ``pid`` from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None
