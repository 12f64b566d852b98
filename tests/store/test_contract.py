"""The store contract: what every backend must do, tested through the public interface."""

from __future__ import annotations

import random
import threading

import pytest

from ordo.engine import open_store
from ordo.errors import NotFound
from ordo.model import CheckResult, Flow, Metric, Outcome, RetryPolicy, State, Task
from ordo.store import Store
from ordo.store.records import Claim, NewLog

NOW = 1_800_000_000.0
RNG = random.Random(7)


def flow_of(*tasks: Task, **kw: object) -> Flow:
    return Flow(id="f", tasks=tuple(tasks), base_dir="/tmp", **kw)  # type: ignore[arg-type]


def task(tid: str, *deps: str, **kw: object) -> Task:
    return Task(id=tid, type="shell", spec={"command": "true"}, depends_on=deps, **kw)  # type: ignore[arg-type]


def start(store: Store, flow: Flow) -> int:
    rev = store.add_revision(flow, "source", "hash-" + flow.id, NOW)
    return store.create_execution(rev.id, {"x": 1}, {"team": "data"}, NOW)


LATER = NOW + 100


def claim_all(store: Store, ex_id: int, now: float = LATER) -> list[Claim]:
    return store.claim("w1", 100, now, 30.0, execution_id=ex_id)


def ok(**outputs: object) -> Outcome:
    return Outcome(State.SUCCESS, exit_code=0, outputs=outputs)


def fail(code: int = 1) -> Outcome:
    return Outcome(State.FAILED, exit_code=code, reason="exit_code", error=f"exit code {code}")


def states(store: Store, ex_id: int) -> dict[str, str]:
    return {r.task_id: r.state.value for r in store.task_runs(ex_id)}


def test_new_execution_is_created_with_roots_ready_until_its_first_claim(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a"), task("c")))
    ex = store.get_execution(ex_id)
    assert ex.state is State.CREATED
    assert ex.started_at is None
    assert ex.inputs == {"x": 1}
    assert ex.labels == {"team": "data"}
    claims = claim_all(store, ex_id)
    assert sorted(c.task_id for c in claims) == ["a", "c"]
    assert store.get_execution(ex_id).state is State.RUNNING
    assert store.get_execution(ex_id).started_at == LATER
    assert states(store, ex_id) == {"a": "RUNNING", "b": "CREATED", "c": "RUNNING"}
    history = [(h.from_state, h.to_state) for h in store.history(ex_id) if h.task_run_id is None]
    assert history == [(None, State.CREATED), (State.CREATED, State.RUNNING)]


def test_claim_leases_attempt_to_worker(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (claim,) = claim_all(store, ex_id)
    (attempt,) = store.attempts(ex_id)
    assert attempt.id == claim.attempt_id
    assert attempt.state is State.RUNNING
    assert attempt.worker_id == "w1"
    assert attempt.lease_expires_at == LATER + 30.0
    store.heartbeat("w1", [claim.attempt_id], NOW + 99)
    assert store.attempts(ex_id)[0].lease_expires_at == NOW + 99
    assert claim_all(store, ex_id) == []


def test_a_fair_claim_takes_its_share_of_what_is_ready_among_the_workers_alive(
    store: Store,
) -> None:
    """``fair=(least, alive_since)``: of 10 ready runs and 2 workers alive, a claim of 64
    takes 5 (and at least ``least``); a worker stopped, or last seen before
    ``alive_since``, is not counted; without ``fair``, up to the limit."""
    for worker, seen in (("w1", LATER), ("w2", LATER), ("old", NOW - 1000), ("gone", LATER)):
        store.register_worker(worker, "host", 1, ("default",), seen)
    store.worker_stopped("gone", LATER)
    ex_id = start(store, flow_of(*(task(f"t{i}") for i in range(10))))
    take = store.claim
    assert len(take("w1", 64, LATER, 6.0, execution_id=ex_id, fair=(1, NOW))) == 5
    assert len(take("w2", 64, LATER, 6.0, execution_id=ex_id, fair=(1, NOW))) == 3  # 5 / 2
    assert len(take("w1", 64, LATER, 6.0, execution_id=ex_id, fair=(0, NOW))) == 1
    assert len(take("w1", 64, LATER, 6.0, execution_id=ex_id, fair=(4, NOW))) == 1  # the last
    assert take("w1", 64, LATER, 6.0, execution_id=ex_id, fair=(4, NOW)) == []
    other = start(store, flow_of(*(task(f"t{i}") for i in range(10))))
    assert len(take("w1", 64, LATER, 6.0, execution_id=other, fair=(8, NOW))) == 8
    assert len(take("w1", 64, LATER, 6.0, execution_id=other)) == 2  # (not fair: all)


def test_a_claim_records_launched_those_that_fit_in_free_slots(store: Store) -> None:
    """``launch``: the first claims of executions not ``held`` start at once (launched
    now, the full lease); the rest keep the short lease of a claim not launched yet."""
    ex_id = start(store, flow_of(task("a"), task("b"), task("c")))
    claims = store.claim(
        "w1", 3, LATER, 6.0, execution_id=ex_id, launch=2, launch_lease_seconds=30.0
    )
    leases = [a.lease_expires_at for a in sorted(store.attempts(ex_id), key=lambda a: a.id)]
    assert leases == [LATER + 30.0, LATER + 30.0, LATER + 6.0]
    launched = {
        int(r["id"]): r["launched_at"]
        for r in store.db.all(
            "SELECT id, launched_at FROM attempts WHERE execution_id = ?", (ex_id,)
        )
    }
    assert [launched[c.attempt_id] for c in claims] == [LATER, LATER, None]
    other = start(store, flow_of(task("a")))
    (_held,) = store.claim(
        "w1", 1, LATER, 6.0, execution_id=other, launch=1, launch_lease_seconds=30.0, held={other}
    )
    assert store.attempts(other)[0].lease_expires_at == LATER + 6.0  # held: not launched


def test_success_makes_dependents_ready_only_when_all_deps_done(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b"), task("c", "a", "b")))
    a, b = sorted(claim_all(store, ex_id), key=lambda c: c.task_id)
    store.record_outcomes([(a, ok(n=1))], NOW + 1, RNG)
    assert claim_all(store, ex_id) == []
    store.record_outcomes([(b, ok())], NOW + 2, RNG)
    (c,) = claim_all(store, ex_id)
    assert c.task_id == "c"
    result = store.record_outcomes([(c, ok())], NOW + 3, RNG)
    assert result.ended_executions == {ex_id: State.SUCCESS}
    ex = store.get_execution(ex_id)
    assert ex.state is State.SUCCESS
    assert ex.ended_at == NOW + 3
    assert store.outputs(ex_id) == {"a": {"n": 1}}


def test_failure_skips_dependents_naming_the_dependency(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a"), task("c", "b")))
    (a,) = claim_all(store, ex_id)
    result = store.record_outcomes([(a, fail(3))], NOW + 1, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["a"].state is State.FAILED
    assert runs["b"].state is State.SKIPPED
    assert runs["b"].reason == "dependency 'a' failed"
    assert runs["c"].reason == "dependency 'b' was skipped"
    ex = store.get_execution(ex_id)
    assert ex.reason == "task 'a' failed: exit code 3"


def test_failure_stops_independent_branches_by_default(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b"), task("c", "b")))
    claims = {c.task_id: c for c in store.claim("w1", 1, NOW, 30, execution_id=ex_id)}
    store.record_outcomes([(claims["a"], fail())], NOW + 1, RNG)
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["b"].state is State.SKIPPED
    assert runs["b"].reason == "execution failed: task 'a' failed"
    assert store.get_execution(ex_id).state is State.FAILED


def test_continue_on_error_lets_independent_branches_finish(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b"), task("c", "b"), continue_on_error=True))
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    store.record_outcomes([(claims["a"], fail())], NOW + 1, RNG)
    store.record_outcomes([(claims["b"], ok())], NOW + 2, RNG)
    (c,) = claim_all(store, ex_id)
    result = store.record_outcomes([(c, ok())], NOW + 3, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}
    assert states(store, ex_id) == {"a": "FAILED", "b": "SUCCESS", "c": "SUCCESS"}


def test_allowed_failure_lets_dependents_run_and_ends_warning(store: Store) -> None:
    ex_id = start(store, flow_of(task("a", allow_failure=True), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, fail())], NOW + 1, RNG)
    (b,) = claim_all(store, ex_id)
    result = store.record_outcomes([(b, ok())], NOW + 2, RNG)
    assert result.ended_executions == {ex_id: State.WARNING}


def test_a_failure_ends_the_task_runs_waiting_for_a_retry_naming_it(store: Store) -> None:
    """Hundreds of task runs wait for their retry when ``bad`` fails: each ends FAILED,
    not retried, naming ``bad`` (not one another), in the same transaction, and the
    execution's end is told to the caller and names ``bad``."""
    policy = RetryPolicy(attempts=3, delay=3600.0)
    waiting = [task(f"w{i:03d}", retry=policy) for i in range(600)]
    ex_id = start(store, flow_of(*waiting, task("bad")))
    claims = {c.task_id: c for c in store.claim("w1", 601, LATER, 30.0, execution_id=ex_id)}
    bad = claims.pop("bad")
    result = store.record_outcomes([(c, fail()) for c in claims.values()], NOW + 1, RNG)
    assert len(result.retries) == 600
    result = store.record_outcomes([(bad, fail(3))], NOW + 2, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}
    runs = [r for r in store.task_runs(ex_id) if r.task_id != "bad"]
    assert {r.state for r in runs} == {State.FAILED}
    assert {r.reason for r in runs} == {"not retried: execution failed: task 'bad' failed"}
    assert store.get_execution(ex_id).reason == "task 'bad' failed: exit code 3"
    assert claim_all(store, ex_id, NOW + 7200) == []


def test_a_for_each_expanding_after_a_failure_starts_none_of_its_items(store: Store) -> None:
    """``b`` fails, then, in the same step, ``each`` expands: its items are skipped at
    once (no claim can take them), and the execution ends FAILED."""
    ex_id = start(store, flow_of(task("b"), task("each", for_each=[1, 2, 3])))
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    forks = Outcome(State.SUCCESS, forks=[1, 2, 3])
    result = store.record_outcomes([(claims["b"], fail()), (claims["each"], forks)], NOW, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}
    items = [r for r in store.task_runs(ex_id) if r.fork_of is not None]
    assert [r.state for r in items] == [State.SKIPPED] * 3
    assert {r.reason for r in items} == {"execution failed: task 'b' failed"}
    assert claim_all(store, ex_id, LATER) == []


def test_a_replay_copies_a_task_its_run_if_skipped_as_no_failure(store: Store) -> None:
    ex_id = start(store, flow_of(task("gate"), task("work")))
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    skipped = Outcome(State.SKIPPED, reason="skip", error="not today")
    result = store.record_outcomes([(claims["gate"], skipped), (claims["work"], ok())], NOW, RNG)
    assert result.ended_executions == {ex_id: State.SUCCESS}
    replay = store.replay_execution(ex_id, "work", LATER)
    (work,) = claim_all(store, replay, LATER + 1)
    result = store.record_outcomes([(work, ok())], LATER + 2, RNG)
    assert result.ended_executions == {replay: State.SUCCESS}
    gate = next(r for r in store.task_runs(replay) if r.task_id == "gate")
    assert (gate.state, gate.skipped_unstarted) == (State.SKIPPED, False)


def test_retry_schedules_next_attempt_after_delay(store: Store) -> None:
    policy = RetryPolicy(attempts=3, delay=10.0, backoff=2.0)
    ex_id = start(store, flow_of(task("a", retry=policy)))
    (first,) = claim_all(store, ex_id)
    result = store.record_outcomes([(first, fail())], NOW + 1, RNG)
    assert result.retries == [first.task_run_id]
    assert claim_all(store, ex_id, NOW + 10.9) == []
    assert store.next_ready_time(NOW + 1, execution_id=ex_id) == NOW + 11
    (second,) = claim_all(store, ex_id, NOW + 11)
    assert second.number == 2
    assert second.task_run_id == first.task_run_id
    store.record_outcomes([(second, fail())], NOW + 12, RNG)
    assert store.next_ready_time(NOW, execution_id=ex_id) == NOW + 32  # 20 s: backoff 2.0
    (third,) = claim_all(store, ex_id, NOW + 32)
    result = store.record_outcomes([(third, fail())], NOW + 33, RNG)
    assert result.ended_executions == {ex_id: State.FAILED}
    assert [a.number for a in store.attempts(ex_id)] == [1, 2, 3]
    assert store.task_runs(ex_id)[0].attempts == 3


def test_retry_only_on_listed_exit_codes(store: Store) -> None:
    policy = RetryPolicy(attempts=3, on_exit_codes=(75,))
    ex_id = start(store, flow_of(task("a", retry=policy)))
    (first,) = claim_all(store, ex_id)
    result = store.record_outcomes([(first, fail(2))], NOW + 1, RNG)
    assert result.retries == []
    assert store.get_execution(ex_id).state is State.FAILED


def test_outputs_metrics_and_logs_are_stored_per_attempt(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    store.add_logs(
        [
            NewLog(ex_id, a.attempt_id, NOW, "stdout", "hello"),
            NewLog(ex_id, a.attempt_id, NOW, "stderr", "warn ü"),
        ]
    )
    outcome = Outcome(
        State.SUCCESS,
        exit_code=0,
        outputs={"rows": [1, 2], "path": "x.csv"},
        metrics=(Metric("rows", 2.0, "counter", {"t": "1"}),),
        cpu_seconds=0.5,
        peak_rss_kb=1234,
    )
    store.record_outcomes([(a, outcome)], NOW + 1, RNG)
    assert [(ln.stream, ln.line) for ln in store.logs(ex_id)] == [
        ("stdout", "hello"),
        ("stderr", "warn ü"),
    ]
    assert store.attempt_outputs(a.attempt_id) == {"rows": [1, 2], "path": "x.csv"}
    (metric,) = store.metrics(ex_id)
    assert (metric.name, metric.kind, metric.value, metric.tags) == (
        "rows",
        "counter",
        2.0,
        {"t": "1"},
    )
    (attempt,) = store.attempts(ex_id)
    assert (attempt.cpu_seconds, attempt.peak_rss_kb, attempt.exit_code) == (0.5, 1234, 0)


def test_outcome_for_a_finished_attempt_is_reported_lost(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b")))
    a, _ = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    result = store.record_outcomes([(a, fail())], NOW + 2, RNG)
    assert result.lost == [a.attempt_id]
    assert states(store, ex_id)["a"] == "SUCCESS"


def test_execution_timeout_skips_unstarted_and_fails(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a"), timeout=5.0))
    assert store.expired_executions(NOW + 4) == []
    assert store.expired_executions(NOW + 5) == [ex_id]
    (a,) = claim_all(store, ex_id)
    store.fail_execution(ex_id, "execution timed out", NOW + 5)
    assert states(store, ex_id)["b"] == "SKIPPED"
    result = store.record_outcomes(
        [(a, Outcome(State.FAILED, reason="timeout", error="execution timed out"))], NOW + 6, RNG
    )
    assert result.ended_executions == {ex_id: State.FAILED}
    assert store.get_execution(ex_id).reason == "execution timed out"


def test_every_transition_is_in_history(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    task_history = [
        (h.from_state.value if h.from_state else None, h.to_state.value)
        for h in store.history(ex_id)
        if h.task_run_id is not None
    ]
    assert task_history == [("CREATED", "RUNNING"), ("RUNNING", "SUCCESS")]


def test_unknown_execution_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="execution 42 not found"):
        store.get_execution(42)


def test_revisions_are_found_by_hash_and_path(store: Store) -> None:
    flow = Flow(id="f", tasks=(task("a"),), base_dir="/tmp", path="/tmp/f.yaml")
    rev = store.add_revision(flow, "src", "h1", NOW)
    assert rev.revision == 1
    found = store.find_revision("h1", "/tmp/f.yaml")
    assert found is not None and found.id == rev.id and found.flow == flow
    assert store.find_revision("h1", "/elsewhere/f.yaml") is None
    rev2 = store.add_revision(flow, "src2", "h2", NOW)
    assert rev2.revision == 2
    assert [r.revision for r in store.list_flows()] == [2]


def test_registering_the_same_new_file_from_many_connections_stores_it_once(
    store_url: str,
) -> None:
    flow = Flow(id="f", tasks=(task("a"),), base_dir="/tmp", path="/tmp/f.yaml")
    stores = [open_store(store_url) for _ in range(4)]
    revisions: list[int] = []
    errors: list[BaseException] = []

    def register(s: Store) -> None:
        try:
            revisions.append(s.add_revision(flow, "src", "h1", NOW).id)
        except BaseException as exc:  # pragma: no cover - the failure this test guards
            errors.append(exc)

    try:
        threads = [threading.Thread(target=register, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.close()
    assert errors == []
    assert len(set(revisions)) == 1


def test_two_workers_never_claim_the_same_task_run(store_url: str) -> None:
    setup = open_store(store_url)
    ex_id = start(setup, flow_of(*(task(f"t{i}") for i in range(200))))
    setup.close()
    claimed: list[list[int]] = [[], [], [], []]

    def work(slot: int) -> None:
        s = open_store(store_url)
        try:
            while claims := s.claim(f"w{slot}", 3, NOW, 30, execution_id=ex_id):
                claimed[slot].extend(c.task_run_id for c in claims)
        finally:
            s.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [tr for part in claimed for tr in part]
    assert len(everything) == 200
    assert len(set(everything)) == 200


def test_finished_execution_cannot_change_state(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    history = store.history(ex_id)
    store.fail_execution(ex_id, "too late", NOW + 2)
    assert store.get_execution(ex_id).state is State.SUCCESS
    assert store.history(ex_id) == history


def test_killed_attempt_passes_through_killing(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.fail_execution(ex_id, "interrupted", NOW + 1)
    store.record_outcomes([(a, Outcome(State.KILLED, reason="killed"))], NOW + 2, RNG)
    steps = [h.to_state.value for h in store.history(ex_id) if h.task_run_id == a.task_run_id]
    assert steps == ["RUNNING", "KILLING", "KILLED"]
    assert store.get_execution(ex_id).state is State.FAILED
    assert store.get_execution(ex_id).reason == "interrupted"


def test_logs_of_one_attempt_page_past_other_attempts_lines(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b")))
    a, b = claim_all(store, ex_id)
    store.add_logs([NewLog(ex_id, a.attempt_id, NOW, "stdout", f"a{i}") for i in range(50)])
    store.add_logs([NewLog(ex_id, b.attempt_id, NOW, "stdout", f"b{i}") for i in range(3)])
    first = store.logs(ex_id, attempt_ids=[b.attempt_id], limit=2)
    rest = store.logs(ex_id, attempt_ids=[b.attempt_id], after_id=first[-1].id, limit=2)
    assert [ln.line for ln in first + rest] == ["b0", "b1", "b2"]
    assert store.logs(ex_id, attempt_ids=[]) == []


def test_running_claims_are_the_workers_unfinished_attempts(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b")))
    a, b = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    assert store.running_claims("w1") == [b]
    assert store.running_claims("someone-else") == []


def check(phase: str, position: int, ok: bool, message: str, **kw: object) -> CheckResult:
    return CheckResult(phase, position, "file_exists", ok, message, NOW + 1, NOW + 2, **kw)  # type: ignore[arg-type]


def test_check_results_are_stored_with_the_outcome_of_their_attempt(store: Store) -> None:
    ex_id = start(store, flow_of(task("a"), task("b"), task("c", "a", "b")))
    a, b = sorted(claim_all(store, ex_id), key=lambda c: c.task_id)
    passed = Outcome(
        State.SUCCESS,
        exit_code=0,
        checks=(check("pre", 1, True, "in.csv exists"), check("post", 1, True, "out.csv exists")),
    )
    failed = Outcome(
        State.FAILED,
        exit_code=0,
        reason="post_check",
        error="post_check command: exit code 1",
        checks=(
            check("pre", 1, True, "in.csv exists"),
            CheckResult("post", 1, "command", False, "exit code 1", NOW + 3, NOW + 4, "no rows"),
        ),
    )
    store.record_outcomes([(a, passed), (b, failed)], NOW + 5, RNG)  # a batch and one alone
    rows = store.checks(ex_id)
    assert [(r.attempt_id, r.phase, r.position, r.kind, r.ok, r.message) for r in rows] == [
        (a.attempt_id, "pre", 1, "file_exists", True, "in.csv exists"),
        (a.attempt_id, "post", 1, "file_exists", True, "out.csv exists"),
        (b.attempt_id, "pre", 1, "file_exists", True, "in.csv exists"),
        (b.attempt_id, "post", 1, "command", False, "exit code 1"),
    ]
    last = rows[-1]
    assert last.task_run_id == b.task_run_id and last.output == "no rows"
    assert (last.started_at, last.ended_at) == (NOW + 3, NOW + 4)
    assert rows[0].output is None
    assert store.get_execution(ex_id).reason == "task 'b' failed: post_check command: exit code 1"


def test_check_results_of_a_lost_race_are_not_stored(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    late = Outcome(State.SUCCESS, checks=(check("post", 1, True, "late"),))
    result = store.record_outcomes([(a, late)], NOW + 2, RNG)
    assert result.lost == [a.attempt_id]
    assert store.checks(ex_id) == []


def test_failures_recorded_together_each_skip_their_own_dependents(store: Store) -> None:
    """``a`` and ``b`` fail in the same step: the dependents of each name it, what else
    has not started names the first (by id), and so does the execution's reason."""
    ex_id = start(store, flow_of(task("a"), task("b"), task("da", "a"), task("db", "b")))
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    other = start(
        store, Flow(id="g", tasks=(task("c"), task("dc", "c"), task("late")), base_dir="/")
    )
    (c,) = store.claim("w1", 1, LATER, 30.0, execution_id=other, only=[min_id(store, other)])
    batch = [(claims["b"], fail(2)), (claims["a"], fail()), (c, fail(3))]
    result = store.record_outcomes(batch, LATER, RNG)
    assert result.ended_executions == {ex_id: State.FAILED, other: State.FAILED}
    runs = {r.task_id: r for r in store.task_runs(ex_id)}
    assert runs["da"].reason == "dependency 'a' failed"
    assert runs["db"].reason == "dependency 'b' failed"
    assert store.get_execution(ex_id).reason == "task 'a' failed: exit code 1"
    runs = {r.task_id: r for r in store.task_runs(other)}
    assert runs["dc"].reason == "dependency 'c' failed"
    assert runs["late"].reason == "execution failed: task 'c' failed"
    assert store.get_execution(other).reason == "task 'c' failed: exit code 3"


def min_id(store: Store, ex_id: int) -> int:
    return min(r.id for r in store.task_runs(ex_id))


@pytest.mark.parametrize("outcome", [ok(), fail()], ids=["well", "failed"])
def test_items_ending_together_start_as_many_of_the_next(store: Store, outcome: Outcome) -> None:
    """Two items of a for_each of five, two at a time, end in the same step: the next
    two start; the for_each task run ends with its last item."""
    flow = flow_of(task("each", for_each=[1, 2, 3, 4, 5], concurrency=2), continue_on_error=True)
    ex_id = start(store, flow)
    (each,) = claim_all(store, ex_id)
    store.record_outcomes([(each, Outcome(State.SUCCESS, forks=[1, 2, 3, 4, 5]))], LATER, RNG)
    seen = []
    for _ in range(3):
        items = claim_all(store, ex_id, LATER + 1)
        seen.append(len(items))
        store.record_outcomes([(c, outcome) for c in items], LATER + 1, RNG)
    assert seen == [2, 2, 1]
    run = next(r for r in store.task_runs(ex_id) if r.task_id == "each" and r.fork_of is None)
    assert run.state is (State.SUCCESS if outcome.state is State.SUCCESS else State.FAILED)
    assert store.get_execution(ex_id).state is run.state


def test_a_dependent_of_a_failure_names_it_though_another_upstream_was_skipped(
    store: Store,
) -> None:
    """``a`` and ``b`` fail in one step: ``d`` depends on ``a`` and on ``u``, skipped
    below ``b``: it names ``a``, as it would had ``a`` failed alone."""
    tasks = (task("a"), task("b"), task("u", "b"), task("d", "a", "u"))
    ex_id = start(store, flow_of(*tasks, continue_on_error=True))
    claims = {c.task_id: c for c in claim_all(store, ex_id)}
    store.record_outcomes([(claims["a"], fail()), (claims["b"], fail())], LATER, RNG)
    runs = {r.task_id: r.reason for r in store.task_runs(ex_id)}
    assert (runs["u"], runs["d"]) == ("dependency 'b' failed", "dependency 'a' failed")
