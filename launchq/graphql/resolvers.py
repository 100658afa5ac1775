"""Answers to the operations the `wandb` client sends, from launchq's teams, queues and runs.

Teams are W&B's entities. A queue is found by its team and name whatever
project name the client sends for the lookup (it always sends
`model-registry`); the run goes into the project its run spec names. Someone
outside a team gets the same answer as for a team that does not exist.
Every push ends in `launch_run`, so the values meet the same validator as on
the launch form, the JSON API and the CLI.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from launchq.graphql.run_spec import RunSpecRefused, read_run_spec
from launchq.guardrails import Problem, json_schema
from launchq.models import Agent, ApiToken, Membership, Queue, Run, Team
from launchq.runs import LaunchRefused, launch_run
from launchq.templating import ConfigError, render_data

log = logging.getLogger(__name__)

NO_TEAM = "No team {team!r} among your teams ({yours}). Pass --entity (-e) with one of them."
NO_TEAMS = "No team {team!r}: you are not a member of any team yet. Ask a team admin to add you."
NO_QUEUE = "Team {team} has no queue {queue!r}. Its queues: {names}."
NO_SUCH_ID = "No {kind} with id {value!r} in your teams."
WRONG_ENTITY = "Resource config {value!r} does not belong to team {team!r}."
VALUES_NOT_OBJECT = "templateVariableValues must be a JSON object of template field values, like {{\"aws_instance\": \"ml.p3.xlarge\"}}."
REFUSED = "Queue {team}/{queue} refused the run, nothing was enqueued: {reasons}"
AGENT_TEAM = "No team {team!r} for agent {agent}: its team is {own}. Pass --entity {own}."
AGENT_TOKEN = "An agent token only serves a launch agent; launch and cancel runs with a person's API token."
COMMAND_HINT = " With the wandb client, give the command with --entry-point (-E) or launch_add(entry_point=[...])."

PRIORITIZATION_MODE = "V0"  # launchq queues always take runs by priority, then oldest first
ACCESS = "PROJECT"  # a queue is shared by its whole team


class Refusal(Exception):
    """A request launchq answers with a GraphQL error: a message the client prints, and structured details."""

    def __init__(self, message: str, code: str, **extensions: Any):
        super().__init__(message)
        self.message = message
        self.extensions = {"code": code, **extensions}


@dataclass(frozen=True)
class Context:
    """Who is asking; every resolver gets it as `info.context`.

    A person's API token gives `user`; an agent token (Agents page) gives `agent`,
    which serves W&B's launch agent only: it may not launch or cancel runs.
    """

    user: Any
    request: HttpRequest | None = None
    agent: Agent | None = None


# --- queries -----------------------------------------------------------------


def resolve_viewer(_root, info) -> dict[str, Any]:
    user, agent = info.context.user, info.context.agent
    if agent is not None:
        return {
            "id": global_id("LaunchAgent", agent.pk), "name": agent.name, "entity": agent.team.slug, "username": agent.name,
            "email": None, "admin": False, "flags": None, "deletedAt": None, "apiKeys": None,
            "teams": {"edges": [{"node": entity_node(agent.team)}]},
        }
    teams = list(Team.objects.filter(memberships__user=user).order_by("slug"))
    tokens = ApiToken.objects.active().filter(user=user).order_by("created_at")
    return {
        "id": global_id("User", user.pk),
        "name": user.get_full_name() or user.get_username(),
        "entity": default_entity(user, teams),
        "username": user.get_username(),
        "email": user.email or None,
        "admin": user.is_superuser,
        "flags": None,
        "deletedAt": None,
        "apiKeys": {"edges": [{"node": {"id": global_id("ApiKey", t.pk), "name": t.name, "description": f"{t.prefix}…"}} for t in tokens]},
        "teams": {"edges": [{"node": entity_node(team)} for team in teams]},
    }


def resolve_project(_root, info, name: str | None = None, entityName: str | None = None) -> dict[str, Any]:  # noqa: N803
    return {"team": team_for(info.context, entityName)}


def resolve_entity(_root, info, name: str | None = None) -> dict[str, Any]:
    return entity_node(team_for(info.context, name))


def resolve_run_queue(project: Mapping, info, name: str) -> dict[str, Any]:
    return _queue_node(_queue(project["team"], name), info.context.request)


def resolve_run_queues(project: Mapping, info) -> list[dict[str, Any]]:
    agent = info.context.agent
    queues = (agent.queues if agent is not None else Queue.objects).filter(team=project["team"])  # an agent sees what it serves
    queues = queues.select_related("team", "created_by").order_by("name")
    return [_queue_node(queue, info.context.request) for queue in queues]


def resolve_default_resource_config(entity: Mapping, info, id: str) -> dict[str, Any]:  # noqa: A002
    team = entity["team"]
    queue = queue_by_id(info.context.user, id, "DefaultResourceConfig", "resource config")
    if queue.team_id != team.pk:
        raise Refusal(WRONG_ENTITY.format(value=id, team=team.slug), "NOT_FOUND")
    version = queue.current_version
    config: Any = {}
    fields = []
    if version is not None:
        fields = version.definitions
        try:
            parsed = version.parsed()
            config, _ = render_data(parsed, {name: "{{%s}}" % name for name in parsed.fields})
        except ConfigError:
            config = {}
    return {
        "id": id,
        "resource": queue.resource,
        "config": config,
        "templateVariables": [
            {"name": f.name, "schema": json_schema(f), "description": f.description or None} for f in fields
        ],
    }


# --- mutations ---------------------------------------------------------------


def resolve_push_to_run_queue_by_name(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    person(info.context)
    membership = _membership(info.context.user, input["entityName"])
    queue = _queue(membership.team, input["queueName"])
    run, spec = _push(queue, info.context, input)
    return {"runQueueItemId": run.run_id, "runSpec": spec}


def resolve_push_to_run_queue(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    person(info.context)
    queue = queue_by_id(info.context.user, input["queueID"], "RunQueue", "queue")
    run, _ = _push(queue, info.context, input)
    return {"runQueueItemId": run.run_id}


# --- ids -----------------------------------------------------------------------


def global_id(kind: str, pk: int) -> str:
    """An opaque id in W&B's style: base64 of `Kind:pk`."""
    return base64.b64encode(f"{kind}:{pk}".encode()).decode()


def pk_from_global_id(value: str, kind: str) -> int | None:
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    prefix, _, number = decoded.partition(":")
    if prefix != kind or not number.isdigit() or len(number) > 18:
        return None
    return int(number)


def team_for(context: Context, slug: str | None) -> Team:
    """The team a request names (its default when it names none): one of the user's, or the agent's own."""
    if context.agent is not None:
        if slug and slug != context.agent.team.slug:
            raise Refusal(AGENT_TEAM.format(team=slug, agent=context.agent.name, own=context.agent.team.slug), "NOT_FOUND")
        return context.agent.team
    return _membership(context.user, slug).team


def person(context: Context):
    """The user behind the request; an agent token is refused for what only people do."""
    if context.user is None:
        raise Refusal(AGENT_TOKEN, "FORBIDDEN")
    return context.user


def default_entity(user, teams: list[Team]) -> str:
    """W&B's default entity for a user: their only team; with several (or none), their username."""
    return teams[0].slug if len(teams) == 1 else user.get_username()


# --- private -------------------------------------------------------------------


def _push(queue: Queue, context: Context, data: Mapping[str, Any]) -> tuple[Run, dict[str, Any]]:
    """Launch what a push asks for. The wandb client sends no idempotency key, and sends the same push again when
    an answer is lost; so without an `Idempotency-Key` header the push's content is its key for a short while."""
    user = context.user
    window = settings.LAUNCHQ_WANDB_REPLAY_SECONDS
    values = data.get("templateVariableValues")
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise Refusal(VALUES_NOT_OBJECT, "BAD_USER_INPUT")
    spec = data["runSpec"]
    try:
        launch = read_run_spec(spec, team=queue.team.slug, resource=queue.resource, runs_in_containers=queue.runs_in_containers)
        run = launch_run(
            queue, user, values, project=launch.project, name=launch.name, job=launch.job,
            priority=data.get("priority"), via="wandb",
            idempotency_key=context.request.headers.get("Idempotency-Key") if context.request is not None else None,
            replay_window=timedelta(seconds=window) if window > 0 else None,
        )
    except (RunSpecRefused, LaunchRefused) as refused:
        refusal = _refusal(queue, refused.problems)
        log.info("wandb push by %s refused: %s", user.get_username(), refusal.message)
        raise refusal from None
    enqueued = {**spec, "resource": queue.resource, "resource_args": {queue.resource: resource_args(run)}}
    return run, enqueued


def _refusal(queue: Queue, problems: list[Problem]) -> Refusal:
    reasons = []
    for problem in problems:
        message = problem.message
        if problem.field == "command" and problem.code == "required":
            message += COMMAND_HINT
        reasons.append(message)
    message = REFUSED.format(team=queue.team.slug, queue=queue.name, reasons=" ".join(reasons))
    return Refusal(message, "LAUNCH_REFUSED", problems=[p.to_dict() for p in problems])


def resource_args(run: Run) -> Any:
    """What the resource will get (before the agent fills macros): the rendered config without `builder`."""
    try:
        data, _ = render_data(run.config_version.parsed(), run.values)
    except ConfigError:
        return {}
    if isinstance(data, dict):
        data.pop("builder", None)
    return data


def _membership(user, team_slug: str | None) -> Membership:
    memberships = list(Membership.objects.filter(user=user).select_related("team").order_by("team__slug"))
    if not team_slug:
        team_slug = default_entity(user, [m.team for m in memberships])
    for membership in memberships:
        if membership.team.slug == team_slug:
            return membership
    if not memberships:
        raise Refusal(NO_TEAMS.format(team=team_slug), "NOT_FOUND")
    raise Refusal(NO_TEAM.format(team=team_slug, yours=", ".join(m.team.slug for m in memberships)), "NOT_FOUND")


def membership_of(user, team: Team) -> Membership:
    """The user's membership of a team the caller already found through it."""
    return Membership.objects.select_related("team").get(user=user, team=team)


def _queue(team: Team, name: str) -> Queue:
    queue = Queue.objects.filter(team=team, name=name).select_related("team", "created_by", "current_version").first()
    if queue is None:
        names = ", ".join(team.queues.order_by("name").values_list("name", flat=True)) or "none yet"
        raise Refusal(NO_QUEUE.format(team=team.slug, queue=name, names=names), "NOT_FOUND")
    return queue


def queue_by_id(user, value: str, kind: str, label: str) -> Queue:
    if user is None:
        raise Refusal(AGENT_TOKEN, "FORBIDDEN")
    pk = pk_from_global_id(value, kind)
    queue = None
    if pk is not None:
        queue = (
            Queue.objects.filter(pk=pk, team__memberships__user=user)
            .select_related("team", "created_by", "current_version")
            .first()
        )
    if queue is None:
        raise Refusal(NO_SUCH_ID.format(kind=label, value=value), "NOT_FOUND")
    return queue


def entity_node(team: Team) -> dict[str, Any]:
    return {"id": global_id("Entity", team.pk), "name": team.slug, "isTeam": True, "team": team}


def _queue_node(queue: Queue, request: HttpRequest | None) -> dict[str, Any]:
    url = queue.get_absolute_url()
    return {
        "queue": queue,
        "id": global_id("RunQueue", queue.pk),
        "name": queue.name,
        "access": ACCESS,
        "createdBy": queue.created_by.get_username() if queue.created_by else None,
        "defaultResourceConfigID": global_id("DefaultResourceConfig", queue.pk),
        "prioritizationMode": PRIORITIZATION_MODE,
        "externalLinks": {"launchq": request.build_absolute_uri(url) if request is not None else url},
    }
