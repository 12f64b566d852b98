"""Validation speed of a big flow (issue #16): a 10,000-task flow file, YAML and JSON.

Run: ``.venv/bin/python bench/validate.py [--repeat N] [--tasks N] [--ruamel]``.

- V1: ``definitions.load_flow_file`` of the YAML file (read, parse with positions,
  validate), in this process, CPU time; V2: the same flow as a JSON file; V3: ``ordo validate`` of
  the YAML file in a fresh process (the command a user runs), wall time and CPU time
  (user + system: what it costs on a machine others are not loading). Target: V3 <= 2 s.
- Baseline in the same run: :func:`json.loads` of the JSON file (parsing only, no
  positions, no validation), CPU time; the ratios say how far from a bare C parse
  validation is.
- ``--ruamel``: also ruamel.yaml's pure-Python round-trip parse of the YAML file (what
  ordo used before), once.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ordo import definitions

TARGET_V3 = 2.0


def write(folder: Path, tasks: int) -> tuple[Path, Path]:
    lines = ["id: big", "namespace: bench", "tasks:"]
    for i in range(tasks):
        lines += [f"  - id: t{i}", "    type: shell", f"    command: echo {i}"]
        lines += [f"    depends_on: t{i - 1}"] if i else []
        lines += ["    retry: {attempts: 2, delay: 1s}"] if i % 10 == 0 else []
    yaml_path = folder / "big.yaml"
    yaml_path.write_text("\n".join(lines) + "\n")
    doc = {
        "id": "big",
        "namespace": "bench",
        "tasks": [
            {"id": f"t{i}", "type": "shell", "command": f"echo {i}"}
            | ({"depends_on": f"t{i - 1}"} if i else {})
            for i in range(tasks)
        ],
    }
    json_path = folder / "big.json"
    json_path.write_text(json.dumps(doc, indent=2))
    return yaml_path, json_path


def median_time(
    fn: Callable[[], object], repeat: int, clock: Callable[[], float] = time.process_time
) -> float:
    """The median of ``repeat`` runs of ``fn`` by ``clock``: CPU time of this process by
    default, which other processes loading the machine change much less than wall time."""
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--ruamel", action="store_true", help="also time the old parser, once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ordo-bench-validate-") as tmp:
        yaml_path, json_path = write(Path(tmp), args.tasks)
        json_text = json_path.read_text()
        baseline = median_time(lambda: json.loads(json_text), args.repeat)
        v1 = median_time(lambda: definitions.load_flow_file(yaml_path), args.repeat)
        v2 = median_time(lambda: definitions.load_flow_file(json_path), args.repeat)
        command = [sys.executable, "-m", "ordo.cli.main", "validate", str(yaml_path)]

        def validate() -> None:
            subprocess.run(command, check=True, capture_output=True)

        v3 = median_time(validate, args.repeat, time.perf_counter)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        validate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        v3_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        size = yaml_path.stat().st_size
        print(f"{args.tasks} tasks; YAML {size / 1e6:.1f} MB, JSON {len(json_text) / 1e6:.1f} MB")
        print(f"baseline (json.loads of the JSON file): {baseline * 1000:.1f} ms")
        print(f"{'figure':34}{'measured':>10}{'target':>8}{'x baseline':>12}  ok")
        rows = [
            ("V1 load_flow_file YAML", v1, None),
            ("V2 load_flow_file JSON", v2, None),
            ("V3 ordo validate YAML (process)", v3, TARGET_V3),
            ("V3 CPU time (user + system)", v3_cpu, TARGET_V3),
        ]
        for name, value, target in rows:
            goal = f"{target:.1f} s" if target else "-"
            ok = ("yes" if value <= target else "NO") if target else "-"
            print(f"{name:34}{value:>8.3f} s{goal:>8}{value / baseline:>12.1f}  {ok}")
        if args.ruamel:
            from ruamel.yaml import YAML

            text = yaml_path.read_text()
            old = median_time(lambda: YAML(typ="rt", pure=True).load(text), 1)
            name = "ruamel round-trip parse (before)"
            print(f"{name:34}{old:>8.3f} s{'-':>8}{old / baseline:>12.1f}")


if __name__ == "__main__":
    main()
