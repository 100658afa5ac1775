"""Who is calling the API: a person with a personal API token, or a launch agent with its agent token."""

from __future__ import annotations

from django.utils import timezone
from ninja.security import HttpBearer

from launchq.models import Agent, ApiToken, hash_token


def user_for_token(token: str):
    """The user an active personal API token belongs to, or None. Marks the token used."""
    if not token.startswith(ApiToken.PREFIX):
        return None
    found = ApiToken.objects.active().select_related("user").filter(digest=hash_token(token)).first()
    if found is None or not found.user.is_active:
        return None
    now = timezone.now()
    if found.last_used_at is None or (now - found.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=found.pk).update(last_used_at=now)
    return found.user


def agent_for_token(token: str) -> Agent | None:
    if not token.startswith(Agent.PREFIX):
        return None
    return Agent.objects.active().select_related("team").filter(digest=hash_token(token)).first()


class TokenAuth(HttpBearer):
    """`Authorization: Bearer lq_…` — a personal API token from the API tokens page."""

    openapi_description = "A personal API token (lq_…), created on the API tokens page."

    def authenticate(self, request, token: str):
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


class AgentAuth(HttpBearer):
    """`Authorization: Bearer lqa_…` — an agent token from the Agents page."""

    openapi_description = "An agent token (lqa_…), shown once when an admin registers the agent."

    def authenticate(self, request, token: str):
        return agent_for_token(token)
