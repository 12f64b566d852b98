"""The sql runner on real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ordo.model import State
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext

RunnerCtx = Callable[..., RunContext]

SEED = "create table t (n integer, s text);\ninsert into t values (1, 'a'), (2, 'b'), (3, 'c');\n"


def test_sqlite_script_query_cap_rowcount_and_commit(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    sql = runner_set.get("sql")
    url = "sqlite:///data/w.db"
    (tmp_path / "data").mkdir()
    (tmp_path / "seed.sql").write_text(SEED)
    assert sql.run(runner_ctx(tmp_path, {"url": url, "script": "seed.sql"})).ok
    capped = sql.run(
        runner_ctx(
            tmp_path,
            {"url": url, "query": "select * from t where n > ? order by n", "params": [0]}
            | {"max_rows": 2},
        )
    )
    assert capped.outputs == {
        "columns": ["n", "s"],
        "rows": [{"n": 1, "s": "a"}, {"n": 2, "s": "b"}],
        "rowcount": 2,
        "truncated": True,
    }
    named = sql.run(
        runner_ctx(
            tmp_path, {"url": url, "query": "select s from t where n = :n", "params": {"n": 3}}
        )
    )
    assert named.outputs["rows"] == [{"s": "c"}] and "truncated" not in named.outputs
    changed = sql.run(runner_ctx(tmp_path, {"url": url, "query": "update t set s = 'z'"}))
    assert changed.outputs["rowcount"] == 3
    with sqlite3.connect(tmp_path / "data" / "w.db") as check:
        assert check.execute("select count(*) from t where s = 'z'").fetchone() == (3,)
    check.close()


def test_sqlite_absolute_url_and_inline_script(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'abs.db'}"
    assert url.startswith("sqlite:////")
    sql = runner_set.get("sql")
    assert sql.run(runner_ctx(tmp_path / "elsewhere", {"url": url, "script": SEED})).ok
    count = sql.run(runner_ctx(tmp_path, {"url": url, "query": "select count(*) as c from t"}))
    assert count.outputs["rows"] == [{"c": 3}]


def test_sqlite_errors_carry_the_database_message(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    sql = runner_set.get("sql")
    bad = sql.run(runner_ctx(tmp_path, {"url": "sqlite:///x.db", "query": "select * from nope"}))
    assert (bad.state, bad.reason, bad.error) == (
        State.FAILED,
        "error",
        "SQL error: no such table: nope",
    )
    missing = sql.run(runner_ctx(tmp_path, {"url": "sqlite:///x.db", "script": "none.sql"}))
    assert missing.state is State.FAILED and "none.sql" in (missing.error or "")


SLOW = (
    "with recursive c(x) as (select 1 union all select x + 1 from c) "
    "select count(*) from c where x < 0"
)


def test_sqlite_timeout_and_cancel_interrupt_the_query(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    sql = runner_set.get("sql")
    timed = sql.run(runner_ctx(tmp_path, {"url": "sqlite:///s.db", "query": SLOW}, timeout=0.3))
    assert (timed.state, timed.reason, timed.error) == (
        State.FAILED,
        "timeout",
        "timed out after 0.3s",
    )
    ctx = runner_ctx(tmp_path, {"url": "sqlite:///s.db", "query": SLOW})
    timer = threading.Timer(0.2, ctx.cancel.set)
    timer.start()
    killed = sql.run(ctx)
    timer.join()
    assert (killed.state, killed.reason) == (State.KILLED, "killed")


@pytest.fixture
def runner_pg_table(postgres_url: str) -> str:
    return f"ordo_runner_{uuid.uuid4().hex[:10]}"


def test_postgres_rows_cap_script_and_errors(
    runner_set: RunnerSet,
    runner_ctx: RunnerCtx,
    tmp_path: Path,
    postgres_url: str,
    runner_pg_table: str,
) -> None:
    sql = runner_set.get("sql")
    table = runner_pg_table
    made = sql.run(
        runner_ctx(
            tmp_path,
            {
                "url": postgres_url,
                "script": f"create table {table} (n int, s text);\n"
                f"insert into {table} select i, 'v' || i from generate_series(1, 5) i;\n"
                f"select count(*) as c from {table};",
            },
        )
    )
    assert made.ok, made.error
    assert made.outputs["rows"] == [{"c": 5}]
    query = f"select n, s from {table} where n > %s order by n"
    capped = sql.run(
        runner_ctx(tmp_path, {"url": postgres_url, "query": query, "params": [1], "max_rows": 3})
    )
    assert capped.outputs["rows"] == [{"n": 2, "s": "v2"}, {"n": 3, "s": "v3"}, {"n": 4, "s": "v4"}]
    assert (capped.outputs["columns"], capped.outputs["truncated"]) == (["n", "s"], True)
    percent = sql.run(runner_ctx(tmp_path, {"url": postgres_url, "query": "select '100%' as p"}))
    assert percent.outputs["rows"] == [{"p": "100%"}], percent.error
    deleted = sql.run(
        runner_ctx(tmp_path, {"url": postgres_url, "query": f"delete from {table} where n < 3"})
    )
    assert deleted.outputs["rowcount"] == 2
    bad = sql.run(runner_ctx(tmp_path, {"url": postgres_url, "query": "select * from nope_x"}))
    assert (bad.state, bad.reason) == (State.FAILED, "error")
    assert 'relation "nope_x" does not exist' in (bad.error or "")


def test_postgres_timeout_cancels_the_statement(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path, postgres_url: str
) -> None:
    ctx = runner_ctx(tmp_path, {"url": postgres_url, "query": "select pg_sleep(30)"}, timeout=0.5)
    outcome = runner_set.get("sql").run(ctx)
    assert (outcome.state, outcome.reason, outcome.error) == (
        State.FAILED,
        "timeout",
        "timed out after 0.5s",
    )
