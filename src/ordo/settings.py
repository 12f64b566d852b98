"""Settings: one frozen object, built at the edge from the environment (passed in as a
mapping) and the text of the optional settings file ``$ORDO_HOME/settings.toml``, then
handed down. An environment variable wins over the file; the file over the default.

``settings.toml``::

    db = "postgresql://ordo@db.example.com/ordo"  # the store, when neither --db nor
                                                 # ORDO_DB names one
    [retention]
    days = 30       # ordo gc keeps ended executions this many days
    dev_days = 3    # ... and dev executions (ordo run --dev) this many
    every = 1       # ordo server applies retention itself every this many days; 0: never

    [smtp]          # where ordo server sends notification mail
    host = "mail.example.com"
    port = 587      # 465: SSL; otherwise STARTTLS when the server offers it
    user = ""
    password = ""   # better in ORDO_SMTP_PASSWORD
    sender = "ordo@example.com"

    [server]
    url = "https://ordo.example.com"  # links in notifications
    max_body = 1048576                # bytes; larger request bodies get 413
    max_upload = 10485760             # bytes; a larger uploaded file (packages) gets 413

    [deploy]
    max_file = 1048576       # bytes; a larger file a flow references is not deployed
    max_flow_file = 8388608  # bytes; a larger flow file is not deployed
    [secrets]
    # parts of environment variable names (any case) whose values are masked as ****
    mask_names = "password,passwd,secret,key,token,credential"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from msgspec import Struct, field

from ordo.errors import ConfigError, did_you_mean

FILE_NAME = "settings.toml"
MASK_NAMES = "password,passwd,secret,key,token,credential"


class Setting(Struct, frozen=True):
    """One setting: its key in settings.toml, its variable, default and kind."""

    key: str  # as in the file: table.key; the attribute is the key with _ for .
    env: str  # the environment variable that overrides it
    default: Any
    kind: str = "days"  # days | text | count


SETTINGS = (
    Setting("retention.days", "ORDO_RETENTION_DAYS", 30),
    Setting("retention.dev_days", "ORDO_RETENTION_DEV_DAYS", 3),
    Setting("retention.every", "ORDO_RETENTION_EVERY", 1),
    Setting("smtp.host", "ORDO_SMTP_HOST", "", "text"),
    Setting("smtp.port", "ORDO_SMTP_PORT", 25, "count"),
    Setting("smtp.user", "ORDO_SMTP_USER", "", "text"),
    Setting("smtp.password", "ORDO_SMTP_PASSWORD", "", "text"),
    Setting("smtp.sender", "ORDO_SMTP_SENDER", "ordo@localhost", "text"),
    Setting("server.url", "ORDO_SERVER_URL", "", "text"),
    Setting("server.max_body", "ORDO_MAX_BODY", 1_048_576, "count"),
    Setting("server.max_upload", "ORDO_MAX_UPLOAD", 10_485_760, "count"),
    Setting("deploy.max_file", "ORDO_DEPLOY_MAX_FILE", 1_048_576, "count"),
    Setting("deploy.max_flow_file", "ORDO_DEPLOY_MAX_FLOW_FILE", 8_388_608, "count"),
    Setting("secrets.mask_names", "ORDO_MASK_NAMES", MASK_NAMES, "text"),
    Setting("db", "ORDO_DB", "", "text"),
)


class Settings(Struct, frozen=True):
    """What ordo is configured to do. ``origins`` says where each value came from
    (``default``, the settings file's path, or the environment variable)."""

    db: str = ""
    retention_days: float = 30
    retention_dev_days: float = 3
    retention_every: float = 1
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_sender: str = "ordo@localhost"
    server_url: str = ""
    server_max_body: int = 1_048_576
    server_max_upload: int = 10_485_760
    deploy_max_file: int = 1_048_576
    deploy_max_flow_file: int = 8_388_608
    secrets_mask_names: str = MASK_NAMES
    origins: Mapping[str, str] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        """Equal when the values are, wherever they came from."""
        if not isinstance(other, Settings):
            return NotImplemented
        fields = (f for f in self.__struct_fields__ if f != "origins")
        return all(getattr(self, f) == getattr(other, f) for f in fields)


def from_sources(
    environ: Mapping[str, str], file_text: str | None = None, file_name: str = FILE_NAME
) -> Settings:
    """The settings from ``environ`` over ``file_text`` (the settings file's content, or
    None without one) over the defaults. ConfigError names every bad value: the file or
    the variable it came from, the key, what was expected and what was found."""
    problems: list[str] = []
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    origins = {s.key: "default" for s in SETTINGS}
    by_key = {s.key: s for s in SETTINGS}
    if file_text is not None:
        for key, raw in _file_values(file_text, file_name, problems).items():
            value = _value(by_key[key], raw, problems, f"{file_name}: {key}")
            if value is not None:
                values[key], origins[key] = value, file_name
    for setting in SETTINGS:
        text = environ.get(setting.env)
        if text is None or not text.strip():
            continue
        raw = text if setting.kind == "text" else _number(text)
        value = _value(setting, raw, problems, f"environment {setting.env}: {setting.key}")
        if value is not None:
            values[setting.key], origins[setting.key] = value, setting.env
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(**{k.replace(".", "_"): v for k, v in values.items()}, origins=origins)


def _value(setting: Setting, raw: Any, problems: list[str], where: str) -> Any:
    if setting.kind == "days":
        return _days(raw, problems, where)
    if setting.kind == "text":
        if not isinstance(raw, str):
            problems.append(f"{where}: must be a string, got {raw!r}")
            return None
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        problems.append(f"{where}: must be a whole number >= 0, got {raw!r}")
        return None
    return raw


def _file_values(text: str, file_name: str, problems: list[str]) -> dict[str, Any]:
    """The settings file's values by ``table.key``; unknown ones are problems."""
    import difflib  # (both only when there is a settings file: start-up speed)
    import tomllib

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{file_name}: not valid TOML: {exc}")
        return {}
    known = [s.key for s in SETTINGS]
    tables = list(dict.fromkeys(k.partition(".")[0] for k in known))
    found: dict[str, Any] = {}
    for table, content in document.items():
        if table in known and not isinstance(content, dict):  # a key outside any table
            found[table] = content
            continue
        if table not in tables:
            hint = difflib.get_close_matches(table, tables, n=1)
            tip = f" (did you mean [{hint[0]}]?)" if hint else ""
            problems.append(
                f"{file_name}: unknown table [{table}]{tip}; known settings: {', '.join(known)}"
            )
            continue
        if not isinstance(content, dict):
            problems.append(
                f"{file_name}: {table}: expected a table ([{table}]) of settings, "
                f"got {_kind(content)}; known settings: {', '.join(known)}"
            )
            continue
        for key, value in content.items():
            name = f"{table}.{key}"
            if name in known:
                found[name] = value
                continue
            tip = did_you_mean(name, known)
            problems.append(
                f"{file_name}: unknown setting '{name}'{tip}; known settings: {', '.join(known)}"
            )
    return found


def _number(text: str) -> Any:
    """An environment variable's text as a number when it reads as one, else as is."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _days(value: Any, problems: list[str], where: str) -> float | None:
    """A number of days >= 0, or None with the problem added."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{where}: must be a number of days, got {value!r}")
        return None
    if value < 0:
        problems.append(f"{where}: must be >= 0, got {value!r}")
        return None
    return value


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(type(value), type(value).__name__)
