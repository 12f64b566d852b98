"""``ordo server``: the API, the scheduler, the notifier and (unless ``workers == 0``)
embedded workers, in one process.

uvicorn serves the API in the main thread and handles SIGTERM/SIGINT: it stops taking
requests and lets running ones finish; then the scheduler and notifier give their leases
up (another server takes over at once) and the embedded worker stops gracefully (running
attempts get ``grace`` seconds, the rest is handed back). Each background loop has its
own store connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import uvicorn

from ordo import deploy
from ordo.definitions.files import FILE_LIMITS, FileLimits
from ordo.errors import OrdoError, StoreError
from ordo.masking import MASK
from ordo.runners import make_runners
from ordo.secrets import SecretBox
from ordo.settings import Settings
from ordo.store import open_store
from ordo.triggers.notifier import MailServer, Notifier
from ordo.triggers.scheduler import Scheduler
from ordo.ui.site import create_site
from ordo.worker import Worker, WorkerSettings

logger = logging.getLogger(__name__)

SCHEDULE_EVERY = 0.25  # seconds between scheduler passes (a tick is at most this late)
NOTIFY_EVERY = 1.0
WATCH_EVERY = 1.0  # seconds between looks at the --flows folder


@dataclass
class ServerOptions:
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
    """Call ``step`` every ``every`` seconds in a thread until :meth:`stop`; errors of
    the store are logged and retried (a server restart of PostgreSQL, say)."""

    def __init__(self, name: str, step: Callable[[], Any], every: float) -> None:
        self.name = name
        self.step = step
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except StoreError as exc:
                logger.warning("%s: %s (trying again)", self.name, exc)
                self._stop.wait(min(5.0, self.every * 10))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


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
        except OrdoError as exc:
            logger.error("deploy %s: %s", self.folder, exc)
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
        options.db_url, max_body=settings.server_max_body, session_key=options.session_key
    )
    scheduler_store = open_store(options.db_url)
    notifier_store = open_store(options.db_url)
    scheduler = Scheduler(scheduler_store, holder)
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
    worker, worker_thread = _embedded_worker(options)
    loops = [
        Loop("scheduler", scheduler.tick, SCHEDULE_EVERY),
        Loop("notifier", notifier.tick, NOTIFY_EVERY),
    ]
    if watch is not None and options.watch:
        loops.append(Loop("watch", watch.step, WATCH_EVERY))
    for loop in loops:
        loop.start()
    config = uvicorn.Config(  # log_config=None: uvicorn logs through ours (masked)
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        log_config=None,
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
        for part, store in ((scheduler, scheduler_store), (notifier, notifier_store)):
            with contextlib.suppress(StoreError):
                part.stop()
            store.close()
        if watch is not None:
            watch.close()
        if worker is not None and worker_thread is not None:
            worker.stop()
            worker_thread.join(timeout=options.grace + 10)
            worker.close()
            worker.store.close()


def _stopping(signum: int, frame: FrameType | None) -> None:
    logger.info("%s: stopping already", signal.Signals(signum).name)


def _embedded_worker(options: ServerOptions) -> tuple[Worker | None, threading.Thread | None]:
    if options.workers <= 0:
        return None, None
    settings = WorkerSettings(slots=options.workers, grace=options.grace)
    store = open_store(options.db_url)
    worker = Worker(
        store,
        make_runners(settings.slots),
        settings=settings,
        env=options.environ,
        secrets=options.secrets,
    )
    thread = threading.Thread(target=worker.serve, name="worker", daemon=True)
    thread.start()
    return worker, thread


def _shown(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{MASK}@{rest.split('@', 1)[1]}"
    return url
