"""Shared pieces of the CLI: opening the store, parsing ``key=value``, formatting."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ordo import settings
from ordo.engine import open_store
from ordo.errors import ConfigError, UsageError
from ordo.masking import MaskingFilter, secret_name_pattern, secret_values
from ordo.secrets import Key, SecretBox
from ordo.store import Store

#: The variable holding the secrets' key; without it, the key file in ``$ORDO_HOME``.
KEY_VARIABLE = "ORDO_SECRET_KEY"
KEY_FILE = "secret.key"
#: The variable holding the UI sessions' key; without it, the session key file.
SESSION_VARIABLE = "ORDO_SESSION_KEY"
SESSION_FILE = "session.key"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def database_url(cli_value: str | None, environ: Mapping[str, str]) -> str:
    """``--db``, else ``$ORDO_DB``, else ``db`` of ``$ORDO_HOME/settings.toml`` (a
    relative file path there is relative to ``$ORDO_HOME``), else
    ``$ORDO_HOME/ordo.db`` (``~/.ordo``)."""
    if cli_value:
        return cli_value
    if environ.get("ORDO_DB"):
        return environ["ORDO_DB"]
    configured = load_settings(environ).db.strip()
    if configured:
        if "://" in configured:
            return configured
        return os.path.join(ordo_home(environ), os.path.expanduser(configured))
    from ordo.store import default_path

    return str(default_path(dict(environ)))


def open_db(cli_value: str | None, environ: Mapping[str, str]) -> Store:
    return open_store(database_url(cli_value, environ))


def ordo_home(environ: Mapping[str, str]) -> str:
    """``$ORDO_HOME``, else ``~/.ordo``."""
    return environ.get("ORDO_HOME") or os.path.join(os.path.expanduser("~"), ".ordo")


def secret_box(environ: Mapping[str, str]) -> SecretBox:
    """What encrypts and decrypts secrets, with the key of :func:`secret_key` (read when
    first needed); it also masks the values of ``environ``'s variables named like a
    secret (the ``secrets.mask_names`` setting), which tasks inherit."""
    names = load_settings(environ).secrets_mask_names.split(",")
    hidden = secret_values(environ, secret_name_pattern(names))
    return SecretBox(lambda create: secret_key(environ, create), hidden)


#: Loggers of libraries that print URLs, headers or queries at INFO: WARNING and up only.
QUIET_LOGGERS = ("httpx", "httpcore", "uvicorn.access", "psycopg", "urllib3", "aiosmtpd")


def configure_logging(box: SecretBox, level: int = logging.INFO, fmt: str = LOG_FORMAT) -> None:
    """The process log on stderr, every record masked by the secrets ``box`` knows (the
    decrypted ones and the environment's secret-named values); the libraries of
    :data:`QUIET_LOGGERS` only from WARNING."""
    logging.basicConfig(level=level, stream=sys.stderr, format=fmt)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    masking = MaskingFilter(box.known)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(masking)


def secret_key(environ: Mapping[str, str], create: bool) -> Key:
    """``$ORDO_SECRET_KEY``, else the key file ``$ORDO_HOME/secret.key`` (made with mode
    0600 when there is none and ``create``). ConfigError says what is wrong."""
    text = environ.get(KEY_VARIABLE, "").strip()
    if text:
        return Key(text.encode("ascii", "replace"), KEY_VARIABLE)
    path = os.path.join(ordo_home(environ), KEY_FILE)
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"no secret key: {KEY_VARIABLE} is not set and {path} does not exist "
                "(the secrets were set with a key this process does not have)"
            ) from None
    try:
        return _make_key(path)
    except FileExistsError:  # another process made it first
        return _read_key(path)


def session_key(environ: Mapping[str, str]) -> bytes:
    """The key UI sessions and CSRF tokens are signed with: ``$ORDO_SESSION_KEY`` (any
    text of 32 characters or more), else the file ``$ORDO_HOME/session.key``, made with
    mode 0600 on first use. It is never in the store, so a copy of the database cannot
    forge a session; every server of one store needs the same. ConfigError says what is
    wrong."""
    text = environ.get(SESSION_VARIABLE, "").strip()
    if text:
        if len(text) < 32:
            raise ConfigError(
                f"{SESSION_VARIABLE}: too short ({len(text)} characters): use 32 random "
                'characters or more, e.g. python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
        return text.encode("utf-8")
    path = os.path.join(ordo_home(environ), SESSION_FILE)
    try:
        return _read_key(path, "session key").value
    except FileNotFoundError:
        pass
    try:
        return _make_key(path, "session key").value
    except FileExistsError:  # another server made it first
        return _read_key(path, "session key").value


def _read_key(path: str, what: str = "secret key") -> Key:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{path}: the {what} file can be read by others (mode {mode & 0o777:o}); "
            f"make it private: chmod 600 {path}"
        )
    return Key(data.strip(), path)


def _make_key(path: str, what: str = "secret key") -> Key:
    """A new key in a new file of mode 0600: written under a temporary name, then linked
    into place, so no process ever reads a half-written key."""
    import base64

    key = base64.urlsafe_b64encode(os.urandom(32))
    folder = os.path.dirname(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
    except FileExistsError:
        raise
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigError(f"{path}: cannot make the {what} file: {why}") from None
    return Key(key, path)


def load_settings(environ: Mapping[str, str]) -> settings.Settings:
    """The settings from ``environ`` over ``$ORDO_HOME/settings.toml`` (``~/.ordo``), if
    that file exists."""
    path = os.path.join(ordo_home(environ), settings.FILE_NAME)
    text = None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read settings file: {exc.strerror or exc}") from exc
    if data is not None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return settings.from_sources(environ, text, path)


def parse_pairs(items: Sequence[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a bad item is a UsageError."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects KEY=VALUE, found {item!r}")
        result[key.strip()] = value
    return result


def skipped_tasks(values: Sequence[str]) -> list[str]:
    """``--skip a,b --skip c`` -> ``[a, b, c]``."""
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


def plural(count: int, noun: str) -> str:
    """``1 task``, ``2 tasks``, ``0 tasks``, ``1,200 rows``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(0.0, end - start)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (no colours: safe for pipes and files)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
