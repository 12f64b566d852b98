"""Fixtures shared by every test folder.

PostgreSQL: the server named by ``ORDO_TEST_POSTGRES_URL`` (default: the local one at
127.0.0.1:5432 as user postgres), with a fresh database per test. Without a reachable
server the PostgreSQL cases skip, except when ``CI=true``: then they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
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


def _reachable(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def _throwaway_cluster(folder: Path, options: str = "") -> tuple[str, Callable[[], None]] | None:
    """Start a private PostgreSQL from the local binaries (as user postgres when we are
    root) on a free port, with extra server ``options``; its URL and how to stop it, or
    None without binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        return None
    bin_dir = Path(found[-1]).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "pgdata"
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        folder.chmod(0o777)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(folder / "pg.log"),
            "-o",
            f"-p {port} -k {folder} -h 127.0.0.1 {options}",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """ORDO_TEST_POSTGRES_URL (or the local server); else a throwaway cluster; else skip
    (fail when CI=true)."""
    if _reachable(ADMIN_URL):
        yield ADMIN_URL
        return
    yield from _private_cluster(
        "",
        f"PostgreSQL at {ADMIN_URL} is unreachable and no local PostgreSQL binaries were found",
        f"no PostgreSQL at {ADMIN_URL} (set ORDO_TEST_POSTGRES_URL)",
    )


def _private_cluster(options: str, missing: str, skip: str) -> Iterator[str]:
    """A throwaway cluster's admin URL for as long as the generator runs; without
    PostgreSQL binaries a skip (``skip``), or a failure (``missing``) when CI=true."""
    folder = Path(tempfile.mkdtemp(prefix="ordo-test-pg-"))  # reachable by user postgres
    started = _throwaway_cluster(folder, options)
    if started is None:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing} (apt-get install postgresql)")
        pytest.skip(skip)
    url, stop = started
    try:
        yield url
    finally:
        stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def roomy_postgres_url() -> Iterator[str]:
    """A database on a private PostgreSQL cluster allowing 300 connections, for a test
    that opens more at once than the shared server's 100 allow (others' tests use it)."""
    yield from _private_cluster(
        "-c max_connections=300",
        "no local PostgreSQL binaries",
        "no local PostgreSQL binaries to start a private cluster",
    )


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"ordo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(postgres_admin_url, name)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` pointed at database ``name``, as a ``postgresql://`` URL."""
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{host}:{port}/{name}"
