"""``sql`` tasks on SQLite (standard library) or PostgreSQL (psycopg 3, imported only for
``postgresql://`` URLs). Rows (capped at ``max_rows``), ``columns`` and ``rowcount``
become outputs."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from ordo.model import Outcome, State
from ordo.runners.base import RunContext

DEFAULT_MAX_ROWS = 1000


def sqlite_path(url: str, base_dir: str) -> str:
    """``sqlite:///rel.db`` is relative to the flow's folder; ``sqlite:////abs.db`` not."""
    path = url[len("sqlite:///") :]
    return path if os.path.isabs(path) or path == ":memory:" else os.path.join(base_dir, path)


class SqlRunner:
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
            return self._postgres(url, query, params, max_rows, ctx)
        return Outcome(
            State.FAILED,
            reason="error",
            error=f"unsupported database URL {url!r}: expected sqlite:/// or postgresql://",
        )

    def _text(self, ctx: RunContext) -> tuple[str, str | None]:
        if "query" in ctx.fields:
            return str(ctx.fields["query"]), None
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
        timer = _Watch(ctx, conn.interrupt)
        try:
            if many and params is None:
                conn.executescript(query)
                conn.commit()
                return Outcome(State.SUCCESS, outputs={"rowcount": -1, "rows": [], "columns": []})
            cur = conn.execute(query, _params(params))
            outputs = _rows(cur.description, cur.fetchmany(max_rows + 1), max_rows, cur.rowcount)
            conn.commit()
            return Outcome(State.SUCCESS, outputs=outputs)
        except sqlite3.Error as exc:
            return timer.outcome() or Outcome(
                State.FAILED, reason="error", error=f"SQL error: {exc}"
            )
        finally:
            timer.stop()
            conn.close()

    def _postgres(
        self, url: str, query: str, params: Any, max_rows: int, ctx: RunContext
    ) -> Outcome:
        import psycopg

        try:
            conn = psycopg.connect(url, connect_timeout=10, autocommit=False)
        except psycopg.Error as exc:
            return Outcome(
                State.FAILED, reason="error", error=f"cannot connect to PostgreSQL: {exc}".strip()
            )
        timer = _Watch(ctx, conn.cancel)
        try:
            with conn.cursor() as cur:
                cur.execute(query, _params(params))
                rows = cur.fetchmany(max_rows + 1) if cur.description else []
                outputs = _rows(cur.description, rows, max_rows, cur.rowcount)
            conn.commit()
            return Outcome(State.SUCCESS, outputs=outputs)
        except psycopg.Error as exc:
            return timer.outcome() or Outcome(
                State.FAILED, reason="error", error=f"SQL error: {exc}".strip()
            )
        finally:
            timer.stop()
            conn.close()

    def close(self) -> None:
        pass


def _params(params: Any) -> Any:
    if params is None:
        return ()
    return params if isinstance(params, dict) else list(params)


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


class _Watch:
    """Interrupts the query when the attempt times out or is cancelled."""

    def __init__(self, ctx: RunContext, interrupt: Any) -> None:
        self.ctx = ctx
        self.why: str | None = None
        self._done = threading.Event()
        self._interrupt = interrupt
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        timeout = self.ctx.timeout
        waited = 0.0
        while not self._done.wait(0.05):
            waited += 0.05
            if self.ctx.cancel.is_set() or (timeout is not None and waited >= timeout):
                self.why = "killed" if self.ctx.cancel.is_set() else "timeout"
                self._interrupt()
                return

    def outcome(self) -> Outcome | None:
        if self.why == "timeout":
            return Outcome(
                State.FAILED, reason="timeout", error=f"timed out after {self.ctx.timeout:g}s"
            )
        if self.why == "killed":
            return Outcome(State.KILLED, reason="killed", error="killed on request")
        return None

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
