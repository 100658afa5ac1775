"""W&B's own launch agent (`wandb launch-agent`, wandb 0.31.0) taking runs off launchq's queues.

A W&B agent is an agent of the team, listed on the Agents page like launchq's
own. It registers with `createLaunchAgent`, either with a team admin's API
token (a new agent for the queues it names, reused when the same admin starts
it again on the same host) or with an agent token from the Agents page (that
agent, for queues it is registered for). Then, in the order the client calls:

- `launchAgent` (before every pop): `stopPolling` once the agent is revoked;
- `popFromRunQueue`: `queueing.pop`, the lease launchq's own agent gets, and the
  run spec (`run_spec.agent_run_spec`). A run holding member text with `${` is
  failed here with the reason on the run, never handed over (see README);
- `updateLaunchAgent`: the agent's status (polling, running, killed);
- `ackRunQueueItem`: the run is starting;
- `project.run(name).stopped` (polled while the job runs): the run is running,
  its lease is kept, and `true` once someone cancelled it in launchq;
- `project.run(name).state` (asked when the job has ended): see `queued.py`;
  for a cancelled run the agent's job is over, so the run is cancelled;
- `failRunQueueItem`: failed, with the agent's message as the reason; except
  the agent's words for a job that exited 0 without calling wandb.init(),
  which finish the run (exit status 0), saying so.

Whoever calls about a run must act for the agent that holds it (its agent
token, or an admin of its team): anything else is refused.
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from graphql import OperationType

from launchq import queueing
from launchq.graphql.queued import TIME_FORMAT, wandb_state
from launchq.graphql.resolvers import Refusal, global_id, pk_from_global_id, resource_args, team_for
from launchq.graphql.run_spec import RunSpecRefused, agent_run_spec, member_macro_problems
from launchq.models import HELD_BY_AGENT, Agent, Membership, Queue, Role, Run, RunState, hash_token, name_validator
from launchq.runs import InvalidTransition

MAX_SAME_HOST = 99  # W&B agents of one team named after one host
MAX_REFUSED_PER_POP = 20  # runs failed in one pop before the agent is answered "nothing"; it asks again

NOT_ADMIN = "Only a team admin's API token (or an agent token from the Agents page) can start a launch agent for team {team}."
NO_SUCH_AGENT = "No launch agent {value!r} in your teams; start `wandb launch-agent` again to register one."
NO_SUCH_QUEUE = "Team {team} has no queue with id {value!r}; ProjectRunQueues lists its queues."
TOO_MANY = "Team {team} already has agents named {base} to {base}-{bound}; revoke old ones on the Agents page."
AGENT_REVOKED = "Launch agent {agent} was revoked on launchq's Agents page; it takes no more runs."
NOT_SERVED = "Agent {agent} is not registered for queue(s) {names}; it serves: {served}."
NO_QUEUES = "A launch agent must name at least one queue (--queue)."
NO_RUN = "No run {value!r} on your team's queues."
NOT_YOUR_RUN = "Run {run} is not held by a launch agent this API key acts for."
REFUSED_AT_POP = "Not handed to W&B agent {agent}: {reasons}"
ACKED = "W&B agent {agent} acknowledged the run and is starting it."
JOB_STARTED = "W&B agent {agent} started the job."
FAILED_STAGE = "W&B agent {agent} reported a failure ({stage} stage): {message}"
STOPPED = "W&B agent {agent} stopped the job after the cancel request."
WARNING = "W&B agent {agent} ({stage}): {message}"
# W&B's agent (0.31.0) reports a job that exited 0 without calling wandb.init() as a failure, in these
# words; the words are the only place it says the exit status, and for launchq that job ended well.
EXITED_OK_WITHOUT_INIT = "The submitted job exited successfully but failed to call wandb.init"
FINISHED_WITHOUT_INIT = (
    "W&B agent {agent}: the job exited with status 0. It did not call wandb.init(), which W&B's agent reports as a"
    " failure (\"{words}\"); launchq records the job's own outcome."
)

AGENT_STATUS = {"POLLING": "polling", "RUNNING": "running", "KILLED": "offline"}
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# --- registering -----------------------------------------------------------------


def resolve_create_launch_agent(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    context = info.context
    team = team_for(context, input["entityName"])
    queues = _queues(team, input.get("runQueues") or [])
    client = (input.get("version") or "wandb")[:64]
    host = (input.get("hostname") or "")[:255]
    if context.agent is not None:
        agent = context.agent
        unknown = [q.name for q in queues if not agent.queues.filter(pk=q.pk).exists()]
        if unknown:
            raise Refusal(_not_served(agent, unknown), "FORBIDDEN")
        Agent.objects.filter(pk=agent.pk).update(client=client, hostname=host)
    else:
        _require_admin(context.user, team)
        agent = _register(team, context.user, queues, client=client, host=host)
    queueing.touch(agent, "polling", host)
    return {"launchAgentId": global_id("LaunchAgent", agent.pk)}


def resolve_launch_agent(_root, info, id: str) -> dict[str, Any]:  # noqa: A002
    agent = agent_by_id(info.context, id, allow_revoked=True)
    if agent.revoked_at is None:
        queueing.touch(agent)
    return {
        "id": global_id("LaunchAgent", agent.pk),
        "name": agent.name,
        "runQueues": [global_id("RunQueue", pk) for pk in agent.queues.order_by("name").values_list("pk", flat=True)],
        "hostname": agent.hostname or None,
        "agentStatus": agent.state.upper(),
        "stopPolling": agent.revoked_at is not None,
        "heartbeatAt": agent.last_seen_at.strftime(TIME_FORMAT) if agent.last_seen_at else None,
    }


def resolve_update_launch_agent(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    agent = agent_by_id(info.context, input["launchAgentId"], allow_revoked=True)
    if agent.revoked_at is None:
        queueing.touch(agent, AGENT_STATUS.get((input.get("agentStatus") or "").upper(), ""))
    return {"success": True, "clientMutationId": input.get("clientMutationId")}


# --- taking runs ---------------------------------------------------------------------


def resolve_pop_from_run_queue(_root, info, input: Mapping[str, Any]) -> dict[str, Any] | None:  # noqa: A002
    context = info.context
    if input.get("launchAgentId"):
        agent = agent_by_id(context, input["launchAgentId"])
    elif context.agent is not None:
        agent = _live(context.agent)
    else:
        raise Refusal(NO_SUCH_AGENT.format(value=""), "NOT_FOUND")
    name = input["queueName"]
    for _ in range(MAX_REFUSED_PER_POP):
        try:
            run = queueing.pop(agent, [name])
        except queueing.UnknownQueue:
            raise Refusal(_not_served(agent, [name]), "FORBIDDEN") from None
        if run is None:
            return None
        run = Run.objects.select_related("queue__team", "project", "config_version").get(pk=run.pk)
        try:
            problems = member_macro_problems(values=run.values or {}, name=run.name, job=run.job or {})
            if problems:
                raise RunSpecRefused(problems)
            spec = agent_run_spec(
                run_id=run.run_id, name=run.name, entity=run.queue.team.slug, project=run.project.name,
                resource=run.queue.resource, job=run.job or {}, resource_args=resource_args(run),
            )
        except RunSpecRefused as refused:
            reasons = " ".join(p.message for p in refused.problems)
            queueing.report_state(agent, run.run_id, RunState.FAILED, reason=REFUSED_AT_POP.format(agent=agent.name, reasons=reasons))
            continue
        return {"runQueueItemId": run.run_id, "runSpec": spec}
    return None


def resolve_ack_run_queue_item(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    run, agent = held_run(info.context, input["runQueueItemId"])
    try:
        queueing.report_state(agent, run.run_id, RunState.STARTING, message=ACKED.format(agent=agent.name))
    except (queueing.LeaseLost, InvalidTransition):
        return {"success": False, "clientMutationId": None}
    return {"success": True, "clientMutationId": None}


def resolve_fail_run_queue_item(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    run, agent = held_run(info.context, input["runQueueItemId"])
    message = (input.get("message") or "").strip()
    reason = FAILED_STAGE.format(agent=agent.name, stage=input.get("stage") or "agent", message=message or queueing.NO_REASON)
    to = RunState.CANCELLED if run.cancel_requested else RunState.FAILED
    try:
        if to == RunState.FAILED and message == EXITED_OK_WITHOUT_INIT:
            done = FINISHED_WITHOUT_INIT.format(agent=agent.name, words=message)
            queueing.report_state(agent, run.run_id, RunState.FINISHED, message=done, exit_code=0)
        else:
            queueing.report_state(agent, run.run_id, to, reason=reason, message=reason)
    except (queueing.LeaseLost, InvalidTransition):
        return {"success": False, "clientMutationId": None}
    return {"success": True, "clientMutationId": None}


def resolve_update_run_queue_item_warning(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    run, agent = held_run(info.context, input["runQueueItemId"])
    warning = {"code": "agent_warning", "message": WARNING.format(agent=agent.name, stage=input.get("stage") or "", message=input.get("message") or "")}
    try:
        queueing.record_resolved(agent, run.run_id, warnings=[*(run.warnings or []), warning][-50:])
    except queueing.LeaseLost:
        return {"success": False, "clientMutationId": None}
    return {"success": True, "clientMutationId": None}


# --- the run while its job runs (fields of `project.run(name)`) ---------------------------


def resolve_run_stopped(node: Mapping[str, Any], info) -> bool:
    """Polled by the agent every 10 s while the job runs: keep its lease; the job is running."""
    run: Run | None = node["run"]
    if run is None:
        return False
    agent = holder(info.context, run)
    if agent is not None:
        try:
            if run.state in (RunState.LEASED, RunState.STARTING):
                queueing.report_state(agent, run.run_id, RunState.RUNNING, message=JOB_STARTED.format(agent=agent.name))
            else:
                queueing.heartbeat(agent, run.run_id)
        except (queueing.LeaseLost, InvalidTransition):
            pass
        run.refresh_from_db(fields=["cancel_requested", "state"])
    return run.cancel_requested


def resolve_run_state(node: Mapping[str, Any], info) -> str:
    run: Run | None = node["run"]
    if run is None:
        return node["state"]
    if info.operation.operation == OperationType.QUERY:  # RunState, not a mutation's answer
        ended_on_agent(run, info.context)
    return wandb_state(run)


def ended_on_agent(run: Run, context) -> None:
    """The agent asks a run's state once its job has ended: a run cancelled meanwhile is then stopped."""
    agent = holder(context, run)
    if agent is None:
        return
    try:
        if run.cancel_requested:
            queueing.report_state(agent, run.run_id, RunState.CANCELLED, message=STOPPED.format(agent=agent.name))
        else:
            queueing.heartbeat(agent, run.run_id)  # it may ask for a minute before it reports
    except (queueing.LeaseLost, InvalidTransition):
        pass
    run.refresh_from_db()


# --- who acts for which agent ---------------------------------------------------------


def agent_by_id(context, value: str, *, allow_revoked: bool = False) -> Agent:
    pk = pk_from_global_id(value or "", "LaunchAgent")
    agent = Agent.objects.select_related("team").filter(pk=pk).first() if pk is not None else None
    if agent is None or not acts_for(context, agent):
        raise Refusal(NO_SUCH_AGENT.format(value=value), "NOT_FOUND")
    return agent if allow_revoked else _live(agent)


def held_run(context, run_id: str) -> tuple[Run, Agent]:
    """A run and the agent holding it, which the caller must act for."""
    run = Run.objects.select_related("agent__team", "queue__team").filter(run_id=run_id).first()
    if run is None or (context.agent is not None and run.queue.team_id != context.agent.team_id):
        raise Refusal(NO_RUN.format(value=run_id), "NOT_FOUND")
    if run.agent is None or not acts_for(context, run.agent):
        raise Refusal(NOT_YOUR_RUN.format(run=run.run_id), "FORBIDDEN")
    return run, run.agent


def holder(context, run: Run) -> Agent | None:
    """The W&B agent holding `run`, when the caller acts for it."""
    if run.agent_id is None or run.state not in HELD_BY_AGENT:
        return None
    agent = Agent.objects.select_related("team").get(pk=run.agent_id)
    return agent if agent.is_wandb and agent.revoked_at is None and acts_for(context, agent) else None


def acts_for(context, agent: Agent) -> bool:
    if context.agent is not None:
        return context.agent.pk == agent.pk
    if context.user is None or not agent.is_wandb:
        return False
    return Membership.objects.filter(user=context.user, team_id=agent.team_id, role=Role.ADMIN).exists()


def _live(agent: Agent) -> Agent:
    if agent.revoked_at is not None:
        raise Refusal(AGENT_REVOKED.format(agent=agent.name), "AGENT_REVOKED")
    return agent


def _require_admin(user, team) -> None:
    if user is None or not Membership.objects.filter(user=user, team=team, role=Role.ADMIN).exists():
        raise Refusal(NOT_ADMIN.format(team=team.slug), "FORBIDDEN")


def _queues(team, ids: list[str]) -> list[Queue]:
    if not ids:
        raise Refusal(NO_QUEUES, "BAD_USER_INPUT")
    pks = [pk_from_global_id(value, "RunQueue") for value in ids]
    queues = list(Queue.objects.filter(team=team, pk__in=[pk for pk in pks if pk is not None]))
    found = {global_id("RunQueue", q.pk) for q in queues}
    missing = [value for value in ids if value not in found]
    if missing:
        raise Refusal(NO_SUCH_QUEUE.format(team=team.slug, value=missing[0]), "NOT_FOUND")
    return queues


def _register(team, user, queues: list[Queue], *, client: str, host: str) -> Agent:
    """The admin's W&B agent on this host for these queues: an offline one is reused, else a new one."""
    base = ("wandb-" + _NAME_CHARS.sub("-", host or socket.gethostname() or "agent")).strip("-.")[:56]
    wanted = {q.pk for q in queues}
    offline_before = timezone.now() - Agent.OFFLINE_AFTER
    with transaction.atomic():
        reusable = (
            Agent.objects.select_for_update()
            .filter(team=team, created_by=user, client__gt="", revoked_at__isnull=True, name__startswith=base)
            .exclude(last_seen_at__gte=offline_before)
            .order_by("pk")
        )
        for agent in reusable:
            if set(agent.queues.values_list("pk", flat=True)) == wanted:
                Agent.objects.filter(pk=agent.pk).update(client=client, hostname=host, last_seen_at=timezone.now())
                return agent
    for _ in range(3):  # another agent may take the free name first
        taken = set(Agent.objects.filter(team=team, name__startswith=base).values_list("name", flat=True))
        name = next((n for n in (base, *(f"{base}-{i}" for i in range(2, MAX_SAME_HOST + 1))) if n not in taken), None)
        if name is None:
            break
        name_validator(name)
        try:
            with transaction.atomic():
                agent = Agent.objects.create(
                    team=team, name=name, client=client, hostname=host, created_by=user,
                    prefix="", digest=hash_token(secrets.token_hex(32)),  # no agent token: it acts with the admin's API key
                    last_seen_at=timezone.now(),
                )
                agent.queues.set(queues)
        except IntegrityError:
            continue
        return agent
    raise Refusal(TOO_MANY.format(team=team.slug, base=base, bound=MAX_SAME_HOST), "CONFLICT")


def _not_served(agent: Agent, names: list[str]) -> str:
    served = ", ".join(agent.queues.order_by("name").values_list("name", flat=True)) or "none"
    return NOT_SERVED.format(agent=agent.name, names=", ".join(names), served=served)
