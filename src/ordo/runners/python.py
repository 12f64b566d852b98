"""``python`` tasks: a function ``module:func`` or a ``script``, run in a warm pool of
host processes (:mod:`ordo.runners.pyhost`), so a timeout or kill really stops the code
and a no-op costs well under a millisecond once a host is up.

A host's fd 1 and 2 are pipes read by the attempt's thread, so ``print``, ``logging`` and
fd-level writes of C code and subprocesses are streamed to ``ctx.log`` as they come; each
task ends with a marker line on both pipes, written after flushing, and a JSON reply on a
third pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ordo.model import Outcome, State
from ordo.runners import pyhost
from ordo.runners.base import RunContext
from ordo.runners.process import (
    _EXITED,
    AttemptFiles,
    Finished,
    LineSplitter,
    OutputFileError,
    _reaped,
    child_env,
    kill_tree,
    pump,
)
from ordo.runners.shell import working_dir
from ordo.runners.watch import stopped_outcome

#: The folder holding the ``ordo`` package: the host's import path for ``ordo.this``.
_ORDO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Replies:
    """Collects the reply line from the host's reply pipe."""

    def __init__(self) -> None:
        self.buffer = b""
        self.reply: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.reply = json.loads(line)

    def close(self) -> None:
        pass


class Host:
    """One warm ``pyhost`` process; used by one attempt at a time."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, pyhost.__file__, str(write_fd), _ORDO_ROOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        self.reply_fd = read_fd
        self.seq = 0
        self.alive = True
        self.stopped = False

    def send(self, request: dict[str, Any]) -> bool:
        """Hand the host a request; False when it is gone (it died while idle)."""
        self.seq += 1
        request["seq"] = self.seq
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            self.alive = False
            return False
        return True

    def receive(self, ctx: RunContext) -> tuple[dict[str, Any] | None, Finished]:
        """Stream the task's lines to ``ctx.log`` until its reply and end markers."""
        marker = f"{pyhost.MARKER} {self.seq}"
        ended: set[str] = set()

        def sink(stream: str, line: str) -> None:
            if line.endswith(marker):  # after a last line without its newline, maybe
                ended.add(stream)
                line = line[: -len(marker)]
                if not line:
                    return
            ctx.log(stream, line)

        replies = _Replies()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        streams: dict[int, Any] = {
            self.proc.stdout.fileno(): LineSplitter("stdout", sink),
            self.proc.stderr.fileno(): LineSplitter("stderr", sink),
            self.reply_fd: replies,
        }
        finished = pump(
            self.proc.pid,
            streams,
            ctx,
            lambda: _reaped(self.proc.pid),
            until=lambda: replies.reply is not None and len(ended) == 2,
        )
        if finished.exit_code is not None:  # the host died and was reaped by pump
            self.proc.returncode = finished.exit_code
        if finished.timed_out or finished.cancelled or replies.reply is None:
            self.alive = False
        return replies.reply, finished

    def stop(self, grace: float) -> None:
        """End the host: politely (end of input) when idle, else by killing its tree.
        Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        was_alive, self.alive = self.alive, False
        if was_alive and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.returncode is None and not _reaped(self.proc.pid):
            kill_tree(self.proc.pid, grace)
        done = _EXITED.pop(self.proc.pid, None)
        if self.proc.returncode is None:
            self.proc.returncode = done.exit_code if done else self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        os.close(self.reply_fd)


class PythonRunner:
    """Runs python tasks on up to ``pool_size`` warm hosts kept between tasks (more are
    started when more attempts run at once, and stopped after). A host stopped for a
    timeout or cancel is replaced on next use. ``function`` is called with ``ctx.with_``
    as keyword arguments and its returned dict becomes outputs, merged over the
    ``this.output`` values; a ``script`` runs as ``__main__`` and reads ``this.inputs``."""

    def __init__(self, pool_size: int, environ: Mapping[str, str] | None = None) -> None:
        self.pool_size = pool_size
        self.environ = dict(os.environ if environ is None else environ)
        self._idle: list[Host] = []
        self._lock = threading.Lock()

    def _acquire(self) -> Host:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Host()

    def _release(self, host: Host, grace: float) -> None:
        if host.alive:
            with self._lock:
                if len(self._idle) < self.pool_size:
                    self._idle.append(host)
                    return
        host.stop(grace)

    def run(self, ctx: RunContext) -> Outcome:
        files = AttemptFiles(ctx.attempt_id)
        request = self._request(ctx, files)
        host = self._acquire()
        try:
            if not host.send(request):
                host.stop(ctx.kill_grace)
                host = Host()
                host.send(request)
            reply, finished = host.receive(ctx)
            if not host.alive:
                host.stop(ctx.kill_grace)
            return self._outcome(reply, finished, files, ctx, host)
        finally:
            self._release(host, ctx.kill_grace)
            files.remove()

    def _request(self, ctx: RunContext, files: AttemptFiles) -> dict[str, Any]:
        env = child_env(
            ctx.fields.get("inherit_env", True),
            self.environ,
            {**ctx.env, **files.env(ctx), "ORDO_INPUTS": json.dumps(dict(ctx.with_))},
        )
        script = ctx.fields.get("script")
        base_dir = os.path.abspath(ctx.base_dir)
        return {
            "function": ctx.fields.get("function"),
            "script": os.path.join(base_dir, str(script)) if script else None,
            "with": dict(ctx.with_),
            "env": env,
            "cwd": os.path.abspath(working_dir(ctx)),
            "base_dir": base_dir,
        }

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
        usage: dict[str, Any] = {"cpu_seconds": reply.get("cpu"), "peak_rss_kb": reply.get("rss")}
        try:
            outputs, metrics = files.read()
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
        return Outcome(State.SUCCESS, exit_code=0, outputs=outputs, metrics=metrics, **usage)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for host in idle:
            host.stop(1.0)
