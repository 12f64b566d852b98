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


def test_a_workers_claims_see_every_change_of_the_secrets(store_url: str) -> None:
    """A worker reads the secrets after a claim only when the claim saw them change;
    another process's changes (a set, a replacement, a removal) are seen at the next
    claim."""
    from test_contract import LATER, flow_of, start, task

    from ordo.engine import open_store

    worker, admin = open_store(store_url), open_store(store_url)
    try:
        ex_id = start(worker, flow_of(*(task(f"t{i}") for i in range(5))))
        admin.set_secret("A", "cipher-1", 10.0)

        def claim_one(n: int) -> list[tuple[str, str]]:
            assert len(worker.claim("w", 1, LATER + n, 30.0, execution_id=ex_id)) == 1
            return worker.secret_rows()

        assert claim_one(1) == [("A", "cipher-1")]
        assert claim_one(2) == [("A", "cipher-1")]  # unchanged: kept
        admin.set_secret("A", "cipher-2", 11.0)
        assert claim_one(3) == [("A", "cipher-2")]
        admin.set_secret("B", "cipher-b", 12.0)
        assert claim_one(4) == [("A", "cipher-2"), ("B", "cipher-b")]
        admin.remove_secret("A")
        assert claim_one(5) == [("B", "cipher-b")]
        admin.set_secret("C", "cipher-c", 13.0)  # outside a claim: read as it is
        worker.worker_heartbeat("w", 0, LATER)  # another transaction: no claim since
        assert worker.secret_rows() == [("B", "cipher-b"), ("C", "cipher-c")]
    finally:
        worker.close()
        admin.close()
