"""SQL statements per task run, counted where the database drivers receive them.

Run: ``.venv/bin/python bench/statements.py [--pg postgresql://...] [--detail]``. A
worker in this process runs W1 (a chain of 100 no-op python tasks) and W2 (500 no-op
python tasks and a join, 2 slots) on SQLite (and on PostgreSQL when ``--pg`` names a
server), and every statement the store sends is counted at the driver, as
``bench/run.py`` counts them: ``sqlite3``'s trace callback (an ``executemany`` of N rows
is N statements there), psycopg's ``Cursor.execute`` and ``executemany`` (one per row),
and the store's batches to PostgreSQL (``Wire.run``, one per statement).
Printed: statements per chain hop (W1) and per task run (W2, amortized over its
batches), with and without BEGIN/COMMIT; the goals (issue #17: <= 8 per hop, <= 1 per W2
task run) are for the figure without them. ``--detail`` prints them by kind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from ordo import engine
from ordo.engine import open_store
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.wire import Wire
from ordo.worker import Worker, WorkerSettings

GOALS = {"W1 per hop": 8.0, "W2 per task run": 1.0}


def _chain(n: int) -> str:
    lines = ["id: w1", "tasks:"]
    for i in range(n):
        dep = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  - {{id: t{i}, type: python, function: 'noop:noop'{dep}}}")
    return "\n".join(lines) + "\n"


def _fan(n: int) -> str:
    lines = ["id: w2", "tasks:"]
    lines += [f"  - {{id: t{i}, type: python, function: 'noop:noop'}}" for i in range(n)]
    deps = ", ".join(f"t{i}" for i in range(n))
    lines.append(f"  - {{id: join, type: python, function: 'noop:noop', depends_on: [{deps}]}}")
    return "\n".join(lines) + "\n"


#: What is not counted against the goals: the transaction's edges.
EDGES = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


class Counted:
    """Counts what the drivers receive while ``on``, by the statement's first words."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.on = False

    def note(self, sql: object) -> None:
        if self.on:
            text = sql.decode() if isinstance(sql, bytes) else str(sql)
            self.kinds[" ".join(text.split()[:2]).upper()] += 1

    @contextlib.contextmanager
    def watching(self, store: Store) -> Iterator[None]:
        """Count ``store``'s SQLite connection, and every psycopg cursor and PostgreSQL
        batch (:class:`~ordo.store.wire.Wire`) meanwhile."""
        conn = getattr(store.db, "conn", None)
        if isinstance(conn, sqlite3.Connection):
            conn.set_trace_callback(self.note)
        originals = (psycopg.Cursor.execute, psycopg.Cursor.executemany)

        def wrap(real: Callable[..., Any], many: bool) -> Callable[..., Any]:
            def call(cur: Any, query: Any, params: Any = None, **kw: Any) -> Any:
                if many and params is not None:
                    params = list(params)
                    for _ in params:
                        self.note(query)
                else:
                    self.note(query)
                return real(cur, query, params, **kw)

            return call

        real_run = Wire.run

        def run(wire: Wire, batch: Any) -> Any:
            for text, _ in batch:
                self.note(text)
            return real_run(wire, batch)

        psycopg.Cursor.execute = wrap(originals[0], False)  # type: ignore[method-assign]
        psycopg.Cursor.executemany = wrap(originals[1], True)  # type: ignore[method-assign]
        Wire.run = run  # type: ignore[method-assign]
        try:
            yield
        finally:
            psycopg.Cursor.execute, psycopg.Cursor.executemany = originals  # type: ignore[method-assign]
            Wire.run = real_run  # type: ignore[method-assign]
            if isinstance(conn, sqlite3.Connection):
                conn.set_trace_callback(None)

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    @property
    def without_edges(self) -> int:
        return sum(n for kind, n in self.kinds.items() if not kind.startswith(EDGES))


def measure(url: str, folder: Path, name: str, text: str, slots: int) -> tuple[Counted, int]:
    """(the statements counted, task runs) of one execution of ``text`` by a worker."""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    store = open_store(url)
    try:
        counted = Counted()
        revision = engine.register_flow(store, path, time.time())
        ex_id = engine.start_execution(store, revision, {}, time.time())
        worker = Worker(
            store,
            make_runners(slots),
            settings=WorkerSettings(slots=slots),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)},
        )
        try:
            with counted.watching(store):
                counted.on = True
                worker.run_execution(ex_id)
                counted.on = False
        finally:
            worker.close()
        return counted, len(store.task_runs(ex_id))
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="a PostgreSQL server's URL (a database is made on it)")
    parser.add_argument("--detail", action="store_true", help="statements by kind, too")
    args = parser.parse_args()
    scratch: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ordo-statements-") as tmp:
        folder = Path(tmp)
        (folder / "noop.py").write_text("def noop():\n    return None\n")
        backends = {"SQLite": f"sqlite:///{folder / 'ordo.db'}"}
        if args.pg:
            name, backends["PostgreSQL"] = _fresh_database(args.pg)
            scratch.append(name)
        print(
            f"{'backend':<11} {'workload':<16} {'statements':>10} {'task runs':>9} "
            f"{'per run':>8} {'no BEGIN/COMMIT':>16} {'goal':>5}"
        )
        try:
            for backend, url in backends.items():
                for label, text, slots in (
                    ("W1 per hop", _chain(100), 1),
                    ("W2 per task run", _fan(500), 2),
                ):
                    counted, runs = measure(url, folder, label.split()[0].lower(), text, slots)
                    print(
                        f"{backend:<11} {label:<16} {counted.total:>10} {runs:>9} "
                        f"{counted.total / runs:>8.2f} {counted.without_edges / runs:>16.2f} "
                        f"{GOALS[label]:>5.0f}"
                    )
                    if args.detail:
                        for kind, n in counted.kinds.most_common():
                            print(f"{'':<11}   {n / runs:>6.2f}  {kind}")
        finally:
            for name in scratch:
                _drop_database(args.pg, name)
    return 0


def _fresh_database(admin_url: str) -> tuple[str, str]:
    name = f"ordo_statements_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return name, admin_url.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    raise SystemExit(main())
