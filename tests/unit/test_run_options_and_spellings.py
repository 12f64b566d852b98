"""Pure parts of "run with options", the Cloudomation spellings and package SQL
parameters: run options over a task's retry policy, their checks, ``--notify``'s
spelling, ``:name`` parameters for client-side binding, the shapes of ``this.connect``."""

from __future__ import annotations

import pytest

from ordo import this
from ordo.definitions import notify_rule, read_run_options
from ordo.errors import UsageError
from ordo.model import RetryPolicy, RunOptions
from ordo.runners.sql import pyformat, sqlite_statements


def test_run_options_replace_only_the_retry_keys_they_give() -> None:
    own = RetryPolicy(attempts=1, delay=5.0, backoff=3.0, on_exit_codes=(2,))
    options = read_run_options({"attempts": 4, "delay": "500ms"}, "2m", None)
    policy = options.retry_policy(own)
    assert (policy.attempts, policy.delay, policy.backoff) == (4, 0.5, 3.0)
    assert policy.on_exit_codes == (2,)
    assert options.timeout == 120.0
    assert RunOptions.from_dict(options.to_dict()) == options
    assert not RunOptions() and RunOptions().retry_policy(own) is own


def test_wrong_run_options_name_every_field() -> None:
    with pytest.raises(UsageError) as caught:
        read_run_options({"attempts": 0, "tries": 1}, "-1s", [{"on": "sometimes"}])
    text = str(caught.value)
    assert text.startswith("run options: ")
    assert "retry.tries: unknown key 'tries'" in text
    assert "retry.attempts: expected" in text
    assert "timeout: " in text
    assert "notify[0].on: unknown state 'sometimes'" in text


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("ops@example.com", {"on": ["failed"], "email": ["ops@example.com"]}),
        (
            "success,FAILED:a@x.org,b@x.org",
            {"on": ["success", "failed"], "email": ["a@x.org", "b@x.org"]},
        ),
        (
            "https://hooks.example.com/x",
            {"on": ["failed"], "webhook": "https://hooks.example.com/x"},
        ),
        ("killed:http://127.0.0.1:9/h", {"on": ["killed"], "webhook": "http://127.0.0.1:9/h"}),
    ],
)
def test_notify_targets_are_spelled_states_colon_target(text: str, rule: dict[str, object]) -> None:
    assert notify_rule(text) == rule


def test_named_parameters_become_pyformat_outside_quotes_comments_and_casts() -> None:
    script = (
        "SELECT :day, ':day', x::int, 5 % 2, $$ :day $$, \"a:day\" -- :day\nFROM t WHERE w = :who"
    )
    assert pyformat(script, {"day": 1, "who": "a"}) == (
        "SELECT %(day)s, ':day', x::int, 5 %% 2, $$ :day $$, \"a:day\" -- :day\n"
        "FROM t WHERE w = %(who)s"
    )
    assert pyformat("SELECT :other", {"day": 1}) == "SELECT :other"


def test_sqlite_scripts_split_where_statements_end() -> None:
    script = "CREATE TABLE t (x);\nINSERT INTO t VALUES (';');\n\nSELECT x\nFROM t;\n"
    assert sqlite_statements(script) == [
        "CREATE TABLE t (x);\n",
        "INSERT INTO t VALUES (';');\n",
        "\nSELECT x\nFROM t;\n",
    ]


def test_connect_shapes_and_connector_types() -> None:
    outputs = {"columns": ["n", "m"], "rows": [{"n": 2, "m": 3}], "rowcount": 1}
    assert this._shaped(outputs, "fetchval") == 2
    assert this._shaped(outputs, "fetchrow") == {"n": 2, "m": 3}
    assert this._shaped(outputs, "fetch") == [{"n": 2, "m": 3}]
    assert this._shaped(outputs, "execute") == 1
    assert this._shaped({"rows": []}, "fetchval") is None
    assert this._shaped(outputs, None) is outputs
    assert this._connection_type(None, "REST") == "http"
    assert this._connection_type("SQL", "sql") == "sql"
    with pytest.raises(this.OrdoCallError, match="disagree"):
        this._connection_type("sql", "rest")
    assert this._namespace({"project_id": "ops"}, None, "this.flow") == "ops"
    with pytest.raises(this.OrdoCallError, match="init takes 'project_id'"):
        this._namespace({"name": "x"}, None, "this.flow")
