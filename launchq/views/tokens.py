"""The API tokens page: a person creates named personal API tokens and revokes them.

A new token is shown once, on the page the creating POST redirects to (it waits
in the session for that one page view, like a new agent's token); only its hash
is stored, so it can never be shown again.
"""

from __future__ import annotations

import time
from pathlib import Path

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from launchq.forms import plain_text
from launchq.models import ApiToken

CLI_SOURCE = Path(__file__).resolve().parent.parent / "cli.py"
NEW_TOKENS_KEY = "new-api-tokens"
SHOW_NEW_TOKEN_FOR = 600  # seconds
NAME_TAKEN = "You already have an active token named {name!r}; pick another name or revoke that one first."


class TokenForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=ApiToken._meta.get_field("name").max_length,
        validators=[plain_text],
        help_text="What the token is for, like “laptop CLI” or “nightly sweep”, so you can tell tokens apart.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if ApiToken.objects.active().filter(user=self.user, name=name).exists():
            raise forms.ValidationError(NAME_TAKEN.format(name=name), code="name_taken")
        return name


@login_required
@require_GET
@never_cache  # the page may show a new token: no browser or proxy keeps a copy
def token_list(request: HttpRequest) -> HttpResponse:
    pending = request.session.pop(NEW_TOKENS_KEY, [])
    fresh_since = time.time() - SHOW_NEW_TOKEN_FOR
    shown = {t.pk: t for t in ApiToken.objects.active().filter(user=request.user, pk__in=[p["pk"] for p in pending])}
    new_tokens = [
        {"token": shown[p["pk"]], "plaintext": p["plaintext"]} for p in reversed(pending) if p["pk"] in shown and p["at"] >= fresh_since
    ]
    return _render(request, TokenForm(user=request.user), new_tokens=new_tokens)


@login_required
@require_http_methods(["GET", "POST"])
def token_create(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":  # a bookmarked or reloaded form address
        return redirect("launchq:token_list")
    form = TokenForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render(request, form, status=400)
    token, plaintext = ApiToken.issue(request.user, form.cleaned_data["name"])
    # Post/redirect/get: a reload shows the list, and never makes a second token. The plaintext waits in
    # the session for that one page view (tokens made in two tabs both wait), and for a few minutes at most.
    pending = [p for p in request.session.get(NEW_TOKENS_KEY, []) if p["at"] >= time.time() - SHOW_NEW_TOKEN_FOR]
    request.session[NEW_TOKENS_KEY] = [*pending, {"pk": token.pk, "plaintext": plaintext, "at": time.time()}]
    return redirect("launchq:token_list")


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        messages.success(request, f"Revoked “{token.name}” ({token.prefix}…). Anything still using it now gets 401.")
    return redirect("launchq:token_list")


def _render(request: HttpRequest, form: TokenForm, *, status: int = 200, **extra) -> HttpResponse:
    tokens = ApiToken.objects.filter(user=request.user).order_by(F("revoked_at").desc(nulls_first=True), "-created_at")
    context = {
        "form": form,
        "tokens": tokens,
        "nav": "tokens",
        "api_url": request.build_absolute_uri("/api/"),
        "cli_url": request.build_absolute_uri(reverse("launchq:cli_download")),
        "server_url": request.build_absolute_uri("/").rstrip("/"),
        **extra,
    }
    return render(request, "launchq/tokens.html", context, status=status)


@require_GET
def cli_download(request: HttpRequest) -> HttpResponse:
    """The CLI as one standard-library file, so a terminal needs nothing but Python and this server's URL."""
    response = HttpResponse(CLI_SOURCE.read_bytes(), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="launchq-cli.py"'
    return response
