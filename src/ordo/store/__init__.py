"""The store: the single owner of state. ``open_store(url)`` picks the backend."""

from __future__ import annotations

from ordo.errors import ConfigError
from ordo.store.sql import SqlStore

Store = SqlStore

__all__ = ["Store", "open_store"]


def open_store(url: str) -> Store:
    """Open (creating and migrating when needed) the store at ``url``.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain file path select
    SQLite; ``postgresql://user@host:port/database`` selects PostgreSQL.
    """
    from ordo.store.sqlite import SqliteStore

    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        from ordo.store.postgres import PostgresStore

        return PostgresStore(url)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"unknown database URL scheme {scheme!r} in {url!r}: "
            "expected sqlite:///PATH or postgresql://..."
        )
    return SqliteStore(url)
