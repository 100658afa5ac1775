"""The app starts, asks for a login, and keeps its log readable."""

from __future__ import annotations

import io
import logging


def test_launch_page_needs_login(client, db):
    response = client.get("/launch/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_refusal_is_logged_as_one_line_without_a_traceback(client, member_user):
    console = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.filters)
    stream = io.StringIO()
    previous = console.setStream(stream)
    try:
        client.force_login(member_user)
        assert client.get("/teams/ml/queues/new/").status_code == 403
    finally:
        console.setStream(previous)
    logged = stream.getvalue()
    assert "Forbidden" in logged and "Traceback" not in logged


def test_not_found_and_not_allowed_are_pages_of_the_app(client, member_user):
    client.force_login(member_user)
    missing = client.get("/teams/nope/queues/").content.decode()
    refused = client.get("/teams/ml/queues/new/").content.decode()
    assert "<h1>Not found</h1>" in missing and 'href="/launch/"' in missing and "Log out" in missing
    assert "<h1>Not allowed</h1>" in refused and "Only the team&#x27;s admins may do this." in refused


def test_opening_a_form_only_address_gets_a_page_not_a_blank(client, member_user, team):
    client.force_login(member_user)
    response = client.get("/teams/ml/runs/abc/cancel/")
    assert response.status_code == 405 and response["Allow"] == "POST" and response["X-Frame-Options"] == "DENY"
    assert "<h1>Not a page</h1>" in response.content.decode()
