"""The master key and the secrets a worker inherits: ``ORDO_SECRET_KEY`` never reaches a
task (its environment, its templates, a python host's ``os.environ`` or
``/proc/self/environ``), and the values of inherited variables named like a secret
(``FOO_TOKEN``, ``MY_CREDENTIAL``) are masked before anything is stored: a raw scan of
the SQLite file and of every PostgreSQL table finds neither. An http task with a secret
in its URL never shows it on the stderr of ``ordo worker`` or ``ordo server``."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from server_support import running_server, server_env

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
TOKEN = "tok-3f9a-inherited-value"
CREDENTIAL = "cred-77b1-inherited-value"
STORED = "stored-secret-5c2e-value"

FLOW = """\
id: envdump
tasks:
  - id: shell
    type: shell
    command: |
      env | sort
      tr '\\0' '\\n' < /proc/$$/environ | sort
      echo "token=$FOO_TOKEN" >> "$ORDO_OUTPUTS"
  - id: py
    type: python
    script: dump.py
  - id: template
    type: shell
    allow_failure: true
    command: "echo {{ env.ORDO_SECRET_KEY }}"
  - id: inline
    type: shell
    command: "echo 'cred={{ env.MY_CREDENTIAL }}'"
  - id: fetch
    type: http
    url: "{{ inputs.base }}/hello?key={{ secret('API_KEY') }}"
inputs:
  base: {type: string}
"""

DUMP = """\
import os
print(sorted(os.environ.items()))
print(open("/proc/self/environ", "rb").read().replace(b"\\0", b"\\n").decode())
print("key:", os.environ.get("ORDO_SECRET_KEY", "absent"))
"""


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"hello": "world"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(base: dict[str, str]) -> dict[str, str]:
    return {**base, "ORDO_SECRET_KEY": KEY, "FOO_TOKEN": TOKEN, "MY_CREDENTIAL": CREDENTIAL}


def _ordo(cmd: list[str], env: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    return subprocess.run(
        [*cmd, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def _raw_store(db: str) -> bytes:
    """Every byte the store holds: the SQLite files, or every row of every table."""
    if not db.startswith("postgresql"):
        return b"".join(Path(p).read_bytes() for p in (db, db + "-wal") if os.path.exists(p))
    import psycopg

    with psycopg.connect(db) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        rows = [str(r[0]) for t in tables for r in conn.execute(f'SELECT t::text FROM "{t}" t')]
    return "\n".join(rows).encode()


@pytest.mark.timeout(300)  # several ordo processes on a loaded 2-core runner
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_key_and_inherited_secrets_are_never_stored(
    backend: str,
    ordo_cmd: list[str],
    ordo_env: dict[str, str],
    tmp_path: Path,
    http_target: str,
    request: pytest.FixtureRequest,
) -> None:
    db = str(tmp_path / "o.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    env = _env(ordo_env)
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "dump.py").write_text(DUMP)
    done = _ordo(ordo_cmd, env, "--db", db, "secrets", "set", "API_KEY", stdin=STORED)
    assert done.returncode == 0, done.stderr
    flow, base = str(tmp_path / "flow.yaml"), f"base={http_target}"
    stderr = ""
    if backend == "sqlite":  # ordo run: store, worker and display in one process
        ran = _ordo(ordo_cmd, env, "--db", db, "run", flow, "-i", base)
        stderr = ran.stderr
        assert ran.returncode == 0, ran.stdout + ran.stderr
    else:  # ordo worker: a worker process alone
        submitted = _ordo(ordo_cmd, env, "--db", db, "submit", flow, "-i", base)
        assert submitted.returncode == 0, submitted.stderr
        log = tmp_path / "worker.log"
        with open(log, "w") as out:
            worker = subprocess.Popen(
                [*ordo_cmd, "--db", db, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 120
            while True:
                shown = _ordo(ordo_cmd, env, "--db", db, "executions", "show", "1", "--json")
                if json.loads(shown.stdout)["state"] in ("SUCCESS", "WARNING", "FAILED"):
                    break
                assert time.monotonic() < deadline, shown.stdout
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        stderr = log.read_text()
    logs = _ordo(ordo_cmd, env, "--db", db, "logs", "1").stdout
    document = _ordo(ordo_cmd, env, "--db", db, "executions", "show", "1", "--json").stdout
    shown = json.loads(document)
    assert shown["state"] == "WARNING", document  # only `template` failed, as allowed
    runs = {r["task"]: r for r in shown["task_runs"]}
    assert "undefined reference 'env.ORDO_SECRET_KEY'" in runs["template"]["reason"]
    assert runs["shell"]["outputs"] == {"token": "****"}
    assert runs["fetch"]["state"] == "SUCCESS"
    # the task saw the variables (masked), but never the key's name or value
    assert "FOO_TOKEN=****" in logs and "MY_CREDENTIAL=****" in logs and "cred=****" in logs
    assert "key: absent" in logs and "ORDO_SECRET_KEY" not in logs.replace("env.ORDO_SECRET", "")
    raw = _raw_store(db)
    for value in (KEY, TOKEN, CREDENTIAL, STORED):
        assert value.encode() not in raw, f"{value} is stored in clear"
        assert value not in logs + document + stderr


@pytest.mark.timeout(300)
def test_an_http_task_with_a_secret_in_its_url_is_not_on_the_servers_stderr(
    tmp_path: Path, http_target: str
) -> None:
    env = _env(server_env(tmp_path))
    db = str(tmp_path / "server.db")
    (tmp_path / "dump.py").write_text(DUMP)
    done = subprocess.run(
        [sys.executable, "-m", "ordo.cli.main", "--db", db, "secrets", "set", "API_KEY"],
        input=STORED,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with running_server(db, env, tmp_path, "--workers", "1") as server:
        server.add_flow(
            "id: fetch\ntasks:\n  - id: get\n    type: http\n"
            f"    url: \"{http_target}/hello?key={{{{ secret('API_KEY') }}}}&t={TOKEN}\"\n"
        )
        started = server.http.post("/api/flows/default/fetch/executions", json={})
        assert started.status_code == 201, started.text
        server.wait_state(started.json()["id"], "SUCCESS", timeout=120)
    stderr = server.log.read_text()
    assert STORED not in stderr and TOKEN not in stderr and KEY not in stderr, stderr
