"""The worker: claim -> launch -> collect -> record, in parts.

- :mod:`.loop`: the loop itself (:class:`Worker`), one store transaction per step;
- :mod:`.launch`: claims waiting for a slot, running attempts, starting them;
- :mod:`.housekeeping`: leases, reaping lost workers' attempts, kills, timeouts;
- :mod:`.calls`: a running handler's calls back into ordo (``this.flow``, ``this.connect``),
  answered; :mod:`.requests`: those calls typed (imported when a task first calls);
- :mod:`.logs`: attempts' log lines, buffered until the next step writes them;
- :mod:`.events`: what the threads tell the loop (typed events on one inbox);
- :mod:`.settings`: :class:`WorkerSettings` and the :class:`Listener` of progress displays.
"""

from ordo.worker.loop import Worker
from ordo.worker.settings import Listener, WorkerSettings

__all__ = ["Listener", "Worker", "WorkerSettings"]
