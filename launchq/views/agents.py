"""The Agents page: admins register launch agents for the team's queues, see them work, revoke them.

An agent's token is shown once, right after it is registered, with the command
that starts the agent; only its hash is kept. Members see the agents but
cannot change them; outsiders get 404.
"""

from __future__ import annotations

import shlex

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from launchq.access import membership_for, require_admin
from launchq.models import HELD_BY_AGENT, Agent, Membership, Queue, Role, Run, Team, name_validator

NAME_TAKEN = "Team {team} already has an agent named {name}; names stay taken after an agent is revoked."
NO_QUEUES = "Choose at least one queue for the agent to serve."


class AgentForm(forms.Form):
    name = forms.CharField(
        max_length=64, validators=[name_validator], help_text="Say where it runs, like gpu-box-1.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    queues = forms.ModelMultipleChoiceField(
        queryset=Queue.objects.none(), widget=forms.CheckboxSelectMultiple, error_messages={"required": NO_QUEUES},
        help_text="The agent takes runs off these queues.",
    )

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["queues"].queryset = team.queues.order_by("name")
        self.fields["queues"].label_from_instance = lambda q: f"{q.name} ({q.resource})"

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Agent.objects.filter(team=self.team, name=name).exists():
            raise forms.ValidationError(NAME_TAKEN.format(team=self.team.slug, name=name), code="name_taken")
        return name


@login_required
@require_GET
def agents_home(request: HttpRequest) -> HttpResponse:
    """The Agents link in the navigation: the agents of the user's first team (admin teams first)."""
    memberships = sorted(
        Membership.objects.filter(user=request.user).select_related("team"), key=lambda m: (m.role != Role.ADMIN, m.team.slug)
    )
    if not memberships:
        messages.info(request, "You are not in a team yet, so there are no agents to show.")
        return redirect("launchq:launch")
    return redirect("launchq:agent_list", memberships[0].team.slug)


@login_required
@require_GET
@never_cache  # the page may show a new agent's token
def agent_list(request: HttpRequest, team: str) -> HttpResponse:
    membership = membership_for(request.user, team)
    form = AgentForm(team=membership.team) if membership.is_admin else None
    return _render(request, membership, form)


@login_required
@require_POST
def agent_create(request: HttpRequest, team: str) -> HttpResponse:
    """Register an agent; its token goes to the next page view only (then it is gone)."""
    membership = membership_for(request.user, team)
    require_admin(membership)
    form = AgentForm(request.POST, team=membership.team)
    if not form.is_valid():
        return _render(request, membership, form, status=400)
    with transaction.atomic():
        agent, token = Agent.issue(membership.team, form.cleaned_data["name"], created_by=request.user)
        agent.queues.set(form.cleaned_data["queues"])
    request.session[_token_key(membership.team)] = {"agent": agent.pk, "token": token}
    return redirect("launchq:agent_list", team)


@login_required
@require_POST
def agent_revoke(request: HttpRequest, team: str, agent: int) -> HttpResponse:
    membership = membership_for(request.user, team)
    require_admin(membership)
    try:
        found = Agent.objects.get(team=membership.team, pk=agent)
    except Agent.DoesNotExist:
        raise Http404("No such agent.") from None
    if found.revoked_at is None:
        Agent.objects.filter(pk=found.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        held = Run.objects.filter(agent=found, state__in=HELD_BY_AGENT).count()
        then = f" The {held} run{'s' if held != 1 else ''} it holds go back to the queue when the lease runs out." if held else ""
        messages.success(request, f"Revoked agent {found.name}: its token no longer works.{then}")
    return redirect("launchq:agent_list", team)


def _render(request: HttpRequest, membership: Membership, form: AgentForm | None, status: int = 200) -> HttpResponse:
    team = membership.team
    agents = list(
        team.agents.prefetch_related("queues").select_related("created_by").order_by(F("revoked_at").asc(nulls_first=True), "name")
    )
    holding: dict[int, list[Run]] = {}
    for run in Run.objects.filter(agent__in=agents, state__in=HELD_BY_AGENT).order_by("created_at"):
        holding.setdefault(run.agent_id, []).append(run)
    rows = [{"agent": a, "state": a.state, "seen": _seen(a), "runs": holding.get(a.pk, [])} for a in agents]
    context = {
        "team": team, "membership": membership, "rows": rows, "nav": "agents",
        "offline_after": int(Agent.OFFLINE_AFTER.total_seconds()),
    }
    if request.htmx:
        return render(request, "launchq/_agent_table.html", context)
    issued = request.session.pop(_token_key(team), None) if membership.is_admin else None
    new_agent = next((a for a in agents if issued and a.pk == issued["agent"]), None)
    context.update(
        form=form,
        teams=Team.objects.filter(memberships__user=request.user).order_by("slug"),
        new_agent=new_agent,
        new_token=issued["token"] if new_agent else "",
        start_command=_start_command(request, new_agent, issued["token"]) if new_agent else "",
        wandb_command=_wandb_command(request, new_agent, issued["token"]) if new_agent else "",
    )
    return render(request, "launchq/agents.html", context, status=status)


def _start_command(request: HttpRequest, agent: Agent, token: str) -> str:
    """The one line that starts this agent, run from a checkout of launchq (the token in the environment, not in `ps`)."""
    url = request.build_absolute_uri("/").rstrip("/")
    queues = " ".join(f"--queue {shlex.quote(q.name)}" for q in agent.queues.order_by("name"))
    return f"LAUNCHQ_AGENT_TOKEN={token} python -m launchq.agent --url {shlex.quote(url)} {queues}"


def _wandb_command(request: HttpRequest, agent: Agent, token: str) -> str:
    """The same agent as W&B's own `wandb launch-agent`, with the agent token as its API key."""
    url = request.build_absolute_uri("/").rstrip("/")
    queues = " ".join(f"--queue {shlex.quote(q.name)}" for q in agent.queues.order_by("name"))
    return f"WANDB_BASE_URL={shlex.quote(url)} WANDB_API_KEY={token} wandb launch-agent --entity {agent.team.slug} {queues}"


def _seen(agent: Agent) -> str:
    """When the agent was last heard from, in words: `12 seconds ago`, `3 minutes ago`."""
    if agent.last_seen_at is None:
        return ""
    seconds = int((timezone.now() - agent.last_seen_at).total_seconds())
    if seconds < 2:
        return "just now"
    if seconds < 60:
        return f"{seconds} seconds ago"
    return f"{timesince(agent.last_seen_at)} ago"


def _token_key(team: Team) -> str:
    return f"agent-token-{team.pk}"
