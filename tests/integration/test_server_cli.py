"""``ordo tokens``, ``ordo flows next|activate|deactivate`` and ``ordo emit`` on a store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from server_support import run_ordo, server_env

FLOW = """
id: nightly
namespace: etl
triggers:
  - {type: schedule, cron: "20 2 * * *", timezone: Europe/Vienna}
  - {type: event, event: file.arrived}
tasks:
  - {id: a, type: shell, command: "true"}
"""


def test_tokens_are_printed_once_listed_without_value_and_revoked(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    db = ["--db", str(tmp_path / "ordo.db")]
    made = run_ordo(env, *db, "tokens", "create", "--name", "ci")
    assert made.returncode == 0 and made.stdout.startswith("ordo_") and "shown once" in made.stderr
    again = run_ordo(env, *db, "tokens", "create", "--name", "ci")
    assert again.returncode == 2 and "a token named 'ci' exists" in again.stderr
    listed = json.loads(run_ordo(env, *db, "tokens", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["ci"] and made.stdout.strip() not in json.dumps(listed)
    assert run_ordo(env, *db, "tokens", "revoke", "ci").returncode == 0
    gone = run_ordo(env, *db, "tokens", "revoke", "ci")
    assert gone.returncode == 2 and "no active token named 'ci'" in gone.stderr


def test_flows_next_prints_fire_times_and_flags_switch_triggers(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    db = ["--db", str(tmp_path / "ordo.db")]
    path = tmp_path / "nightly.yaml"
    path.write_text(FLOW)
    assert run_ordo(env, *db, "flows", "add", str(path)).returncode == 0
    nxt = run_ordo(env, *db, "flows", "next", "etl/nightly")
    lines = nxt.stdout.splitlines()
    assert lines[0] == "schedule1: 20 2 * * * (Europe/Vienna, standard)"
    assert len(lines) == 6 and all(":20 C" in line for line in lines[1:])  # 02:20 CET/CEST
    off = run_ordo(env, *db, "flows", "deactivate", "etl/nightly")
    assert off.stdout.strip() == "flow etl/nightly deactivated"
    ignored = run_ordo(env, *db, "emit", "file.arrived", "--data", "{}")
    assert "started executions none" in ignored.stdout
    run_ordo(env, *db, "flows", "activate", "etl/nightly")
    started = run_ordo(env, *db, "emit", "file.arrived", "--data", '{"a": 1}')
    assert "started executions 1" in started.stdout
    bad = run_ordo(env, *db, "emit", "file.arrived", "--data", "{nope")
    assert bad.returncode == 2 and "--data: not JSON" in bad.stderr
    unknown = run_ordo(env, *db, "flows", "next", "etl/none")
    assert unknown.returncode == 2 and "flow etl/none not found" in unknown.stderr


def test_a_taken_port_or_bad_options_stop_the_server_with_a_clear_error(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    db = ["--db", str(tmp_path / "ordo.db")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_ordo(env, *db, "server", "--port", port, "--no-workers")
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    bad = run_ordo(env, *db, "server", "--grace", "soon")
    assert bad.returncode == 2 and "--grace" in bad.stderr
