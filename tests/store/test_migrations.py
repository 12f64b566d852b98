"""Migrating an empty database gives exactly the declared schema."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ordo.store import migrate, open_store

EXPECTED = Path(__file__).with_name("schema_sqlite.txt")


def describe_sqlite(path: Path) -> str:
    """Tables with their columns, and indexes, in a stable text form."""
    conn = sqlite3.connect(path)
    lines = []
    tables = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    for (table,) in tables:
        cols = conn.execute(f"PRAGMA table_info({table})").fetchall()
        spec = ", ".join(
            f"{c[1]} {c[2]}{' NOT NULL' if c[3] else ''}{' PK' if c[5] else ''}" for c in cols
        )
        lines.append(f"table {table}: {spec}")
    for name, table, sql in conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "ORDER BY name"
    ):
        lines.append(f"index {name} on {table}: {' '.join(sql.split())}")
    conn.close()
    return "\n".join(lines) + "\n"


def test_migrating_from_empty_gives_the_declared_schema(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "a.db"))
    assert store.schema_version() == migrate.LATEST["sqlite"]  # type: ignore[attr-defined]
    store.close()
    assert describe_sqlite(tmp_path / "a.db") == EXPECTED.read_text()


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in migrate.migrations("sqlite")]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == migrate.LATEST["sqlite"]


def test_two_processes_opening_a_new_database_migrate_once(tmp_path: Path) -> None:
    url = str(tmp_path / "race.db")
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_store(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = sqlite3.connect(url)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (1,)
    conn.close()
