"""The store: the single owner of state. ``open_store(url, policy=...)`` picks the
backend; :func:`ordo.engine.open_store` gives it the engine's policy."""

from __future__ import annotations

import os
from pathlib import Path

from ordo.errors import ConfigError
from ordo.store.facade import Store
from ordo.store.ports import Decisions, installed_policy

__all__ = ["Store", "default_path", "open_store"]


def open_store(url: str, *, policy: Decisions | None = None) -> Store:
    """Open (creating and migrating when needed) the store at ``url``.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain file path select
    SQLite; ``postgresql://user@host:port/database`` selects PostgreSQL. ``policy``
    decides what follows from what is recorded (:mod:`ordo.store.ports`): the store
    names none (:func:`ordo.engine.open_store` gives it the engine's); without one, the
    installed distribution's (:func:`~ordo.store.ports.installed_policy`).
    """
    if policy is None:
        policy = installed_policy()
    from ordo.store.sqlite import SqliteDb

    if url.startswith("sqlite:///"):
        return Store(SqliteDb(url[len("sqlite:///") :]), policy=policy)
    if url.startswith(("postgresql://", "postgres://")):
        from ordo.store.postgres import PostgresDb

        return Store(PostgresDb(url), policy=policy)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"unknown database URL scheme {scheme!r} in {url!r}: "
            "expected sqlite:///PATH or postgresql://..."
        )
    return Store(SqliteDb(url), policy=policy)


def default_path(environ: dict[str, str] | os._Environ[str]) -> Path:
    """The embedded store's file when no URL is given: ``$ORDO_HOME/ordo.db``
    (``~/.ordo/ordo.db``)."""
    home = environ.get("ORDO_HOME") or os.path.join(os.path.expanduser("~"), ".ordo")
    return Path(home) / "ordo.db"
