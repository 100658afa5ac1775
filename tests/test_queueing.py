"""Dequeue with leases, heartbeats, reports and leases that run out; the agent HTTP API; concurrency."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from launchq import queueing
from launchq.guardrails import Field, FieldType
from launchq.models import Agent, Run, RunEvent, RunState
from launchq.runs import InvalidTransition, cancel, launch_run

CONFIG = """\
run: ${run_id}
epochs: "{{epochs}}"
builder:
  accelerator:
    base_image: nvidia/cuda:12.4.1-runtime-ubuntu22.04
"""
EPOCHS = Field("epochs", FieldType.INTEGER, minimum=1, maximum=10, default=3)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Users are made per test; the real password hasher would spend most of the suite's time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queue(team, admin_user, make_queue):
    return make_queue(team, "local-queue", CONFIG, fields=[EPOCHS], user=admin_user)


@pytest.fixture
def agent_and_token(team, queue, admin_user):
    agent, token = Agent.issue(team, "box-1", created_by=admin_user)
    agent.queues.add(queue)
    return agent, token


@pytest.fixture
def agent(agent_and_token):
    return agent_and_token[0]


@pytest.fixture
def launch(queue, member_user):
    def make(priority=None, **values):
        return launch_run(queue, member_user, values, project="proj", job={"command": "python job.py"}, priority=priority)

    return make


def other_agent(team, queue, name="box-2"):
    agent, token = Agent.issue(team, name)
    agent.queues.add(queue)
    return agent, token


# --- pop ---------------------------------------------------------------------


def test_pop_leases_the_oldest_most_urgent_run(agent, launch):
    low_old = launch(priority="low")
    medium_old = launch()
    medium_new = launch()
    critical_new = launch(priority="critical")
    order = [queueing.pop(agent).run_id for _ in range(4)]
    assert order == [critical_new.run_id, medium_old.run_id, medium_new.run_id, low_old.run_id]
    assert queueing.pop(agent) is None


def test_pop_sets_lease_attempts_and_history(agent, launch, settings):
    settings.LAUNCHQ_LEASE_SECONDS = 45
    run = launch()
    before = timezone.now()
    leased = queueing.pop(agent, hostname="gpu-1")
    leased.refresh_from_db()
    assert leased.pk == run.pk
    assert leased.state == RunState.LEASED
    assert leased.agent == agent
    assert leased.attempts == 1
    assert before + timedelta(seconds=44) < leased.lease_expires_at <= timezone.now() + timedelta(seconds=45)
    event = leased.events.last()
    assert event.state == RunState.LEASED and event.agent == agent and "box-1" in event.message
    agent.refresh_from_db()
    assert agent.hostname == "gpu-1" and agent.reported_status == "running" and agent.state == "running"


def test_agent_only_gets_runs_of_its_queues(team, agent, make_queue, member_user):
    elsewhere = make_queue(team, "elsewhere", "a: 1\n")
    launch_run(elsewhere, member_user, {}, project="proj", job={"command": "true"})
    assert queueing.pop(agent) is None


def test_pop_narrowed_to_named_queues_and_unknown_queue_refused(agent, launch):
    launch()
    with pytest.raises(queueing.UnknownQueue):
        queueing.pop(agent, ["not-mine"])
    assert queueing.pop(agent, ["local-queue"]) is not None


def test_idle_pop_marks_agent_polling(agent):
    assert queueing.pop(agent) is None
    agent.refresh_from_db()
    assert agent.state == "polling" and agent.last_seen_at is not None


# --- reports and leases --------------------------------------------------------


def test_state_moves_through_the_machine(agent, launch):
    run = launch()
    queueing.pop(agent)
    queueing.report_state(agent, run.run_id, RunState.STARTING)
    running = queueing.report_state(agent, run.run_id, RunState.RUNNING)
    assert running.started_at is not None
    done = queueing.report_state(agent, run.run_id, RunState.FINISHED, message="exited 0", exit_code=0)
    assert done.state == RunState.FINISHED and done.exit_code == 0 and done.finished_at and done.lease_expires_at is None
    assert [e.state for e in done.events.all()] == ["pending", "leased", "starting", "running", "finished"]
    # a retried report of the same end is harmless; a different one is not
    assert queueing.report_state(agent, run.run_id, RunState.FINISHED).state == RunState.FINISHED
    with pytest.raises(queueing.LeaseLost):
        queueing.report_state(agent, run.run_id, RunState.FAILED, reason="late")


def test_invalid_move_is_refused(agent, launch):
    run = launch()
    queueing.pop(agent)
    queueing.report_state(agent, run.run_id, RunState.RUNNING)
    with pytest.raises(InvalidTransition):
        queueing.report_state(agent, run.run_id, RunState.STARTING)
    with pytest.raises(InvalidTransition):
        queueing.report_state(agent, run.run_id, RunState.PENDING)


def test_failed_keeps_its_reason(agent, launch):
    run = launch()
    queueing.pop(agent)
    failed = queueing.report_state(agent, run.run_id, RunState.FAILED, reason="no Docker engine on this agent: x")
    assert failed.failure_reason == "no Docker engine on this agent: x"
    assert failed.events.last().message == "no Docker engine on this agent: x"


def test_heartbeat_extends_the_lease_and_carries_cancel(agent, launch, member_user, settings):
    settings.LAUNCHQ_LEASE_SECONDS = 30
    run = launch()
    queueing.pop(agent)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=2))
    beat = queueing.heartbeat(agent, run.run_id)
    assert beat.lease_expires_at > timezone.now() + timedelta(seconds=25)
    assert beat.cancel_requested is False
    cancel(run, member_user)
    assert queueing.heartbeat(agent, run.run_id).cancel_requested is True
    assert queueing.report_state(agent, run.run_id, RunState.CANCELLED).state == RunState.CANCELLED


def test_expired_lease_returns_run_to_pending_and_old_agent_is_refused(team, queue, agent, launch):
    run = launch()
    queueing.pop(agent)
    queueing.report_state(agent, run.run_id, RunState.RUNNING)
    queueing.record_output(agent, run.run_id, "half done\n")
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert queueing.expire_leases() == {"pending": 1, "failed": 0, "cancelled": 0}
    run.refresh_from_db()
    assert run.state == RunState.PENDING and run.agent is None and run.attempts == 1 and run.output == ""
    assert "ran out" in run.events.last().message
    with pytest.raises(queueing.LeaseLost):
        queueing.heartbeat(agent, run.run_id)
    second, _ = other_agent(team, queue)
    again = queueing.pop(second)
    assert again.pk == run.pk and again.attempts == 2
    for report in (
        lambda: queueing.heartbeat(agent, run.run_id),
        lambda: queueing.report_state(agent, run.run_id, RunState.FINISHED),
        lambda: queueing.record_output(agent, run.run_id, "x"),
        lambda: queueing.record_resolved(agent, run.run_id, resolved_config="x"),
    ):
        with pytest.raises(queueing.LeaseLost):
            report()


def test_expired_but_not_yet_swept_lease_is_lost(agent, launch):
    run = launch()
    queueing.pop(agent)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(queueing.LeaseLost):
        queueing.record_output(agent, run.run_id, "x")


def test_run_fails_after_the_last_attempt(agent, launch, settings):
    settings.LAUNCHQ_MAX_ATTEMPTS = 2
    run = launch()
    for attempt in (1, 2):
        assert queueing.pop(agent).pk == run.pk
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        queueing.expire_leases()
    run.refresh_from_db()
    assert run.state == RunState.FAILED and run.attempts == 2
    assert "giving up after 2 attempts" in run.failure_reason
    assert queueing.pop(agent) is None


def test_expired_lease_of_a_run_being_cancelled_cancels_it(agent, launch, member_user):
    run = launch()
    queueing.pop(agent)
    cancel(run, member_user)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    queueing.expire_leases()
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED


def test_pop_sweeps_expired_leases_lazily(team, queue, agent, launch):
    run = launch()
    queueing.pop(agent)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second, _ = other_agent(team, queue)
    assert queueing.pop(second).pk == run.pk


def test_expire_leases_command(agent, launch, capsys):
    run = launch()
    queueing.pop(agent)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    call_command("expire_leases")
    assert "1 run(s) back to pending" in capsys.readouterr().out
    run.refresh_from_db()
    assert run.state == RunState.PENDING


def test_output_keeps_only_the_tail(agent, launch):
    run = launch()
    queueing.pop(agent)
    queueing.record_output(agent, run.run_id, "a" * queueing.OUTPUT_TAIL)
    stored = queueing.record_output(agent, run.run_id, "END")
    assert len(stored.output) == queueing.OUTPUT_TAIL and stored.output.endswith("aEND")
    assert queueing.record_output(agent, run.run_id, "whole tail", replace=True).output == "whole tail"


# --- the HTTP API ----------------------------------------------------------------


def post(client, token, path, body=None):
    return client.post(f"/api/agent/{path}", body or {}, content_type="application/json", headers={"Authorization": f"Bearer {token}"})


def test_api_pop_gives_everything_the_agent_needs(client, agent_and_token, launch):
    agent, token = agent_and_token
    assert post(client, token, "pop").status_code == 204
    run = launch(epochs=7)
    response = post(client, token, "pop", {"hostname": "gpu-1"})
    assert response.status_code == 200
    ticket = response.json()
    assert ticket["id"] == run.run_id and ticket["name"] == run.name
    assert ticket["project"] == "proj" and ticket["entity"] == "ml" and ticket["queue"] == "local-queue"
    assert ticket["resource"] == "local-process"
    assert ticket["job"] == {"command": "python job.py"}
    assert ticket["values"] == {"epochs": 7}
    assert ticket["config"] == {"text": CONFIG, "format": "yaml", "version": 1}
    assert ticket["base_image"] == "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert ticket["attempts"] == 1 and ticket["lease_seconds"] == queueing.lease_seconds()


def test_api_reports(client, agent_and_token, launch, member_user):
    agent, token = agent_and_token
    run = launch()
    post(client, token, "pop")
    assert post(client, token, f"runs/{run.run_id}/state", {"state": "starting"}).json()["state"] == "starting"
    answer = post(client, token, f"runs/{run.run_id}/resolved", {
        "resolved_config": "run: x\n", "warnings": [{"code": "unfilled_macro", "macro": "X", "message": "m"}],
        "dockerfile": "FROM python:3.12-slim\n",
    })
    assert answer.status_code == 200
    assert post(client, token, f"runs/{run.run_id}/resolved", {"image_uri": "ghcr.io/a/b:1"}).status_code == 200
    assert post(client, token, f"runs/{run.run_id}/state", {"state": "running"}).status_code == 200
    assert post(client, token, f"runs/{run.run_id}/output", {"text": "line 1\n"}).status_code == 200
    assert post(client, token, f"runs/{run.run_id}/output", {"text": "line 2\n"}).status_code == 200
    cancel(run, member_user)
    beat = post(client, token, f"runs/{run.run_id}/heartbeat", {"status": "running"})
    assert beat.status_code == 200 and beat.json()["cancel"] is True
    assert post(client, token, f"runs/{run.run_id}/state", {"state": "cancelled", "exit_code": -15}).status_code == 200
    run.refresh_from_db()
    assert run.state == "cancelled" and run.exit_code == -15
    assert run.resolved_config == "run: x\n" and run.dockerfile.startswith("FROM") and run.image_uri == "ghcr.io/a/b:1"
    assert run.warnings == [{"code": "unfilled_macro", "macro": "X", "message": "m"}]
    assert run.output == "line 1\nline 2\n"


def test_api_refuses_what_it_must(client, team, queue, agent_and_token, launch, make_queue, member_user):
    agent, token = agent_and_token
    run = launch()
    post(client, token, "pop")
    response = post(client, token, f"runs/{run.run_id}/state", {"state": "pending"})
    assert response.status_code == 422  # not a state an agent reports
    response = post(client, token, f"runs/{run.run_id}/state", {"state": "finished"})
    assert response.status_code == 409 and response.json()["code"] == "invalid_transition"
    # another agent of the team, not holding it
    _, token2 = other_agent(team, queue)
    response = post(client, token2, f"runs/{run.run_id}/output", {"text": "x"})
    assert response.status_code == 409 and response.json()["code"] == "lease_lost"
    # a run on a queue the agent does not serve does not exist for it
    elsewhere = make_queue(team, "elsewhere", "a: 1\n")
    other_run = launch_run(elsewhere, member_user, {}, project="proj", job={"command": "true"})
    assert post(client, token, f"runs/{other_run.run_id}/heartbeat").status_code == 404
    assert post(client, token, "runs/nosuchrun/heartbeat").status_code == 404
    response = post(client, token, "pop", {"queues": ["elsewhere"]})
    assert response.status_code == 400 and response.json()["code"] == "unknown_queue"


def test_api_lease_lost_is_409(client, agent_and_token, launch):
    agent, token = agent_and_token
    run = launch()
    post(client, token, "pop")
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    response = post(client, token, f"runs/{run.run_id}/heartbeat")
    assert response.status_code == 409 and response.json()["code"] == "lease_lost"


def test_api_tokens(client, agent_and_token, launch, member_user):
    agent, token = agent_and_token
    assert post(client, "lqa_not-a-token", "pop").status_code == 401
    assert client.post("/api/agent/pop", {}, content_type="application/json").status_code == 401
    from launchq.models import ApiToken

    _, personal = ApiToken.issue(member_user, "cli")
    assert post(client, personal, "pop").status_code == 401  # a person's token is not an agent's
    hello = post(client, token, "heartbeat", {"status": "polling", "hostname": "gpu-1"})
    assert hello.status_code == 200 and hello.json()["queues"] == ["local-queue"] and hello.json()["agent"] == "box-1"
    Agent.objects.filter(pk=agent.pk).update(revoked_at=timezone.now())
    assert post(client, token, "pop").status_code == 401
    assert post(client, token, "heartbeat").status_code == 401


def test_goodbye_marks_agent_offline(client, agent_and_token):
    agent, token = agent_and_token
    post(client, token, "heartbeat", {"status": "offline"})
    agent.refresh_from_db()
    assert agent.state == "offline"


# --- exactly once, with real concurrency ------------------------------------------


def _pop_all_in_threads(agents: list[Agent], workers: int) -> list[str]:
    taken: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(agent: Agent) -> None:
        try:
            for _ in range(1000):  # bounded: more than there are runs
                run = queueing.pop(agent)
                if run is None:
                    return
                with lock:
                    taken.append(run.run_id)
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(agents[i % len(agents)],)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a popping thread did not finish"
    assert not errors, errors
    return taken


@pytest.mark.django_db(transaction=True)
def test_threads_pop_every_run_exactly_once(team, queue, member_user):
    agents = [other_agent(team, queue, f"box-{i}")[0] for i in range(4)]
    runs = [launch_run(queue, member_user, {}, project="proj", job={"command": "true"}).run_id for _ in range(200)]
    taken = _pop_all_in_threads(agents, workers=8)
    counts = Counter(taken)
    assert [r for r, n in counts.items() if n > 1] == []
    assert sorted(taken) == sorted(runs)
    assert Run.objects.filter(state=RunState.LEASED, attempts=1).count() == 200
    assert RunEvent.objects.filter(state=RunState.LEASED).count() == 200
    by_agent = Counter(Run.objects.values_list("agent__name", flat=True))
    assert sum(by_agent.values()) == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_pop_skips_locked_rows(team, queue, member_user):
    """On PostgreSQL a pop does not wait on a run another transaction has locked: it takes the next one."""
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
    first = launch_run(queue, member_user, {}, project="proj", job={"command": "true"})
    second = launch_run(queue, member_user, {}, project="proj", job={"command": "true"})
    agent = other_agent(team, queue, "box-pg")[0]
    locked = threading.Event()
    release = threading.Event()

    def hold_first():
        from django.db import transaction

        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(pk=first.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_first)
    holder.start()
    try:
        assert locked.wait(30)
        taken = queueing.pop(agent)
        assert taken is not None and taken.pk == second.pk
    finally:
        release.set()
        holder.join(30)
    assert queueing.pop(agent).pk == first.pk
