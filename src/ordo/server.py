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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import uvicorn

from ordo.api.app import create_app
from ordo.errors import StoreError
from ordo.masking import MASK
from ordo.runners import make_runners
from ordo.secrets import SecretBox
from ordo.settings import Settings
from ordo.store import open_store
from ordo.triggers.notifier import MailServer, Notifier
from ordo.triggers.scheduler import Scheduler
from ordo.worker import Worker, WorkerSettings

logger = logging.getLogger(__name__)

SCHEDULE_EVERY = 0.25  # seconds between scheduler passes (a tick is at most this late)
NOTIFY_EVERY = 1.0


@dataclass
class ServerOptions:
    db_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2  # embedded worker slots; 0: none (workers run elsewhere)
    grace: float = 30.0
    settings: Settings = field(default_factory=Settings)
    environ: dict[str, str] = field(default_factory=dict)
    secrets: SecretBox | None = None  # what embedded workers read secrets with


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


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def serve(options: ServerOptions) -> None:
    """Run the server until SIGTERM/SIGINT."""
    settings = options.settings
    holder = holder_id()
    app = create_app(options.db_url, max_body=settings.server_max_body)
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
    worker, worker_thread = _embedded_worker(options)
    loops = [
        Loop("scheduler", scheduler.tick, SCHEDULE_EVERY),
        Loop("notifier", notifier.tick, NOTIFY_EVERY),
    ]
    for loop in loops:
        loop.start()
    config = uvicorn.Config(
        app, host=options.host, port=options.port, log_level="warning", access_log=False
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
