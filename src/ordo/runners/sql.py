"""``sql`` tasks on SQLite (standard library) or PostgreSQL (psycopg 3, imported only for
``postgresql://`` URLs). Rows (capped at ``max_rows``), ``columns`` and ``rowcount``
become outputs."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from typing import Any

from ordo.masking import MASK
from ordo.model import Outcome, State
from ordo.runners.base import RunContext
from ordo.runners.watch import Watch

DEFAULT_MAX_ROWS = 1000


def sqlite_path(url: str, base_dir: str) -> str:
    """``sqlite:///rel.db`` is relative to the flow's folder; ``sqlite:////abs.db`` not."""
    path = url[len("sqlite:///") :]
    return path if os.path.isabs(path) or path == ":memory:" else os.path.join(base_dir, path)


class SqlRunner:
    """Runs one ``query`` (with ``params``) or a ``script`` of statements, commits, and
    returns ``rows`` (dicts, at most ``max_rows``, then ``truncated: true``), ``columns``
    and ``rowcount``. A timeout or cancel interrupts the statement on the server."""

    def run(self, ctx: RunContext) -> Outcome:
        url = str(ctx.fields["url"])
        query, error = self._text(ctx)
        if error:
            return Outcome(State.FAILED, reason="error", error=error)
        params = ctx.fields.get("params")
        max_rows = int(ctx.fields.get("max_rows", DEFAULT_MAX_ROWS))
        many = "script" in ctx.fields
        if url.startswith("sqlite:///"):
            return self._sqlite(sqlite_path(url, ctx.base_dir), query, params, many, max_rows, ctx)
        if url.startswith(("postgresql://", "postgres://")):
            named = many and isinstance(params, dict)
            if many and isinstance(params, dict):  # :name parameters, bound by the client
                query = pyformat(query, params)
            return self._postgres(url, query, params, max_rows, ctx, client=named)
        return Outcome(
            State.FAILED,
            reason="error",
            error=f"unsupported database URL {url!r}: expected sqlite:/// or postgresql://",
        )

    def _text(self, ctx: RunContext) -> tuple[str, str | None]:
        if "query" in ctx.fields:
            return str(ctx.fields["query"]), None
        if "script" not in ctx.fields:
            return "", "an sql task needs 'query' or 'script'"
        script = str(ctx.fields["script"])
        if "\n" in script.strip() or ";" in script:
            return script, None  # inline statements
        path = os.path.join(ctx.base_dir, script)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read(), None
        except OSError as exc:
            return "", f"cannot read SQL script {path}: {exc.strerror}"

    def _sqlite(
        self, path: str, query: str, params: Any, many: bool, max_rows: int, ctx: RunContext
    ) -> Outcome:
        ctx.log("stdout", f"sqlite {path}")
        try:
            conn = sqlite3.connect(path, timeout=30)
        except sqlite3.Error as exc:
            return Outcome(
                State.FAILED, reason="error", error=f"cannot open SQLite database {path}: {exc}"
            )
        with closing(conn), Watch(ctx, conn.interrupt) as timer:
            try:
                if many and params is None:
                    conn.executescript(query)
                    conn.commit()
                    return Outcome(State.SUCCESS, outputs=_rows(None, [], max_rows, -1))
                if many:  # a script with parameters: one statement at a time
                    *before, query = sqlite_statements(query) or [""]
                    for statement in before:
                        conn.execute(statement, _params(params))
                cur = conn.execute(query, () if params is None else _params(params))
                rows = cur.fetchmany(max_rows + 1)
                outputs = _rows(cur.description, rows, max_rows, cur.rowcount)
                conn.commit()
                return Outcome(State.SUCCESS, outputs=outputs)
            except sqlite3.Error as exc:
                failed = Outcome(State.FAILED, reason="error", error=f"SQL error: {exc}")
        return timer.outcome() or failed

    def _postgres(
        self,
        url: str,
        query: str,
        params: Any,
        max_rows: int,
        ctx: RunContext,
        *,
        client: bool = False,
    ) -> Outcome:
        import psycopg

        ctx.log("stdout", f"postgresql {_redacted(url)}")
        try:
            conn = psycopg.connect(url, connect_timeout=10, autocommit=False)
        except psycopg.Error as exc:
            return Outcome(
                State.FAILED, reason="error", error=f"cannot connect to PostgreSQL: {exc}".strip()
            )
        with conn, Watch(ctx, conn.cancel) as timer:
            try:
                # client-side binding sends one text: a script of several statements
                cursor = psycopg.ClientCursor(conn) if client else conn.cursor()
                with cursor as cur:
                    cur.execute(query, None if params is None else _params(params))
                    while cur.nextset():  # a script: the last statement's rows
                        pass
                    rows = cur.fetchmany(max_rows + 1) if cur.description else []
                    outputs = _rows(cur.description, rows, max_rows, cur.rowcount)
                conn.commit()
                return Outcome(State.SUCCESS, outputs=outputs)
            except psycopg.Error as exc:
                conn.rollback()
                failed = Outcome(State.FAILED, reason="error", error=f"SQL error: {exc}".strip())
        return timer.outcome() or failed

    def close(self) -> None:
        pass


def sqlite_statements(script: str) -> list[str]:
    """A script's statements, split where SQLite says a statement is complete."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    if current.strip():
        statements.append(current)
    return [s for s in statements if s.strip().strip(";").strip()]


#: What ``:name`` must not be found in: quoted text and identifiers, dollar-quoted
#: text, comments, and ``::type`` casts.
_SKIPPED = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$\w*\$).*?\1|--[^\n]*|/\*.*?\*/|::",
    re.DOTALL,
)
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def pyformat(script: str, params: Mapping[str, Any]) -> str:
    """``script`` with its ``:name`` parameters (those in ``params``) as psycopg's
    ``%(name)s`` and every other ``%`` doubled, for client-side binding."""
    out, last = [], 0
    for found in _SKIPPED.finditer(script):
        out.append(_named(script[last : found.start()], params))
        out.append(found.group(0).replace("%", "%%"))
        last = found.end()
    out.append(_named(script[last:], params))
    return "".join(out)


def _named(text: str, params: Mapping[str, Any]) -> str:
    text = text.replace("%", "%%")
    return _NAMED.sub(lambda m: f"%({m[1]})s" if m[1] in params else m.group(0), text)


def _params(params: Any) -> Any:
    return params if isinstance(params, dict) else list(params)


def _redacted(url: str) -> str:
    """The URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    user, at, host = rest.rpartition("@")
    if at and ":" in user:
        user = user.split(":", 1)[0] + ":" + MASK
    return f"{scheme}{sep}{user}{at}{host}"


def _rows(description: Any, rows: list[Any], max_rows: int, rowcount: int) -> dict[str, Any]:
    columns = [d[0] for d in description] if description else []
    outputs: dict[str, Any] = {
        "columns": columns,
        "rows": [dict(zip(columns, (_plain(v) for v in r), strict=False)) for r in rows[:max_rows]],
        "rowcount": rowcount if rowcount >= 0 or not description else len(rows[:max_rows]),
    }
    if len(rows) > max_rows:
        outputs["truncated"] = True
    return outputs


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
