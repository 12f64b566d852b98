"""``ordo executioner`` on the two shapes of issue #6, whole process, fresh each time:
E1, 500 independent jobs running ``true`` plus one depending on all, ``--parallel
--workers 2`` (target 1.2 s; the real Executioner takes 3.9 s on this machine); E2, a
chain of 100 jobs (target 0.6 s; real: 0.97 s). Beside them, in the same run, the
baseline of ``bench/run.py`` (Python starting and writing one durable SQLite row) and
``ordo run`` of the same 500 + 1 shell tasks as a flow file, so the figures can be read
on a machine whose speed varies.

    .venv/bin/python bench/executioner.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from run import BASELINE, compile_ordo, median_of

TARGETS = {"E1": 1.2, "E2": 0.6}


def configs(folder: Path) -> dict[str, Path]:
    fan = [{"id": f"j{i}", "command": "true"} for i in range(500)]
    fan.append({"id": "join", "command": "true", "dependencies": [j["id"] for j in fan]})
    chain = [
        {"id": f"c{i}", "command": "true", **({"dependencies": [f"c{i - 1}"]} if i else {})}
        for i in range(100)
    ]
    out = {}
    for name, jobs in (("E1", fan), ("E2", chain)):
        path = folder / f"{name}.json"
        doc = {"application_name": name, "working_dir": str(folder), "jobs": jobs}
        path.write_text(json.dumps(doc))
        out[name] = path
    flow = folder / "fan.yaml"
    lines = ["id: fan", "tasks:"]
    lines += [f"  - {{id: j{i}, type: shell, command: 'true'}}" for i in range(500)]
    lines.append("  - id: join\n    type: shell\n    command: 'true'")
    lines.append("    depends_on: [" + ", ".join(f"j{i}" for i in range(500)) + "]")
    flow.write_text("\n".join(lines) + "\n")
    out["flow"] = flow
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    compile_ordo()
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-ex-"))
    env = {**os.environ, "ORDO_HOME": str(work / "home")}
    env.pop("ORDO_DB", None)
    try:
        paths = configs(work)
        base, _ = median_of([sys.executable, "-c", BASELINE, str(work / "b.db")], env, args.repeat)
        print(f"baseline (python + one durable SQLite row): {base * 1000:.1f} ms")
        print(f"{'figure':<34}{'measured':>10}{'target':>9}{'x baseline':>12}  ok")
        cmds = {
            "E1 500 + 1 jobs, --parallel -w 2": (
                "E1",
                [ordo, "executioner", "-c", str(paths["E1"]), "--parallel", "--workers", "2"],
            ),
            "E2 chain of 100 jobs": ("E2", [ordo, "executioner", "-c", str(paths["E2"])]),
            "  same 500 + 1 as ordo run -w 2": (
                "",
                [ordo, "run", str(paths["flow"]), "--quiet", "--workers", "2"],
            ),
        }
        for label, (key, cmd) in cmds.items():
            median_of(cmd, env, 1)  # the first run stores the revision
            seconds, _ = median_of(cmd, env, args.repeat)
            target = TARGETS.get(key)
            shown = f"{target:.2f} s" if target else "-"
            ok = ("yes" if seconds <= target else "NO") if target else "-"
            print(f"{label:<34}{seconds:>8.3f} s{shown:>9}{seconds / base:>12.1f}  {ok}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
