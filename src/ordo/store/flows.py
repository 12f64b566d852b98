"""Flows and revisions: every stored revision of a flow (its definition, source and
files), each flow's flags (active, the deploy source owning it) and the lookups of
flows by name, revision or file. A revision never changes: definitions are cached per
store. Shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ordo.errors import NotFound
from ordo.model import Flow
from ordo.store.db import Db, Row, dumps
from ordo.store.records import Revision

REVISION_COLUMNS = "id, namespace, flow_id, revision, content_hash, path, created_at, definition"
FIND_REVISION = f"""
SELECT {REVISION_COLUMNS}
FROM flow_revisions WHERE path IS ? ORDER BY id DESC LIMIT 1
"""
GET_REVISION = f"SELECT {REVISION_COLUMNS} FROM flow_revisions WHERE id = ?"
LATEST_REVISION = f"""
SELECT {REVISION_COLUMNS}
FROM flow_revisions WHERE namespace = ? AND flow_id = ? ORDER BY revision DESC LIMIT 1
"""
REVISION_NUMBER = f"""
SELECT {REVISION_COLUMNS}
FROM flow_revisions WHERE namespace = ? AND flow_id = ? AND revision = ?
"""
LIST_FLOWS = """
SELECT r.id, r.namespace, r.flow_id, r.revision, r.content_hash, r.path, r.created_at,
       r.definition
FROM flow_revisions r
WHERE r.revision = (SELECT max(revision) FROM flow_revisions x
                    WHERE x.namespace = r.namespace AND x.flow_id = r.flow_id)
ORDER BY r.namespace, r.flow_id
"""
INSERT_REVISION = """
INSERT INTO flow_revisions
    (namespace, flow_id, revision, content_hash, path, source, definition, created_at,
     scripts, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
NAMESPACES = "SELECT DISTINCT namespace FROM flow_revisions ORDER BY namespace"
REVISIONS = """
SELECT revision, id, created_at, content_hash, path, origin FROM flow_revisions
WHERE namespace = ? AND flow_id = ? ORDER BY revision DESC LIMIT ?
"""
REVISION_EXECUTIONS = """
SELECT revision_id, count(*) AS n FROM executions WHERE namespace = ? AND flow_id = ?
GROUP BY revision_id
"""
SOURCE = "SELECT source, scripts FROM flow_revisions WHERE id = ?"

UPSERT_FLOW_ACTIVE = """
INSERT INTO flows (namespace, flow_id, active, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, flow_id) DO UPDATE SET active = excluded.active,
    updated_at = excluded.updated_at
"""
FLOW_ACTIVE = "SELECT active FROM flows WHERE namespace = ? AND flow_id = ?"
ALL_FLOW_FLAGS = "SELECT namespace, flow_id, active FROM flows"
DEPLOYED = """
SELECT namespace, flow_id, active, removed_at FROM flows WHERE deploy_source = ?
ORDER BY namespace, flow_id
"""
FLOW_DEPLOY = "SELECT deploy_source, removed_at FROM flows WHERE namespace = ? AND flow_id = ?"
SET_DEPLOYED = """
INSERT INTO flows (namespace, flow_id, active, updated_at, deploy_source)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, flow_id) DO UPDATE SET deploy_source = excluded.deploy_source,
    updated_at = excluded.updated_at, removed_at = NULL,
    active = CASE WHEN flows.removed_at IS NULL THEN flows.active ELSE excluded.active END
"""
SET_REMOVED = """
UPDATE flows SET active = 0, removed_at = ?, updated_at = ?
WHERE namespace = ? AND flow_id = ? AND deploy_source = ?
"""


class Flows:
    """Flow revisions and flags."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self._flows: dict[int, Flow] = {}

    # -- revisions -------------------------------------------------------------------
    def add_revision(
        self,
        flow: Flow,
        source: str,
        content_hash: str,
        now: float,
        *,
        scripts: Mapping[str, str | None] | None = None,
        origin: str | None = None,
    ) -> Revision:
        """Store ``flow`` as its next revision, unless its newest revision has this
        content hash and path already (then that one is returned). ``scripts`` are the
        files it references (relative path: text), ``origin`` where it was deployed
        from. Two processes registering the same new file at once get the same
        revision: the second finds the first's under the flow's lock."""
        with self.db.transaction():
            self.db.lock(f"revisions of {flow.namespace}/{flow.id}")
            known = self.find_flow(flow.namespace, flow.id, None)
            if known is not None and (known.content_hash, known.path) == (content_hash, flow.path):
                return known
            number = known.revision + 1 if known is not None else 1
            definition = dumps(flow.to_dict())
            files = dumps(dict(scripts)) if scripts else None
            rev_id = self.db.insert(
                INSERT_REVISION,
                (flow.namespace, flow.id, number, content_hash, flow.path, source, definition,
                 now, files, origin),
            )  # fmt: skip
            self.db.execute(UPSERT_FLOW_ACTIVE, (flow.namespace, flow.id, int(flow.active), now))
        self._flows[rev_id] = flow
        return Revision(rev_id, flow.namespace, flow.id, number, content_hash, flow.path, now, flow)

    def find_revision(self, content_hash: str, path: str | None) -> Revision | None:
        """The newest revision stored for this path, if it has this content hash (a
        file changed back to an older content makes a new revision: its newest one is
        what the file says now)."""
        row = self.db.one(FIND_REVISION, (path,))
        return self._revision(row) if row and row["content_hash"] == content_hash else None

    def newest_at(self, path: str) -> Revision | None:
        """The newest revision stored for this path (a flow file or package folder)."""
        row = self.db.one(FIND_REVISION, (path,))
        return self._revision(row) if row else None

    def get_revision(self, revision_id: int) -> Revision:
        row = self.db.one(GET_REVISION, (revision_id,))
        if row is None:
            raise NotFound(f"flow revision {revision_id} not found")
        return self._revision(row)

    def flow_of(self, revision_id: int) -> Flow:
        """The flow definition an execution pinned (cached per store)."""
        flow = self._flows.get(revision_id)
        if flow is None:
            flow = self.get_revision(revision_id).flow
        return flow

    def find_flow(
        self, namespace: str, flow_id: str, revision: int | None = None
    ) -> Revision | None:
        """The newest (or the given) revision of a stored flow; None if there is none."""
        if revision is None:
            row = self.db.one(LATEST_REVISION, (namespace, flow_id))
        else:
            row = self.db.one(REVISION_NUMBER, (namespace, flow_id, revision))
        return self._revision(row) if row else None

    def list_flows(self) -> list[Revision]:
        """The newest revision of every flow, by namespace and id."""
        found = [self._revision(r) for r in self.db.all(LIST_FLOWS)]
        return [r for r in found if r.flow.kind != "CONNECTION"]  # a handler's calls

    def namespaces(self) -> list[str]:
        """Every namespace that holds a stored flow (a namespace has no other record)."""
        return [str(r["namespace"]) for r in self.db.all(NAMESPACES)]

    def revisions(self, namespace: str, flow_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The flow's revisions, newest first: number, id, created_at, hash, path,
        origin (where a deploy took it from) and how many executions pinned it."""
        rows = self.db.all(REVISION_EXECUTIONS, (namespace, flow_id))
        counts = {int(r["revision_id"]): int(r["n"]) for r in rows}
        return [
            {
                "revision": r["revision"],
                "id": r["id"],
                "created_at": r["created_at"],
                "content_hash": r["content_hash"],
                "path": r["path"],
                "origin": r["origin"],
                "executions": counts.get(int(r["id"]), 0),
            }
            for r in self.db.all(REVISIONS, (namespace, flow_id, limit))
        ]

    def revision_source(self, revision_id: int) -> str:
        """The text the revision was stored from (a package's: a JSON summary)."""
        return str(self._source(revision_id)["source"])

    def revision_scripts(self, revision_id: int) -> dict[str, str | None]:
        """The files the revision references, by relative path: their text then, or
        None (missing, not text or too large to keep)."""
        scripts = self._source(revision_id)["scripts"]
        found: dict[str, str | None] = json.loads(scripts) if scripts else {}
        return found

    def _source(self, revision_id: int) -> Row:
        row = self.db.one(SOURCE, (revision_id,))
        if row is None:
            raise NotFound(f"flow revision {revision_id} not found")
        return row

    def _revision(self, row: Row) -> Revision:
        rev_id = row["id"]
        flow = self._flows.get(rev_id)
        if flow is None:
            flow = Flow.from_dict(json.loads(row["definition"]))
            self._flows[rev_id] = flow
        return Revision(
            rev_id,
            row["namespace"],
            row["flow_id"],
            row["revision"],
            row["content_hash"],
            row["path"],
            row["created_at"],
            flow,
        )

    # -- flags -----------------------------------------------------------------------
    def set_flow_active(self, namespace: str, flow_id: str, active: bool, now: float) -> None:
        """Let triggers start the flow (or not); NotFound for an unknown flow."""
        if self.find_flow(namespace, flow_id, None) is None:
            raise NotFound(f"flow {namespace}/{flow_id} not found")
        with self.db.transaction():
            self.db.execute(UPSERT_FLOW_ACTIVE, (namespace, flow_id, int(active), now))

    def flow_active(self, namespace: str, flow_id: str) -> bool:
        """Whether triggers start the flow: its flag, else its newest revision's file."""
        row = self.db.one(FLOW_ACTIVE, (namespace, flow_id))
        if row is not None:
            return bool(row["active"])
        revision = self.find_flow(namespace, flow_id, None)
        return revision is not None and revision.flow.active

    def flow_flags(self) -> dict[tuple[str, str], bool]:
        """Every flow's active flag that has been set, by (namespace, flow id)."""
        return {
            (r["namespace"], r["flow_id"]): bool(r["active"]) for r in self.db.all(ALL_FLOW_FLAGS)
        }

    # -- deploys ---------------------------------------------------------------------
    def deployed_flows(self, source: str) -> list[tuple[str, str, bool, float | None]]:
        """``(namespace, flow_id, active, removed_at)`` of the flows ``source`` owns."""
        return [
            (r["namespace"], r["flow_id"], bool(r["active"]), _time(r["removed_at"]))
            for r in self.db.all(DEPLOYED, (source,))
        ]

    def flow_deploy(self, namespace: str, flow_id: str) -> tuple[str | None, float | None]:
        """The deploy source owning the flow (None: not deployed) and when that source
        deactivated it because its file was gone (None: it was not)."""
        row = self.db.one(FLOW_DEPLOY, (namespace, flow_id))
        return (row["deploy_source"], _time(row["removed_at"])) if row else (None, None)

    def set_deployed(
        self, namespace: str, flow_id: str, source: str, active: bool, now: float
    ) -> None:
        """``source`` owns the flow now; a flow it had deactivated because its file was
        gone is back (``active`` again as its file says)."""
        with self.db.transaction():
            self.db.execute(SET_DEPLOYED, (namespace, flow_id, int(active), now, source))

    def set_removed(self, namespace: str, flow_id: str, source: str, now: float) -> None:
        """The flow's file is gone from ``source``: inactive, its history kept."""
        with self.db.transaction():
            self.db.execute(SET_REMOVED, (now, now, namespace, flow_id, source))


def _time(value: Any) -> float | None:
    return None if value is None else float(value)
