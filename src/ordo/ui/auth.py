"""Web sessions: signing in with an API token gives a session cookie; every action must
carry the session's CSRF token, and so must the sign-in itself.

The cookie holds no secret of its own: ``<token id>.<expiry>.<signature>``, an
HMAC-SHA256 keyed by the server's session key (a secret kept beside the secret key, not
in the store) over the session and the token's stored hash. Servers sharing the store and
the session key can check it, a restart keeps it, revoking the token ends every session
made with it (it is looked up by id), and a copy of the database cannot forge one. The
CSRF token is a second signature of the same session, so it needs no storage either.

The sign-in form carries a pre-session CSRF token: a random nonce in a short-lived
``SameSite=Strict`` cookie and its signature in the form, so a page of another site
cannot sign a browser in (as the attacker). Every comparison is of bytes: a token or a
cookie that is not ASCII is refused (4xx), never an error.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from msgspec import Struct

from ordo import services
from ordo.api.app import Caller, store_of
from ordo.errors import OrdoError
from ordo.store import Store

COOKIE = "ordo_session"
LOGIN_COOKIE = "ordo_login"
LOGIN_SECONDS = 3600  # how long a sign-in form stays good
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class Session(Struct, frozen=True):
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


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in constant time, compared as bytes (a text
    that is not ASCII is simply not equal)."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _number(text: str) -> int | None:
    """A non-negative 63-bit integer spelled in ASCII digits, else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > 2**63 - 1:
        return None
    return int(text)


def sign_in(store: Store, token: str, now: float, key: bytes) -> str | None:
    """The cookie value for a session of ``token`` signed with the session ``key``, or
    None if the token is unknown or revoked."""
    hashed = services.token_hash(token.strip())
    found = store.find_token(hashed)
    if found is None or found.revoked_at is not None:
        return None
    store.token_used(found.id, now)
    body = f"{found.id}.{int(now) + SESSION_SECONDS}"
    return f"{body}.{_sign(key, f'session.{body}.{hashed}')}"


def read_session(store: Store, cookie: str | None, now: float, key: bytes) -> Session | None:
    """The session a cookie stands for, if it is signed with the session ``key``, not
    expired and its token not revoked."""
    if not cookie or cookie.count(".") != 2:
        return None
    raw_id, raw_expires, signature = cookie.split(".")
    token_id, expires = _number(raw_id), _number(raw_expires)
    if token_id is None or expires is None or expires < now:
        return None
    found = store.session_token(token_id)
    if found is None:
        return None
    name, read_only, hashed, namespaces = found
    body = f"{token_id}.{expires}"
    if not same(signature, _sign(key, f"session.{body}.{hashed}")):
        return None
    csrf = _sign(key, f"csrf.{body}.{hashed}")
    return Session(token_id, name, read_only, expires, csrf, namespaces)


def login_nonce() -> str:
    """A new nonce for a sign-in form's cookie."""
    return secrets.token_urlsafe(24)


def login_csrf(key: bytes, nonce: str) -> str:
    """The sign-in form's CSRF token for the nonce in the browser's login cookie."""
    return _sign(key, f"login.{nonce}")


def login_allowed(key: bytes, nonce: str | None, given: str | None) -> bool:
    """Whether a sign-in comes from our form in this browser: its cookie's nonce and the
    form's token match."""
    return bool(nonce) and same(given, login_csrf(key, nonce or ""))


def session_key(request: Request) -> bytes:
    """The key sessions of this server are signed with (see :func:`ordo.ui.site.create_site`)."""
    key: bytes = request.app.state.session_key
    return key


def session(request: Request) -> Session:
    """The page's viewer; SignIn (a redirect to /login) without a valid session."""
    found = read_session(
        store_of(request), request.cookies.get(COOKIE), time.time(), session_key(request)
    )
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
    if not given or not same(given, viewer.csrf):
        raise BadCsrf("this form is out of date or came from another site: reload the page")
    if viewer.read_only:
        raise ReadOnlySession(f"token {viewer.name!r} is read-only: it cannot change anything")
    return viewer


Viewer = Annotated[Session, Depends(session)]
Actor = Annotated[Session, Depends(acting)]
