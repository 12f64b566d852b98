"""Secrets: named values kept encrypted in the store (Fernet: AES-128-CBC with an
HMAC-SHA256, from the ``cryptography`` package, imported only when a secret is
encrypted or decrypted). The store sees only the ciphertext; the key never reaches it.

Where the key comes from is the edge's business (``ORDO_SECRET_KEY`` or the key file
``$ORDO_HOME/secret.key``, see :mod:`ordo.cli.common`): a :class:`SecretBox` is handed
a :data:`KeySource` and asks it only when it first needs the key. No other I/O here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from msgspec import Struct, field

from ordo.errors import ConfigError, NotFound, UsageError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
MAX_NAME = 200
MAX_VALUE = 64 * 1024  # characters


def check_name(name: str) -> str:
    """``name`` when it is a valid secret name, else a UsageError saying why."""
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise UsageError(
            f"secret name {name!r}: expected a letter or _ then letters, digits, _ . or - "
            f"(at most {MAX_NAME} characters), e.g. DB_PASSWORD"
        )
    return name


def check_value(name: str, value: str) -> str:
    """``value`` when it can be a secret's value (not empty, at most :data:`MAX_VALUE`
    characters), else a UsageError naming the secret."""
    if not value:
        raise UsageError(
            f"secret {name}: the value is empty (give it on standard input, e.g. "
            f'printf %s "$VALUE" | ordo secrets set {name})'
        )
    if len(value) > MAX_VALUE:
        raise UsageError(
            f"secret {name}: the value has {len(value)} characters, at most {MAX_VALUE} allowed"
        )
    return value


class Key(Struct, frozen=True):
    """A Fernet key (32 bytes, URL-safe base64) and where it came from (the variable's
    name or the key file's path), for messages."""

    value: bytes
    origin: str


#: ``source(create)``: the key; with ``create`` it may make one (the key file) when
#: there is none. Raises ConfigError saying what is wrong.
KeySource = Callable[[bool], Key]


class Revealed(Struct, frozen=True):
    """The secrets one attempt may use: ``values`` by name, and for those that could
    not be decrypted, why (``problems``)."""

    values: Mapping[str, str] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()  # other values to mask: the environment's secret ones

    def get(self, name: str) -> str:
        """The value of secret ``name``; NotFound (unknown) or ConfigError (cannot be
        decrypted) naming it."""
        if name in self.values:
            return self.values[name]
        if name in self.problems:
            raise ConfigError(self.problems[name])
        known = ", ".join(sorted([*self.values, *self.problems])) or "none"
        raise NotFound(
            f"unknown secret {name!r} (secrets: {known}; set one with: ordo secrets set {name})"
        )


class SecretBox:
    """Encrypts and decrypts secret values with the key from ``source`` (None: no key,
    every decryption fails saying so). Decrypted values are remembered by ciphertext
    (a Fernet token is new at each encryption, so a changed secret is decrypted again).
    ``hidden`` are values that are not stored secrets but are masked like them (the
    process environment's secret-named values). Safe to share between threads."""

    def __init__(self, source: KeySource | None, hidden: Iterable[str] = ()) -> None:
        self._source = source
        self._hidden = tuple(hidden)
        self._fernet: Any = None
        self._origin = ""
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def _cipher(self, create: bool) -> Any:
        if self._fernet is not None:
            return self._fernet
        if self._source is None:
            raise ConfigError("no secret key was given to this process (ORDO_SECRET_KEY)")
        key = self._source(create)
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key.value)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{key.origin}: not a valid secret key: expected 32 bytes in URL-safe "
                'base64 (44 characters); make one with: python -c "import base64, os; '
                'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
            ) from None
        self._origin = key.origin
        self._hidden += (key.value.decode("ascii", "replace"),)  # the key itself, if shown
        return self._fernet

    def encrypt(self, name: str, value: str) -> str:
        """The ciphertext of ``value`` (making the key when there is none yet)."""
        with self._lock:
            token = str(self._cipher(True).encrypt(value.encode("utf-8")).decode("ascii"))
            self._known[token] = value
            return token

    def decrypt(self, name: str, token: str) -> str:
        """The value of secret ``name`` from its ciphertext; ConfigError naming the
        secret when there is no key or it was encrypted with another one."""
        with self._lock:
            if token in self._known:
                return self._known[token]
            try:
                fernet = self._cipher(False)
            except ConfigError as exc:
                raise ConfigError(f"secret {name!r} cannot be read: {exc}") from None
            from cryptography.fernet import InvalidToken

            try:
                value = str(fernet.decrypt(token.encode("ascii")).decode("utf-8"))
            except (InvalidToken, ValueError, UnicodeError):
                raise ConfigError(
                    f"secret {name!r} cannot be decrypted with the current key "
                    f"({self._origin}): the key changed since the secret was set; restore "
                    f"the old key or set the secret again (ordo secrets set {name})"
                ) from None
            self._known[token] = value
            return value

    def reveal(self, rows: Iterable[tuple[str, str]]) -> Revealed:
        """Every secret of ``rows`` (name, ciphertext) decrypted, or why not."""
        values: dict[str, str] = {}
        problems: dict[str, str] = {}
        for name, token in rows:
            try:
                values[name] = self.decrypt(name, token)
            except ConfigError as exc:
                problems[name] = str(exc)
        return Revealed(values, problems, self._hidden)

    def known(self) -> tuple[str, ...]:
        """Every value this box masks: the secrets decrypted so far, ``hidden`` and the
        key once read."""
        with self._lock:
            return (*self._known.values(), *self._hidden)
