"""Web sessions (ordo.ui.auth) on a real store: signed cookies, expiry, revocation."""

from __future__ import annotations

from pathlib import Path

from ordo import services
from ordo.store import open_store
from ordo.ui import auth


def test_a_session_cookie_is_signed_expires_and_ends_with_its_token(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ordo.db"))
    try:
        store.add_token("web", services.token_hash("secret-token"), False, 1000.0, ["analytics"])
        assert auth.sign_in(store, "wrong", 1000.0) is None
        cookie = auth.sign_in(store, " secret-token\n", 1000.0)
        assert cookie is not None and "secret-token" not in cookie
        session = auth.read_session(store, cookie, 2000.0)
        assert session is not None
        assert (session.name, session.read_only, session.namespaces) == (
            "web",
            False,
            ("analytics",),
        )
        assert session.caller.sees("analytics") and not session.caller.sees("finance")
        token_id, expires, signature = cookie.split(".")
        assert int(expires) == 1000 + auth.SESSION_SECONDS
        for forged in (
            f"{token_id}.{int(expires) + 3600}.{signature}",  # a later expiry
            f"{token_id}.{expires}.{'0' * len(signature)}",
            f"{int(token_id) + 1}.{expires}.{signature}",
            "garbage",
            f"{2**64}.{expires}.{signature}",
        ):
            assert auth.read_session(store, forged, 2000.0) is None, forged
        assert auth.read_session(store, cookie, 1000.0 + auth.SESSION_SECONDS + 1) is None
        other = auth.read_session(store, auth.sign_in(store, "secret-token", 1500.0), 2000.0)
        assert other is not None and other.csrf != session.csrf  # one CSRF token per session
        store.revoke_token("web", 3000.0)
        assert auth.read_session(store, cookie, 3001.0) is None
    finally:
        store.close()
