"""The agent API under /api/agent/: what a launch agent says to the server, with its agent token.

    POST heartbeat                  hello / still here (status polling|offline); the queues it serves
    POST pop                        lease the next run (200) or nothing to do (204)
    POST runs/{run_id}/heartbeat    keep the lease; the answer says whether to cancel
    POST runs/{run_id}/state        starting, running, finished, failed (with reason), cancelled, handed_over
    POST runs/{run_id}/output       the job's output (appended, or the agent's whole tail)
    POST runs/{run_id}/resolved     resolved config, warnings, Dockerfile, image URI

A revoked token gets 401. A run outside the agent's queues is 404. A run whose
lease this agent lost is 409 `lease_lost`; a move the state machine refuses is
409 `invalid_transition`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from ninja import Field, Router, Schema, Status

from launchq import queueing
from launchq.api.auth import AgentAuth
from launchq.api.schemas import ExitCode
from launchq.images import base_image
from launchq.models import Priority, Run
from launchq.runs import InvalidTransition
from launchq.templating import ConfigError, render_data

router = Router(auth=AgentAuth(), tags=["agent"])

MAX_TEXT = 1024 * 1024


class Problem(Schema):
    code: str
    message: str


class Hello(Schema):
    status: Literal["polling", "running", "offline"] = "polling"
    hostname: str = Field("", max_length=255)
    queues: list[str] = Field(default_factory=list, description="Queues this agent process serves; default: all it is registered for.")


class HelloOut(Schema):
    agent: str
    team: str
    queues: list[str]
    resources: dict[str, str] = Field(default_factory=dict, description="Each served queue's resource, by queue name.")
    lease_seconds: int


class PopIn(Schema):
    queues: list[str] = Field(default_factory=list)
    hostname: str = Field("", max_length=255)


class ConfigOut(Schema):
    text: str
    format: str
    version: int


class RunTicket(Schema):
    """A leased run: everything the agent needs to carry it out, and nothing it does not."""

    id: str
    name: str
    queue: str
    resource: str
    project: str
    entity: str
    priority: str
    job: dict[str, str]
    values: dict[str, Any]
    config: ConfigOut
    base_image: str | None
    attempts: int
    lease_seconds: int
    lease_expires_at: datetime


class RunBeat(Schema):
    status: Literal["running"] = "running"


class StateIn(Schema):
    state: Literal["starting", "running", "finished", "failed", "cancelled", "handed_over"]
    message: str = Field("", max_length=10_000)
    reason: str = Field("", max_length=10_000)
    exit_code: ExitCode = None


class OutputIn(Schema):
    text: str = Field(..., max_length=MAX_TEXT)
    replace: bool = Field(False, description="Replace the stored output with `text` (the agent's whole tail) instead of appending.")


class ResolvedIn(Schema):
    resolved_config: str | None = Field(None, max_length=MAX_TEXT)
    warnings: list[dict[str, str] | str] | None = Field(None, max_length=200)
    dockerfile: str | None = Field(None, max_length=MAX_TEXT)
    image_uri: str | None = Field(None, max_length=512)


class Ack(Schema):
    run: str
    state: str
    cancel: bool
    lease_expires_at: datetime | None


ERRORS = {400: Problem, 404: Problem, 409: Problem}


@router.post("/heartbeat", response={200: HelloOut, 400: Problem}, summary="Say the agent is alive")
def agent_heartbeat(request, body: Hello):
    agent = request.auth
    try:
        ids = queueing.served_queues(agent, body.queues)
    except queueing.UnknownQueue as error:
        return Status(400, {"code": "unknown_queue", "message": str(error)})
    queueing.touch(agent, body.status, body.hostname)
    served = dict(agent.queues.filter(pk__in=ids).order_by("name").values_list("name", "resource"))
    return Status(200, {"agent": agent.name, "team": agent.team.slug, "queues": list(served), "resources": served,
                        "lease_seconds": queueing.lease_seconds()})


@router.post("/pop", response={200: RunTicket, 204: None, 400: Problem}, summary="Lease the next pending run")
def agent_pop(request, body: PopIn):
    try:
        run = queueing.pop(request.auth, body.queues, body.hostname)
    except queueing.UnknownQueue as error:
        return Status(400, {"code": "unknown_queue", "message": str(error)})
    if run is None:
        return Status(204, None)
    return Status(200, _ticket(run))


@router.post("/runs/{run_id}/heartbeat", response={200: Ack, **ERRORS}, summary="Keep the lease on a run")
def agent_run_heartbeat(request, run_id: str, body: RunBeat):
    return _answer(lambda: queueing.heartbeat(request.auth, run_id, body.status))


@router.post("/runs/{run_id}/state", response={200: Ack, **ERRORS}, summary="Report a run's state")
def agent_run_state(request, run_id: str, body: StateIn):
    return _answer(
        lambda: queueing.report_state(request.auth, run_id, body.state, message=body.message, reason=body.reason, exit_code=body.exit_code)
    )


@router.post("/runs/{run_id}/output", response={200: Ack, **ERRORS}, summary="Send the job's output")
def agent_run_output(request, run_id: str, body: OutputIn):
    return _answer(lambda: queueing.record_output(request.auth, run_id, body.text, replace=body.replace))


@router.post("/runs/{run_id}/resolved", response={200: Ack, **ERRORS}, summary="Send the resolved config, warnings, Dockerfile and image URI")
def agent_run_resolved(request, run_id: str, body: ResolvedIn):
    return _answer(lambda: queueing.record_resolved(request.auth, run_id, **body.dict()))


def _answer(call: Callable[[], Run]):
    try:
        run = call()
    except Run.DoesNotExist:
        return Status(404, {"code": "not_found", "message": "No such run on this agent's queues."})
    except queueing.LeaseLost as error:
        return Status(409, {"code": "lease_lost", "message": str(error)})
    except InvalidTransition as error:
        return Status(409, {"code": "invalid_transition", "message": str(error)})
    return Status(200, {"run": run.run_id, "state": run.state, "cancel": run.cancel_requested, "lease_expires_at": run.lease_expires_at})


def _ticket(run: Run) -> dict[str, Any]:
    run = Run.objects.select_related("queue__team", "project", "config_version").get(pk=run.pk)
    version = run.config_version
    try:
        data, _ = render_data(version.parsed(), run.values)
        image = base_image(data)
    except (ConfigError, KeyError):
        image = None
    return {
        "id": run.run_id,
        "name": run.name,
        "queue": run.queue.name,
        "resource": run.queue.resource,
        "project": run.project.name,
        "entity": run.queue.team.slug,
        "priority": Priority(run.priority).label,
        "job": run.job or {},
        "values": run.values or {},
        "config": {"text": version.text, "format": version.format, "version": version.number},
        "base_image": image,
        "attempts": run.attempts,
        "lease_seconds": queueing.lease_seconds(),
        "lease_expires_at": run.lease_expires_at,
    }

