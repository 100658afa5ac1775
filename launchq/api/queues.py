"""Queues a person can launch onto, and what each one asks for."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from ninja import Path, Router

from launchq.access import queue_for
from launchq.api.auth import TokenAuth
from launchq.api.schemas import MeOut, Message, QueueDetail, QueueSummary
from launchq.guardrails import json_schema
from launchq.models import Membership, Queue

router = Router(auth=TokenAuth(), tags=["queues"])

TeamSlug = Path(..., description="The team's slug (W&B's entity).")
QueueName = Path(..., description="The queue's name within the team.")


@router.get("/me", response={200: MeOut, 401: Message}, url_name="me", operation_id="me", summary="Who the token belongs to")
def me(request: HttpRequest):
    """The token's user and the teams they belong to, with their role in each."""
    memberships = Membership.objects.filter(user=request.user).select_related("team").order_by("team__slug")
    return {
        "username": request.user.get_username(),
        "teams": [{"slug": m.team.slug, "name": m.team.name, "role": m.role} for m in memberships],
    }


@router.get("/queues", response={200: list[QueueSummary], 401: Message}, url_name="queue_list", operation_id="queue_list", summary="List the queues you can launch onto")
def queue_list(request: HttpRequest):
    """Every queue of every team you are in, by team and name."""
    queues = (
        Queue.objects.filter(team__memberships__user=request.user)
        .select_related("team", "current_version")
        .order_by("team__slug", "name")
    )
    return [queue_summary(request, q) for q in queues]


@router.get(
    "/teams/{team}/queues/{queue}",
    response={200: QueueDetail, 401: Message, 404: Message},
    url_name="queue_detail", operation_id="queue_detail",
    summary="One queue: its config and its template fields as JSON Schema",
)
def queue_detail(request: HttpRequest, team: str = TeamSlug, queue: str = QueueName):
    """The queue config as written, and each template field's guardrails as W&B-shaped JSON Schema.

    Teams you are not in answer 404, as if they did not exist.
    """
    queue_obj, _ = queue_for(request.user, team, queue)
    version = queue_obj.current_version
    fields = version.definitions if version else []
    return {
        **queue_summary(request, queue_obj),
        "format": version.format if version else None,
        "config": version.text if version else "",
        "version_created_at": version.created_at if version else None,
        "version_created_by": version.created_by.get_username() if version and version.created_by else None,
        "template_variables": {f.name: json_schema(f) for f in fields},
        "required": [f.name for f in fields if f.required],
        "projects": list(queue_obj.team.projects.values_list("name", flat=True)),
        "runs_in_containers": queue_obj.runs_in_containers,
        "default_job": queue_obj.default_job or {},
    }


def queue_summary(request: HttpRequest, queue: Queue) -> dict:
    version = queue.current_version
    return {
        "team": queue.team.slug,
        "name": queue.name,
        "resource": queue.resource,
        "description": queue.description,
        "version": version.number if version else None,
        "ready": queue.ready,
        "fields": [d["name"] for d in version.fields] if version else [],
        "url": request.build_absolute_uri(reverse("api:queue_detail", args=[queue.team.slug, queue.name])),
    }
