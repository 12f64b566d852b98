"""Starting a python host process (:mod:`ordo.runners.pyhost`), with the standard
library only: ``ordo run`` starts its first host before it imports the rest of ordo, so
that the host boots (about 20 ms) on the other core meanwhile and the first task does
not wait for it. :class:`~ordo.runners.python.Host` drives a started host."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from typing import NamedTuple

#: The folder holding the ``ordo`` package: the host's import path for ``ordo.this``.
ORDO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The host's code, loaded by path (see :data:`BOOT`).
PYHOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyhost.py")

#: Loads ``pyhost.py`` by path as a module (not as a script, whose code would be compiled
#: again at every boot: a module's bytecode is cached) and runs it; its folder is never on
#: ``sys.path``.
BOOT = (
    "import sys\n"
    "from importlib.machinery import SourceFileLoader\n"
    "from importlib.util import module_from_spec, spec_from_loader\n"
    "loader = SourceFileLoader('ordo_pyhost', sys.argv.pop(1))\n"
    "host = module_from_spec(spec_from_loader(loader.name, loader))\n"
    "loader.exec_module(host)\n"
    "host.main()\n"
)


class Spawned(NamedTuple):
    """A host process just started: its requests go to its stdin, its task's lines come
    on its stdout and stderr; ``reply_fd`` carries its replies, ``call_fd`` a task's
    calls into ordo and ``answer_fd`` their answers."""

    proc: subprocess.Popen[bytes]
    reply_fd: int
    call_fd: int
    answer_fd: int


def spawn_host(env: Mapping[str, str]) -> Spawned:
    """Start a host with the environment ``env`` (ordo's own keys already left out) in a
    session of its own (a kill stops its whole tree)."""
    read_fd, write_fd = os.pipe()
    call_r, call_w = os.pipe()
    answer_r, answer_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOT, PYHOST, str(write_fd), ORDO_ROOT, str(call_w), str(answer_r)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write_fd, call_w, answer_r),
        start_new_session=True,
        env=dict(env),  # a task reads /proc/self/environ too
    )
    for fd in (write_fd, call_w, answer_r):
        os.close(fd)
    return Spawned(proc, read_fd, call_r, answer_w)
