"""Web sessions: signing in with an API token gives a session cookie; every action must
carry the session's CSRF token.

The cookie holds no secret of its own: ``<token id>.<expiry>.<signature>``, signed with
the token's stored hash (HMAC-SHA256). Any server on the same store can check it, a
restart keeps it, and revoking the token ends every session made with it. The CSRF token
is a second signature of the same session, so it needs no storage either.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from ordo import services
from ordo.api.app import Caller, store_of
from ordo.errors import OrdoError
from ordo.store import Store

COOKIE = "ordo_session"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    token_id: int
    name: str
    read_only: bool
    expires: int
    csrf: str
    namespaces: tuple[str, ...] | None = None  # None: every namespace

    @property
    def who(self) -> str:
        return f"web session of token {self.name}"

    @property
    def caller(self) -> Caller:
        """The same rights as the token through the API (namespaces included)."""
        return Caller(self.name, self.read_only, self.namespaces)


class SignIn(OrdoError):
    """No valid session: the page sends the browser to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in first")
        self.next_url = next_url


class BadCsrf(OrdoError):
    pass


class ReadOnlySession(OrdoError):
    pass


def _sign(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign_in(store: Store, token: str, now: float) -> str | None:
    """The cookie value for a session of ``token``, or None if it is unknown or revoked."""
    hashed = services.token_hash(token.strip())
    found = store.find_token(hashed)
    if found is None or found.revoked_at is not None:
        return None
    store.token_used(found.id, now)
    body = f"{found.id}.{int(now) + SESSION_SECONDS}"
    return f"{body}.{_sign(hashed, 'session.' + body)}"


def read_session(store: Store, cookie: str | None, now: float) -> Session | None:
    """The session a cookie stands for, if it is well signed, not expired and its token
    not revoked."""
    if not cookie or cookie.count(".") != 2:
        return None
    token_id, expires, signature = cookie.split(".")
    if not (token_id.isdigit() and expires.isdigit()) or int(expires) < now:
        return None
    if int(token_id) > 2**63 - 1:
        return None
    found = store.session_token(int(token_id))
    if found is None:
        return None
    name, read_only, hashed, namespaces = found
    body = f"{token_id}.{expires}"
    if not hmac.compare_digest(signature, _sign(hashed, "session." + body)):
        return None
    csrf = _sign(hashed, "csrf." + body)
    return Session(int(token_id), name, read_only, int(expires), csrf, namespaces)


def session(request: Request) -> Session:
    """The page's viewer; SignIn (a redirect to /login) without a valid session."""
    found = read_session(store_of(request), request.cookies.get(COOKIE), time.time())
    if found is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise SignIn(quote(path, safe="/?=&"))
    return found


async def acting(request: Request, viewer: Annotated[Session, Depends(session)]) -> Session:
    """The viewer of a POST that changes something: its CSRF token must match, and its
    token must not be read-only."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given, viewer.csrf):
        raise BadCsrf("this form is out of date or came from another site: reload the page")
    if viewer.read_only:
        raise ReadOnlySession(f"token {viewer.name!r} is read-only: it cannot change anything")
    return viewer


Viewer = Annotated[Session, Depends(session)]
Actor = Annotated[Session, Depends(acting)]
