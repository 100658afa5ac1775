"""The Launch page (the teams' queues) and creating a queue."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from launchq.access import membership_for, queue_for, require_admin
from launchq.configs import ConfigRejected, check_config, create_queue, create_queue_with_draft
from launchq.forms import QueueForm, QueueSettingsForm
from launchq.models import IN_FLIGHT, Membership, Queue
from launchq.templating import ConfigError


@login_required
@require_GET
def launch(request: HttpRequest) -> HttpResponse:
    memberships = Membership.objects.filter(user=request.user).select_related("team").order_by("team__slug")
    queues = (
        Queue.objects.filter(team__memberships__user=request.user)
        .select_related("team", "current_version")
        .annotate(in_flight=Count("runs", filter=Q(runs__state__in=IN_FLIGHT)))
        .order_by("team__slug", "name")
    )
    teams = [{"membership": m, "queues": [q for q in queues if q.team_id == m.team_id]} for m in memberships]
    return render(request, "launchq/launch.html", {"teams": teams})


@login_required
@require_GET
def queue_detail(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    queue_obj, _ = queue_for(request.user, team, queue)
    return redirect("launchq:queue_runs", team, queue_obj.name)


@login_required
@require_http_methods(["GET", "POST"])
def queue_create(request: HttpRequest, team: str) -> HttpResponse:
    membership = membership_for(request.user, team)
    require_admin(membership)
    form = QueueForm(request.POST or None, team=membership.team)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            has_fields = bool(check_config(data["config"], data["format"]).fields)
            if has_fields:
                queue = create_queue_with_draft(
                    membership.team, request.user, data["name"], data["resource"], data["config"], data["format"],
                    data["description"], form.default_job,
                )
            else:
                queue = create_queue(
                    membership.team, request.user, data["name"], data["resource"], data["config"], data["format"], {},
                    data["description"], form.default_job,
                )
        except (ConfigError, ConfigRejected) as rejected:
            form.add_error("config", str(rejected))
        else:
            if has_fields:
                # Template fields need their guardrails before anyone can launch with them:
                # the config opens as a draft on the Config tab, parsed into tiles.
                messages.info(request, "Set each template field's type and guardrails, then press Save config.")
            else:
                messages.success(request, f"Created queue {queue.name}.")
            return redirect("launchq:queue_config", team, queue.name)
    return render(request, "launchq/queue_new.html", {"form": form, "team": membership.team}, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def queue_settings(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """A queue's description and default job (admins); its config has its own tab."""
    queue_obj, membership = queue_for(request.user, team, queue)
    require_admin(membership)
    form = QueueSettingsForm(request.POST or None, queue=queue_obj)
    if request.method == "POST" and form.is_valid():
        queue_obj.description = form.cleaned_data["description"]
        queue_obj.default_job = form.default_job
        queue_obj.save(update_fields=["description", "default_job"])
        messages.success(request, "Saved the queue's settings.")
        return redirect("launchq:queue_settings", team, queue_obj.name)
    context = {"queue": queue_obj, "membership": membership, "form": form, "tab": "settings"}
    return render(request, "launchq/queue_settings.html", context, status=400 if form.errors else 200)
