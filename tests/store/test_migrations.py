"""Migrating an empty database gives exactly the declared schema, on both backends."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ordo.engine import open_store
from ordo.store import migrate

HERE = Path(__file__).parent


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


def describe_postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        lines = []
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY table_name"
        ).fetchall()
        for (table,) in tables:
            cols = conn.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            spec = ", ".join(f"{c[0]} {c[1]}{' NOT NULL' if c[2] == 'NO' else ''}" for c in cols)
            lines.append(f"table {table}: {spec}")
        for name, table, sql in conn.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY indexname"
        ):
            lines.append(f"index {name} on {table}: {sql}")
    return "\n".join(lines) + "\n"


def describe(url: str) -> str:
    if url.startswith("sqlite:///"):
        return describe_sqlite(Path(url[len("sqlite:///") :]))
    return describe_postgres(url)


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def test_migrating_from_empty_gives_the_declared_schema(store_url: str) -> None:
    store = open_store(store_url)
    assert store.schema_version() == migrate.LATEST[backend(store_url)]
    store.close()
    expected = HERE / f"schema_{backend(store_url)}.txt"
    assert describe(store_url) == expected.read_text()


def test_migrations_are_numbered_without_gaps() -> None:
    for name in ("sqlite", "postgresql"):
        versions = [m.version for m in migrate.migrations(name)]
        assert versions == list(range(1, len(versions) + 1))
        assert versions[-1] == migrate.LATEST[name]


def test_backends_keep_their_migrations_in_step() -> None:
    sqlite_names = [m.name for m in migrate.migrations("sqlite")]
    assert sqlite_names == [m.name for m in migrate.migrations("postgresql")]


def test_processes_opening_a_new_database_at_once_migrate_once(store_url: str) -> None:
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_store(store_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = open_store(store_url)
    rows = store.db.all("SELECT version FROM schema_migrations")
    store.close()
    assert sorted(r[0] for r in rows) == list(range(1, migrate.LATEST["sqlite"] + 1))
