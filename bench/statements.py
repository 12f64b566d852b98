"""SQL statements per task run, counted by wrapping the store's connection calls.

Run: ``.venv/bin/python bench/statements.py [--pg postgresql://...]``. A worker in this
process runs W1 (a chain of 100 no-op python tasks) and W2 (500 no-op python tasks and
a join, 2 slots) on SQLite (and on PostgreSQL when ``--pg`` names a server), and every
statement the store sends is counted: ``execute`` and ``executemany`` calls alike (one
``executemany`` is one statement sent for many rows), BEGIN and COMMIT included (they go through
``_execute`` too). Printed:
statements per chain hop (W1) and per task run (W2, amortized over its batches).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from ordo import engine
from ordo.runners import make_runners
from ordo.store import Store, open_store
from ordo.worker import Worker, WorkerSettings

GOALS = {"W1 per hop": 8.0, "W2 per task run": 4.0}


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


class Counted:
    """Counts what ``store`` sends, by the statement's first words."""

    def __init__(self, store: Store) -> None:
        self.kinds: Counter[str] = Counter()
        self.on = False
        execute, executemany = store._execute, store._executemany

        def counted_execute(sql: str, params: Any = ()) -> Any:
            self._note(sql)
            return execute(sql, params)

        def counted_executemany(sql: str, rows: Any) -> None:
            rows = list(rows)
            if rows:  # an empty executemany sends nothing
                self._note(sql)
            executemany(sql, rows)

        store._execute = counted_execute  # type: ignore[method-assign]
        store._executemany = counted_executemany  # type: ignore[method-assign]

    def _note(self, sql: str) -> None:
        if self.on:
            self.kinds[" ".join(sql.split()[:2]).upper()] += 1

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


def measure(
    url: str, folder: Path, name: str, text: str, slots: int
) -> tuple[Counter[str], int, float]:
    """(statements by kind, task runs, seconds) of one execution of ``text``."""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    store = open_store(url)
    try:
        counted = Counted(store)
        revision = engine.register_flow(store, path, time.time())
        ex_id = engine.start_execution(store, revision, {}, time.time())
        worker = Worker(
            store,
            make_runners(slots),
            settings=WorkerSettings(slots=slots),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)},
        )
        try:
            counted.on = True
            started = time.perf_counter()
            worker.run_execution(ex_id)
            elapsed = time.perf_counter() - started
            counted.on = False
        finally:
            worker.close()
        runs = len(store.task_runs(ex_id))
        return counted.kinds, runs, elapsed
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="a PostgreSQL server's URL (a database is made on it)")
    parser.add_argument("--detail", action="store_true", help="statements by kind, too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ordo-statements-") as tmp:
        folder = Path(tmp)
        (folder / "noop.py").write_text("def noop():\n    return None\n")
        backends = {"SQLite": f"sqlite:///{folder / 'ordo.db'}"}
        if args.pg:
            backends["PostgreSQL"] = _fresh_database(args.pg)
        print(
            f"{'backend':<11} {'workload':<16} {'statements':>10} {'task runs':>9} "
            f"{'per run':>8} {'goal':>5}"
        )
        for backend, url in backends.items():
            for label, text, slots in (
                ("W1 per hop", _chain(100), 1),
                ("W2 per task run", _fan(500), 2),
            ):
                kinds, runs, _ = measure(url, folder, label.split()[0].lower(), text, slots)
                total = sum(kinds.values())
                per = total / runs
                print(
                    f"{backend:<11} {label:<16} {total:>10} {runs:>9} {per:>8.2f} "
                    f"{GOALS[label]:>5.0f}"
                )
                if args.detail:
                    for kind, n in kinds.most_common():
                        print(f"{'':<11}   {n / runs:>6.2f}  {kind}")
    return 0


def _fresh_database(admin_url: str) -> str:
    import psycopg

    name = f"ordo_statements_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


if __name__ == "__main__":
    raise SystemExit(main())
