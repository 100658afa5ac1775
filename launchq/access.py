"""Who may see and change what. Outsiders get 404 (a team's pages do not exist for them)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from launchq.models import Membership, Queue, Role, Run, Team


def membership_for(user, team_slug: str) -> Membership:
    """The user's membership of the team, or 404."""
    if not user.is_authenticated:
        raise Http404("No such team.")
    try:
        return Membership.objects.select_related("team").get(team__slug=team_slug, user=user)
    except Membership.DoesNotExist:
        raise Http404("No such team.") from None


def queue_for(user, team_slug: str, queue_name: str) -> tuple[Queue, Membership]:
    """A queue of one of the user's teams, with the user's membership, or 404."""
    membership = membership_for(user, team_slug)
    try:
        queue = Queue.objects.select_related("team", "created_by", "current_version__created_by").get(
            team=membership.team, name=queue_name
        )
    except Queue.DoesNotExist:
        raise Http404("No such queue.") from None
    return queue, membership


def require_admin(membership: Membership) -> None:
    if membership.role != Role.ADMIN:
        raise PermissionDenied("Only the team's admins may do this.")


def may_cancel(run: Run, membership: Membership, user) -> bool:
    """Who may cancel a run (on every path): a team admin, or the member who launched it."""
    return membership.is_admin or (run.launched_by_id is not None and run.launched_by_id == user.pk)


def teams_of(user) -> list[Team]:
    return list(Team.objects.filter(memberships__user=user).order_by("slug"))
