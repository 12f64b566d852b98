"""A small migrator: numbered plain-SQL files per backend and a version table.

``migrations/<backend>/NNNN_name.sql`` are applied in number order, each in the same
write transaction that records it in ``schema_migrations``, so two processes opening a
new database at once apply each migration exactly once.
"""

from __future__ import annotations

from msgspec import Struct


class Migration(Struct, frozen=True):
    """One numbered migration file of a backend."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file split into statements (our migrations keep ``;`` at line ends)."""
        parts = [p.strip() for p in self.sql.split(";\n")]
        return [p.rstrip(";") for p in parts if p and not _only_comments(p)]


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())


def migrations(backend: str) -> list[Migration]:
    """Every migration shipped for ``backend``, in order."""
    from importlib import resources  # only when a database is created or upgraded

    folder = resources.files("ordo.store").joinpath("migrations", backend)
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            number, _, rest = name.partition("_")
            found.append(Migration(int(number), rest[:-4], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


LATEST = {"sqlite": 16, "postgresql": 16}

CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""
