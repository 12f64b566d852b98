"""Showing a big execution (issue #15): document time grows linearly with its tasks.

Run: ``.venv/bin/python bench/documents.py [--small 1000] [--big 10000] [--repeat 3]
[--work DIR]`` (``--work`` keeps the store there and reuses its executions next time).
Runs one execution of a ``--small``-task and one of a ``--big``-task flow of python
tasks through ``ordo run`` in a scratch SQLite store, then times, for each: the
document in-process (``views.execution_document``, CPU time of the process: steady on a
shared machine), ``ordo executions show --json``
(net of ``ordo --version``'s start-up), ``GET /api/executions/{id}`` and the UI page
of a real ``ordo server``, and the UI page's size. Prints the big/small ratio of each
(the task ratio is the linear one); the target is a ratio <= 10 for 10x the tasks and a
UI page under 1 MB.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

_spec = importlib.util.spec_from_file_location("bench_ui", Path(__file__).parent / "ui.py")
assert _spec is not None and _spec.loader is not None
bench_ui = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_ui)  # bench/ui.py's flow of N tasks and free port

ROOT = Path(__file__).resolve().parents[1]
ORDO = [sys.executable, "-m", "ordo.cli.main"]


def median_time(
    work: Callable[[], object], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        work()
        times.append(clock() - started)
    return statistics.median(times)


def run_flow(work: Path, db: Path, env: dict[str, str], tasks: int) -> int:
    folder = work / f"flow-{tasks}"
    done = folder / "execution-id"
    if done.exists():  # --work of an earlier run
        return int(done.read_text())
    folder.mkdir(exist_ok=True)
    flow = bench_ui.big_flow(folder, tasks)
    flow.write_text(flow.read_text().replace("id: big", f"id: big{tasks}", 1))
    started = time.perf_counter()
    ran = subprocess.run(
        [*ORDO, "--db", str(db), "run", str(flow), "--quiet", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    execution_id = int(json.loads(ran.stdout)["id"])
    took = time.perf_counter() - started
    print(f"a {tasks:,}-task execution (#{execution_id}) ran in {took:.1f} s")
    done.write_text(str(execution_id))
    return execution_id


def start_server(work: Path, db: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = bench_ui.free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [*ORDO, "--db", str(db), "server", "--port", str(port), "--no-workers"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 600  # a busy machine
    while True:
        try:
            if httpx.get(url + "/health", timeout=30).status_code == 200:
                return server, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--work", type=Path, help="keep the store in this folder and reuse its executions"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ordo import views
    from ordo.engine import open_store

    work = args.work or Path(tempfile.mkdtemp(prefix="ordo-bench-documents-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ORDO_HOME=str(work / "home"), PYTHONPATH=str(ROOT / "src"))
    env.pop("ORDO_DB", None)
    db = work / "ordo.db"
    server = None
    try:
        ids = {n: run_flow(work, db, env, n) for n in (args.small, args.big)}
        token = subprocess.run(
            [*ORDO, "--db", str(db), "tokens", "create", "--name", f"bench-{os.getpid()}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        store = open_store(str(db))
        startup = median_time(
            lambda: subprocess.run([*ORDO, "--version"], env=env, capture_output=True),
            args.repeat,
        )
        server, url = start_server(work, db, env)
        results: dict[str, dict[int, float]] = {}
        sizes: dict[int, int] = {}
        with (
            httpx.Client(base_url=url, timeout=300) as browser,
            httpx.Client(
                base_url=url, timeout=300, headers={"Authorization": f"Bearer {token}"}
            ) as api,
        ):
            form = browser.get("/login").text  # the form's CSRF token and login cookie
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed = browser.post("/login", data={"token": token, "csrf": csrf})
            assert signed.status_code == 303
            for n, execution_id in ids.items():

                def show(execution_id: int = execution_id) -> None:
                    subprocess.run(
                        [*ORDO, "--db", str(db), "executions", "show", str(execution_id), "--json"],
                        env=env,
                        capture_output=True,
                        check=True,
                    )

                measures: dict[str, Callable[[], object]] = {
                    "views.execution_document (CPU)": functools.partial(
                        views.execution_document, store, execution_id
                    ),
                    "ordo executions show --json (net)": show,
                    "GET /api/executions/{id}": lambda i=execution_id: api.get(
                        f"/api/executions/{i}"
                    ).raise_for_status(),
                    "UI page /executions/{id}": lambda i=execution_id: browser.get(
                        f"/executions/{i}"
                    ).raise_for_status(),
                }
                for name, work_ in measures.items():
                    # in-process: this process's CPU time, steady on a shared machine
                    clock = time.process_time if "(CPU)" in name else time.perf_counter
                    took = median_time(work_, args.repeat, clock)
                    if "(net)" in name:
                        took = max(took - startup, 1e-6)
                    results.setdefault(name, {})[n] = took
                sizes[n] = len(browser.get(f"/executions/{execution_id}").content)
        store.close()
        linear = args.big / args.small
        print(f"\n{'what':<36} {args.small:>9,} {args.big:>9,}  ratio (linear: {linear:.0f})")
        for name, times in results.items():
            ratio = times[args.big] / times[args.small]
            print(
                f"{name:<36} {times[args.small] * 1000:>7.0f}ms {times[args.big] * 1000:>7.0f}ms "
                f"{ratio:>6.1f}x  {'met' if ratio <= linear else 'MISSED'}"
            )
        small_kb, big_kb = sizes[args.small] / 1024, sizes[args.big] / 1024
        verdict = "under 1 MB" if sizes[args.big] < 1_000_000 else "OVER 1 MB"
        print(f"{'UI page size':<36} {small_kb:>7.0f}KB {big_kb:>7.0f}KB  {verdict}")
        print(f"(start-up of ordo --version, taken off the CLI: {startup * 1000:.0f} ms)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
