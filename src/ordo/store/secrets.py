"""Tokens and secrets: API tokens (their hashes), secrets (their ciphertexts) and named
connections. The store never sees a secret's value in clear nor the key (encryption is
:mod:`ordo.secrets`'s), nor a token itself (its hash only). Shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from msgspec import Struct

from ordo.errors import Conflict, NotFound
from ordo.store.db import Db, Row, dumps
from ordo.store.records import Connection

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

TOKEN_COLUMNS = "id, name, read_only, created_at, last_used_at, revoked_at, namespaces"
INSERT_TOKEN = """
INSERT INTO api_tokens (name, token_hash, read_only, created_at, namespaces)
VALUES (?, ?, ?, ?, ?)
"""
TOKEN_BY_NAME = "SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL"
TOKEN_BY_HASH = f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?"
LIST_TOKENS = f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
REVOKE_TOKEN = """
UPDATE api_tokens SET revoked_at = ? WHERE (name = ? OR CAST(id AS TEXT) = ?)
    AND revoked_at IS NULL
"""
TOKEN_USED = "UPDATE api_tokens SET last_used_at = ? WHERE id = ?"
SESSION_TOKEN = """
SELECT name, read_only, token_hash, namespaces FROM api_tokens
WHERE id = ? AND revoked_at IS NULL
"""

CONNECTION_COLUMNS = "name, type, config, created_at, updated_at"
GET_CONNECTION = f"SELECT {CONNECTION_COLUMNS} FROM connections WHERE name = ?"
LIST_CONNECTIONS = f"SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY name"
INSERT_CONNECTION = """
INSERT INTO connections (name, type, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
"""
UPDATE_CONNECTION = "UPDATE connections SET type = ?, config = ?, updated_at = ? WHERE name = ?"
DELETE_CONNECTION = "DELETE FROM connections WHERE name = ?"


class SecretRow(Struct, frozen=True):
    """A secret as listed: never its value."""

    name: str
    created_at: float
    updated_at: float


class TokenRow(Struct, frozen=True):
    """An API token as stored (never its value)."""

    id: int
    name: str
    read_only: bool
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    namespaces: tuple[str, ...] | None = None  # None: every namespace


#: What tells that the secrets changed: their number and the sum of their times of
#: change, ``(count, sum(updated_at))`` (any change moves one or the other, whatever the
#: clocks of the machines that made it); a claim reads it with the task runs it takes.
SecretsVersion = tuple[int, float | None]


class Secrets:
    """Secrets' ciphertexts."""

    def __init__(self, db: Db) -> None:
        self.db = db
        #: the secrets' version the last claim saw, until another transaction begins
        self._seen: SecretsVersion | None = None
        self._kept: tuple[SecretsVersion, list[tuple[str, str]]] | None = None
        db.on_begin(self._forget_seen)

    def _forget_seen(self) -> None:
        """A transaction begins: a claim in it tells the secrets' version again."""
        self._seen = None

    def saw(self, version: SecretsVersion) -> None:
        """A claim read the secrets' version with what it took."""
        self._seen = version

    def set_secret(self, name: str, ciphertext: str, now: float) -> bool:
        """Store secret ``name``'s ciphertext (replacing the one it had); True when the
        secret is new."""
        with self.db.transaction():
            self.db.lock(f"secret:{name}")
            if self.db.one(SECRET, (name,)) is None:
                self.db.execute(INSERT_SECRET, (name, ciphertext, now, now))
                return True
            self.db.execute(UPDATE_SECRET, (ciphertext, now, name))
            return False

    def get_secret(self, name: str) -> str:
        """Secret ``name``'s ciphertext; NotFound naming the secrets there are."""
        row = self.db.one(SECRET, (name,))
        if row is None:
            raise NotFound(f"no secret named {name!r} (secrets: {self._names()})")
        return str(row["ciphertext"])

    def secret_rows(self) -> list[tuple[str, str]]:
        """Every secret as (name, ciphertext), by name. Right after a claim (until this
        store begins another transaction), read again only when the claim saw them
        change: a worker launching what it claimed does not read them every step."""
        seen, kept = self._seen, self._kept
        if seen is not None and kept is not None and kept[0] == seen:
            return list(kept[1])
        rows = [(str(r["name"]), str(r["ciphertext"])) for r in self.db.all(SECRET_ROWS)]
        self._kept = None if seen is None else (seen, rows)
        return list(rows)

    def list_secrets(self) -> list[SecretRow]:
        """Every secret's name and times, by name."""
        return [
            SecretRow(str(r["name"]), float(r["created_at"]), float(r["updated_at"]))
            for r in self.db.all(LIST_SECRETS)
        ]

    def remove_secret(self, name: str) -> None:
        """Forget secret ``name``; NotFound naming the secrets there are."""
        with self.db.transaction():
            if not self.db.execute(DELETE_SECRET, (name,)).rowcount:
                raise NotFound(f"no secret named {name!r} (secrets: {self._names()})")

    def _names(self) -> str:
        return ", ".join(r.name for r in self.list_secrets()) or "none"


class Tokens:
    """API tokens, kept by the hash of the token."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def add_token(
        self,
        name: str,
        token_hash: str,
        read_only: bool,
        now: float,
        namespaces: Sequence[str] | None = None,
    ) -> int:
        """Conflict when a token that is not revoked has this name. ``namespaces``
        limits it to those namespaces (None: every one)."""
        scope = json.dumps(sorted(set(namespaces))) if namespaces is not None else None
        with self.db.transaction():
            self.db.lock(f"token:{name}")
            if self.db.one(TOKEN_BY_NAME, (name,)) is not None:
                raise Conflict(f"a token named {name!r} exists (ordo tokens revoke {name})")
            return self.db.insert(INSERT_TOKEN, (name, token_hash, int(read_only), now, scope))

    def find_token(self, token_hash: str) -> TokenRow | None:
        row = self.db.one(TOKEN_BY_HASH, (token_hash,))
        return _token(row) if row else None

    def token_used(self, token_id: int, now: float) -> None:
        with self.db.transaction():
            self.db.execute(TOKEN_USED, (now, token_id))

    def list_tokens(self) -> list[TokenRow]:
        return [_token(r) for r in self.db.all(LIST_TOKENS)]

    def revoke_token(self, name_or_id: str, now: float) -> None:
        """NotFound when no token that is not revoked has this name or id."""
        with self.db.transaction():
            if not self.db.execute(REVOKE_TOKEN, (now, name_or_id, name_or_id)).rowcount:
                raise NotFound(f"no active token named {name_or_id!r} (ordo tokens list)")

    def session_token(self, token_id: int) -> tuple[str, bool, str, tuple[str, ...] | None] | None:
        """(name, read_only, token_hash, namespaces) of a token that is not revoked: what
        signs and checks a web session made with it."""
        row = self.db.one(SESSION_TOKEN, (token_id,))
        if row is None:
            return None
        return (row["name"], bool(row["read_only"]), row["token_hash"], _scope(row))


class Connections:
    """Named connections (a SQL database, a web service) that tasks use."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def save_connection(
        self, name: str, kind: str, config: Mapping[str, Any], now: float, *, replace: bool
    ) -> None:
        """Add a connection, or change an existing one when ``replace``."""
        shown = dumps(dict(config))
        with self.db.transaction():
            exists = self.db.one(GET_CONNECTION, (name,)) is not None
            if exists and not replace:
                raise Conflict(f"connection {name!r} exists (use --replace to change it)")
            if exists:
                self.db.execute(UPDATE_CONNECTION, (kind, shown, now, name))
            else:
                self.db.execute(INSERT_CONNECTION, (name, kind, shown, now, now))

    def remove_connection(self, name: str) -> None:
        with self.db.transaction():
            if not self.db.execute(DELETE_CONNECTION, (name,)).rowcount:
                self.get_connection(name)  # raises NotFound naming those that exist

    def get_connection(self, name: str) -> Connection:
        """The named connection; NotFound names the ones that exist."""
        row = self.db.one(GET_CONNECTION, (name,))
        if row is None:
            known = ", ".join(c.name for c in self.list_connections()) or "none"
            raise NotFound(f"unknown connection {name!r} (connections: {known})")
        return _connection(row)

    def list_connections(self) -> list[Connection]:
        return [_connection(r) for r in self.db.all(LIST_CONNECTIONS)]


def _scope(r: Row) -> tuple[str, ...] | None:
    return tuple(json.loads(r["namespaces"])) if r["namespaces"] is not None else None


def _token(r: Row) -> TokenRow:
    return TokenRow(
        int(r["id"]),
        r["name"],
        bool(r["read_only"]),
        float(r["created_at"]),
        r["last_used_at"],
        r["revoked_at"],
        _scope(r),
    )


def _connection(r: Row) -> Connection:
    return Connection(
        r["name"], r["type"], json.loads(r["config"]), r["created_at"], r["updated_at"]
    )
