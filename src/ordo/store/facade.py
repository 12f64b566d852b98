"""The store: one thin facade over the store's concerns, each an object over one
:class:`~ordo.store.db.Db` (one class per backend: :mod:`ordo.store.sqlite`,
:mod:`ordo.store.postgres`) owning its SQL:

- :mod:`~ordo.store.flows` flows and revisions; :mod:`~ordo.store.reads` the reads of
  executions, task runs and attempts;
- the state core: :mod:`~ordo.store.transitions` (the one function that writes a state
  and its history), :mod:`~ordo.store.readiness` (the ready list),
  :mod:`~ordo.store.limits` (what runs under a limit), :mod:`~ordo.store.outcomes`
  (recording outcomes and writing what the policy decides), and
  :mod:`~ordo.store.recovery` (restart, replay, mark);
- :mod:`~ordo.store.executions` (create, replay, kill, fail) and
  :mod:`~ordo.store.taskruns` (claim, record, hand back, reap: the worker's side);
- :mod:`~ordo.store.steps`, :mod:`~ordo.store.triggers` (schedules, ticks, leases,
  events, notifications), :mod:`~ordo.store.secrets` (tokens, secrets, connections),
  :mod:`~ordo.store.retention` (logs, saving, gc) and :mod:`~ordo.store.overview`.

Each concern receives the concerns it uses in its constructor; :class:`Store` builds them
in that order and exposes their public methods under the names the code base calls.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from ordo.store.db import Closable, Db
from ordo.store.executions import Executions
from ordo.store.flows import Flows
from ordo.store.limits import Limits
from ordo.store.outcomes import Outcomes
from ordo.store.overview import Overview
from ordo.store.ports import Decisions
from ordo.store.readiness import Readiness
from ordo.store.reads import Reads
from ordo.store.recovery import Recovery
from ordo.store.retention import Logs, Retention
from ordo.store.secrets import Connections, Secrets, Tokens
from ordo.store.steps import Steps
from ordo.store.taskruns import TaskRuns
from ordo.store.transitions import Transitions
from ordo.store.triggers import Triggers


class Store:
    """One database's store: use from one thread at a time."""

    def __init__(self, db: Db, *, policy: Decisions) -> None:
        self.db = db
        self.transaction: Callable[[], AbstractContextManager[None]] = db.transaction
        self.plan_once = db.plan_once
        # -- flows and revisions
        self.flows = flows = Flows(db)
        self.add_revision = flows.add_revision
        self.find_revision = flows.find_revision
        self.newest_at = flows.newest_at
        self.get_revision = flows.get_revision
        self.flow_of = flows.flow_of
        self.find_flow = flows.find_flow
        self.list_flows = flows.list_flows
        self.namespaces = flows.namespaces
        self.revisions = flows.revisions
        self.revision_source = flows.revision_source
        self.revision_scripts = flows.revision_scripts
        self.set_flow_active = flows.set_flow_active
        self.flow_active = flows.flow_active
        self.flow_flags = flows.flow_flags
        self.deployed_flows = flows.deployed_flows
        self.flow_deploy = flows.flow_deploy
        self.set_deployed = flows.set_deployed
        self.set_removed = flows.set_removed
        # -- executions, task runs and attempts: reads
        self.reads = reads = Reads(db, flows)
        self.running_claims = reads.running_claims
        self.list_workers = reads.list_workers
        self.get_execution = reads.get_execution
        self.list_executions = reads.list_executions
        self.queue_of = reads.queue_of
        self.run_options = reads.run_options
        self.task_retry = reads.task_retry
        self.run_timeout = reads.run_timeout
        self.task_runs = reads.task_runs
        self.attempts = reads.attempts
        self.history = reads.history
        self.called_outputs = reads.called_outputs
        self.outputs = reads.outputs
        self.active_executions = reads.active_executions
        self.fork_item = reads.fork_item
        self.children = reads.children
        self.calls = reads.calls
        self.calling_task = reads.calling_task
        self.calling_run = reads.calling_run
        self.lineage = reads.lineage
        self.ended_among = reads.ended_among
        self.failing_among = reads.failing_among
        self.attempt_outputs = reads.attempt_outputs
        self.killing_among = reads.killing_among
        self.tree_workers = reads.tree_workers
        self.expired_executions = reads.expired_executions
        self.running_attempt_ids = reads.running_attempt_ids
        self.next_ready_time = reads.next_ready_time
        # -- logs and retention
        logs = Logs(db)
        self.add_logs = logs.add_logs
        self.logs = logs.logs
        self.metrics = logs.metrics
        self.checks = logs.checks
        retention = Retention(db, reads)
        self.reclaim_space = retention.reclaim_space
        self.save_execution = retention.save_execution
        self.unsave_execution = retention.unsave_execution
        self.find_saved = retention.find_saved
        self.collect_garbage = retention.collect_garbage
        # -- the overview
        overview = Overview(db)
        self.states_since = overview.states_since
        self.recent_outcomes = overview.recent_outcomes
        self.last_change = overview.last_change
        self.ping = overview.ping
        self.gauges = overview.gauges
        # -- tokens and secrets
        self.secrets = secrets = Secrets(db)
        self.set_secret = secrets.set_secret
        self.get_secret = secrets.get_secret
        self.secret_rows = secrets.secret_rows
        self.list_secrets = secrets.list_secrets
        self.remove_secret = secrets.remove_secret
        tokens = Tokens(db)
        self.add_token = tokens.add_token
        self.find_token = tokens.find_token
        self.token_used = tokens.token_used
        self.list_tokens = tokens.list_tokens
        self.revoke_token = tokens.revoke_token
        self.session_token = tokens.session_token
        # -- triggers and leases
        triggers = Triggers(db)
        self.add_schedule = triggers.add_schedule
        self.update_schedule = triggers.update_schedule
        self.get_schedule = triggers.get_schedule
        self.list_schedules = triggers.list_schedules
        self.remove_schedule = triggers.remove_schedule
        self.schedule_checked = triggers.schedule_checked
        self.set_schedule_checked = triggers.set_schedule_checked
        self.tick_taken = triggers.tick_taken
        self.add_tick = triggers.add_tick
        self.ticks = triggers.ticks
        self.take_lease = triggers.take_lease
        self.drop_lease = triggers.drop_lease
        self.add_event = triggers.add_event
        self.set_event_executions = triggers.set_event_executions
        self.list_events = triggers.list_events
        self.collect_events = triggers.collect_events
        self.ended_since = triggers.ended_since
        self.notified = triggers.notified
        self.add_notification = triggers.add_notification
        self.notifications = triggers.notifications
        connections = Connections(db)
        self.save_connection = connections.save_connection
        self.remove_connection = connections.remove_connection
        self.get_connection = connections.get_connection
        self.list_connections = connections.list_connections

        # -- the state core: one transition function, the ready list, limits, outcomes
        self.transitions = transitions = Transitions(db)
        self.readiness = readiness = Readiness(db)
        self.limits = limits = Limits(db, flows)
        self.outcomes = outcomes = Outcomes(
            db, flows, reads, transitions, readiness, limits, policy=policy
        )
        self.key_usage = limits.key_usage
        # -- restart, replay and mark
        recovery = Recovery(db, flows, reads, transitions, readiness, outcomes)
        self.restart_execution = recovery.restart_execution
        self.rerun_nothing = recovery.rerun_nothing
        self.child_to_restart = recovery.child_to_restart
        self.restart_child = recovery.restart_child
        self.mark_task_run = recovery.mark_task_run
        # -- executions
        executions = Executions(db, flows, reads, transitions, limits, outcomes, recovery)
        self.create_execution = executions.create_execution
        self.replay_execution = executions.replay_execution
        self.fail_execution = executions.fail_execution
        self.kill_execution = executions.kill_execution
        self.schedule_execution = executions.schedule_execution
        self.close_schedules = executions.close_schedules
        # -- task runs: the worker's side
        task_runs = TaskRuns(
            db, flows, reads, transitions, readiness, limits, outcomes, executions, secrets, logs
        )
        self.claim = task_runs.claim
        self.heartbeat = task_runs.heartbeat
        self.record_outcomes = task_runs.record_outcomes
        self.reap_workers = task_runs.reap_workers
        self.mark_launched = task_runs.mark_launched
        self.record_processes = task_runs.record_processes
        self.lost_processes = task_runs.lost_processes
        self.reap_expired = task_runs.reap_expired
        self.hand_back = task_runs.hand_back
        self.record_connection = task_runs.record_connection
        self.record_call = task_runs.record_call
        self.register_worker = task_runs.register_worker
        self.worker_heartbeat = task_runs.worker_heartbeat
        self.worker_stopped = task_runs.worker_stopped
        # -- steps of flow functions and handlers
        steps = Steps(db, reads, transitions, readiness)
        self.step = steps.step
        self.step_of_run = steps.step_of_run
        self.step_count = steps.step_count
        self.record_step = steps.record_step
        self.start_step = steps.start_step
        self.again_step = steps.again_step
        self.step_result = steps.step_result
        self.run_states = steps.run_states

    @property
    def policy(self) -> Decisions:
        """The engine's policy this store asks (see :mod:`ordo.store.ports`)."""
        return self.outcomes.policy

    @property
    def readied(self) -> bool:
        """Ready rows were added since the caller last set this to False."""
        return self.readiness.readied

    @readied.setter
    def readied(self, value: bool) -> None:
        self.readiness.readied = value

    @property
    def key_blocked(self) -> bool:
        """The last claim left ready task runs waiting for a concurrency key's slot."""
        return self.limits.key_blocked

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.db.backend

    def upgrade(self) -> int:
        """Apply pending migrations; returns the schema version now in force."""
        return self.db.upgrade()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def listen(self, wake: Callable[[], None]) -> Closable | None:
        """Call ``wake`` (from another thread) when ready rows are added; None when the
        backend has no such notifications. A listener whose ``cross_process`` is false
        hears only this process (SQLite)."""
        return self.db.listen(wake)

    def reconnect(self) -> None:
        """Open a new connection after :class:`~ordo.errors.StoreUnavailable`."""
        self.db.reconnect()

    def close(self) -> None:
        self.db.close()
