"""The notifier: tells people when executions end, as their flows' ``notify`` rules say.

It follows the executions that ended (never dev ones) through the store, so it notifies
of every end whichever process ended the execution; each (execution, end, target) is
recorded once in ``notifications`` with its result, so a restart or a second server does
not notify twice. A notification that fails is logged and recorded with its reason; it
never changes the execution. Only the holder of the ``notifier`` lease sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
from msgspec import Struct

from ordo import views
from ordo.errors import NotFound
from ordo.model import NotifyRule, RunOptions
from ordo.runners import mail
from ordo.store import Store
from ordo.store.records import ExecutionRow

logger = logging.getLogger(__name__)

LEASE = "notifier"
#: Ends are looked for this far back on each pass: a transaction that ended an execution
#: may commit after a later one did.
MARGIN = 10.0
#: How far back a new notifier looks (covers a server restart).
LOOK_BACK = 3600.0
WEBHOOK_TIMEOUT = 10.0


class MailServer(Struct, frozen=True):
    host: str
    port: int = 25
    user: str = ""
    password: str = ""
    sender: str = "ordo@localhost"


class Notifier:
    def __init__(
        self,
        store: Store,
        holder: str,
        *,
        mail_server: MailServer | None = None,
        base_url: str = "",
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.holder = holder
        self.mail_server = mail_server
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.lease_seconds = lease_seconds
        self._since = clock() - LOOK_BACK

    def tick(self) -> int:
        """One pass when this notifier leads: how many notifications it tried."""
        now = self.clock()
        if not self.store.take_lease(LEASE, self.holder, now, self.lease_seconds):
            return 0
        ended = self.store.ended_since(self._since)
        tried = 0
        for execution_id, _, revision_id, run_notify in ended:
            if run_notify or self.store.flow_of(revision_id).notify:  # most have none
                tried += self._notify(execution_id)
        if ended:
            newest = ended[-1][1]
            self._since = newest if len(ended) >= 200 else max(self._since, newest - MARGIN)
        return tried

    def _notify(self, execution_id: int) -> int:
        try:
            execution = self.store.get_execution(execution_id)
        except NotFound:  # deleted by gc meanwhile
            return 0
        if execution.ended_at is None or execution.dev or execution.kind == "SCHEDULE":
            return 0  # (a schedule ending is not a run of its flow)
        rules = self.store.flow_of(execution.revision_id).notify
        rules += RunOptions.from_dict(execution.options).notify  # "run with options"
        tried = 0
        for rule in rules:
            if execution.state.value.lower() not in rule.on:
                continue
            for target in _targets(rule):
                if self.store.notified(execution.id, execution.ended_at, target):
                    continue
                error = self._send(target, execution)
                self.store.add_notification(execution, target, error, self.clock())
                tried += 1
                if error:
                    logger.warning(
                        "notification of execution %d to %s failed: %s",
                        execution.id,
                        target,
                        error,
                        extra={"event": "notify_failed", "execution_id": execution.id},
                    )
        return tried

    def _send(self, target: str, execution: ExecutionRow) -> str | None:
        kind, _, where = target.partition(":")
        if kind == "webhook":
            return self._post(where, execution)
        if self.mail_server is None or not self.mail_server.host:
            return "no SMTP server configured (smtp.host in settings.toml or ORDO_SMTP_HOST)"
        server = self.mail_server
        letter = mail.Letter(
            subject=f"[ordo] {execution.flow_key} #{execution.id} {execution.state.value}",
            body=self._body(execution),
            to=tuple(where.split(",")),
            sender=server.sender,
        )
        return mail.send(letter, server.host, server.port, server.user, server.password)

    def _post(self, url: str, execution: ExecutionRow) -> str | None:
        document = {**views.execution_dict(execution), "url": self._link(execution)}
        try:
            response = httpx.post(url, json=document, timeout=WEBHOOK_TIMEOUT)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code >= 300:
            return f"HTTP {response.status_code} from {url}"
        return None

    def _body(self, execution: ExecutionRow) -> str:
        lines = [
            f"Execution {execution.id} of {execution.flow_key} ended {execution.state.value}.",
            "",
        ]
        if execution.reason:
            lines.append(f"Reason: {execution.reason}")
        for run in views.in_order(self.store.task_runs(execution.id)):
            lines.append(
                f"  {run.label}: {run.state.value}"
                + (f" ({run.reason})" if run.reason and run.state.value != "SUCCESS" else "")
            )
        link = self._link(execution)
        if link:
            lines += ["", link]
        return "\n".join(lines) + "\n"

    def _link(self, execution: ExecutionRow) -> str:
        return f"{self.base_url}/api/executions/{execution.id}" if self.base_url else ""

    def stop(self) -> None:
        self.store.drop_lease(LEASE, self.holder)


def _targets(rule: NotifyRule) -> list[str]:
    found = [f"email:{','.join(rule.email)}"] if rule.email else []
    if rule.webhook:
        found.append(f"webhook:{rule.webhook}")
    return found
