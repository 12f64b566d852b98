"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import sys
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
