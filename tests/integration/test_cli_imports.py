"""What the ``ordo`` command imports: building its parser imports no command's code, and
a one-task run imports neither the server, deploy, secrets or executioner commands nor
the heavy libraries it does not use (start-up speed, issue #17/#18; no timing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs ``ordo ARGS`` in this interpreter, then prints the imported module names as JSON
# on stderr's last line.
PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
from ordo.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

HEAVY = ("jinja2", "pydantic", "httpx", "rich", "fastapi", "cryptography", "cronsim", "ruamel")


def imported(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, set[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    *rest, last = done.stderr.rstrip("\n").split("\n")
    return done.returncode, set(json.loads(last)), done.stdout + "\n".join(rest)


def test_help_imports_no_command_and_no_library(ordo_env: dict[str, str], tmp_path: Path) -> None:
    code, modules, out = imported(ordo_env, tmp_path, "--help")
    assert code == 0, out
    assert "usage: ordo" in out
    assert {m for m in modules if m.startswith("ordo")} == {
        "ordo",
        "ordo.cli",
        "ordo.cli.main",
        "ordo.cli.startup",
        "ordo.errors",
    }
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


def test_a_one_task_run_of_a_stored_flow_imports_only_what_it_uses(
    ordo_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    (tmp_path / "w0.yaml").write_text(
        "id: w0\ntasks:\n  - {id: t0, type: python, function: 'noop:noop'}\n"
    )
    code, modules, out = imported(ordo_env, tmp_path, "run", "w0.yaml", "-q")
    assert code == 0, out
    assert {"yaml", "ruamel.yaml"} & modules  # the first run parses the file and stores it
    code, modules, out = imported(ordo_env, tmp_path, "run", "w0.yaml", "-q")
    assert code == 0, out  # the next ones find it unchanged in the store
    assert "SUCCESS" in out
    unused = {
        "ordo.deploy",
        "ordo.cli.deploy",
        "ordo.cli.serving",
        "ordo.cli.secrets",
        "ordo.cli.executioner",
        "ordo.cli.remote",
        "ordo.server",
        "ordo.api",
        "ordo.ui",
        "ordo.runners.http",
        "ordo.runners.sql",
        "ordo.worker.requests",  # no task calls into ordo
        # a reused revision is neither parsed nor checked
        "ordo.definitions.flowfile",
        "ordo.definitions.package",
        "ordo.definitions.triggers",
        "ordo.definitions.document",
        "ordo.cron",
        "yaml",
        "zoneinfo",
        # standard library modules needed only elsewhere (a hint, a diff, a server)
        "difflib",
        "socket",
    }
    assert not modules & unused
    assert not [m for m in modules if m.split(".")[0] in HEAVY]
    assert "typing_extensions" not in modules  # (msgspec uses typing's own: see below)


def test_msgspec_loaded_by_the_command_uses_typing_and_typing_extensions_stays_importable(
    ordo_env: dict[str, str], tmp_path: Path
) -> None:
    """``ordo.cli.startup`` hides typing_extensions from msgspec's first import only
    (it cost a command about 10 ms): ordo's types still encode and decode, and what
    imports typing_extensions later gets it."""
    probe = (
        "import sys, ordo.cli.startup, msgspec\n"
        "assert 'typing_extensions' not in sys.modules\n"
        "from ordo.model import Outcome, State\n"
        "o = Outcome(State.SUCCESS, outputs={'a': 1})\n"
        "assert msgspec.json.decode(msgspec.json.encode(o), type=Outcome) == o\n"
        "import typing_extensions, pydantic\n"
        "print('ok', typing_extensions.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=ordo_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "typing_extensions"]


def test_the_parser_of_the_command_given_alone_the_whole_tree_otherwise(
    ordo_env: dict[str, str], tmp_path: Path
) -> None:
    """Only the command run is built; help, an unknown word or an option after a
    top-level option still see every command."""
    code, _, out = imported(ordo_env, tmp_path, "--db", "x.db", "run", "--help")
    assert code == 0, out
    assert out.startswith("usage: ordo run")
    code, _, out = imported(ordo_env, tmp_path, "--db", "x.db", "runn")
    assert code == 2
    assert "invalid choice: 'runn'" in out
    assert "'run'" in out and "'schedules'" in out and "'completion'" in out
    code, _, out = imported(ordo_env, tmp_path, "executions", "list", "--bogus")
    assert code == 2
    assert "ordo executions list: error: unrecognized arguments: --bogus" in out
    code, _, out = imported(ordo_env, tmp_path, "completion", "bash")
    assert code == 0, out
    assert "schedules" in out and "executioner" in out


def test_an_http_task_does_not_import_httpx_command_line_client(
    ordo_env: dict[str, str], tmp_path: Path
) -> None:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        (tmp_path / "h.yaml").write_text(
            f"id: h\ntasks:\n  - {{id: get, type: http, url: '{url}'}}\n"
        )
        code, modules, out = imported(ordo_env, tmp_path, "run", "h.yaml", "-q")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, out
    assert "httpx" in modules
    assert not {"httpx._main", "rich", "click", "pygments"} & modules


# Runs ``ordo ARGS`` and prints, on stderr's last line, the ordo modules imported when the
# first python host was started.
SPAWN_PROBE = """
import json, sys
import ordo.runners.spawn as spawn
real = spawn.spawn_host
seen = []
def spawn_host(env):
    seen.append(sorted(m for m in sys.modules if m.startswith("ordo")))
    return real(env)
spawn.spawn_host = spawn_host
from ordo.cli.main import main
code = main(sys.argv[1:])
print(json.dumps(seen), file=sys.stderr)
sys.exit(code)
"""


def test_a_run_starts_its_first_python_host_before_importing_the_engine(
    ordo_env: dict[str, str], tmp_path: Path
) -> None:
    """The host boots (about 20 ms) on the other core while ``ordo run`` imports the
    store, the engine and the worker, instead of after."""
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    (tmp_path / "w0.yaml").write_text(
        "id: w0\ntasks:\n  - {id: t0, type: python, function: 'noop:noop'}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", SPAWN_PROBE, "run", "w0.yaml", "-q"],
        env=ordo_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    spawned = json.loads(done.stderr.rstrip("\n").split("\n")[-1])
    assert len(spawned) == 1  # the run's one task used the host started first
    first = set(spawned[0])
    assert not {"ordo.store", "ordo.engine", "ordo.worker", "ordo.model"} & first, first


def test_a_run_boots_as_many_python_hosts_as_its_tasks_can_use_at_once(
    ordo_env: dict[str, str], tmp_path: Path
) -> None:
    """A chain uses one host at a time, a fan-out one per slot: a host booted for
    nothing takes a core from the run for 20 ms."""
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    task = "  - {{id: t{i}, type: python, function: 'noop:noop'{deps}}}\n"
    chain = "".join(
        task.format(i=i, deps=f", depends_on: [t{i - 1}]" if i else "") for i in range(4)
    )
    fan = "".join(task.format(i=i, deps="") for i in range(4))
    (tmp_path / "chain.yaml").write_text("id: chain\ntasks:\n" + chain)
    (tmp_path / "fan.yaml").write_text("id: fan\ntasks:\n" + fan)
    for flow, hosts in (("chain.yaml", 1), ("fan.yaml", 2)):
        done = subprocess.run(
            [sys.executable, "-c", SPAWN_PROBE, "run", flow, "-q", "--workers", "2"],
            env=ordo_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(json.loads(done.stderr.rstrip("\n").split("\n")[-1])) == hosts, flow
