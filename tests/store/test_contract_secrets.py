"""The secrets table on both backends: ciphertexts set, replaced, listed, removed."""

from __future__ import annotations

import pytest

from ordo.errors import NotFound
from ordo.store import Store


def test_a_secret_is_set_changed_listed_and_removed(store: Store) -> None:
    assert store.set_secret("B", "cipher-1", 10.0) is True
    assert store.set_secret("A", "cipher-a", 11.0) is True
    assert store.set_secret("B", "cipher-2", 12.0) is False  # changed
    assert store.get_secret("B") == "cipher-2"
    assert store.secret_rows() == [("A", "cipher-a"), ("B", "cipher-2")]
    listed = store.list_secrets()
    assert [(r.name, r.created_at, r.updated_at) for r in listed] == [
        ("A", 11.0, 11.0),
        ("B", 10.0, 12.0),
    ]
    store.remove_secret("A")
    assert [r.name for r in store.list_secrets()] == ["B"]


def test_an_unknown_secret_is_not_found_naming_those_there_are(store: Store) -> None:
    store.set_secret("KNOWN", "c", 1.0)
    with pytest.raises(NotFound, match=r"no secret named 'NOPE' \(secrets: KNOWN\)"):
        store.remove_secret("NOPE")
    with pytest.raises(NotFound, match="NOPE"):
        store.get_secret("NOPE")
