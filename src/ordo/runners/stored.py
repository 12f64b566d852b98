"""Files of flows made in the browser (or sent to the API as a package): they live in
the store with their revision, not in a folder. Such a flow's ``base_dir`` is
``stored:<content hash>``; before an attempt runs, the revision's files are written once
per machine into a folder named by that hash, and the flow is read with that folder as
its ``base_dir`` (and in the env values that named it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping

import msgspec

from ordo.model import Flow

PREFIX = "stored:"


def is_stored(flow: Flow) -> bool:
    return flow.base_dir.startswith(PREFIX)


_private: list[str] = []  # this process's own folder, when the shared one is not safe


def folder_for(digest: str, root: str | None = None) -> str:
    """Where a stored revision's files are written on this machine: in a folder of this
    user's that no one else can write to (``<tmp>/ordo-stored-<uid>``, shared by this
    user's processes), else in a new private folder of this process."""
    safe = "".join(c for c in digest if c.isalnum())[:64] or "none"
    return os.path.join(_base(root), safe)


def _base(root: str | None) -> str:
    shared = os.path.join(root or tempfile.gettempdir(), f"ordo-stored-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(shared, 0o700)
    st = os.lstat(shared)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
        return shared
    if not _private:  # someone else made it, or opened it to others: do not trust it
        _private.append(tempfile.mkdtemp(prefix="ordo-stored-"))
    return _private[0]


def placed(
    flow: Flow, files: Callable[[], Mapping[str, str | None]], root: str | None = None
) -> Flow:
    """``flow`` with its stored files written to a folder of this machine (once: a
    folder already there is used as it is) and that folder as its ``base_dir``."""
    marker = flow.base_dir
    folder = folder_for(marker[len(PREFIX) :], root)
    if not os.path.isdir(folder):
        _write(folder, files())
    tasks = tuple(
        msgspec.structs.replace(
            t,
            env={
                k: (folder + v[len(marker) :] if isinstance(v, str) and v.startswith(marker) else v)
                for k, v in t.env.items()
            },
        )
        for t in flow.tasks
    )
    return msgspec.structs.replace(flow, base_dir=folder, tasks=tasks)


def _write(folder: str, files: Mapping[str, str | None]) -> None:
    """Write into a new folder beside ``folder`` and rename it: a reader never sees a
    half-written folder, and of two writers at once one wins."""
    partial = f"{folder}.{os.urandom(4).hex()}.partial"
    os.makedirs(partial, mode=0o700)
    try:
        for name, text in files.items():
            if "/" in name or name.startswith(".") or "\0" in name:
                continue  # never stored so (checked when it was uploaded)
            with open(os.path.join(partial, name), "w", encoding="utf-8") as f:
                f.write(text or "")
        try:
            os.rename(partial, folder)
        except OSError:
            if not os.path.isdir(folder):
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(partial)
