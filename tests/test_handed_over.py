"""A run whose job a --submit command took is "handed over": done for launchq, never shown as finished."""

from __future__ import annotations

import pytest

from launchq.models import DONE, Agent, ApiToken, RunState
from launchq.runs import launch_run
from tests.test_cli import cli, cli_home  # noqa: F401  (the CLI as a separate process against a live server)

CONFIG = "apiVersion: batch/v1\nkind: Job\n"


@pytest.fixture
def queue(transactional_db, team, admin_user, make_queue):
    return make_queue(team, "k8s-submit", CONFIG, resource="kubernetes", user=admin_user)


@pytest.fixture
def handed_over(client, team, queue, admin_user, member_user):
    agent, token = Agent.issue(team, "box-1", created_by=admin_user)
    agent.queues.add(queue)
    run = launch_run(queue, member_user, {}, project="proj", job={"image": "ghcr.io/team/train:1"})

    def post(path, body=None):
        return client.post(f"/api/agent/{path}", body or {}, content_type="application/json", headers={"Authorization": f"Bearer {token}"})

    post("pop")
    post(f"runs/{run.run_id}/state", {"state": "running"})
    answer = post(f"runs/{run.run_id}/state", {"state": "handed_over", "exit_code": 0,
                                               "message": "The submit command `kubectl apply -f -` exited with status 0: the job was handed to kubernetes."})
    assert answer.status_code == 200 and answer.json()["state"] == "handed_over"
    run.refresh_from_db()
    return run


def test_a_handed_over_run_is_done_but_not_finished(handed_over, member_user, client):
    assert handed_over.state == RunState.HANDED_OVER and handed_over.state in DONE and not handed_over.in_flight
    assert handed_over.finished_at is not None
    assert [e.state for e in handed_over.events.all()][-1] == "handed_over"
    _, token = ApiToken.issue(member_user, "test")
    auth = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/teams/ml/runs/{handed_over.run_id}", headers=auth).json()
    assert body["state"] == "handed_over"
    refused = client.post(f"/api/teams/ml/runs/{handed_over.run_id}/cancel", content_type="application/json", headers=auth)
    assert refused.status_code == 409 and refused.json()["errors"][0]["code"] == "already_ended"


def test_the_run_page_and_runs_tab_say_handed_over_and_what_that_means(handed_over, member_user, client):
    client.force_login(member_user)
    page = client.get(handed_over.get_absolute_url()).content.decode()
    assert '<span class="state state-handed_over">handed over</span>' in page
    assert 'id="handed-over-note"' in page and "launchq does not follow it" in page
    assert "state-finished" not in page and "<dt>Handed over</dt>" in page
    tab = client.get(f"/teams/ml/queues/{handed_over.queue.name}/runs/?state=handed_over").content.decode()
    assert "1 handed over run" in tab and "to kubernetes; launchq does not follow it" in tab


def test_the_cli_says_handed_over_in_words(handed_over, cli):  # noqa: F811
    shown = cli("run", "ml", handed_over.run_id)
    assert shown.returncode == 0, shown.stderr
    assert "handed over (a submit command took the job; launchq does not follow it)" in shown.stdout
    listed = cli("runs", "ml/k8s-submit", "--state", "handed_over")
    assert listed.returncode == 0 and handed_over.run_id in listed.stdout and "finished" not in listed.stdout


def test_a_new_word_on_a_run_in_the_same_state_joins_its_history_once(client, team, queue, admin_user, member_user):
    """A remote job waits in `starting` for one reason, then another: the run page shows each, not a repeat."""
    agent, token = Agent.issue(team, "box-2", created_by=admin_user)
    agent.queues.add(queue)
    run = launch_run(queue, member_user, {}, project="proj", job={"image": "ghcr.io/team/train:1"})

    def state(body):
        return client.post(f"/api/agent/runs/{run.run_id}/state", body, content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})

    client.post("/api/agent/pop", {}, content_type="application/json", headers={"Authorization": f"Bearer {token}"})
    waiting = "Pod launchq-x-abc is waiting to be scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    for message in ("Submitted Kubernetes Job launchq-x (default).", waiting, waiting, "Pod launchq-x-abc is waiting: ContainerCreating."):
        assert state({"state": "starting", "message": message}).status_code == 200
    messages = [e.message for e in run.events.filter(state="starting")]
    assert messages == ["Submitted Kubernetes Job launchq-x (default).", waiting, "Pod launchq-x-abc is waiting: ContainerCreating."]


def test_the_agents_hello_says_each_queues_resource(client, team, queue, admin_user, make_queue):
    """An agent running several jobs at once takes only remote runs while a local job runs: it needs to know which."""
    local = make_queue(team, "local", "", user=admin_user)
    _, token = Agent.issue(team, "box-3", created_by=admin_user)
    Agent.objects.get(name="box-3").queues.add(queue, local)
    answer = client.post("/api/agent/heartbeat", {"status": "polling"}, content_type="application/json",
                         headers={"Authorization": f"Bearer {token}"}).json()
    assert answer["queues"] == ["k8s-submit", "local"]
    assert answer["resources"] == {"k8s-submit": "kubernetes", "local": "local-process"}
