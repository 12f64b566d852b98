"""The web UI with a large history (issue #8): page times and live-update delay.

Run: ``.venv/bin/python bench/ui.py [--executions N] [--tasks N] [--repeat N]``. Builds a
scratch SQLite store with N (default 100,000) ended executions in bulk (the rows of
``bench/gc.py``), runs one execution of a flow of ``--tasks`` (default 1,000) python
tasks through ``ordo run``, starts a real ``ordo server`` on it, signs in like a browser
and prints the median and worst time of each page (the server's time: the requests go
over 127.0.0.1 with nothing else running), against ``GET /health`` as the baseline; then
the delay from a state change to the ``changed`` event reaching an open page's stream.
Targets: executions list <= 300 ms, a 1,000-task execution's page <= 500 ms, a live
update <= 1 s after the change.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

_spec = importlib.util.spec_from_file_location("bench_gc", Path(__file__).parent / "gc.py")
assert _spec is not None and _spec.loader is not None
bench_gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gc)  # bench/gc.py's bulk history (not the stdlib's gc)

ROOT = Path(__file__).resolve().parents[1]
ORDO = [sys.executable, "-m", "ordo.cli.main"]


def big_flow(folder: Path, tasks: int) -> Path:
    """``tasks`` python tasks in ten chains of equal length, fanned back in."""
    lines = ["id: big", "namespace: bench", "tasks:"]
    per = tasks // 10
    for chain in range(10):
        for k in range(per):
            depends = f"    depends_on: [c{chain}-{k - 1}]\n" if k else ""
            lines.append(
                f"  - id: c{chain}-{k}\n    type: python\n    function: builtins:dict\n"
                f"    with: {{n: {k}}}\n{depends}".rstrip("\n")
            )
    path = folder / "big.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return statistics.median(times), max(times)


def live_delay(client: httpx.Client, api: httpx.Client, repeat: int) -> list[float]:
    """Start an execution through the API; time until the open page's stream says
    ``changed`` (the first change event after the start)."""
    delays = []
    for _ in range(repeat):
        got = threading.Event()
        ready = threading.Event()

        def listen(got: threading.Event = got, ready: threading.Event = ready) -> None:
            with client.stream("GET", "/ui/live", timeout=30) as events:
                ready.set()
                for chunk in events.iter_text():
                    if "event: changed" in chunk:
                        got.set()
                        return

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        ready.wait(10)
        time.sleep(0.3)  # the stream has read what the page saw
        started = time.perf_counter()
        api.post("/api/flows/bench/tiny/executions", json={})
        got.wait(10)
        delays.append(time.perf_counter() - started)
        reader.join(10)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-ui-"))
    env = dict(os.environ, ORDO_HOME=str(work / "home"), PYTHONPATH=str(ROOT / "src"))
    env.pop("ORDO_DB", None)
    db = work / "ordo.db"
    server = None
    try:
        started = time.perf_counter()
        bench_gc.build(db, args.executions)
        print(f"history: {args.executions:,} executions in {time.perf_counter() - started:.1f} s")
        flow = big_flow(work, args.tasks)
        started = time.perf_counter()
        ran = subprocess.run(
            [*ORDO, "--db", str(db), "run", str(flow), "--quiet", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert ran.returncode == 0, ran.stderr
        big_id = json.loads(ran.stdout)["id"]
        print(
            f"one {args.tasks}-task execution (#{big_id}) in {time.perf_counter() - started:.1f} s"
        )
        (work / "tiny.yaml").write_text(
            "id: tiny\nnamespace: bench\ntasks:\n  - {id: t, type: shell, command: 'true'}\n"
        )
        subprocess.run(
            [*ORDO, "--db", str(db), "flows", "add", str(work / "tiny.yaml")],
            env=env,
            check=True,
            capture_output=True,
        )
        token = subprocess.run(
            [*ORDO, "--db", str(db), "tokens", "create", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(work / "server.log", "w")  # noqa: SIM115
        server = subprocess.Popen(
            [*ORDO, "--db", str(db), "server", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        with (
            httpx.Client(base_url=url, timeout=60) as client,
            httpx.Client(
                base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
            ) as api,
        ):
            form = client.get("/login").text
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed_in = client.post("/login", data={"token": token, "csrf": csrf})
            assert signed_in.status_code == 303
            middle = args.executions // 2
            baseline, _ = timed(client, "/health", args.repeat)
            print(f"\nbaseline GET /health: {baseline * 1000:.1f} ms (median of {args.repeat})")
            print(f"{'page':<44} {'median':>9} {'worst':>9} {'ratio':>7}  target")
            pages = [
                ("/executions", 0.300),
                ("/executions?state=SUCCESS", 0.300),
                ("/executions?flow=bench/gc", 0.300),
                (f"/executions?cursor={middle}", 0.300),
                ("/executions?since=24h", 0.300),
                ("/executions?part=1", 0.300),
                (f"/executions/{big_id}", 0.500),
                (f"/executions/{big_id}?part=1", 0.500),
                ("/", None),
                ("/flows", None),
                ("/flows/bench/big", None),
            ]
            for path, target in pages:
                median, worst = timed(client, path, args.repeat)
                goal = (
                    f"<= {target * 1000:.0f} ms {'met' if median <= target else 'MISSED'}"
                    if target
                    else ""
                )
                print(
                    f"{path:<44} {median * 1000:>7.1f}ms {worst * 1000:>7.1f}ms "
                    f"{median / baseline:>6.0f}x  {goal}"
                )
            delays = live_delay(client, api, 10)
            print(
                f"\nlive update (execution started -> 'changed' on an open page): "
                f"median {statistics.median(delays) * 1000:.0f} ms, worst "
                f"{max(delays) * 1000:.0f} ms (target <= 1000 ms)"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
