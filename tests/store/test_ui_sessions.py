"""Web sessions (ordo.ui.auth) on a real store: signed cookies, expiry, revocation."""

from __future__ import annotations

from pathlib import Path

from ordo import services
from ordo.engine import open_store
from ordo.ui import auth

KEY = b"k" * 32


def test_a_session_cookie_is_signed_expires_and_ends_with_its_token(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ordo.db"))
    try:
        store.add_token("web", services.token_hash("secret-token"), False, 1000.0, ["analytics"])
        assert auth.sign_in(store, "wrong", 1000.0, KEY) is None
        cookie = auth.sign_in(store, " secret-token\n", 1000.0, KEY)
        assert cookie is not None and "secret-token" not in cookie
        session = auth.read_session(store, cookie, 2000.0, KEY)
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
            f"{token_id}.{expires}.{signature[:-1]}é",  # not ASCII: refused, no error
            f"{token_id}.{expires}².{signature}",  # a digit Python reads but int() does not
            f"\u0661.{expires}.{signature}",  # ARABIC-INDIC DIGIT ONE
        ):
            assert auth.read_session(store, forged, 2000.0, KEY) is None, forged
        assert auth.read_session(store, cookie, 1000.0 + auth.SESSION_SECONDS + 1, KEY) is None
        other = auth.read_session(
            store, auth.sign_in(store, "secret-token", 1500.0, KEY), 2000.0, KEY
        )
        assert other is not None and other.csrf != session.csrf  # one CSRF token per session
        store.revoke_token("web", 3000.0)
        assert auth.read_session(store, cookie, 3001.0, KEY) is None
    finally:
        store.close()


def test_a_copy_of_the_database_cannot_forge_a_session(tmp_path: Path) -> None:
    """Whoever holds the store (a backup, pg_dump) has every token's hash, but not the
    server's session key: a cookie signed the old way (keyed by the hash) or with another
    key is no session, nor is a CSRF token made from the hash."""
    import hashlib
    import hmac

    store = open_store(str(tmp_path / "ordo.db"))
    try:
        hashed = services.token_hash("secret-token")
        store.add_token("web", hashed, False, 1000.0, None)
        (token_id,) = [t.id for t in store.list_tokens()]
        body = f"{token_id}.{1000 + auth.SESSION_SECONDS}"
        for key in (hashed.encode(), b"another server's key" * 2):
            for text in (f"session.{body}", f"session.{body}.{hashed}"):
                signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
                assert auth.read_session(store, f"{body}.{signature}", 2000.0, KEY) is None
        real = auth.sign_in(store, "secret-token", 1000.0, KEY)
        session = auth.read_session(store, real, 2000.0, KEY)
        assert session is not None
        assert (
            session.csrf != hmac.new(hashed.encode(), f"csrf.{body}".encode(), "sha256").hexdigest()
        )
        assert auth.read_session(store, real, 2000.0, b"x" * 32) is None  # another key
    finally:
        store.close()


def test_comparisons_of_tokens_are_on_bytes() -> None:
    assert auth.same("abc", "abc") and not auth.same("abd", "abc")
    assert not auth.same("ábc", "abc") and not auth.same("日本", "abc") and not auth.same(None, "a")
    assert not auth.login_allowed(KEY, None, auth.login_csrf(KEY, "n"))
    assert not auth.login_allowed(KEY, "n", "é" * 64)
    assert auth.login_allowed(KEY, "n", auth.login_csrf(KEY, "n"))
