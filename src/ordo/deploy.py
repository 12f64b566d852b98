"""``ordo deploy``: store every flow file and package folder of a folder (or of a git
commit) as its flows' newest revisions, and deactivate the flows whose files are gone.

A deploy has a **source**: the folder's absolute path, or ``git+URL`` for a repository
(whatever the ref). The source that last deployed a flow owns it; a later deploy of that
source that does not find the flow's file any more deactivates it (its revisions and
executions stay) and brings it back when the file returns. A file that does not validate
is reported with its errors and changes nothing: the flow's previous revision stays
newest and active. A new revision is stored only when a flow or a file it references
changed. ``dry_run`` tells the same without writing anything.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Sequence

from msgspec import Struct, field

from ordo import definitions, engine
from ordo.definitions.files import FILE_LIMITS, FileLimits, escape_problem
from ordo.errors import DefinitionError, Problem, UsageError
from ordo.settings import Settings
from ordo.store import Store

KINDS = ("added", "changed", "reactivated", "unchanged", "invalid", "deactivated")
GIT_TIMEOUT = 300.0
#: Transports git may use for a deploy (not ``ext::``, which runs a command).
GIT_PROTOCOLS = "file:git:http:https:ssh"


class Change(Struct, frozen=True):
    """What a deploy did (or would do) to one flow or file: ``kind`` is one of
    :data:`KINDS`; ``path`` relative to the deployed folder (None for a deactivated
    flow); ``errors`` of an invalid file, each ``file:line:col: field: message``."""

    kind: str
    flow: str | None
    path: str | None
    revision: int | None = None
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "flow": self.flow,
            "path": self.path,
            "revision": self.revision,
            "errors": list(self.errors),
        }


class Report(Struct, frozen=True):
    source: str
    origin: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "invalid"]

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "origin": self.origin,
            "dry_run": self.dry_run,
            "changes": [c.to_dict() for c in self.changes],
            "ignored": self.ignored,
        }


def deploy_folder(
    store: Store,
    folder: str,
    now: float,
    *,
    source: str | None = None,
    origin: str | None = None,
    dry_run: bool = False,
    shown_as: str | None = None,
    limits: FileLimits = FILE_LIMITS,
) -> Report:
    """Deploy every flow file and package folder in ``folder`` (see the module's
    docstring). ``source`` defaults to the folder's absolute path; ``shown_as`` is the
    folder the files will be at when ``folder`` is a temporary copy (a dry run of git).
    Only regular files within ``limits`` whose real path is inside ``folder`` are read;
    any other is reported as invalid, and the rest is deployed."""
    root = os.path.abspath(folder)
    if not os.path.isdir(root):
        raise UsageError(f"deploy: {folder} is not a folder")
    at = os.path.abspath(shown_as) if shown_as else root
    source = source or at
    origin = origin or at
    found = definitions.discover(root, limits.flow)
    report = Report(source, origin, dry_run, ignored=[_rel(p, root) for p in found.ignored])
    seen: dict[tuple[str, str], str] = {}
    for path in found.definitions:
        where = _Where(root, at, source, origin, limits)
        change = _deploy_one(store, path, where, now, seen, dry_run)
        report.changes.append(change)
    for namespace, flow_id, _active, removed_at in store.deployed_flows(source):
        if (namespace, flow_id) in seen or removed_at is not None:
            continue
        report.changes.append(Change("deactivated", f"{namespace}/{flow_id}", None))
        if not dry_run:
            store.set_removed(namespace, flow_id, source, now)
    return report


class _Where(Struct, frozen=True):
    root: str
    at: str
    source: str
    origin: str
    limits: FileLimits


def _prepare(path: str, root: str, limits: FileLimits) -> definitions.Prepared:
    """``path`` prepared, or DefinitionError; whatever goes wrong reading one file is
    that file's problem, never the whole deploy's."""
    escape = escape_problem(root, path, path)
    if escape is not None:
        raise DefinitionError([escape])
    try:
        return definitions.prepare(path, limits, root)
    except DefinitionError:
        raise
    except (OSError, ValueError, RecursionError, MemoryError) as exc:
        raise DefinitionError([Problem(f"cannot read: {type(exc).__name__}: {exc}", path)]) from exc


def _deploy_one(
    store: Store,
    path: str,
    where: _Where,
    now: float,
    seen: dict[tuple[str, str], str],
    dry_run: bool,
) -> Change:
    root, at, source, origin = where.root, where.at, where.source, where.origin
    rel = _rel(path, root)
    final = os.path.join(at, os.path.relpath(path, root)) if rel != "." else at
    try:
        prepared = _prepare(path, root, where.limits)
    except DefinitionError as exc:
        previous = store.newest_at(final)
        if previous is not None:
            seen.setdefault((previous.namespace, previous.flow_id), "")  # kept, not deployed
        errors = tuple(str(p) for p in exc.problems)
        name = f"{previous.namespace}/{previous.flow_id}" if previous else None
        return Change("invalid", name, rel, previous.revision if previous else None, errors)
    flow = prepared.flow
    key = (flow.namespace, flow.id)
    if seen.get(key):
        why = f"{rel}: flow {flow.key} is defined in {seen[key]} too; this file is not deployed"
        return Change("invalid", flow.key, rel, None, (why,))
    seen[key] = rel
    latest = store.find_flow(flow.namespace, flow.id, None)
    same = latest is not None and (latest.content_hash, latest.path) == (
        prepared.content_hash,
        final,
    )
    removed = store.flow_deploy(flow.namespace, flow.id)[1] is not None
    if latest is None:
        kind = "added"
    elif not same:
        kind = "changed"
    else:
        kind = "reactivated" if removed else "unchanged"
    number = latest.revision if latest is not None and same else None
    if not dry_run:
        revision = engine.store_prepared(store, prepared, now, origin=origin)
        store.set_deployed(flow.namespace, flow.id, source, flow.active, now)
        number = revision.revision
    elif number is None:
        number = latest.revision + 1 if latest is not None else 1
    return Change(kind, flow.key, rel, number)


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


# -- git ---------------------------------------------------------------------------------
class GitTarget(Struct, frozen=True):
    url: str
    ref: str | None  # None: the remote's default branch

    @property
    def source(self) -> str:
        return f"git+{self.url}"


def parse_git_target(text: str) -> GitTarget:
    """``git+URL@REF`` (REF a branch, tag or commit; after the last ``@``, and without
    ``:``, so ``git+git@host:repo.git`` has none) or ``git+URL``."""
    if not text.startswith("git+"):
        raise UsageError(f"expected git+URL@REF, found {text!r}")
    rest = text[len("git+") :]
    url, sep, ref = rest.rpartition("@")
    in_authority = "://" in url and "/" not in url.split("://", 1)[1]
    if not sep or ":" in ref or in_authority:
        url, ref = rest, ""
    elif not ref:
        raise UsageError(f"{text}: nothing after @ (expected a branch, tag or commit)")
    if not url:
        raise UsageError(f"{text}: no repository URL after git+")
    if url.startswith("-") or ref.startswith("-"):
        what = "repository URL" if url.startswith("-") else "ref"
        raise UsageError(f"{text}: a {what} cannot start with '-' (git would read it as an option)")
    return GitTarget(url, ref or None)


def checkout(target: GitTarget, into: str) -> str:
    """Make ``into`` hold ``target``'s ref (fetched with the git command line; ``into``
    is created or updated in place) and return the commit's id. UsageError with git's
    own message when the repository or the ref cannot be found."""
    os.makedirs(into, exist_ok=True)
    if not os.path.isdir(os.path.join(into, ".git")):
        _git(into, "init", "--quiet")
        _git(into, "remote", "add", "--", "origin", target.url)
    else:
        _git(into, "remote", "set-url", "--", "origin", target.url)
    branches = "+refs/heads/*:refs/remotes/origin/*"
    _git(into, "fetch", "--quiet", "--force", "--tags", "--", "origin", branches)
    commit = _resolve(into, target)
    _git(into, "checkout", "--quiet", "--force", "--detach", commit)
    _git(into, "clean", "-ffdxq")
    return commit


def _resolve(into: str, target: GitTarget) -> str:
    if target.ref is None:
        _git(into, "fetch", "--quiet", "--", "origin", "HEAD")
        return _git(into, "rev-parse", "FETCH_HEAD^{commit}")
    for name in (f"refs/remotes/origin/{target.ref}", f"refs/tags/{target.ref}", target.ref):
        found = _git(into, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        if found:
            return found
    try:
        _git(into, "fetch", "--quiet", "--", "origin", target.ref)
    except UsageError:
        raise UsageError(
            f"git+{target.url}: no branch, tag or commit {target.ref!r} in the repository"
        ) from None
    return _git(into, "rev-parse", "FETCH_HEAD^{commit}")


def _git(folder: str, *args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", folder, *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS},
        )
    except FileNotFoundError:
        raise UsageError("deploying from git needs the git command line (git not found)") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {args[0]} took longer than {GIT_TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        if not check:
            return ""
        message = (done.stderr or done.stdout).strip().replace("\n", "; ")
        raise UsageError(f"git {' '.join(args[:2])} failed: {message}")
    return done.stdout.strip()


def checkout_folder(checkouts: str, target: GitTarget) -> str:
    """Where ``target``'s repository is checked out for deploys: one folder per URL
    under ``checkouts``, kept (running executions use its files)."""
    slug = hashlib.sha256(target.url.encode()).hexdigest()[:16]
    tail = target.url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tail)[:40] or "repo"
    return os.path.join(checkouts, f"{safe}-{slug}")


def deploy_git(
    store: Store,
    text: str,
    now: float,
    *,
    checkouts: str,
    dry_run: bool = False,
    limits: FileLimits = FILE_LIMITS,
) -> Report:
    """Check ``git+URL@REF`` out (into a temporary folder for a dry run, else into its
    folder under ``checkouts``) and deploy it; the origin names URL, ref and commit."""
    target = parse_git_target(text)
    final = checkout_folder(checkouts, target)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="ordo-deploy-") as tmp:
            commit = checkout(target, tmp)
            origin = _origin(target, commit)
            return deploy_folder(
                store,
                tmp,
                now,
                source=target.source,
                origin=origin,
                dry_run=True,
                shown_as=final,
                limits=limits,
            )
    commit = checkout(target, final)
    origin = _origin(target, commit)
    return deploy_folder(store, final, now, source=target.source, origin=origin, limits=limits)


def file_limits(settings: Settings) -> FileLimits:
    """The deploy's file limits as configured (``[deploy]`` in the settings)."""
    return FileLimits(settings.deploy_max_file, settings.deploy_max_flow_file)


def _origin(target: GitTarget, commit: str) -> str:
    return f"{target.source}@{target.ref or 'HEAD'} {commit}"


def summary(changes: Sequence[Change]) -> dict[str, int]:
    return {k: sum(1 for c in changes if c.kind == k) for k in KINDS}
