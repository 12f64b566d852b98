"""Secrets end to end: ten secrets echoed by shell and python tasks in several forms
(plain, JSON-escaped, repr, URL-quoted, base64, split across lines, in outputs, output
keys, metrics, for_each items, errors and check output) are found 0 times by a raw scan
of every table of the real store, on SQLite and PostgreSQL; logs show ``****``. Then the
CLI (``ordo secrets``, the key file, a changed key) and a real server's API."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from server_support import running_server, server_env
from support import ordo

from ordo import engine
from ordo.masking import MASK
from ordo.model import State
from ordo.runners import make_runners
from ordo.secrets import Key, SecretBox
from ordo.store import Store
from ordo.worker import Worker, WorkerSettings

SECRETS = {
    "S_PLAIN": "hunter2-plain-Value",
    "S_QUOTES": 'say "hello" it\'s',
    "S_BACKSLASH": "C:\\path\\to\\x1",
    "S_UNICODE": "pässwörd-日本-🔑",
    "S_NEWLINE": "first line\nsecond line",
    "S_TAB": "tab\tinside|and more",
    "S_URLISH": "p@ss word/&?=x%",
    "S_SHELL": "$HOME-and-`ls`-!x",
    "S_LONG": "long-" + "abc123XYZ" * 12,
    "S_JSON": '{"k": ["v", 1]}',
}

SHELL = r"""
for name in S_PLAIN S_QUOTES S_BACKSLASH S_UNICODE S_NEWLINE S_TAB S_URLISH S_SHELL S_LONG S_JSON
do
  v="${!name}"
  echo "plain[$name]: $v"
  echo "head: ${v:0:3}"
  echo "${v:3}"
  printf '%s' "$v" | base64 -w0; echo
  echo "to stderr: $v" >&2
done
echo "out_plain=$S_PLAIN" >> "$ORDO_OUTPUTS"
echo "key_${S_PLAIN}=1" >> "$ORDO_OUTPUTS"
echo "m_${S_LONG}=1" >> "$ORDO_METRICS"
"""

HANDLER = """
import base64, json, sys
from urllib.parse import quote

NAMES = %r


def handler(system, this, inputs):
    for name in NAMES:
        v = system.secret(name)
        print("plain:", v)
        print("json:", json.dumps(v))
        print("json-utf8:", json.dumps(v, ensure_ascii=False))
        print("repr:", repr(v))
        print("dict:", {"k": v})
        print("url:", quote(v, safe=""))
        print("b64:", base64.b64encode(v.encode()).decode())
        print("split:", v[:4])
        print(v[4:])
        print(v[:2], end="", file=sys.stderr, flush=True)
        print(v[2:], file=sys.stderr)
        this.output("out_" + name, v)
    v = system.secret("S_PLAIN")
    this.output("key_" + v, {"nested": [inputs["given"]]})
    this.metric("m_" + v, 1, tags={"t": system.secret("S_UNICODE")})
    return {"ret": [inputs["given"], {"deep": inputs["given"]}]}


def fails(system, this, inputs):
    raise RuntimeError("failed with " + system.secret("S_BACKSLASH"))
"""


def flow_document() -> dict[str, Any]:
    env = {name: f"{{{{ secret('{name}') }}}}" for name in SECRETS}
    return {
        "id": "secrets",
        "continue_on_error": True,
        "tasks": [
            {"id": "sh", "type": "shell", "command": ["/bin/bash", "-c", SHELL], "env": env},
            {
                "id": "py",
                "type": "python",
                "handler": "tasks:handler",
                "with": {"given": "{{ secret('S_QUOTES') }}"},
            },
            {"id": "py_fails", "type": "python", "handler": "tasks:fails"},
            {
                "id": "sh_fails",
                "type": "shell",
                "command": 'echo "bad: $V" >&2; exit 1',
                "env": {"V": "{{ secret('S_UNICODE') }}"},
            },
            {
                "id": "items",
                "type": "shell",
                "for_each": "{{ [secret('S_PLAIN'), 'other'] }}",
                "command": "echo 'item {{ fork.value }}'",
            },
            {
                "id": "checked",
                "type": "shell",
                "command": "true",
                "post_checks": [{"command": {"run": "echo {{ secret('S_LONG') }}; exit 1"}}],
            },
            {
                "id": "template_error",
                "type": "shell",
                "command": "echo {{ outputs[secret('S_PLAIN')] }}",
            },
        ],
    }


def needles() -> dict[str, str]:
    """What a raw scan looks for: each value, JSON-escaped both ways, each line of a
    value with newlines."""
    found: dict[str, str] = {}
    for name, value in SECRETS.items():
        for text in (value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
            found[text] = name
        for line in value.splitlines() if "\n" in value else []:
            found[line] = name
    return found


def scan_tables(store: Store, db: str) -> list[str]:
    """Every cell of every table, as text, that holds a needle: ``table.column: name``."""
    if db.startswith("postgresql"):
        tables = [
            r[0]
            for r in store.db.all(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
    else:
        tables = [r[0] for r in store.db.all("SELECT name FROM sqlite_master WHERE type = 'table'")]
    hits: list[str] = []
    found = needles()
    for table in tables:
        if db.startswith("postgresql"):
            columns = [
                r[0]
                for r in store.db.all(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = ?",
                    (table,),
                )
            ]
            casts = ", ".join(f"CAST({c} AS TEXT)" for c in columns)
        else:
            columns = [r[1] for r in store.db.all(f"PRAGMA table_info({table})")]
            casts = ", ".join(f"CAST({c} AS TEXT)" for c in columns)
        for row in store.db.all(f"SELECT {casts} FROM {table}"):
            for column, cell in zip(columns, row, strict=True):
                for needle, name in found.items():
                    if cell is not None and needle in str(cell):
                        hits.append(f"{table}.{column}: {name}")
    return hits


def a_box() -> SecretBox:
    key = base64.urlsafe_b64encode(os.urandom(32))
    return SecretBox(lambda create: Key(key, "test key"))


def test_ten_secrets_echoed_in_many_forms_are_never_stored_and_show_as_mask(
    store: Store, db: str, tmp_path: Path
) -> None:
    box = a_box()
    for name, value in SECRETS.items():
        store.set_secret(name, box.encrypt(name, value), 1.0)
    (tmp_path / "tasks.py").write_text(HANDLER % list(SECRETS))
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow_document()))
    revision = engine.register_flow(store, path, 1.0)
    ex_id = engine.start_execution(store, revision, {}, 1.0)
    worker = Worker(
        store,
        make_runners(2),
        settings=WorkerSettings(slots=2, kill_grace=1.0),
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        secrets=box,
    )
    try:
        assert worker.run_execution(ex_id) is State.FAILED
    finally:
        worker.close()
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["sh"].state is State.SUCCESS and runs["py"].state is State.SUCCESS
    assert {runs[t].state for t in ("py_fails", "sh_fails", "checked", "template_error")} == {
        State.FAILED
    }

    assert scan_tables(store, db) == []
    if not db.startswith("postgresql"):  # and not in the file's bytes either, free pages too
        data = b"".join(Path(p).read_bytes() for p in (db, db + "-wal") if Path(p).exists())
        assert [n for t, n in needles().items() if t.encode() in data] == []

    lines = [line.line for line in store.logs(ex_id)]
    text = "\n".join(lines)
    assert "plain[S_PLAIN]: ****" in lines and "plain[S_QUOTES]: ****" in lines
    assert f'json: "{MASK}"' in lines and f"dict: {{'k': '{MASK}'}}" in lines
    assert f"url: {MASK}" in lines and f"b64: {MASK}" in lines
    assert "head: ****" in lines and "split: ****" in lines
    assert f"bad: {MASK}" in lines and "item ****" in lines
    for value in SECRETS.values():
        assert value not in text
    outputs = store.outputs(ex_id)
    assert outputs["sh"] == {"out_plain": MASK, "key_****": 1}
    assert outputs["py"]["out_S_NEWLINE"] == MASK and outputs["py"]["key_****"] == {
        "nested": [MASK]
    }
    assert outputs["py"]["ret"] == [MASK, {"deep": MASK}]
    errors = {r.task_id: r.reason for r in store.task_runs(ex_id)}
    assert errors["py_fails"] == f"RuntimeError: failed with {MASK}"
    assert errors["sh_fails"] == f"exit code 1: bad: {MASK}"
    assert (errors["template_error"] or "").startswith(
        f"task 'template_error': undefined reference 'outputs.{MASK}': task '{MASK}' has no "
    )
    assert "post_check" in (errors["checked"] or "") and MASK in (errors["checked"] or "")


def test_a_secret_set_with_the_cli_is_read_by_a_run_and_a_changed_key_is_a_clear_error(
    tmp_path: Path, ordo_env: dict[str, str], ordo_cmd: list[str]
) -> None:
    db = str(tmp_path / "ordo.db")
    setting = [*ordo_cmd, "secrets", "set", "API_TOKEN", "--db", db]
    done = subprocess.run(
        setting, input="tok-1234-abcd\n", env=ordo_env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "secret API_TOKEN set", done.stderr
    key_file = Path(ordo_env["ORDO_HOME"]) / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    listed = ordo(ordo_cmd, ordo_env, db, "secrets", "list")
    assert "API_TOKEN" in listed.stdout and "tok-1234" not in listed.stdout
    raw = sqlite3.connect(db).execute("SELECT ciphertext FROM secrets").fetchone()[0]
    assert "tok-1234" not in raw

    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: uses\ntasks:\n"
        "  - {id: t, type: shell, command: 'echo got {{ secret(\"API_TOKEN\") }} ok'}\n"
    )
    planned = ordo(ordo_cmd, ordo_env, db, "plan", str(flow))
    assert "command: echo got **** ok" in planned.stdout, planned.stdout + planned.stderr
    ran = ordo(ordo_cmd, ordo_env, db, "run", str(flow))
    assert ran.returncode == 0, ran.stderr
    logs = ordo(ordo_cmd, ordo_env, db, "logs", "1")
    assert "got **** ok" in logs.stdout and "tok-1234" not in logs.stdout

    other = {**ordo_env, "ORDO_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
    failed = ordo(ordo_cmd, other, db, "run", str(flow))
    assert failed.returncode == 1 and "Traceback" not in failed.stdout + failed.stderr
    shown = ordo(ordo_cmd, other, db, "executions", "show", "2").stdout
    assert "API_TOKEN" in shown and "cannot be decrypted with the current key" in shown

    bad = {**ordo_env, "ORDO_SECRET_KEY": "not-a-key"}
    refused = subprocess.run(
        setting, input="x\n", env=bad, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "ORDO_SECRET_KEY: not a valid secret key" in (refused.stderr)
    assert "Traceback" not in refused.stderr


def test_cli_set_reads_stdin_less_one_newline_and_remove_of_unknown_is_exit_2(
    tmp_path: Path, ordo_env: dict[str, str], ordo_cmd: list[str]
) -> None:
    db = str(tmp_path / "ordo.db")
    for text in ("two\n\n", "bad name"):
        name = "MULTI" if text.startswith("two") else "bad name"
        done = subprocess.run(
            [*ordo_cmd, "secrets", "set", name, "--db", db],
            input=text,
            env=ordo_env,
            capture_output=True,
            text=True,
        )
        if name == "MULTI":
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == 2 and "secret name 'bad name'" in done.stderr
    # the value kept one of its two newlines: a task printing it shows two masked lines
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "id: m\ntasks:\n  - {id: t, type: python, handler: 'h:handler'}\n",
    )
    (tmp_path / "h.py").write_text(
        "def handler(system, this, inputs):\n"
        "    v = system.secret('MULTI')\n"
        "    assert v == 'two\\n', repr(v)\n"
        "    print('[' + v + ']')\n"
    )
    ran = ordo(ordo_cmd, ordo_env, db, "run", str(flow))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "[****" in ordo(ordo_cmd, ordo_env, db, "logs", "1").stdout
    gone = ordo(ordo_cmd, ordo_env, db, "secrets", "remove", "NOPE")
    assert gone.returncode == 2 and "no secret named 'NOPE' (secrets: MULTI)" in gone.stderr
    assert ordo(ordo_cmd, ordo_env, db, "secrets", "remove", "MULTI").returncode == 0
    assert json.loads(ordo(ordo_cmd, ordo_env, db, "secrets", "list", "--json").stdout) == []


def test_logs_and_outputs_through_a_real_server_show_the_mask(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    db = str(tmp_path / "ordo.db")
    subprocess.run(
        [sys.executable, "-m", "ordo.cli.main", "--db", db, "secrets", "set", "PW"],
        input="s3cr3t-over-http",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    with running_server(db, env, tmp_path, "--workers", "1") as server:
        server.add_flow(
            "id: api\nnamespace: demo\ntasks:\n"
            "  - id: t\n    type: shell\n"
            '    command: \'echo "pw={{ secret("PW") }}"; echo "v={{ secret("PW") }}" '
            '>> "$ORDO_OUTPUTS"\'\n'
        )
        started = server.http.post("/api/flows/demo/api/executions", json={})
        assert started.status_code == 201, started.text
        ex_id = int(started.json()["id"])
        server.wait_state(ex_id, "SUCCESS")
        logs = server.http.get(f"/api/executions/{ex_id}/logs").text
        outputs = server.http.get(f"/api/executions/{ex_id}/outputs").json()
        document = server.http.get(f"/api/executions/{ex_id}").text
    assert "pw=****" in logs and "s3cr3t" not in logs
    assert outputs["tasks"]["t"] == {"v": MASK}, outputs
    assert "s3cr3t" not in document


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path, ordo_env: dict[str, str], ordo_cmd: list[str], mode: int
) -> None:
    home = Path(ordo_env["ORDO_HOME"])
    home.mkdir(parents=True)
    key = home / "secret.key"
    key.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
    key.chmod(mode)
    done = subprocess.run(
        [*ordo_cmd, "secrets", "set", "A", "--db", str(tmp_path / "o.db")],
        input="value",
        env=ordo_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and f"chmod 600 {key}" in done.stderr
