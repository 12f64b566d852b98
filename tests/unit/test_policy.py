"""The engine's policy, as plain functions over plain facts: no store, no clock."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from ordo.engine import open_store, policy, policy_port
from ordo.model import Flow, FlowConcurrency, RetryPolicy, State, Task
from ordo.store import open_store as store_open
from ordo.store import ports
from ordo.store.ports import EndFacts, Ending, RetryFacts, RunGroup
from ordo.store.records import TaskRunRow


def _facts(
    *groups: tuple[State, bool, bool, int],
    current: State = State.RUNNING,
    failing: str | None = None,
    stopped: str | None = None,
) -> EndFacts:
    runs = [RunGroup(s, a, b, False, n) for s, a, b, n in groups]  # b: skipped by failure
    return EndFacts(1, current, failing, stopped, runs, lambda: "task 'b' failed: boom")


def test_the_module_is_the_stores_port_and_the_store_the_engine_opens_asks_it(
    tmp_path: Path,
) -> None:
    assert policy_port() is policy
    store = open_store(str(tmp_path / "ordo.db"))
    try:
        assert store.policy is policy
    finally:
        store.close()


def test_a_store_opened_without_a_policy_asks_the_installed_one(tmp_path: Path) -> None:
    """``ordo.store.open_store(url)`` finds the engine's policy as a plugin is found (the
    entry point pyproject.toml declares); the store's code names no module of the
    engine and loads none by name."""
    store = store_open(str(tmp_path / "ordo.db"))
    try:
        assert store.policy is policy
    finally:
        store.close()
    store_code = Path(ports.__file__).parent
    for path in store_code.glob("*.py"):
        code = path.read_text()
        assert "import_module" not in code, path
        assert "__import__" not in code, path


def test_opening_a_store_loads_the_policy_not_the_rest_of_the_engine() -> None:
    """``ordo.engine`` loads its names when first used: the store and its policy come
    without templating, definitions and what else starting an execution needs."""
    code = (
        "import sys, tempfile, os\n"
        "from ordo.engine import open_store\n"
        "open_store(os.path.join(tempfile.mkdtemp(), 'o.db')).close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ordo.engine', 'ordo.templating',"
        " 'ordo.definitions'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ordo.engine', 'ordo.engine.policy']", out.stdout


def test_an_execution_ends_as_its_task_runs_say() -> None:
    ok = (State.SUCCESS, False, False, 3)
    assert policy.end_state(_facts(ok)) == Ending(State.SUCCESS)
    failed = (State.FAILED, False, False, 1)
    assert policy.end_state(_facts(ok, failed)) == Ending(State.FAILED, "task 'b' failed: boom")
    allowed = (State.FAILED, True, False, 1)
    assert policy.end_state(_facts(ok, allowed)).state is State.WARNING
    assert policy.end_state(_facts(ok, (State.WARNING, False, False, 1))).state is State.WARNING
    killed = (State.KILLED, False, False, 1)
    assert policy.end_state(_facts(ok, killed)) == Ending(State.FAILED, "a task was killed")
    assert policy.end_state(_facts(killed, current=State.KILLING, failing="asked")) == Ending(
        State.KILLED, "asked"
    )
    assert policy.end_state(_facts(ok, failing="timed out")) == Ending(State.FAILED, "timed out")


def test_run_if_stop_ends_success_and_its_skips_are_no_failure() -> None:
    skipped = (State.SKIPPED, False, True, 4)
    stopped = _facts((State.SUCCESS, False, False, 1), skipped, stopped="run_if answered STOP")
    assert policy.end_state(stopped) == Ending(State.SUCCESS, "run_if answered STOP")
    # without a STOP, task runs skipped because of a failure fail the execution
    assert policy.end_state(_facts(skipped)).state is State.FAILED


def test_a_mark_settles_with_the_same_rule() -> None:
    # the failed task marked SUCCESS, nothing skipped: FAILED -> SUCCESS
    marked = _facts((State.SUCCESS, False, False, 2), current=State.FAILED)
    assert policy.settle(marked, "marked SUCCESS by me") == Ending(State.SUCCESS)
    # its dependents were skipped and never ran: it stays FAILED (a restart runs them)
    waiting = _facts(
        (State.SUCCESS, False, False, 1), (State.SKIPPED, False, True, 1), current=State.FAILED
    )
    assert policy.settle(waiting, "marked") is None
    # a task marked FAILED in a SUCCESS execution fails it, with the mark's reason
    failed = _facts((State.FAILED, False, False, 1), current=State.SUCCESS)
    assert policy.settle(failed, "marked FAILED by me") == Ending(
        State.FAILED, "marked FAILED by me"
    )
    # a KILLED execution is not made FAILED by a mark
    killed = _facts((State.KILLED, False, False, 1), current=State.KILLED)
    assert policy.settle(killed, "marked") is None


def test_items_end_their_for_each_task_run() -> None:
    def first(state: State) -> tuple[int, str]:
        return 2, f"{state.value.lower()} here"

    failed = {(State.SUCCESS, False): 3, (State.FAILED, False): 1}
    assert policy.items_verdict(failed, first) == Ending(State.FAILED, "item 2 failed: failed here")
    warned = {(State.SUCCESS, False): 3, (State.WARNING, False): 1}
    assert policy.items_verdict(warned, first).state is State.WARNING
    assert policy.items_verdict({(State.SUCCESS, False): 4}, first) == Ending(State.SUCCESS)
    assert policy.items_at_once(10, 3) == 3
    assert policy.items_at_once(2, 3) == 2
    assert policy.items_at_once(5, None) == 5


def test_retries_follow_the_task_policy_and_stop_with_the_execution() -> None:
    facts = RetryFacts(RetryPolicy(attempts=3, delay=1.0), 1, "exit_code", 1, 0.0, True)
    assert policy.retry_delay(facts, random.Random(1)) == 1.0
    stopping = RetryFacts(RetryPolicy(attempts=3, delay=1.0), 1, "exit_code", 1, 0.0, False)
    assert policy.retry_delay(stopping, random.Random(1)) is None
    last = RetryFacts(RetryPolicy(attempts=3, delay=1.0), 3, "exit_code", 1, 0.0, True)
    assert policy.retry_delay(last, random.Random(1)) is None


def test_release_and_failure_rules() -> None:
    assert policy.releases(State.SKIPPED, False)
    assert policy.releases(State.FAILED, True)
    assert not policy.releases(State.FAILED, False)
    assert not policy.releases(State.KILLED, True)
    asked: list[bool] = []

    def keep_going() -> bool:
        asked.append(True)
        return False

    assert not policy.fails_execution(State.SUCCESS, False, keep_going)
    assert not asked  # continue_on_error is read only when it matters
    assert policy.fails_execution(State.FAILED, False, keep_going)
    assert not policy.fails_execution(State.FAILED, False, lambda: True)


def test_admission_under_a_flow_limit() -> None:
    queue = FlowConcurrency(limit=2, behavior="queue")
    assert policy.admission(queue, 1, "ns/f") is None
    assert policy.admission(queue, 2, "ns/f") == Ending(
        State.QUEUED, "waiting for ns/f: 2 of 2 running"
    )
    cancel = FlowConcurrency(limit=1, behavior="cancel")
    assert policy.admission(cancel, 1, "ns/f").state is State.KILLED  # type: ignore[union-attr]
    fail = FlowConcurrency(limit=1, behavior="fail")
    assert policy.admission(fail, 1, "ns/f").state is State.FAILED  # type: ignore[union-attr]


def test_a_dropped_claim_ends_skipped_or_failed_when_it_was_a_retry() -> None:
    why = "execution failed: task 'a' failed"
    assert policy.dropped(0, why) == Ending(State.SKIPPED, why)
    assert policy.dropped(2, why) == Ending(State.FAILED, f"not retried: {why}")


def test_skipped_by_failure_is_skipped_without_a_counted_attempt_nor_on_request() -> None:
    assert policy.by_failure(State.SKIPPED, True, False)
    assert not policy.by_failure(State.SKIPPED, False, False)  # its run_if answered SKIP
    assert not policy.by_failure(State.SKIPPED, True, True)  # --skip
    assert not policy.by_failure(State.FAILED, True, False)


def _task(tid: str, *deps: str) -> Task:
    return Task(id=tid, type="shell", spec={"command": "true"}, depends_on=deps)


def _ran(i: int, tid: str, state: State) -> TaskRunRow:
    return TaskRunRow(i, 1, tid, state, 0, False, 1, None, None, 0.0, None, None)


def test_a_replay_reuses_what_would_not_run_again_and_on_another_revision_what_is_alike() -> None:
    old = Flow(id="f", tasks=(_task("a"), _task("b", "a"), _task("c", "b")), base_dir="/")
    runs = [_ran(1, "a", State.SUCCESS), _ran(2, "b", State.SUCCESS), _ran(3, "c", State.FAILED)]
    assert set(policy.to_reuse(old, old, runs, None)) == {"a", "b"}
    assert set(policy.to_reuse(old, old, runs, "b")) == {"a"}
    # b depends on something else now: neither it nor what is downstream of it is reused
    new = Flow(
        id="f", tasks=(_task("a"), _task("x"), _task("b", "x"), _task("c", "b")), base_dir="/"
    )
    assert set(policy.to_reuse(old, new, runs, None)) == {"a"}


def test_a_restarted_task_run_waits_for_its_dependencies_that_run_again() -> None:
    assert policy.waits_for(_task("c", "a", "b"), {"b", "c"}) == 1
    assert policy.waits_for(_task("a"), {"a"}) == 0
