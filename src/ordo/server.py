"""``ordo server``: the API, the scheduler, the notifier, automatic expiry (the retention,
every ``retention.every`` days) and (unless ``workers == 0``) embedded workers, in one
process.

uvicorn serves the API in the main thread and handles SIGTERM/SIGINT: it stops taking
requests and lets running ones finish; then the scheduler and notifier give their leases
up (another server takes over at once) and the embedded worker stops gracefully (running
attempts get ``grace`` seconds, the rest is handed back). Each background loop has its
own store connection. Every loop is supervised (:class:`Loop`, :class:`WorkerLoop`): a
failure is logged, the store reconnected, the loop started again with a growing pause,
and ``/health`` says which loop is down while it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from msgspec import Struct, field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ordo import deploy
from ordo.definitions.files import FILE_LIMITS, FileLimits
from ordo.engine import open_store
from ordo.errors import OrdoError, StoreError
from ordo.masking import MASK
from ordo.runners import make_runners
from ordo.secrets import SecretBox
from ordo.settings import Settings
from ordo.store import Store
from ordo.triggers.expiry import Expiry
from ordo.triggers.notifier import MailServer, Notifier
from ordo.triggers.scheduler import Scheduler
from ordo.ui.site import create_site
from ordo.worker import Worker, WorkerSettings

logger = logging.getLogger(__name__)

SCHEDULE_EVERY = 0.25  # seconds between scheduler passes (a tick is at most this late)
FIRST_PAUSE = 1.0  # seconds before a failed loop or worker is started again...
LONGEST_PAUSE = 5.0  # ... doubling up to this while it keeps failing
SETTLED = 60.0  # a worker that served this long before failing starts at FIRST_PAUSE again
HEAD_TIMEOUT = 10.0  # seconds a client has to send a request's line and headers
BODY_TIMEOUT = 30.0  # seconds a client has to send a request's whole body
NOTIFY_EVERY = 1.0
EXPIRY_EVERY = 30.0  # seconds between looks whether the retention is due
WATCH_EVERY = 1.0  # seconds between looks at the --flows folder


class ServerOptions(Struct):
    db_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2  # embedded worker slots; 0: none (workers run elsewhere)
    grace: float = 30.0
    settings: Settings = field(default_factory=Settings)
    environ: dict[str, str] = field(default_factory=dict)
    flows_dir: str | None = None  # deployed at start (``--flows``)
    watch: bool = False  # and again whenever a file in it changes
    secrets: SecretBox | None = None  # what embedded workers read secrets with
    session_key: bytes | None = None  # signs UI sessions; None: random, for this process


class Loop:
    """Call ``step`` every ``every`` seconds in a thread until :meth:`stop`. A step that
    fails never ends the loop: the failure is logged with its reason, ``store`` (when
    given) is reconnected, and the step is tried again after a pause that grows from
    ``every`` to :data:`LONGEST_PAUSE`. While steps fail, :attr:`trouble` says why
    (``/health`` reports it); :attr:`restarts` counts the failures gone through."""

    def __init__(
        self, name: str, step: Callable[[], Any], every: float, store: Store | None = None
    ) -> None:
        self.name = name
        self.step = step
        self.every = every
        self.store = store
        self.restarts = 0
        self.trouble: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        pause = self.every
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:
                pause = min(max(pause * 2, 0.5), LONGEST_PAUSE)
                self.trouble = f"stopped: {failure(exc)}; trying again in {pause:g} s"
                log_failure(self.name, exc, pause)
                self._stop.wait(pause)
                self._reconnect()
                self.restarts += 1
                continue
            if self.trouble is not None:
                logger.info("%s: working again", self.name)
            self.trouble = None
            pause = self.every
            self._stop.wait(self.every)

    def _reconnect(self) -> None:
        if self.store is None or self._stop.is_set():
            return
        try:
            self.store.reconnect()
        except StoreError as exc:
            logger.warning("%s: cannot reconnect yet: %s", self.name, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class WorkerLoop:
    """The embedded worker's thread, supervised: when :meth:`Worker.serve` fails (a
    SQLite write lock held past the busy timeout, a bug), the failure is logged, the
    store reconnected and ``serve`` started again after a pause growing from
    :data:`FIRST_PAUSE` to :data:`LONGEST_PAUSE` (back to the first once it ran a
    while). Attempts already running go on; outcomes not yet recorded are recorded by
    the next ``serve``. Until it serves again, :attr:`trouble` says why."""

    name = "worker"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.restarts = 0
        self.trouble: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        pause = FIRST_PAUSE
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                self.worker.serve()
                if self._stopping.is_set():
                    return
                raise RuntimeError("the worker's loop ended without being asked to")
            except Exception as exc:
                if time.monotonic() - began > SETTLED:
                    pause = FIRST_PAUSE
                self.trouble = f"stopped: {failure(exc)}; starting again in {pause:g} s"
                log_failure(self.name, exc, pause)
            if self._stopping.wait(pause):
                return
            with contextlib.suppress(StoreError):
                self.worker.store.reconnect()
            self.restarts += 1
            self.trouble = None
            logger.info("worker: starting again (restart %d)", self.restarts)
            pause = min(pause * 2, LONGEST_PAUSE)

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self.worker.stop()
        self._thread.join(timeout=timeout)


def failure(exc: BaseException) -> str:
    """An exception in one line: ours by their message, others with their type."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, OrdoError) and text else f"{type(exc).__name__}: {text}"


def log_failure(name: str, exc: BaseException, pause: float) -> None:
    if isinstance(exc, OrdoError):
        logger.error("%s failed: %s (again in %g s)", name, failure(exc), pause)
    else:  # a bug: its traceback helps
        logger.exception("%s failed (again in %g s)", name, pause)


class FolderWatch:
    """Deploys a folder (``--flows``), and with ``step`` again when any file in it
    changed: one ``stat`` of every file per step, compared with the last step's
    (names, sizes and modification times). What a deploy did is logged; an invalid
    file is logged with its errors (its flow keeps its previous revision)."""

    def __init__(self, db_url: str, folder: str, limits: FileLimits = FILE_LIMITS) -> None:
        self.folder = os.path.abspath(folder)
        self.limits = limits
        self.store = open_store(db_url)
        self._seen: list[tuple[str, int, int]] | None = None

    def step(self) -> None:
        now = self.fingerprint()
        if now == self._seen:
            return
        self._seen = now
        try:
            report = deploy.deploy_folder(self.store, self.folder, time.time(), limits=self.limits)
        except StoreError:
            self._seen = None  # try again at the next step
            raise
        except Exception as exc:
            logger.error("deploy %s: %s", self.folder, failure(exc))
            return
        for change in report.changes:
            if change.kind == "invalid":
                logger.error(
                    "deploy %s: %s is invalid; %s keeps its previous revision:\n  %s",
                    self.folder,
                    change.path,
                    change.flow or "no flow",
                    "\n  ".join(change.errors),
                )
            elif change.kind != "unchanged":
                logger.info(
                    "deploy %s: %s %s revision %s (%s)",
                    self.folder,
                    change.flow,
                    change.kind,
                    change.revision if change.revision is not None else "-",
                    change.path or "file gone",
                )

    def fingerprint(self) -> list[tuple[str, int, int]]:
        found = []
        for current, dirs, files in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in files:
                path = os.path.join(current, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # removed while we looked: the next step sees it
                found.append((path, st.st_mtime_ns, st.st_size))
        return sorted(found)

    def close(self) -> None:
        self.store.close()


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def serve(options: ServerOptions) -> None:
    """Run the server until SIGTERM/SIGINT."""
    settings = options.settings
    holder = holder_id()
    app = create_site(
        options.db_url,
        max_body=settings.server_max_body,
        max_upload=settings.server_max_upload,
        session_key=options.session_key,
    )
    scheduler_store = open_store(options.db_url)
    notifier_store = open_store(options.db_url)
    scheduler = Scheduler(scheduler_store, holder)
    expiry_store = open_store(options.db_url)
    expiry = Expiry(
        expiry_store,
        holder,
        settings.retention_days,
        settings.retention_dev_days,
        settings.retention_every,
    )
    mail_server = MailServer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_user,
        settings.smtp_password,
        settings.smtp_sender,
    )
    base_url = settings.server_url or f"http://{options.host}:{options.port}"
    notifier = Notifier(notifier_store, holder, mail_server=mail_server, base_url=base_url)
    watch = None
    if options.flows_dir:
        watch = FolderWatch(options.db_url, options.flows_dir, deploy.file_limits(settings))
    if watch is not None:
        watch.step()  # deployed before the API answers
    worker = _embedded_worker(options)
    loops: list[Loop] = [
        Loop("scheduler", scheduler.tick, SCHEDULE_EVERY, scheduler_store),
        Loop("notifier", notifier.tick, NOTIFY_EVERY, notifier_store),
        Loop("retention", expiry.tick, EXPIRY_EVERY, expiry_store),
    ]
    if watch is not None and options.watch:
        loops.append(Loop("watch", watch.step, WATCH_EVERY, watch.store))
    app.state.loops = [*loops, *([worker] if worker is not None else [])]
    for loop in loops:
        loop.start()
    if worker is not None:
        worker.start()
    config = uvicorn.Config(  # log_config=None: uvicorn logs through ours (masked)
        SlowBody(app, BODY_TIMEOUT),
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        log_config=None,
        http=SlowHead,
    )
    server = uvicorn.Server(config)
    logger.info(
        "ordo server on http://%s:%d (store %s, %d embedded worker slots)",
        options.host,
        options.port,
        _shown(options.db_url),
        options.workers,
    )
    # uvicorn handles SIGTERM/SIGINT while it serves and raises the signal again when
    # done: what it finds then is this, so the rest of the shutdown still runs
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopping)
    try:
        server.run()
    finally:
        logger.info("stopping: scheduler, notifier, workers")
        for loop in loops:
            loop.stop()
        parts = ((scheduler, scheduler_store), (notifier, notifier_store), (expiry, expiry_store))
        for part, store in parts:
            with contextlib.suppress(StoreError):
                part.stop()
            store.close()
        if watch is not None:
            watch.close()
        if worker is not None:
            worker.stop(timeout=options.grace + 10)
            worker.worker.close()
            worker.worker.store.close()


def _stopping(signum: int, frame: FrameType | None) -> None:
    logger.info("%s: stopping already", signal.Signals(signum).name)


def _embedded_worker(options: ServerOptions) -> WorkerLoop | None:
    if options.workers <= 0:
        return None
    settings = WorkerSettings(slots=options.workers, grace=options.grace)
    store = open_store(options.db_url)
    worker = Worker(
        store,
        make_runners(settings.slots),
        settings=settings,
        env=options.environ,
        secrets=options.secrets,
    )
    return WorkerLoop(worker)


class SlowHead(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for a request's head: a client that
    has not sent a request's line and headers :data:`HEAD_TIMEOUT` seconds after it
    connected (or after the previous answer) is disconnected, so slow or stalled
    clients cannot hold connections for ever."""

    _head_timer: asyncio.TimerHandle | None = None
    _answered: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_due()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._answered:
            self._head_cancel()  # a request's head arrived

    def on_response_complete(self) -> None:
        self._head_due()  # before: a pipelined request read by the next line cancels it
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_cancel()
        super().connection_lost(exc)

    def _head_due(self) -> None:
        self._head_cancel()
        self._answered = self.cycle
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._too_slow)

    def _head_cancel(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class SlowBody:
    """A request's whole body must arrive within ``timeout`` seconds of its head: else
    it is answered 408 (the application then hears that the client went away) and the
    connection closes."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        complete = started = cut = False

        async def timed() -> Message:
            nonlocal complete, started, cut
            if complete or cut:
                return await receive() if complete else {"type": "http.disconnect"}
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.0))
            except TimeoutError:
                cut = True
                if not started:
                    started = True
                    detail = f"request body not received within {self.timeout:g} s"
                    response = JSONResponse({"detail": detail}, status_code=408)
                    await response(scope, _gone, send)
                return {"type": "http.disconnect"}
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if cut:
                return  # answered 408 already
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed, sending)
        except Exception:
            if not cut:
                raise  # else: the application's complaint that the client went away


async def _gone() -> Message:
    return {"type": "http.disconnect"}


def _shown(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{MASK}@{rest.split('@', 1)[1]}"
    return url
