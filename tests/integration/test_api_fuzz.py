"""Generated requests (schemathesis, from the API's own OpenAPI spec) against a real
``ordo server``: whatever a client sends, the server never answers 5xx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import Server, running_server, server_env

FLOW = """
id: hello
namespace: demo
inputs:
  name: {type: string, default: world}
triggers:
  - {type: event, event: go}
  - {type: webhook, key: s3cretkey123}
tasks:
  - {id: say, type: shell, command: "echo {{ inputs.name }}"}
"""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder, "--workers", "1") as s:
        s.add_flow(FLOW)
        s.http.post("/api/flows/demo/hello/executions", json={})
        yield s


def test_no_generated_request_gets_a_server_error(fuzzed: Server, tmp_path: Path) -> None:
    """A few hundred requests, bounded: every operation, examples and fuzzed values."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{fuzzed.url}/api/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "--phases",
            "examples,coverage,fuzzing",
            "-H",
            f"Authorization: Bearer {fuzzed.token}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
        cwd=tmp_path,  # its cache folder goes there
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated is not None and int(generated.group(1)) >= 200, result.stdout[-2000:]


def test_the_spec_lists_every_route(fuzzed: Server, tmp_path: Path) -> None:
    spec = fuzzed.http.get("/api/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/api/flows",
        "/api/flows/{namespace}/{flow_id}/executions",
        "/api/executions/{execution_id}/logs",
        "/api/events/{event_type}",
        "/api/webhooks/{namespace}/{flow_id}/{key}",
        "/api/connections/{name}",
        "/health",
        "/metrics",
    ):
        assert path in paths
    assert fuzzed.http.get("/api/docs").status_code == 200
