"""Handing runs to agents: dequeue with leases, heartbeats, reports, and leases that run out.

`pop` gives an agent the oldest pending run of its queues, most urgent first
(priority 0 = critical), and leases it: the run is the agent's until
`lease_expires_at`, which every heartbeat and report pushes forward. Exactly
one agent gets each run:

- on PostgreSQL the candidate row is locked with `SELECT … FOR UPDATE SKIP
  LOCKED`, so agents popping at once take different runs and never wait on
  each other;
- on SQLite every transaction begins IMMEDIATE (see settings), taking the
  database's write lock before the select, so select-then-update cannot
  interleave.

A lease that runs out (the agent died or lost its network) sends the run back
to `pending`, the attempt counted; after `LAUNCHQ_MAX_ATTEMPTS` it fails with
that reason. The sweep runs lazily on every pop and heartbeat, and from
`manage.py expire_leases`. An agent whose lease is lost gets `LeaseLost` for
anything it says about that run. Every state move goes through `runs.move`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from launchq.models import HELD_BY_AGENT, Agent, Run, RunEvent, RunState
from launchq.runs import InvalidTransition, move

OUTPUT_TAIL = 64 * 1024
SWEEP_BATCH = 200
REPORTABLE = (RunState.STARTING, RunState.RUNNING, RunState.FINISHED, RunState.FAILED, RunState.CANCELLED, RunState.HANDED_OVER)
AGENT_STATUSES = ("polling", "running", "offline")

LEASE_LOST = "Run {run} is no longer leased to agent {agent}: {why}."
WHY_EXPIRED = "its lease ran out at {at}"
WHY_OTHER_AGENT = "another agent holds it now"
WHY_RELEASED = "it went back to the queue when the lease ran out"
WHY_DONE = "it already ended ({state})"
LEASE_RAN_OUT = "The lease of agent {agent} ran out (no heartbeat for {seconds}s); back to pending, attempt {attempt} of {limit}."
GAVE_UP = "The lease ran out {attempts} times (the agent stopped heartbeating each time); giving up after {limit} attempts."
CANCELLED_ON_EXPIRY = "The lease of agent {agent} ran out while a cancel was pending; cancelled."
NO_REASON = "The agent reported the run failed without saying why."


class LeaseLost(Exception):
    """The run is not (or no longer) leased to this agent; the agent must let it go."""

    def __init__(self, run: Run, agent: Agent, why: str):
        super().__init__(LEASE_LOST.format(run=run.run_id, agent=agent.name, why=why))
        self.run = run


class UnknownQueue(Exception):
    def __init__(self, names: list[str], served: list[str]):
        served_text = ", ".join(served) or "none"
        super().__init__(f"This agent is not registered for queue(s) {', '.join(names)}; it serves: {served_text}.")
        self.names = names


def lease_seconds() -> int:
    return int(getattr(settings, "LAUNCHQ_LEASE_SECONDS", 60))


def max_attempts() -> int:
    return int(getattr(settings, "LAUNCHQ_MAX_ATTEMPTS", 3))


# --- agents ------------------------------------------------------------------


def served_queues(agent: Agent, names: list[str] | None = None) -> list[int]:
    """Ids of the queues an agent serves, narrowed to `names` when given; `UnknownQueue` for others."""
    served = dict(agent.queues.values_list("name", "id"))
    if not names:
        return list(served.values())
    unknown = [n for n in names if n not in served]
    if unknown:
        raise UnknownQueue(unknown, sorted(served))
    return [served[n] for n in names]


def touch(agent: Agent, status: str = "", hostname: str = "") -> None:
    """Record that the agent was heard from, and what it said it was doing."""
    changes: dict[str, Any] = {"last_seen_at": timezone.now()}
    if status in AGENT_STATUSES:
        changes["reported_status"] = status
    if hostname:
        changes["hostname"] = hostname[:255]
    Agent.objects.filter(pk=agent.pk).update(**changes)
    for key, value in changes.items():
        setattr(agent, key, value)


# --- dequeue -----------------------------------------------------------------


def pop(agent: Agent, queue_names: list[str] | None = None, hostname: str = "") -> Run | None:
    """Lease the oldest, most urgent pending run of the agent's queues to it; None when there is none."""
    queue_ids = served_queues(agent, queue_names)
    expire_leases()
    with transaction.atomic():
        candidates = Run.objects.filter(queue_id__in=queue_ids, state=RunState.PENDING).order_by("priority", "created_at", "id")
        run = _locked(candidates, skip_locked=True).first() if queue_ids else None
        if run is not None:
            run.agent = agent
            where = f" on {hostname}" if hostname else ""
            move(
                run, RunState.LEASED, agent=agent,
                message=f"Leased to agent {agent.name}{where} (attempt {run.attempts + 1} of {max_attempts()}).",
                lease_expires_at=_lease_end(),
                attempts=run.attempts + 1,
            )
        touch(agent, "running" if run else "polling", hostname)
    return run


def heartbeat(agent: Agent, run_id: str, status: str = "running") -> Run:
    """Keep the agent's lease on a run alive; the run (its `cancel_requested` tells the agent to stop)."""
    expire_leases()
    with transaction.atomic():
        run = _held(agent, run_id)
        _extend(run)
        run.save(update_fields=["lease_expires_at", "updated_at"])
        touch(agent, status)
    return run


# --- reports -----------------------------------------------------------------


def report_state(agent: Agent, run_id: str, to: str, *, message: str = "", reason: str = "", exit_code: int | None = None) -> Run:
    """Move a run the agent holds to `to` (starting, running, finished, failed, cancelled).

    Saying the same thing twice (a report retried after its answer was lost) is
    fine; a move the state machine does not allow raises `InvalidTransition`.
    """
    with transaction.atomic():
        run = _find(agent, run_id, lock=True)
        if run.state == to and run.agent_id == agent.pk and run.done:
            return run
        _check_held(run, agent)
        if to not in REPORTABLE:
            raise InvalidTransition(run, to)
        if run.state == to:
            _extend(run)
            run.save(update_fields=["lease_expires_at", "updated_at"])
            _note(run, to, message, agent)
            return run
        changes: dict[str, Any] = {"lease_expires_at": _lease_end()}
        if to == RunState.RUNNING and run.started_at is None:
            changes["started_at"] = timezone.now()
        if exit_code is not None:
            changes["exit_code"] = exit_code
        if to == RunState.FAILED:
            changes["failure_reason"] = (reason or NO_REASON)[:4000]
        text = reason if to == RunState.FAILED and reason else message
        move(run, to, message=text[:2000], agent=agent, **changes)
        touch(agent, "polling" if run.done else "running")
    return run


def _note(run: Run, state: str, message: str, agent: Agent) -> None:
    """A new word on a run that stays in its state (a Pod still waiting, now for another reason) joins its history."""
    if not message:
        return
    last = run.events.order_by("-at", "-id").values_list("message", flat=True).first()
    if last != message[:2000]:
        RunEvent.objects.create(run=run, state=state, message=message[:2000], agent=agent)


def record_resolved(agent: Agent, run_id: str, **fields: Any) -> Run:
    """Keep what the agent resolved: the config after macros, warnings, the Dockerfile, the image URI."""
    allowed = {"resolved_config", "warnings", "dockerfile", "image_uri"}
    changes = {k: v for k, v in fields.items() if k in allowed and v is not None}
    with transaction.atomic():
        run = _held(agent, run_id)
        for key, value in changes.items():
            setattr(run, key, value)
        _extend(run)
        run.save(update_fields=[*changes, "lease_expires_at", "updated_at"])
    return run


def record_output(agent: Agent, run_id: str, text: str, *, replace: bool = False) -> Run:
    """Append to the run's output (or replace it with the agent's tail); only the last 64 KiB is kept."""
    with transaction.atomic():
        run = _held(agent, run_id)
        run.output = (text if replace else run.output + text)[-OUTPUT_TAIL:]
        _extend(run)
        run.save(update_fields=["output", "lease_expires_at", "updated_at"])
    return run


# --- leases that ran out -------------------------------------------------------


def expire_leases(now=None) -> dict[str, int]:
    """Send runs whose lease ran out back to pending, or fail them after the last attempt.

    Cheap when nothing expired (one indexed read, no lock). Returns counts by outcome.
    """
    now = now or timezone.now()
    counts = {"pending": 0, "failed": 0, "cancelled": 0}
    expired = Run.objects.filter(state__in=HELD_BY_AGENT, lease_expires_at__lt=now)
    if not expired.exists():
        return counts
    limit = max_attempts()
    with transaction.atomic():
        for run in _locked(expired.select_related("agent").order_by("lease_expires_at"), skip_locked=True)[:SWEEP_BATCH]:
            agent = run.agent
            name = agent.name if agent else "?"
            if run.cancel_requested:
                move(run, RunState.CANCELLED, agent=agent, message=CANCELLED_ON_EXPIRY.format(agent=name))
                counts["cancelled"] += 1
            elif run.attempts >= limit:
                reason = GAVE_UP.format(attempts=run.attempts, limit=limit)
                move(run, RunState.FAILED, agent=agent, message=reason, failure_reason=reason)
                counts["failed"] += 1
            else:
                run.agent = None
                move(
                    run, RunState.PENDING, agent=agent,
                    message=LEASE_RAN_OUT.format(agent=name, seconds=lease_seconds(), attempt=run.attempts + 1, limit=limit),
                    lease_expires_at=None, started_at=None, exit_code=None, output="",
                    resolved_config="", dockerfile="", image_uri="", warnings=[],
                )
                counts["pending"] += 1
    return counts


# --- helpers -------------------------------------------------------------------


def _lease_end():
    return timezone.now() + timedelta(seconds=lease_seconds())


def _extend(run: Run) -> None:
    run.lease_expires_at = _lease_end()


def _locked(queryset: QuerySet, *, skip_locked: bool = False) -> QuerySet:
    """Row locks where the database has them (PostgreSQL); SQLite's IMMEDIATE transactions lock the whole file."""
    features = connection.features
    if not features.has_select_for_update:
        return queryset
    kwargs: dict[str, Any] = {"of": ("self",)} if features.has_select_for_update_of else {}
    if skip_locked and features.has_select_for_update_skip_locked:
        kwargs["skip_locked"] = True
    return queryset.select_for_update(**kwargs)


def _find(agent: Agent, run_id: str, *, lock: bool) -> Run:
    """A run of the agent's team that it holds or that is on one of its queues; `Run.DoesNotExist` otherwise."""
    runs = Run.objects.filter(run_id=run_id, queue__team_id=agent.team_id)
    if lock:
        runs = _locked(runs)
    run = runs.first()
    if run is None or (run.agent_id != agent.pk and not agent.queues.filter(pk=run.queue_id).exists()):
        raise Run.DoesNotExist(f"No run {run_id} on this agent's queues.")
    return run


def _held(agent: Agent, run_id: str) -> Run:
    run = _find(agent, run_id, lock=True)
    _check_held(run, agent)
    return run


def _check_held(run: Run, agent: Agent) -> None:
    if run.done:
        raise LeaseLost(run, agent, WHY_DONE.format(state=run.state))
    if run.agent_id != agent.pk:
        raise LeaseLost(run, agent, WHY_OTHER_AGENT if run.agent_id else WHY_RELEASED)
    if run.state not in HELD_BY_AGENT:
        raise LeaseLost(run, agent, WHY_RELEASED)
    if run.lease_expires_at is not None and run.lease_expires_at < timezone.now():
        raise LeaseLost(run, agent, WHY_EXPIRED.format(at=run.lease_expires_at.isoformat(timespec="seconds")))
