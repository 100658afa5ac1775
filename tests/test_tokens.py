"""The API tokens page: create a token (shown once), see your tokens, revoke one."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from django.utils import timezone
from django.test import Client

from launchq.models import ApiToken, hash_token
from tests.conftest import log_in

TOKEN_TEXT = re.compile(r"lq_[A-Za-z0-9_-]{20,}")


def test_the_page_needs_login(client, db):
    response = client.get("/account/tokens/")

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_nav_links_to_the_page(client, member_user):
    client.force_login(member_user)

    page = client.get("/launch/").content.decode()

    assert 'href="/account/tokens/"' in page and ">API tokens</a>" in page


def test_a_new_token_is_shown_once_and_stored_hashed(client, member_user):
    client.force_login(member_user)

    created = client.post("/account/tokens/new/", {"name": "laptop CLI"})
    assert created.status_code == 302 and created["Location"] == "/account/tokens/"  # a reload makes no second token
    response = client.get("/account/tokens/")

    assert response.status_code == 200
    shown = TOKEN_TEXT.findall(response.content.decode())
    assert shown, "the new token must be on the page"
    plaintext = shown[0]
    token = ApiToken.objects.get(user=member_user)
    assert token.name == "laptop CLI"
    assert token.digest == hash_token(plaintext)
    assert plaintext.startswith(token.prefix)
    assert not ApiToken.objects.filter(digest=plaintext).exists()
    assert "only time it is shown" in response.content.decode()

    later = client.get("/account/tokens/").content.decode()
    assert plaintext not in later
    assert "laptop CLI" in later and f"{token.prefix}…" in later


def test_a_new_token_page_is_not_cached_and_tokens_made_in_two_tabs_are_both_shown(client, member_user):
    client.force_login(member_user)
    client.post("/account/tokens/new/", {"name": "first tab"})
    client.post("/account/tokens/new/", {"name": "second tab"})
    response = client.get("/account/tokens/")
    assert "no-store" in response["Cache-Control"]
    shown = TOKEN_TEXT.findall(response.content.decode())
    digests = set(ApiToken.objects.values_list("digest", flat=True))
    assert len(set(shown)) == 2 and {hash_token(t) for t in shown} == digests


def test_a_new_token_revoked_or_left_unseen_too_long_is_not_shown(client, member_user, monkeypatch):
    import time as clock

    client.force_login(member_user)
    client.post("/account/tokens/new/", {"name": "revoked at once"})
    ApiToken.objects.update(revoked_at=timezone.now())
    assert not TOKEN_TEXT.search(client.get("/account/tokens/").content.decode())

    client.post("/account/tokens/new/", {"name": "left unseen"})
    later = clock.time() + 601
    monkeypatch.setattr("launchq.views.tokens.time.time", lambda: later)
    assert not TOKEN_TEXT.search(client.get("/account/tokens/").content.decode())


def test_the_form_address_opened_directly_leads_to_the_list(client, member_user):
    client.force_login(member_user)
    response = client.get("/account/tokens/new/")
    assert response.status_code == 302 and response["Location"] == "/account/tokens/"
    assert not ApiToken.objects.exists()


def test_the_list_shows_name_prefix_use_and_revocation(client, member_user):
    from django.utils import timezone

    used, _ = ApiToken.issue(member_user, "nightly sweep")
    ApiToken.objects.filter(pk=used.pk).update(last_used_at=timezone.now())
    gone, _ = ApiToken.issue(member_user, "old laptop")
    ApiToken.objects.filter(pk=gone.pk).update(revoked_at=timezone.now())
    client.force_login(member_user)

    page = client.get("/account/tokens/").content.decode()

    row = _row(page, used)
    assert "nightly sweep" in row and used.prefix in row and "active" in row and "just now" in row and "Revoke" in row
    row = _row(page, gone)
    assert "old laptop" in row and "revoked" in row and "never" in row and "Revoke" not in row
    assert page.index("nightly sweep") < page.index("old laptop")  # active tokens first


def test_others_tokens_are_not_listed(client, member_user, admin_user):
    ApiToken.issue(admin_user, "admin's secret script")
    client.force_login(member_user)

    assert "admin&#x27;s secret script" not in client.get("/account/tokens/").content.decode()


@pytest.mark.parametrize("name, error", [("", "This field is required."), ("   ", "This field is required."), ("x" * 101, "at most 100 characters")])
def test_a_token_needs_a_name(client, member_user, name, error):
    client.force_login(member_user)

    response = client.post("/account/tokens/new/", {"name": name})

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not ApiToken.objects.exists()
    assert not TOKEN_TEXT.search(response.content.decode())


def test_two_active_tokens_cannot_share_a_name(client, member_user):
    ApiToken.issue(member_user, "laptop")
    client.force_login(member_user)

    response = client.post("/account/tokens/new/", {"name": " laptop "})

    assert response.status_code == 400
    assert "already have an active token named" in response.content.decode()
    assert ApiToken.objects.count() == 1


def test_revoking_stops_the_token_at_once(client, member_user):
    token, plaintext = ApiToken.issue(member_user, "laptop")
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.get("/api/queues", headers=headers).status_code == 200
    client.force_login(member_user)

    response = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)

    assert response.redirect_chain[-1][0] == "/account/tokens/"
    assert "Revoked “laptop”" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    client.logout()
    assert client.get("/api/queues", headers=headers).status_code == 401


def test_revoking_twice_keeps_the_first_time(client, member_user):
    token, _ = ApiToken.issue(member_user, "laptop")
    client.force_login(member_user)
    client.post(f"/account/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    first = token.revoked_at

    client.post(f"/account/tokens/{token.pk}/revoke/")

    token.refresh_from_db()
    assert token.revoked_at == first


def test_nobody_revokes_someone_elses_token(client, member_user, admin_user):
    token, _ = ApiToken.issue(admin_user, "admin's")
    client.force_login(member_user)

    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoking_needs_a_post(client, member_user):
    token, _ = ApiToken.issue(member_user, "laptop")
    client.force_login(member_user)

    assert client.get(f"/account/tokens/{token.pk}/revoke/").status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


def test_creating_and_revoking_need_the_csrf_token(member_user):
    token, _ = ApiToken.issue(member_user, "laptop")
    client = Client(enforce_csrf_checks=True)
    client.force_login(member_user)

    assert client.post("/account/tokens/new/", {"name": "forged"}).status_code == 403
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 403
    assert ApiToken.objects.count() == 1 and ApiToken.objects.get().revoked_at is None


@pytest.mark.browser
def test_a_member_creates_uses_and_revokes_a_token_in_the_browser(page, live_server, member_user, artifacts):
    log_in(page, live_server, "max")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    page.get_by_label("Token name").fill("laptop CLI")
    page.get_by_role("button", name="Create token").click()

    plaintext = page.get_by_label("New API token").input_value()
    page.screenshot(path=str(artifacts / "api-tokens-created.png"), full_page=True)
    assert TOKEN_TEXT.fullmatch(plaintext)
    assert _api_status(live_server, plaintext) == 200

    page.get_by_role("button", name="Revoke laptop CLI").click()

    row = page.get_by_role("row", name=re.compile("laptop CLI"))
    assert "revoked" in row.inner_text()
    assert page.get_by_label("New API token").count() == 0
    page.screenshot(path=str(artifacts / "api-tokens-revoked.png"), full_page=True)
    assert _api_status(live_server, plaintext) == 401


def _api_status(live_server, token: str) -> int:
    request = urllib.request.Request(f"{live_server.url}/api/queues", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _row(page: str, token: ApiToken) -> str:
    start = page.index(f'id="token-{token.pk}"')
    return page[start : page.index("</tr>", start)]
