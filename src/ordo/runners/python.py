"""``python`` tasks: a function ``module:func`` or a ``script``, run in a warm pool of
host processes (:mod:`ordo.runners.pyhost`), so a timeout or kill really stops the code
and a no-op costs well under a millisecond once a host is up.

A host's fd 1 and 2 are pipes read by the attempt's thread (or by the worker's loop, see
:mod:`ordo.worker.hosts`), so ``print``, ``logging`` and fd-level writes of C code and
subprocesses are streamed to ``ctx.log`` as they come; each task ends with a JSON reply
on a third pipe, written after flushing (what is left in fd 1 and 2 is then read to its
end: :class:`Listening`). A flow function's host also marks where each ``@task`` it runs
itself starts and ends (:data:`~ordo.runners.pyhost.STEP`): the lines between are that
task's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ordo.errors import RunnerError
from ordo.masking import passed_environ
from ordo.model import Outcome, State, Task
from ordo.runners import pyhost
from ordo.runners.base import LogSink, RunContext, capped
from ordo.runners.process import (
    _EXITED,
    AttemptFiles,
    Finished,
    LineSplitter,
    OutputFileError,
    Pump,
    _reaped,
    group_start,
    inherited_env,
    kill_tree,
)
from ordo.runners.shell import working_dir
from ordo.runners.spawn import Spawned, spawn_host
from ordo.runners.watch import stopped_outcome, timeout_error

logger = logging.getLogger(__name__)

#: Reads, at most, of what is left of a task's lines in a pipe once its reply has come.
DRAIN_READS = 64
#: Bytes of requests that may wait queued in a host's input (its pipe holds 64 KiB: a
#: request that would not fit in it with those before it would make the writer wait
#: until the host reads, and a withdraw's line must always fit).
QUEUE_ROOM = 16 * 1024


#: A request as JSON, without the spaces ``json.dumps`` puts after separators.
_compact = pyhost.json_encoder(":", ",")


class _Replies:
    """Collects the reply line from the host's reply pipe."""

    def __init__(self) -> None:
        self.buffer = b""
        self.reply: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.reply is None and b"\n" in self.buffer:  # (what follows is the next one's)
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.reply = pyhost.decode_line(line)

    def close(self) -> None:
        pass


class _StepLogs:
    """Where a flow function's host's lines go: to its log, but between a ``@task``'s
    :data:`~ordo.runners.pyhost.STEP` markers (it ran in this host) to that task's."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.current: dict[str, LogSink] = {"stdout": ctx.log, "stderr": ctx.log}
        self.open: dict[int, tuple[LogSink, set[str]]] = {}  # by attempt: streams past it
        self.attempt: dict[str, int] = {}

    def mark(self, stream: str, line: str) -> None:
        before, _, what = line.partition(pyhost.STEP)
        if before:  # a last line without its newline
            self.current[stream](stream, before)
        what = what.strip()
        if what.isdigit():
            attempt = int(what)
            if attempt not in self.open:
                found = self.ctx.step_log(attempt) if self.ctx.step_log else None
                self.open[attempt] = (found or self.ctx.log, set())
            self.current[stream] = self.open[attempt][0]
            self.attempt[stream] = attempt
            return
        self.current[stream] = self.ctx.log
        attempt = self.attempt.pop(stream, -1)
        if attempt in self.open:
            log, past = self.open[attempt]
            past.add(stream)
            if len(past) == 2:  # both streams are past it: every line of it has come
                del self.open[attempt]
                release = getattr(log, "release", None)
                if log is not self.ctx.log and callable(release):
                    release(None)


class _Calls:
    """Serves a task's calls into ordo: each request line read from the host is handed
    to ``ctx.call`` and its answer written back (an error answer when there is none)."""

    def __init__(self, ctx: RunContext, answer_fd: int, *, held: bool = False) -> None:
        self.ctx = ctx
        self.answer_fd = answer_fd
        self.buffer = b""
        self.held = held  # requests are kept, unanswered, until it is False
        #: with a request queued behind this one: whether its reply has come (a call
        #: read after it is the next one's: the host replies before it goes on)
        self.replied: Callable[[], bool] | None = None

    @property
    def asked(self) -> bool:
        """Whether a whole request waits in the buffer."""
        return b"\n" in self.buffer

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while not self.held and b"\n" in self.buffer:
            if self.replied is not None and self.replied():
                return  # (kept for the next one: :meth:`Listening.take_over`)
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.answer(json.loads(line))

    def answer(self, request: dict[str, Any]) -> None:
        if self.ctx.call is None:
            reply: dict[str, Any] = {"error": "calls into ordo need a worker (run the flow)"}
        else:
            try:
                reply = self.ctx.call(request)
            except Exception as exc:  # a bad request must not leave the task hanging
                logger.exception("a task's call into ordo failed: %s", request.get("op"))
                reply = {"error": f"internal error: {exc!r}"}
        if request.get("tell"):  # nothing to answer
            return
        data = (json.dumps(reply, default=str) + "\n").encode()
        while data:
            data = data[os.write(self.answer_fd, data) :]

    def close(self) -> None:
        pass


class TaskEnv(NamedTuple):
    """A task's environment: what it inherits (``base``, the same dict for every task
    that inherits alike) and its own variables over it (its ``env``, the ``ORDO_*``)."""

    base: Mapping[str, str]
    own: Mapping[str, str]

    def whole(self) -> dict[str, str]:
        return {**self.base, **self.own}

    def since(self, last: TaskEnv) -> tuple[dict[str, str], list[str]]:
        """What to set and to unset to make ``last`` this."""
        if last.base is not self.base:
            now, before = self.whole(), last.whole()
            return {k: v for k, v in now.items() if before.get(k) != v}, [
                k for k in before if k not in now
            ]
        changed = {k: v for k, v in self.own.items() if last.own.get(k) != v}
        unset = []
        for key, value in last.own.items():
            if key in self.own:
                continue
            if key not in self.base:
                unset.append(key)
            elif self.base[key] != value:
                changed[key] = self.base[key]
        return changed, unset


class Listening:
    """Reads one request's answer from a host: the task's lines to ``ctx.log`` (a flow
    function's ``@task`` lines to theirs), its reply, and its calls into ordo (answered at
    once, or held while ``calls`` is False: a task whose reading is driven by the
    worker's loop, which cannot wait for itself). The host writes its reply after
    flushing the task's output: once the reply has come, what is left in fd 1 and 2 is
    read to the end and the answer is complete; with a request queued behind it
    (:meth:`queue_behind`), fd 1 and 2 are read up to the host's
    :data:`~ordo.runners.pyhost.NEXT` line instead, and what follows is the next
    reader's (:meth:`take_over`). Its :attr:`pump` reads, blocking or fed by another
    poll."""

    def __init__(self, host: Host, ctx: RunContext, calls: bool = True) -> None:
        sink = ctx.log  # (only a flow function's host runs @tasks, between markers)
        if ctx.step_log is not None:
            steps = _StepLogs(ctx)

            def sink(stream: str, line: str) -> None:
                if pyhost.STEP in line:
                    steps.mark(stream, line)
                    return
                steps.current[stream](stream, line)

        assert host.proc.stdout is not None and host.proc.stderr is not None
        cap = capped(ctx.log)
        self.replies = _Replies()
        self.calls = _Calls(ctx, host.answer_fd, held=not calls)
        self.outputs = (host.proc.stdout.fileno(), host.proc.stderr.fileno())
        self.lines = (LineSplitter("stdout", sink, cap=cap), LineSplitter("stderr", sink, cap=cap))
        streams: dict[int, Any] = {
            self.outputs[0]: self.lines[0],
            self.outputs[1]: self.lines[1],
            host.reply_fd: self.replies,
            host.call_fd: self.calls,
        }
        self.reply_fd = host.reply_fd
        pid = host.proc.pid
        self._drained = False
        self.behind = False  # a request was queued behind this one
        self.pump = Pump(pid, streams, ctx, lambda: _reaped(pid), until=self._answered)

    def queue_behind(self) -> None:
        """A request was queued behind this one: its lines end at the host's
        :data:`~ordo.runners.pyhost.NEXT` line, and a call that comes after its reply is
        the next one's."""
        self.behind = True
        for lines in self.lines:
            lines.until(pyhost.NEXT_LINE)
        self.calls.replied = self._replied

    def _replied(self) -> bool:
        """Whether the reply has come, read now if it is in its pipe."""
        replies = self.replies
        if replies.reply is None and self.reply_fd in self.pump.open_fds:
            ready = select.select([self.reply_fd], [], [], 0)[0]
            if ready:
                self.pump.read(self.reply_fd)
        return replies.reply is not None

    def took_next(self) -> bool:
        """Whether the host went on to the request queued behind this one (it wrote
        the line that starts it)."""
        return self.behind and any(lines.marked for lines in self.lines)

    def take_over(self, before: Listening) -> None:
        """Go on from ``before`` (the reading of the request this one was queued
        behind): what it read past its end is this request's."""
        for mine, theirs in zip(self.lines, before.lines, strict=True):
            if theirs.rest:  # (mostly nothing: the task wrote no line yet)
                mine.feed(theirs.rest)
        if before.replies.buffer:
            self.replies.feed(before.replies.buffer)
        if before.calls.buffer:
            self.calls.buffer = before.calls.buffer
            self.calls.feed(b"")

    def _answered(self) -> bool:
        """Whether the reply has come (then the task's lines left in the pipes are read:
        up to the next request's mark, when one is queued behind it)."""
        if self.replies.reply is None:
            return False
        if self.behind:
            open_fds, (out, err) = self.pump.open_fds, self.lines
            return (out.marked or self.outputs[0] not in open_fds) and (
                err.marked or self.outputs[1] not in open_fds
            )
        if not self._drained:
            self._drained = True
            for fd in self.outputs:
                for _ in range(DRAIN_READS):  # (a background writer may never stop)
                    if fd not in self.pump.open_fds or not self.pump.read(fd, wait=False):
                        break
        return True

    def close(self) -> None:
        """The reading ended: its streams are closed, and what refers back to this object
        lets go of it (freed at once then, rather than by the garbage collector: a worker
        running quick tasks spent 8 % of its time collecting these)."""
        self.pump.close()
        self.pump.until = None
        self.calls.replied = None

    def serve_calls(self) -> None:
        """Answer the calls held so far, and those that come from now on."""
        self.calls.held = False
        self.calls.feed(b"")


class Host:
    """One warm ``pyhost`` process; used by one attempt at a time."""

    def __init__(self, spawned: Spawned | None = None) -> None:
        """Drive the host ``spawned`` (started early by ``ordo run``), else a new one."""
        self.proc, self.reply_fd, self.call_fd, self.answer_fd = spawned or spawn_host(
            passed_environ(os.environ)
        )
        for stream in (self.proc.stdout, self.proc.stderr):  # (read to their end: see
            assert stream is not None  # :class:`Listening`)
            os.set_blocking(stream.fileno(), False)
        # a pipe said ready by a poll may have been read meanwhile (a call read before the
        # reply it follows reads that reply first): a read then finds it empty, never waits
        os.set_blocking(self.reply_fd, False)
        os.set_blocking(self.call_fd, False)
        #: bytes of queued requests the host has not started, and of the last request
        #: sent it when idle (it reads its input only between tasks: the pipe must never
        #: fill up, or the writer would wait)
        self.unread = 0
        self.head = 0
        self.room = _queue_room(self.proc.stdin)
        self.last_size = 0  # of the last request sent, or not sent for want of room
        self.dropped = False  # a withdraw was written since the last request was queued
        self._writing = threading.Lock()  # (a withdraw on the loop, a stop on a thread)
        self.seq = 0
        self.alive = True
        self.stopped = False
        self._started: int | None = None
        self._env: TaskEnv | None = None  # the environment the host was last sent

    @property
    def started(self) -> int | None:
        """When the host's process started (:func:`group_start`), read once."""
        if self._started is None:
            self._started = group_start(self.proc.pid)
        return self._started

    def send(self, request: dict[str, Any], *, queued: bool = False) -> bool:
        """Hand the host a request; False when it is gone (it died while idle), and,
        ``queued`` behind the one it runs, when it would not fit in :data:`QUEUE_ROOM`
        with the others queued (nothing is sent then). Its
        ``env`` (a :class:`TaskEnv`) goes as what changed since the last request
        (``env_set``, ``env_unset``): a task's environment is mostly the same as the one
        before, and when both inherit the same ``base`` only their own parts differ."""
        message = dict(request)
        message["seq"] = self.seq + 1
        env: TaskEnv | None = message.pop("env", None)
        if env is not None:
            last = self._env
            if last is None:
                message["env"] = env.whole()
            else:
                message["env_set"], unset = env.since(last)
                if unset:
                    message["env_unset"] = unset
        assert self.proc.stdin is not None
        data = (_compact(message) + "\n").encode()
        self.last_size = len(data)
        if queued:
            if self.head + self.unread + len(data) > self.room:
                return False
            self.unread += len(data)
            self.dropped = False
        else:  # (idle: it reads this one at once, once booted)
            self.head, self.unread = len(data), 0
        self.seq += 1
        if env is not None:
            self._env = env
        try:  # (straight to the pipe: its file object would add a copy and a flush)
            fd = self.proc.stdin.fileno()
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            self.alive = False
            return False
        return True

    def withdraw(self) -> None:
        """The requests queued on the host that it has not started are not run (it
        replies :data:`~ordo.runners.pyhost.NOT_RUN` to them); a request sent after this
        is run as usual, unless queued behind one the host did not run."""
        with self._writing:
            stdin = self.proc.stdin
            if self.dropped or stdin is None or stdin.closed:  # (once; stopped: no need)
                return
            self.dropped = True
            with contextlib.suppress(OSError, ValueError):  # (it died)
                # (atomic, < PIPE_BUF; and there is room: see :data:`QUEUE_ROOM`)
                os.write(stdin.fileno(), pyhost.DROP + b"\n")

    def receive(self, ctx: RunContext) -> tuple[dict[str, Any] | None, Finished]:
        """Stream the task's lines to ``ctx.log`` until its reply (and the lines before it)."""
        listening = self.listen(ctx)
        return self.ended(listening, listening.pump.run())

    def listen(self, ctx: RunContext, *, calls: bool = True) -> Listening:
        """What reads the reply to the request just sent (:class:`Listening`);
        ``calls=False``: the task's calls into ordo are held until :meth:`Listening.serve_calls`."""
        return Listening(self, ctx, calls)

    def ended(
        self, listening: Listening, finished: Finished
    ) -> tuple[dict[str, Any] | None, Finished]:
        """The reply read by ``listening`` and how it ended (the host is no longer
        ``alive`` when it was stopped, timed out or gave no reply)."""
        if finished.exit_code is not None:  # the host died and was reaped by pump
            self.proc.returncode = finished.exit_code
        reply = listening.replies.reply
        if finished.timed_out or finished.cancelled or reply is None:
            self.alive = False
        return reply, finished

    def hang_up(self) -> None:
        """End of input: an idle host exits (see :meth:`stop`)."""
        with self._writing:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()

    def _await_exit(self, timeout: float) -> None:
        """Wait until the host closes its output (it is exiting), then reap it."""
        assert self.proc.stdout is not None
        fd, end = self.proc.stdout.fileno(), time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            with contextlib.suppress(BlockingIOError):  # (its output is non-blocking)
                if ready and not os.read(fd, 65536):
                    break
        self.proc.wait(timeout=max(end - time.monotonic(), 0.05))

    def stop(self, grace: float) -> None:
        """End the host: politely (end of input) when idle, else by killing its tree.
        Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        was_alive, self.alive = self.alive, False
        if was_alive and self.proc.stdin is not None:
            try:
                self.hang_up()
                self._await_exit(1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.returncode is None and not _reaped(self.proc.pid):
            kill_tree(self.proc.pid, grace)
        done = _EXITED.pop(self.proc.pid, None)
        if self.proc.returncode is None:
            self.proc.returncode = done.exit_code if done else self.proc.wait()
        with self._writing:
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None and not stream.closed:
                    with contextlib.suppress(OSError):  # (a request it never read: gone)
                        stream.close()
        for fd in (self.reply_fd, self.call_fd, self.answer_fd):
            os.close(fd)


class NoRoom(RunnerError):
    """A request cannot be queued on a host: it would not fit (:data:`QUEUE_ROOM`) with
    what may be unread before it; ``too_big``: not even alone."""

    def __init__(self, *, too_big: bool) -> None:
        super().__init__("no room in the python process's input")
        self.too_big = too_big


def _queue_room(stdin: Any) -> int:
    """How much may wait unread in a host's input: :data:`QUEUE_ROOM`, less when its
    pipe is smaller (a user past ``pipe-user-pages-soft`` gets pipes of one page)."""
    try:
        import fcntl

        size = fcntl.fcntl(stdin.fileno(), fcntl.F_GETPIPE_SZ)
    except (AttributeError, OSError, ValueError):
        size = 4096
    return min(QUEUE_ROOM, size // 4)


class HostRun:
    """One attempt on a host: sent when made; its answer read by
    ``listening.pump`` (blocking, or fed by the worker's loop); then :meth:`finish`.
    ``behind``: an attempt still running, on whose host this one is queued (its reading
    starts when that one's ends: :meth:`Listening.take_over`)."""

    def __init__(
        self,
        runner: PythonRunner,
        ctx: RunContext,
        calls: bool = True,
        behind: HostRun | None = None,
    ) -> None:
        self.runner = runner
        self.ctx = ctx
        self.files = files = AttemptFiles(ctx.attempt_id)
        self.queued_bytes = 0  # (queued: what its request adds to the host's unread)
        self.host: Host
        self.listening: Listening
        request = runner._request(ctx, files)
        if behind is None:
            host = runner._acquire()
        else:
            host = behind.host
            request["queued"] = True
        try:
            host = runner._send(host, request, ctx.kill_grace) if behind is None else host
            if behind is not None:
                unread = host.unread
                if not host.send(request, queued=True):
                    if host.alive:
                        raise NoRoom(too_big=host.last_size > host.room)
                    raise RunnerError("the python process ended unexpectedly")
                self.queued_bytes = host.unread - unread  # (read by the host once it starts)
                # (the loop thread reads the host: its mark cannot be read before this)
                behind.listening.queue_behind()
            if ctx.process_started is not None:
                ctx.process_started(host.proc.pid, host.started)  # the host's own session
            self.listening = host.listen(ctx, calls=calls)
        except BaseException as exc:
            if not isinstance(exc, NoRoom):  # (no room: it goes on with those queued)
                host.alive = False
            if behind is None:
                runner._release(host, ctx.kill_grace)
            files.remove()
            raise
        self.host = host
        self.released = False  # the host went back (finish, abandon)

    def started(self) -> None:
        """Queued, it started: its host has read its request (and those before it)."""
        self.host.unread -= self.queued_bytes
        self.host.head = 0

    @property
    def not_run(self) -> bool:
        """Queued behind a task that failed, the host did not run it."""
        reply = self.listening.replies.reply
        return reply is not None and bool(reply.get("not_run"))

    def finish(self, finished: Finished, *, keep: bool = False) -> Outcome:
        """The attempt's outcome, once its reading ended as ``finished``; the host goes
        back to the pool (or is stopped: this may wait for its tree to end, up to the
        attempt's ``kill_grace``). ``keep``: requests are queued behind it, the host
        stays with them (when alive)."""
        outcome, left = self.settle(finished, keep=keep)
        if left is not None:
            left.stop(self.ctx.kill_grace)
        return outcome

    def settle(self, finished: Finished, *, keep: bool = False) -> tuple[Outcome, Host | None]:
        """:meth:`finish`, but a live host the pool has no room for is returned, for the
        caller to stop (the worker's loop hands that wait to a thread)."""
        host, ctx = self.host, self.ctx
        self.released = True
        try:
            self.listening.close()
            reply, finished = host.ended(self.listening, finished)
            if not host.alive:
                host.stop(ctx.kill_grace)
            outcome = self.runner._outcome(reply, finished, self.files, ctx, host)
        except BaseException:
            if keep:  # requests are queued on it: it goes (they come back unstarted)
                host.alive = False
            self.runner._release(host, ctx.kill_grace)
            raise
        finally:
            self.files.remove()
        if keep and host.alive:
            return outcome, None
        return outcome, None if host.stopped or self.runner._pooled(host) else host

    def abandon(self) -> None:
        """Reading failed: the host is stopped, the attempt's files removed (nothing,
        once :meth:`finish` has released them)."""
        if self.released:
            return
        self.released = True
        self.host.alive = False
        try:
            self.runner._release(self.host, self.ctx.kill_grace)
        finally:
            self.files.remove()


class PythonRunner:
    """Runs python tasks on up to ``pool_size`` warm hosts kept between tasks (more are
    started when more attempts run at once, and stopped after). A host stopped for a
    timeout or cancel is replaced on next use. ``function`` is called with ``ctx.with_``
    as keyword arguments and its returned dict becomes outputs, merged over the
    ``this.output`` values; a ``script`` runs as ``__main__`` and reads ``this.inputs``."""

    def __init__(self, pool_size: int, environ: Mapping[str, str] | None = None) -> None:
        self.pool_size = pool_size
        self.environ = passed_environ(os.environ if environ is None else environ)
        self._inherited: dict[Any, dict[str, str]] = {}  # by inherit_env
        self._idle: list[Host] = []
        self._leaving: list[Host] = []  # hung up, not yet reaped (see :meth:`hang_up`)
        self._lock = threading.Lock()

    def warm(self, count: int | None = None) -> None:
        """Have ``count`` idle hosts (default: the pool's size), starting those missing
        now: their interpreters boot while the caller goes on, so the first tasks find
        them up."""
        with self._lock:
            missing = min(count or self.pool_size, self.pool_size) - len(self._idle)
        for _ in range(missing):
            self._release(Host(), 1.0)

    def adopt(self, spawned: Spawned) -> None:
        """Keep a host started before the runner was made as one of the idle ones."""
        self._release(Host(spawned), 1.0)

    def _acquire(self) -> Host:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Host()

    def _release(self, host: Host, grace: float) -> None:
        if not self._pooled(host):
            host.stop(grace)

    def _pooled(self, host: Host) -> bool:
        """Whether ``host``, alive, went back among the idle ones (else: to be stopped)."""
        if host.alive:
            with self._lock:
                if len(self._idle) < self.pool_size:
                    self._idle.append(host)
                    return True
        return False

    def run(self, ctx: RunContext) -> Outcome:
        attempt = self.start(ctx)
        try:
            finished = attempt.listening.pump.run()
        except BaseException:
            attempt.abandon()
            raise
        return attempt.finish(finished)

    def start(
        self, ctx: RunContext, *, calls: bool = True, behind: HostRun | None = None
    ) -> HostRun:
        """Send ``ctx``'s attempt to a host (``behind``: queued on the host of that
        attempt, which still runs); reading its answer is the caller's, through the
        returned :class:`HostRun` (``calls``: see :meth:`Host.listen`)."""
        return HostRun(self, ctx, calls, behind)

    @staticmethod
    def _send(host: Host, request: dict[str, Any], grace: float) -> Host:
        """The host that took ``request``: this one, or a new one if it died idle."""
        if host.send(request):
            return host
        host.stop(grace)
        host = Host()
        host.send(request)
        return host

    def _request(self, ctx: RunContext, files: AttemptFiles) -> dict[str, Any]:
        """The host's request for ``ctx`` (what :mod:`~ordo.runners.pyhost` reads; a key
        left out is None, False or empty there)."""
        inherit = ctx.fields.get("inherit_env", True)
        key = inherit if isinstance(inherit, bool) else tuple(inherit)
        base = self._inherited.get(key)
        if base is None:  # (one dict per way of inheriting: see :meth:`Host.send`)
            base = self._inherited[key] = inherited_env(inherit, self.environ)
        inputs = json.dumps(dict(ctx.with_)) if ctx.with_ else "{}"
        own = {**ctx.env, **files.env(ctx), "ORDO_INPUTS": inputs}
        fields = ctx.fields
        base_dir = _absolute(ctx.base_dir)
        request: dict[str, Any] = {
            "function": fields.get("function"),
            "with": dict(ctx.with_),
            "env": TaskEnv(base, own),
            "cwd": _absolute(working_dir(ctx)),
            "base_dir": base_dir,
        }
        if fields.get("handler"):
            request["handler"] = fields["handler"]
        script = fields.get("script")
        if script:
            request["script"] = os.path.join(base_dir, str(script))
        # a @flow function (its @task calls are steps), or a @task's step (its
        # positional arguments, and whatever it returns is its value)
        if fields.get("flow_function"):
            request["flow_function"] = True
        if fields.get("step"):
            request["step"] = True
        if fields.get("args"):
            request["args"] = list(fields["args"])
        if ctx.task.allow_failure:  # its failure stops nothing: a host goes on to
            request["goes_on"] = True  # requests queued behind it
        return request

    def _outcome(
        self,
        reply: dict[str, Any] | None,
        finished: Finished,
        files: AttemptFiles,
        ctx: RunContext,
        host: Host,
    ) -> Outcome:
        stopped = stopped_outcome(
            "timeout" if finished.timed_out else "killed" if finished.cancelled else None, ctx
        )
        if stopped is not None:
            return stopped
        if reply is None:
            code = host.proc.returncode
            return Outcome(
                State.FAILED,
                exit_code=code,
                reason="exit_code" if code is not None and code > 0 else "error",
                error=f"the python process ended unexpectedly (exit code {code})",
            )
        return reply_outcome(reply, files)

    def evaluate(
        self,
        function: str,
        base_dir: str,
        facts: Mapping[str, Any],
        ctx: RunContext | None = None,
        *,
        what: str = "run_if function",
    ) -> Any:
        """Call a run_if (or check) ``function`` on a host with the ``facts`` it names;
        its value. RunnerError says why when it cannot (it failed, timed out, was
        cancelled), naming it as ``what``."""
        base = os.path.abspath(base_dir)
        probe = ctx or RunContext(0, 0, 0, 1, Task("run_if", "python"), {}, {}, {}, base, _drop)
        request = {
            "evaluate": True,
            "function": function,
            "with": dict(facts),
            "env": TaskEnv(self.environ, {}),
            "cwd": base,
            "base_dir": base,
        }
        host = self._acquire()
        try:
            host = self._send(host, request, probe.kill_grace)
            reply, finished = host.receive(probe)
            if not host.alive:
                host.stop(probe.kill_grace)
        finally:
            self._release(host, probe.kill_grace)
        if finished.timed_out or finished.cancelled or reply is None:
            why = timeout_error(probe.timeout) if finished.timed_out else "was stopped"
            raise RunnerError(f"{what} {function} {why}")
        if not reply["ok"]:
            raise RunnerError(f"{what} {function} failed: {reply.get('error')}")
        if reply.get("answer"):  # it raised this.Skip/Stop: the answer it means
            said = reply.get("why")
            return f"{reply['answer']}: {said}" if said else reply["answer"]
        return reply.get("value")

    def hang_up(self) -> None:
        """Have the idle hosts start exiting now (end of input), while the caller goes
        on: :meth:`close` then only reaps them."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._leaving.extend(idle)
        for host in idle:
            host.hang_up()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle + self._leaving, []
            self._leaving.clear()
        for host in idle:  # all of them start exiting at once
            host.hang_up()
        for host in idle:
            host.stop(1.0)


def _absolute(path: str) -> str:
    """``os.path.abspath``; an absolute path's is kept (a flow's folders are the same for
    each of its attempts, and normalizing one costs more than a small task's request)."""
    found = _ABSOLUTE.get(path)
    if found is not None:
        return found
    if not os.path.isabs(path):
        return os.path.abspath(path)
    if len(_ABSOLUTE) >= 1024:
        _ABSOLUTE.clear()
    found = _ABSOLUTE[path] = os.path.normpath(path)
    return found


_ABSOLUTE: dict[str, str] = {}


def reply_outcome(reply: dict[str, Any], files: AttemptFiles) -> Outcome:
    """The outcome of a python host's ``reply`` (the attempt's outputs and metrics read
    from its ``files``)."""
    usage: dict[str, Any] = {"cpu_seconds": reply.get("cpu"), "peak_rss_kb": reply.get("rss")}
    try:
        outputs, metrics = files.read(reply.get("files"))
    except OutputFileError as exc:
        return Outcome(State.FAILED, reason="error", error=str(exc), **usage)
    if not reply["ok"]:
        return Outcome(
            State.FAILED,
            exit_code=reply.get("exit_code"),
            reason=reply.get("reason") or "error",
            error=reply.get("error"),
            outputs=outputs,
            metrics=metrics,
            **usage,
        )
    outputs.update(reply.get("result") or {})
    answer = reply.get("answer")
    if answer:  # raise this.Skip/Stop, return "SKIP"/"STOP": as run_if's answers
        why = reply.get("why") or f"the task answered {answer}"
        return Outcome(
            State.SKIPPED,
            reason=str(answer).lower(),
            error=why,
            outputs=outputs,
            metrics=metrics,
            **usage,
        )
    if reply.get("state") == "WARNING":
        return Outcome(
            State.WARNING,
            exit_code=0,
            error=reply.get("message") or "the handler said warning",
            outputs=outputs,
            metrics=metrics,
            **usage,
        )
    return Outcome(
        State.SUCCESS,
        exit_code=0,
        error=reply.get("message") or None,  # this.success(message): the run's reason
        outputs=outputs,
        metrics=metrics,
        **usage,
    )


def _drop(stream: str, line: str) -> None:
    pass
