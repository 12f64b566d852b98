"""What a running task may call: ``from ordo import this``.

``output`` and ``metric`` append to the files named by ``$ORDO_OUTPUTS`` and
``$ORDO_METRICS``, the same files a shell task writes, so the mechanism is one. Works in
python tasks and in any program a task starts (it inherits the variables).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["inputs", "log", "metric", "output"]


class _Inputs(Mapping[str, Any]):
    """The task's ``with`` values (also given to functions as keyword arguments)."""

    def __init__(self) -> None:
        self._given: dict[str, Any] | None = None

    def _set(self, values: dict[str, Any] | None) -> None:
        """Used by the python task host; ``None`` means read ``$ORDO_INPUTS`` again."""
        self._given = values

    def _data(self) -> dict[str, Any]:
        if self._given is None:
            self._given = json.loads(os.environ.get("ORDO_INPUTS", "{}"))
        return self._given

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Any:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"inputs({self._data()!r})"


inputs = _Inputs()


def _file(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise RuntimeError(f"ordo.this works only inside an ordo task (${variable} is not set)")
    return path


def output(key: str, value: Any) -> None:
    """Record an output of this attempt; ``value`` must be JSON-serializable."""
    if not key or "=" in key or "\n" in key:
        raise ValueError(f"an output key must be non-empty without '=' or newlines: {key!r}")
    with open(_file("ORDO_OUTPUTS"), "a", encoding="utf-8") as f:
        f.write(f"{key}={json.dumps(value)}\n")


def metric(
    name: str, value: float, kind: str = "counter", tags: Mapping[str, str] | None = None
) -> None:
    """Record a metric: ``kind`` is ``counter`` or ``duration`` (seconds)."""
    if kind not in ("counter", "duration"):
        raise ValueError(f"kind must be 'counter' or 'duration', not {kind!r}")
    record = {"name": name, "value": float(value), "kind": kind, "tags": dict(tags or {})}
    with open(_file("ORDO_METRICS"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def log(message: str) -> None:
    """A line in this attempt's log (standard output)."""
    sys.stdout.write(f"{message}\n")
    sys.stdout.flush()
