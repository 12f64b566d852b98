"""The store contract suite runs against every backend (PostgreSQL joins in issue 3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ordo.store import Store, open_store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ordo.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()
