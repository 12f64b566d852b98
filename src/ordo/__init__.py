"""ordo: a durable execution engine for flows of shell, python, sql and http tasks.

``import ordo`` stays fast (the ``ordo`` command and every python task host import it):
the Python API is loaded on first use, by :func:`__getattr__`::

    import ordo

    ex = ordo.run("flows/etl.yaml", inputs={"day": "2026-12-01"})
    client = ordo.Client()          # Client(db=URL) or Client(server=URL, token=T)

User code of a running task reads ``ordo.this``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing itself costs ~10 ms to import: not for a name)
if TYPE_CHECKING:
    from typing import Any

    from ordo.client import Client, Execution, Handle, LogLine, TaskRun, run
    from ordo.model import State
    from ordo.pyflow import flow, task

__all__ = [
    "Client",
    "Execution",
    "Handle",
    "LogLine",
    "State",
    "TaskRun",
    "__version__",
    "flow",
    "run",
    "task",
]

__version__ = "0.1.0"

#: Names of the Python API, and the module each comes from (imported when first used).
_LAZY = {
    "Client": "ordo.client",
    "Execution": "ordo.client",
    "Handle": "ordo.client",
    "LogLine": "ordo.client",
    "TaskRun": "ordo.client",
    "run": "ordo.client",
    "State": "ordo.model",
    "flow": "ordo.pyflow",
    "task": "ordo.pyflow",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ordo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
