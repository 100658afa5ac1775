"""Launching runs, reading them, listing a queue's runs and cancelling one.

A launch goes through `launchq.runs.launch_run`, the same call the browser's
launch form makes, so the API refuses exactly what the form refuses.
"""

from __future__ import annotations

from typing import Annotated

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from ninja import Header, Path, Query, Router, Status

from launchq.access import may_cancel, membership_for, queue_for
from launchq.api.auth import TokenAuth
from launchq.api.errors import message_body, problems_body
from launchq.api.schemas import InvalidRequest, whole_number, LaunchIn, Message, Problems, RunOut, RunPage
from launchq.models import Priority, Run, RunState
from launchq.numbers import MAX_ID
from launchq.runs import InvalidTransition, KeyReused, LaunchRefused, cancel, launch_run

router = Router(auth=TokenAuth(), tags=["runs"])

TeamSlug = Path(..., description="The team's slug (W&B's entity).")
QueueName = Path(..., description="The queue's name within the team.")
RunId = Path(..., description="The run's ID, as shown on its page and by `launch`.")
IdempotencyKey = Header(
    None, alias="Idempotency-Key",
    description="Any unique text (1-255 printable ASCII characters, e.g. a UUID) naming this launch. Sent again with the same"
    " request, it answers with the run it launched (`Idempotent-Replayed: true`) instead of launching another; with a"
    " different request, 422 `idempotency_key_reused`. Kept for LAUNCHQ_IDEMPOTENCY_KEY_HOURS (24) per user.",
)

MAX_PAGE = 100
ALREADY_DONE = "Run {run_id} already ended ({state}); there is nothing to cancel."
NOT_YOURS = "Only a team admin or the person who launched the run may cancel it."


@router.post(
    "/teams/{team}/queues/{queue}/runs",
    response={201: RunOut, 400: Problems, 401: Message, 404: Message, 422: InvalidRequest | Problems},
    url_name="run_create", operation_id="run_create",
    summary="Launch a run",
)
def run_create(
    request: HttpRequest, response: HttpResponse, payload: LaunchIn,
    team: str = TeamSlug, queue: str = QueueName, idempotency_key: str | None = IdempotencyKey,
):
    """Enqueue a run with values for the queue's template fields, checked against their guardrails.

    Answers 201 with the pending run, or 400 with every problem found (`field`,
    `code`, `message`, and the `bound` and `value` where there are ones); then
    nothing was enqueued. Only template fields can be set; a name the queue does
    not define is refused with the code `unknown_field`.

    With an `Idempotency-Key`, a retry of the same request (say, after the
    connection dropped before the answer arrived) answers 201 with the run the
    first one launched, as it is now, and the header `Idempotent-Replayed: true`.
    """
    queue_obj, _ = queue_for(request.user, team, queue)
    try:
        run = launch_run(
            queue_obj,
            request.user,
            payload.template_variables,
            project=payload.project,
            name=payload.name,
            job=payload.job.model_dump(),
            priority=payload.priority,
            via="api",
            idempotency_key=idempotency_key,
        )
    except KeyReused as reused:
        return Status(422, problems_body(reused.problems))
    except LaunchRefused as refused:
        return Status(400, problems_body(refused.problems))
    if run.replayed:
        response["Idempotent-Replayed"] = "true"
    return Status(201, run_detail_body(request, _load(queue_obj.team.slug, run.run_id)))


@router.get(
    "/teams/{team}/queues/{queue}/runs",
    response={200: RunPage, 401: Message, 404: Message, 422: InvalidRequest},
    url_name="run_list", operation_id="run_list",
    summary="List a queue's runs, newest first",
)
def run_list(
    request: HttpRequest,
    team: str = TeamSlug,
    queue: str = QueueName,
    limit: Annotated[int, whole_number("limit", minimum=1, maximum=MAX_PAGE)] = Query(20, ge=1, le=MAX_PAGE, description=f"Runs per page (1-{MAX_PAGE})."),
    offset: Annotated[int, whole_number("offset")] = Query(0, ge=0, le=MAX_ID, description="How many runs to skip."),
    state: RunState | None = Query(None, description="Only runs in this state."),
):
    """One page of the queue's runs. `next` is the URL of the following page, null on the last."""
    queue_obj, _ = queue_for(request.user, team, queue)
    runs = _runs().filter(queue=queue_obj)
    if state:
        runs = runs.filter(state=state)
    count = runs.count()
    page = runs[offset : offset + limit]
    next_url = None
    if offset + limit < count:
        query = request.GET.copy()
        query["offset"] = str(offset + limit)
        query["limit"] = str(limit)
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return {"count": count, "limit": limit, "offset": offset, "next": next_url, "items": [run_summary(request, r) for r in page]}


@router.get(
    "/teams/{team}/runs/{run_id}",
    response={200: RunOut, 401: Message, 404: Message},
    url_name="run_detail", operation_id="run_detail",
    summary="One run: its values, configs, state and history",
)
def run_detail(request: HttpRequest, team: str = TeamSlug, run_id: str = RunId):
    membership = membership_for(request.user, team)
    return run_detail_body(request, _load(membership.team.slug, run_id))


@router.post(
    "/teams/{team}/runs/{run_id}/cancel",
    response={200: RunOut, 401: Message, 403: Message, 404: Message, 409: Message},
    url_name="run_cancel", operation_id="run_cancel",
    summary="Cancel a run",
)
def run_cancel(request: HttpRequest, team: str = TeamSlug, run_id: str = RunId):
    """A pending run is cancelled at once; a run an agent holds is asked to stop (`cancel_requested`).

    Team admins may cancel any run, members the runs they launched (403 otherwise).
    A run that already ended answers 409.
    """
    membership = membership_for(request.user, team)
    run = _load(membership.team.slug, run_id)
    if not may_cancel(run, membership, request.user):
        return Status(403, message_body("forbidden", NOT_YOURS))
    try:
        cancel(run, request.user)
    except InvalidTransition:
        return Status(409, message_body("already_ended", ALREADY_DONE.format(run_id=run.run_id, state=run.state)))
    return run_detail_body(request, _load(membership.team.slug, run_id))


# --- shaping runs -----------------------------------------------------------


def run_summary(request: HttpRequest, run: Run) -> dict:
    team = run.queue.team.slug
    return {
        "run_id": run.run_id,
        "name": run.name,
        "team": team,
        "queue": run.queue.name,
        "project": run.project.name,
        "state": run.state,
        "priority": Priority(run.priority).label,
        "values": run.values,
        "launched_by": run.launched_by.get_username() if run.launched_by else None,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "cancel_requested": run.cancel_requested,
        "failure_reason": run.failure_reason,
        "links": {
            "self": request.build_absolute_uri(reverse("api:run_detail", args=[team, run.run_id])),
            "web": _web_url(request, run),
            "queue": request.build_absolute_uri(reverse("api:queue_detail", args=[team, run.queue.name])),
            "cancel": request.build_absolute_uri(reverse("api:run_cancel", args=[team, run.run_id])),
        },
    }


def run_detail_body(request: HttpRequest, run: Run) -> dict:
    return {
        **run_summary(request, run),
        "config_version": run.config_version.number,
        "job": run.job,
        "rendered_config": run.rendered_config,
        "resolved_config": run.resolved_config,
        "warnings": run.warnings,
        "agent": run.agent.name if run.agent else None,
        "attempts": run.attempts,
        "image_uri": run.image_uri,
        "exit_code": run.exit_code,
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "output": run.output,
        "events": [
            {
                "state": e.state,
                "at": e.at,
                "message": e.message,
                "actor": e.actor.get_username() if e.actor else None,
                "agent": e.agent.name if e.agent else None,
            }
            for e in run.events.select_related("actor", "agent")
        ],
    }


def _runs():
    return Run.objects.select_related("queue__team", "project", "launched_by", "config_version", "agent")


def _load(team_slug: str, run_id: str) -> Run:
    try:
        return _runs().get(queue__team__slug=team_slug, run_id=run_id)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None


def _web_url(request: HttpRequest, run: Run) -> str | None:
    try:
        return request.build_absolute_uri(run.get_absolute_url())
    except NoReverseMatch:  # the browser's run page is not wired up in this build
        return None
