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
