"""Flows and packages made in the browser (or sent to the API as a package).

Saving one makes a revision like a deploy does, except that its files live only in the
store, with the revision: the flow's ``base_dir`` is ``stored:<content hash>`` and every
worker writes the files out before it runs a task (:mod:`ordo.runners.stored`). Such a
revision's ``origin`` is ``ui:<token name>``. A flow that a folder or git deploy owns,
or that ``ordo flows add`` read from a file, is read-only here: it says where it comes
from and is changed there.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import yaml
from msgspec import Struct, field

from ordo import cron, definitions
from ordo.definitions.bounded import load_json
from ordo.definitions.files import FILE_LIMITS, FileLimits
from ordo.definitions.package import CONFIG_FILE, META_FILES
from ordo.errors import Conflict, DefinitionError, Problem, TooLarge, UsageError
from ordo.model import Flow
from ordo.runners.stored import PREFIX
from ordo.store import Store
from ordo.store.records import Revision

ORIGIN = "ui:"
#: Called with a flow's namespace before it is stored: raises Forbidden when the caller's
#: token is not limited to it (``Caller.may_use``).
Scope = Callable[[str], None]
MAX_ZIP_ENTRIES = 1000
PROCESSED = (".py", ".sql", ".sh")
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


# -- who may change a flow here ------------------------------------------------------------
def read_only_reason(store: Store, namespace: str, flow_id: str) -> str | None:
    """None when the flow may be made or changed in the browser (a new flow, or one made
    in the browser or sent to the API as text); else where it comes from."""
    latest = store.find_flow(namespace, flow_id, None)
    if latest is None:
        return None
    source, _removed = store.flow_deploy(namespace, flow_id)
    if source:
        kind = "a git deploy" if source.startswith("git+") else "a folder deploy"
        return f"comes from {kind} of {source}; change it there (read-only here)"
    if latest.path:
        return f"comes from the file {latest.path}; change the file (read-only here)"
    return None


def made_here(store: Store, revision: Revision) -> bool:
    """Whether the revision was made in the browser (or as a package through the API)."""
    found = [r for r in store.revisions(revision.namespace, revision.flow_id, 200)]
    origin = next((r["origin"] for r in found if r["id"] == revision.id), None)
    return bool(origin and str(origin).startswith(ORIGIN))


def _may_change(
    store: Store, flow: Flow, editing: tuple[str, str] | None, scope: Scope | None
) -> None:
    if scope is not None:
        scope(flow.namespace)
    if editing is not None and (flow.namespace, flow.id) != editing:
        raise UsageError(
            f"this editor changes flow {editing[0]}/{editing[1]}; the text defines "
            f"{flow.key} (keep its namespace and id, or make a new flow)"
        )
    reason = read_only_reason(store, flow.namespace, flow.id)
    if reason is not None:
        raise Conflict(f"flow {flow.key} {reason}")


# -- flows written in the editor -------------------------------------------------------
def check_text(text: str) -> Flow:
    """What ``ordo validate`` says of a flow text: the flow, or DefinitionError with every
    problem at its line and column."""
    return definitions.parse_flow(text, "editor")


def save_text(
    store: Store,
    text: str,
    who: str,
    now: float,
    editing: tuple[str, str] | None = None,
    scope: Scope | None = None,
) -> Revision:
    """Validate a flow written in the editor and store it as its next revision (nothing
    stored when it has a problem). ``editing``: the flow the editor was opened on."""
    flow = check_text(text)
    _may_change(store, flow, editing, scope)
    digest = definitions.content_hash(text.encode())
    flow = msgspec.structs.replace(flow, path=None, base_dir=PREFIX + digest)
    return store.add_revision(flow, text, digest, now, scripts={}, origin=ORIGIN + who)


# -- packages ------------------------------------------------------------------------------
class PackageForm(Struct, frozen=True):
    """The Executor's package form: name (the flow's id), description, namespace (its
    project), labels (its tags), a cron schedule (day of week 0 = Monday ... 6 = Sunday,
    the Executor's dialect), event types, allow manual, active; and the connection its
    ``.sql`` scripts run on."""

    name: str
    description: str = ""
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    cron: str = ""
    events: Sequence[str] = ()
    allow_manual: bool = True
    active: bool = True
    connection: str = ""  # the connection ``.sql`` scripts run on

    def problems(self) -> list[Problem]:
        found = []
        for what, value in (("name", self.name), ("namespace", self.namespace)):
            if not value or not set(value) <= ID_CHARS:
                found.append(
                    Problem(
                        f"{value!r} is not a name of letters, digits, '_', '.' or '-'",
                        "package form",
                        field=what,
                    )
                )
        if self.cron:
            for key, message in cron.schedule_problems(self.cron, "UTC", "monday0"):
                found.append(Problem(message, "package form", field=key))
        for event in self.events:
            if not event or len(event) > 200:
                found.append(Problem("an event type is 1 to 200 characters", field="events"))
        return found

    def meta(self) -> str:
        """The package's ``flow.yaml``."""
        doc: dict[str, Any] = {"id": self.name, "namespace": self.namespace}
        if self.description:
            doc["description"] = self.description
        if self.labels:
            doc["labels"] = dict(self.labels)
        if self.connection:
            doc["connection"] = self.connection
        triggers: list[dict[str, Any]] = []
        if self.cron:
            triggers.append({"type": "schedule", "cron": self.cron, "dialect": "monday0"})
        triggers += [{"type": "event", "event": e} for e in self.events]
        if triggers:
            doc["triggers"] = triggers
        if not self.allow_manual:
            doc["allow_manual"] = False
        if not self.active:
            doc["active"] = False
        text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            **msgspec.structs.asdict(self),
            "labels": dict(self.labels),
            "events": list(self.events),
        }


def check_name(name: str) -> None:
    """An uploaded file's name: a plain name in the package's folder."""
    if (
        not name
        or "/" in name
        or "\\" in name
        or "\0" in name
        or name.startswith(".")
        or name in ("..", ".")
    ):
        raise UsageError(
            f"file name {name!r}: a package's files are plain names (no '/', '..', NUL or "
            "leading '.')"
        )


def check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise TooLarge(
            f"file {name!r} is {size} bytes; an uploaded file is at most {limit} bytes "
            "(server.max_upload)"
        )


def unzip(data: bytes, limit: int) -> tuple[str | None, dict[str, bytes]]:
    """A package sent as a zip: its folder's name (when every entry is in one folder)
    and its files. UsageError (422) for entries outside its root, symbolic links,
    sub-folders or more than :data:`MAX_ZIP_ENTRIES` entries; TooLarge for a file over
    ``limit`` bytes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UsageError(f"the upload is not a zip file ({exc})") from None
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_ENTRIES:
        raise UsageError(
            f"the zip has {len(entries)} entries; a package zip has at most {MAX_ZIP_ENTRIES}"
        )
    names = [e.filename for e in entries]
    for entry in entries:
        name = entry.filename
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or "\0" in name:
            raise UsageError(f"zip entry {name!r} is outside the package's folder")
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise UsageError(f"zip entry {name!r} is a symbolic link; a package holds files")
    tops = {n.split("/", 1)[0] for n in names}
    folder = None
    if len(tops) == 1 and all("/" in n for n in names):
        folder = tops.pop()
    files: dict[str, bytes] = {}
    for entry in entries:
        if entry.is_dir():
            continue
        name = entry.filename[len(folder) + 1 :] if folder else entry.filename
        if "/" in name:
            raise UsageError(f"zip entry {entry.filename!r}: a package has no sub-folders")
        check_name(name)
        check_size(name, entry.file_size, limit)
        with archive.open(entry) as f:
            content = f.read(limit + 1)
        check_size(name, len(content), limit)
        files[name] = content
    return folder, files


def save_package(
    store: Store,
    files: Mapping[str, bytes],
    who: str,
    now: float,
    *,
    form: PackageForm | None = None,
    folder_name: str | None = None,
    limit: int = 10_485_760,
    editing: tuple[str, str] | None = None,
    scope: Scope | None = None,
    limits: FileLimits = FILE_LIMITS,
) -> Revision:
    """Store a package made of uploaded ``files`` as its flow's next revision. With
    ``form`` its ``flow.yaml`` is written from the form (an uploaded one is refused);
    without, the files are the package as is (a zip: its ``flow.yaml`` if any). When
    ``editing``, the files the package had and no new upload replaces are kept."""
    problems = form.problems() if form is not None else []
    if problems:
        raise DefinitionError(problems)
    for name, content in files.items():
        check_name(name)
        check_size(name, len(content), limit)
    chosen = dict(files)
    if form is not None:
        for meta in META_FILES:
            if meta in chosen:
                raise UsageError(f"file name {meta!r}: the package's flow.yaml is the form's")
        if editing is not None:
            kept = _current_files(store, *editing)
            chosen = {**kept, **chosen}
        chosen["flow.yaml"] = form.meta().encode()
    if CONFIG_FILE in chosen:
        load_json(chosen[CONFIG_FILE], CONFIG_FILE)  # DefinitionError at its line:col
    prepared = _prepared(chosen, folder_name or (form.name if form else "package"), limits)
    flow = prepared.flow
    _may_change(store, flow, editing, scope)
    source = json.dumps(
        {
            "package": "made in the browser",
            "files": sorted(chosen),
            "not processed": [n for n in sorted(chosen) if _unprocessed(n)],
            "form": form.to_dict() if form is not None else None,
        },
        indent=2,
    )
    return store.add_revision(
        flow,
        source,
        prepared.content_hash,
        now,
        scripts=prepared.scripts,
        origin=ORIGIN + who,
    )


def _unprocessed(name: str) -> bool:
    return name not in (*META_FILES, CONFIG_FILE) and not name.endswith(PROCESSED)


def _current_files(store: Store, namespace: str, flow_id: str) -> dict[str, bytes]:
    latest = store.find_flow(namespace, flow_id, None)
    if latest is None:
        return {}
    files = store.revision_scripts(latest.id)
    return {n: (t or "").encode() for n, t in files.items() if n not in META_FILES}


def _prepared(files: Mapping[str, bytes], name: str, limits: FileLimits) -> definitions.Prepared:
    """The package read from a folder holding ``files`` (what a deploy reads), then
    made independent of that folder: its ``base_dir`` is the stored files'."""
    safe = "".join(c if c in ID_CHARS else "_" for c in name).strip(".") or "package"
    with tempfile.TemporaryDirectory(prefix="ordo-package-") as tmp:
        folder = os.path.join(tmp, safe)
        os.mkdir(folder)
        for file_name, content in files.items():
            with open(os.path.join(folder, file_name), "wb") as f:
                f.write(content)
        try:
            prepared = definitions.prepare(folder, limits, folder)
        except DefinitionError as exc:
            raise DefinitionError([_relative(p, folder) for p in exc.problems]) from None
    marker = PREFIX + prepared.content_hash
    flow = prepared.flow
    description = flow.description
    if description == f"the scripts of {folder}":
        description = f"the scripts of package {flow.id}"
    tasks = tuple(
        msgspec.structs.replace(
            t,
            env={
                k: (marker + v[len(folder) :] if isinstance(v, str) and v.startswith(folder) else v)
                for k, v in t.env.items()
            },
        )
        for t in flow.tasks
    )
    flow = msgspec.structs.replace(
        flow, base_dir=marker, path=None, tasks=tasks, description=description
    )
    return msgspec.structs.replace(prepared, flow=flow)


def _relative(problem: Problem, folder: str) -> Problem:
    path = problem.path
    if path and path.startswith(folder):
        path = path[len(folder) :].lstrip("/") or "package"
    return msgspec.structs.replace(problem, path=path)
