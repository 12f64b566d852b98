"""Fixtures shared by every test folder.

PostgreSQL: the server named by ``ORDO_TEST_POSTGRES_URL`` (default: the local one at
127.0.0.1:5432 as user postgres), with a fresh database per test. Without a reachable
server the PostgreSQL cases skip, except when ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ordo_env(tmp_path: Path) -> dict[str, str]:
    """An environment for `ordo` subprocesses with a private ORDO_HOME."""
    env = dict(os.environ)
    env["ORDO_HOME"] = str(tmp_path / "home")
    env.pop("ORDO_DB", None)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


@pytest.fixture
def ordo_cmd() -> list[str]:
    return [sys.executable, "-m", "ordo.cli.main"]


@pytest.fixture
def chdir_tmp(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


ADMIN_URL = os.environ.get(
    "ORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> object:
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at {ADMIN_URL} is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {ADMIN_URL} (set ORDO_TEST_POSTGRES_URL): {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    import psycopg
    from psycopg import sql

    admin = _admin()
    assert isinstance(admin, psycopg.Connection)
    name = f"ordo_test_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(name)
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


def database_url(name: str) -> str:
    """ADMIN_URL pointed at database ``name``, as a ``postgresql://`` URL."""
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{host}:{port}/{name}"
