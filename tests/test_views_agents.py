"""The Agents page: register (token once), list with state, revoke; who may see and do what."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from launchq.models import Agent
from tests.conftest import log_in

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queue(team, admin_user, make_queue):
    return make_queue(team, "local-queue", "epochs: 1\n", user=admin_user)


@pytest.fixture
def second_queue(team, admin_user, make_queue):
    return make_queue(team, "gpu-queue", "{}", fmt="json", resource="local-container", user=admin_user)


def register(client, *queues, name="gpu-box-1"):
    return client.post("/teams/ml/agents/new/", {"name": name, "queues": [q.pk for q in queues]})


def test_admin_registers_an_agent_and_sees_its_token_once(client, admin_user, queue, second_queue):
    client.force_login(admin_user)
    response = register(client, queue, second_queue)
    assert response.status_code == 302 and response["Location"] == "/teams/ml/agents/"
    agent = Agent.objects.get(name="gpu-box-1")
    assert set(agent.queues.values_list("name", flat=True)) == {"local-queue", "gpu-queue"}
    assert agent.created_by == admin_user

    page = client.get("/teams/ml/agents/").content.decode()
    token = page.split('id="new-token" class="code wide" type="text" value="')[1].split('"')[0]
    assert token.startswith("lqa_") and token.startswith(agent.prefix)
    assert f"LAUNCHQ_AGENT_TOKEN={token} python -m launchq.agent --url http://testserver --queue gpu-queue --queue local-queue" in page
    # ...and the same token starts W&B's own agent (see tests/test_wandb_agent.py)
    assert f"WANDB_BASE_URL=http://testserver WANDB_API_KEY={token} wandb launch-agent --entity ml --queue gpu-queue --queue local-queue" in page
    # the token works for the agent API...
    assert client.post("/api/agent/pop", {}, content_type="application/json", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    # ...and is never shown again
    assert token not in client.get("/teams/ml/agents/").content.decode()


def test_register_refuses_bad_input_with_messages(client, admin_user, queue, make_team, make_queue):
    client.force_login(admin_user)
    response = register(client)
    assert response.status_code == 400
    assert "Choose at least one queue for the agent to serve." in response.content.decode()
    register(client, queue)
    response = register(client, queue)
    assert response.status_code == 400 and "already has an agent named gpu-box-1" in response.content.decode()
    response = register(client, queue, name="has space")
    assert response.status_code == 400
    foreign = make_queue(make_team("other"), "theirs", "")
    response = register(client, foreign, name="box-2")
    assert response.status_code == 400
    assert not Agent.objects.filter(name="box-2").exists()


def test_list_shows_queues_state_and_last_seen(client, admin_user, team, queue):
    polling, _ = Agent.issue(team, "box-polling")
    polling.queues.add(queue)
    Agent.objects.filter(pk=polling.pk).update(last_seen_at=timezone.now() - timedelta(seconds=5), reported_status="polling", hostname="gpu-1")
    running, _ = Agent.issue(team, "box-running")
    Agent.objects.filter(pk=running.pk).update(last_seen_at=timezone.now(), reported_status="running")
    gone, _ = Agent.issue(team, "box-gone")
    Agent.objects.filter(pk=gone.pk).update(last_seen_at=timezone.now() - timedelta(minutes=10), reported_status="running")
    Agent.issue(team, "box-never")
    client.force_login(admin_user)
    page = client.get("/teams/ml/agents/").content.decode()
    row = lambda name: page.split(f"<strong>{name}</strong>")[1].split("</tr>")[0]  # noqa: E731
    assert "agent-state-polling" in row("box-polling") and "local-queue" in row("box-polling") and "on gpu-1" in row("box-polling")
    seconds = re.search(r"(\d+) seconds ago", row("box-polling"))
    assert seconds and 5 <= int(seconds.group(1)) < 60  # however slowly this machine answered
    assert "agent-state-running" in row("box-running")
    assert "agent-state-offline" in row("box-gone") and "minutes ago" in row("box-gone")
    assert "agent-state-offline" in row("box-never") and "never" in row("box-never")


def test_list_shows_the_run_an_agent_holds(client, admin_user, member_user, team, queue):
    from launchq import queueing
    from launchq.runs import launch_run

    agent, _ = Agent.issue(team, "box-1")
    agent.queues.add(queue)
    run = launch_run(queue, member_user, {}, project="proj", job={"command": "true"}, name="swift-river-1")
    queueing.pop(agent)
    client.force_login(admin_user)
    row = client.get("/teams/ml/agents/").content.decode().split("<strong>box-1</strong>")[1].split("</tr>")[0]
    assert "swift-river-1" in row and run.run_id in row and "state-leased" in row and "agent-state-running" in row


def test_htmx_refresh_returns_only_the_table(client, admin_user, queue):
    client.force_login(admin_user)
    response = client.get("/teams/ml/agents/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="agent-table"') and "<html" not in body


def test_revoke(client, admin_user, team, queue):
    agent, token = Agent.issue(team, "box-1")
    agent.queues.add(queue)
    client.force_login(admin_user)
    response = client.post(f"/teams/ml/agents/{agent.pk}/revoke/", follow=True)
    assert "Revoked agent box-1" in response.content.decode()
    agent.refresh_from_db()
    assert agent.revoked_at is not None and agent.state == "revoked"
    Agent.issue(team, "box-2")
    page = client.get("/teams/ml/agents/").content.decode()
    assert page.index("box-2") < page.index("box-1")  # revoked agents sink to the bottom
    assert client.post("/api/agent/pop", {}, content_type="application/json", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_members_may_look_but_not_change(client, member_user, team, queue):
    agent, _ = Agent.issue(team, "box-1")
    client.force_login(member_user)
    page = client.get("/teams/ml/agents/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "box-1" in body and "Register an agent" not in body and "Revoke" not in body
    assert register(client, queue).status_code == 403
    assert client.post(f"/teams/ml/agents/{agent.pk}/revoke/").status_code == 403
    agent.refresh_from_db()
    assert agent.revoked_at is None


def test_outsiders_get_404_and_anonymous_users_log_in(client, outsider, team, queue):
    agent, _ = Agent.issue(team, "box-1")
    assert client.get("/teams/ml/agents/").status_code == 302
    client.force_login(outsider)
    assert client.get("/teams/ml/agents/").status_code == 404
    assert register(client, queue).status_code == 404
    assert client.post(f"/teams/ml/agents/{agent.pk}/revoke/").status_code == 404


def test_agents_link_goes_to_the_users_team(client, admin_user, team, outsider):
    client.force_login(admin_user)
    launch_page = client.get("/launch/").content.decode()
    assert 'href="/agents/"' in launch_page and ">Agents</a>" in launch_page
    assert client.get("/agents/")["Location"] == "/teams/ml/agents/"


@pytest.mark.browser
def test_register_start_and_revoke_an_agent_in_the_browser(page, live_server, admin_user, queue, artifacts, tmp_path):
    log_in(page, live_server, "ada")
    page.get_by_role("link", name="Agents").click()
    page.get_by_label("Name").fill("gpu-box-1")
    page.get_by_label("local-queue (local-process)").check()
    page.get_by_role("button", name="Register agent").click()
    page.get_by_role("heading", name="Agent gpu-box-1 is registered").wait_for()
    token = page.get_by_label("Agent token").input_value()
    command = page.locator("#start-command").inner_text()
    assert token.startswith("lqa_") and f"--url {live_server.url} --queue local-queue" in command
    page.screenshot(path=str(artifacts / "agents-registered.png"), full_page=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHQ_", "DJANGO_SETTINGS"))}
    env["LAUNCHQ_AGENT_TOKEN"] = token
    agent = subprocess.Popen(
        [sys.executable, "-m", "launchq.agent", "--url", live_server.url, "--queue", "local-queue", "--poll-max", "1",
         "--work-dir", str(tmp_path), "--hostname", "gpu-host"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        row = page.locator("tr", has_text="gpu-box-1")
        # the table refreshes itself: the agent shows up as polling, on its host
        row.locator(".agent-state-polling").wait_for(timeout=20_000)
        assert "on gpu-host" in row.inner_text()
        page.screenshot(path=str(artifacts / "agents-polling.png"), full_page=True)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Revoke agent gpu-box-1").click()
        page.get_by_text("Revoked agent gpu-box-1").wait_for()
        assert page.locator("tr", has_text="gpu-box-1").locator(".agent-state-revoked").count() == 1
        assert agent.wait(30) == 3  # the agent notices its token is refused and stops
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
