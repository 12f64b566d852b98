"""The secrets table: each secret's name and ciphertext. The store never sees a value
in clear nor the key (encryption is :mod:`ordo.secrets`'s). Shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass

from ordo.errors import NotFound
from ordo.store.steps import Steps

SECRET = "SELECT ciphertext FROM secrets WHERE name = ?"
INSERT_SECRET = """
INSERT INTO secrets (name, ciphertext, created_at, updated_at) VALUES (?, ?, ?, ?)
"""
UPDATE_SECRET = "UPDATE secrets SET ciphertext = ?, updated_at = ? WHERE name = ?"
SECRET_ROWS = "SELECT name, ciphertext FROM secrets ORDER BY name"
#: :data:`SecretsVersion`, as columns of a claim's statement
SECRETS_VERSION = (
    "(SELECT count(*) FROM secrets) AS secrets, (SELECT sum(updated_at) FROM secrets) AS changed"
)
LIST_SECRETS = "SELECT name, created_at, updated_at FROM secrets ORDER BY name"
DELETE_SECRET = "DELETE FROM secrets WHERE name = ?"


@dataclass(frozen=True)
class SecretRow:
    """A secret as listed: never its value."""

    name: str
    created_at: float
    updated_at: float


#: What tells that the secrets changed: their number and the sum of their times of
#: change, ``(count, sum(updated_at))`` (any change moves one or the other, whatever the
#: clocks of the machines that made it); a claim reads it with the task runs it takes.
SecretsVersion = tuple[int, float | None]


class Secrets(Steps):
    """Secrets' ciphertexts; :class:`~ordo.store.sql.SqlStore` adds the rest."""

    def __init__(self) -> None:
        super().__init__()
        #: the secrets' version the last claim saw, until another transaction begins
        self._secrets_seen: SecretsVersion | None = None
        self._secrets_kept: tuple[SecretsVersion, list[tuple[str, str]]] | None = None

    def _forget_secrets_seen(self) -> None:
        """A transaction begins: a claim in it tells the secrets' version again."""
        self._secrets_seen = None

    def set_secret(self, name: str, ciphertext: str, now: float) -> bool:
        """Store secret ``name``'s ciphertext (replacing the one it had); True when the
        secret is new."""
        with self.transaction():
            self._lock(f"secret:{name}")
            if self._one(SECRET, (name,)) is None:
                self._execute(INSERT_SECRET, (name, ciphertext, now, now))
                return True
            self._execute(UPDATE_SECRET, (ciphertext, now, name))
            return False

    def get_secret(self, name: str) -> str:
        """Secret ``name``'s ciphertext; NotFound naming the secrets there are."""
        row = self._one(SECRET, (name,))
        if row is None:
            raise NotFound(f"no secret named {name!r} (secrets: {self._secret_names()})")
        return str(row[0])

    def secret_rows(self) -> list[tuple[str, str]]:
        """Every secret as (name, ciphertext), by name. Right after a claim (until this
        store begins another transaction), read again only when the claim saw them
        change: a worker launching what it claimed does not read them every step."""
        seen, kept = self._secrets_seen, self._secrets_kept
        if seen is not None and kept is not None and kept[0] == seen:
            return list(kept[1])
        rows = [(str(r[0]), str(r[1])) for r in self._all(SECRET_ROWS)]
        self._secrets_kept = None if seen is None else (seen, rows)
        return list(rows)

    def list_secrets(self) -> list[SecretRow]:
        """Every secret's name and times, by name."""
        return [SecretRow(str(r[0]), float(r[1]), float(r[2])) for r in self._all(LIST_SECRETS)]

    def remove_secret(self, name: str) -> None:
        """Forget secret ``name``; NotFound naming the secrets there are."""
        with self.transaction():
            if not self._execute(DELETE_SECRET, (name,)).rowcount:
                raise NotFound(f"no secret named {name!r} (secrets: {self._secret_names()})")

    def _secret_names(self) -> str:
        return ", ".join(r.name for r in self.list_secrets()) or "none"
