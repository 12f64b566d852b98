"""Shell injection through a webhook, end to end, with no token: a body's value reaching
``./load.sh {{ inputs.body.path }}`` runs the command it carries; with ``| quote`` it is
one argument and nothing runs. ``ordo validate`` warns about the first, not the second."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from server_support import running_server, server_env

HOSTILE = "x; touch pwned; echo $(touch pwned2) `touch pwned3`"

FLOW = """\
id: {id}
namespace: web
inputs:
  body: {{type: json, default: {{}}}}
triggers:
  - {{type: webhook, key: k3y-{id}-0123456789}}
tasks:
  - id: load
    type: shell
    cwd: {folder}
    command: ./load.sh {template}
"""

LOAD = '#!/bin/sh\necho "loading [$1]"; echo "args=$#" >> "$ORDO_OUTPUTS"\n'


def _flow(folder: Path, flow_id: str, template: str) -> str:
    return FLOW.format(id=flow_id, folder=folder, template=template)


@pytest.mark.timeout(300)  # a server and three ordo processes on a loaded runner
def test_a_webhook_body_runs_a_command_unless_the_template_quotes_it(
    tmp_path: Path, ordo_cmd: list[str], ordo_env: dict[str, str]
) -> None:
    env = server_env(tmp_path)
    results = {}
    for flow_id, template in (
        ("unquoted", "{{ inputs.body.path }}"),
        ("quoted", "{{ inputs.body.path | quote }}"),
    ):
        folder = tmp_path / flow_id
        folder.mkdir()
        (folder / "load.sh").write_text(LOAD)
        (folder / "load.sh").chmod(0o755)
        text = _flow(folder, flow_id, template)
        (folder / "flow.yaml").write_text(text)
        results[flow_id] = folder
    validated = subprocess.run(
        [
            *ordo_cmd,
            "validate",
            str(results["unquoted"] / "flow.yaml"),
            str(results["quoted"] / "flow.yaml"),
        ],
        env=ordo_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stderr
    warnings = [line for line in validated.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "unquoted/flow.yaml:8: warning: task 'load'" in warnings[0]
    assert "{{ inputs.body.path }} puts data into shell text unquoted" in warnings[0]

    with running_server(str(tmp_path / "ordo.db"), env, tmp_path, "--workers", "1") as server:
        for flow_id, folder in results.items():
            server.add_flow((folder / "flow.yaml").read_text())
            url = f"{server.url}/api/webhooks/web/{flow_id}/k3y-{flow_id}-0123456789"
            answer = httpx.post(url, json={"path": HOSTILE}, timeout=120)  # no token
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == "SUCCESS", answer.text
        logs = {
            flow_id: server.http.get(f"/api/executions/{n}/logs").text
            for n, flow_id in enumerate(results, start=1)
        }
    unquoted, quoted = results["unquoted"], results["quoted"]
    assert (unquoted / "pwned").exists() and (unquoted / "pwned2").exists()  # today's danger
    assert not any((quoted / name).exists() for name in ("pwned", "pwned2", "pwned3"))
    assert f"loading [{HOSTILE}]" in logs["quoted"], logs["quoted"]
