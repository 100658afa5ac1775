"""The GraphQL calls of W&B's launch agent, one by one: who may make them and what they do to runs.

The real agent runs end to end in tests/test_wandb_agent.py; here each call is
sent as the client sends it (its query text, our variables), to pin the rules:
registering needs a team admin's API token or an agent token; whoever calls
about a run must act for the agent holding it; refusals are GraphQL errors
with a code, never a server error.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from launchq.graphql.resolvers import global_id
from launchq.graphql.run_spec import LOCAL_COMMAND_URI
from launchq.guardrails import Field, FieldType
from launchq.models import Agent, ApiToken, Run, RunFile, RunState
from launchq.runs import cancel, launch_run

QUEUES = "query ProjectRunQueues($entity: String!, $projectName: String!) { project(entityName: $entity, name: $projectName) { runQueues { id name createdBy access } } }"
CREATE = """mutation createLaunchAgent($entity: String!, $project: String!, $queues: [ID!]!, $hostname: String!, $agentConfig: JSONString, $version: String) {
  createLaunchAgent(input: {entityName: $entity, projectName: $project, runQueues: $queues, hostname: $hostname, agentConfig: $agentConfig, version: $version}) { launchAgentId } }"""
AGENT = "query LaunchAgent($agentId: ID!) { launchAgent(id: $agentId) { id name runQueues hostname agentStatus stopPolling heartbeatAt } }"
POP = """mutation popFromRunQueue($entity: String!, $project: String!, $queueName: String!, $launchAgentId: ID) {
  popFromRunQueue(input: {entityName: $entity, projectName: $project, queueName: $queueName, launchAgentId: $launchAgentId}) { runQueueItemId runSpec } }"""
ACK = "mutation ackRunQueueItem($itemId: ID!, $runId: String!) { ackRunQueueItem(input: { runQueueItemId: $itemId, runName: $runId }) { success } }"
FAIL = """mutation failRunQueueItem($runQueueItemId: ID!, $message: String!, $stage: String!, $filePaths: [String!]) {
  failRunQueueItem(input: {runQueueItemId: $runQueueItemId, message: $message, stage: $stage, filePaths: $filePaths}) { success } }"""
STOPPED = "query RunStoppedStatus($projectName: String, $entityName: String, $runId: String!) { project(name: $projectName, entityName: $entityName) { run(name: $runId) { stopped } } }"
STATE = "query RunState($project: String!, $entity: String!, $name: String!) { project(name: $project, entityName: $entity) { run(name: $name) { state } } }"
FILES = """mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }"""
PUSH = """mutation pushToRunQueueByName($entityName: String!, $projectName: String!, $queueName: String!, $runSpec: JSONString!) {
  pushToRunQueueByName(input: {entityName: $entityName, projectName: $projectName, queueName: $queueName, runSpec: $runSpec}) { runQueueItemId } }"""

EPOCHS = Field("epochs", FieldType.INTEGER, minimum=1, maximum=10, default=2)
NOTE = Field("note", FieldType.STRING, default="", max_length=100)


@pytest.fixture
def queue(make_queue, team, admin_user):
    return make_queue(team, "proc-queue", "epochs: {{epochs}}\nnote: \"{{note}}\"\n", "yaml", (EPOCHS, NOTE), user=admin_user)


@pytest.fixture
def keys(admin_user, member_user):
    return {"admin": ApiToken.issue(admin_user, "a")[1], "member": ApiToken.issue(member_user, "m")[1]}


@pytest.fixture
def gql(db):
    client = Client()

    def call(key: str, query: str, **variables) -> dict:
        auth = "Basic " + base64.b64encode(f"api:{key}".encode()).decode()
        response = client.post("/graphql", json.dumps({"query": query, "variables": variables, "operationName": ""}),
                               content_type="application/json", headers={"Authorization": auth})
        assert response.status_code == 200, response.content
        return response.json()

    return call


def data(result: dict) -> dict:
    assert "errors" not in result, result
    return result["data"]


def code(result: dict) -> str:
    """The code of a refusal: one error, and nothing done (a mutation's field answers null)."""
    assert not any((result["data"] or {}).values()) and len(result["errors"]) == 1, result
    return result["errors"][0]["extensions"]["code"]


def register(gql, key: str, queue, host: str = "gpu-box") -> str:
    queue_id = global_id("RunQueue", queue.pk)
    result = gql(key, CREATE, entity="ml", project="model-registry", queues=[queue_id], hostname=host,
                 agentConfig=json.dumps({"max_jobs": 1}), version="wandb@0.31.0")
    return data(result)["createLaunchAgent"]["launchAgentId"]


def launch(queue, user, **kw):
    return launch_run(queue, user, kw.pop("values", {"epochs": 3}), project="proj", job={"command": "python train.py --fast"}, **kw)


# --- registering ---------------------------------------------------------------------------


def test_an_admin_key_registers_an_agent_of_the_team_and_reuses_it_when_offline(gql, keys, queue, admin_user):
    agent_id = register(gql, keys["admin"], queue)
    agent = Agent.objects.get()
    assert (agent.team.slug, agent.name, agent.client, agent.hostname, agent.created_by) == ("ml", "wandb-gpu-box", "wandb@0.31.0", "gpu-box", admin_user)
    assert list(agent.queues.all()) == [queue] and agent.state == "polling"
    assert data(gql(keys["admin"], AGENT, agentId=agent_id))["launchAgent"]["stopPolling"] is False
    assert register(gql, keys["admin"], queue) != agent_id  # the first is online: a second agent on the same host
    Agent.objects.update(last_seen_at=None)
    assert register(gql, keys["admin"], queue) == agent_id  # started again while offline: the same agent


def test_a_member_key_cannot_register_an_agent(gql, keys, queue):
    result = gql(keys["member"], CREATE, entity="ml", project="model-registry", queues=[global_id("RunQueue", queue.pk)], hostname="h")
    assert code(result) == "FORBIDDEN" and not Agent.objects.exists()


def test_an_agent_token_is_its_agent_and_sees_only_its_queues(gql, team, admin_user, queue, make_queue):
    other = make_queue(team, "other-queue", "x: 1\n", user=admin_user)
    agent, token = Agent.issue(team, "box", created_by=admin_user)
    agent.queues.add(queue)
    assert [q["name"] for q in data(gql(token, QUEUES, entity="ml", projectName="model-registry"))["project"]["runQueues"]] == ["proc-queue"]
    assert register(gql, token, queue) == global_id("LaunchAgent", agent.pk)
    assert Agent.objects.count() == 1 and Agent.objects.get().client == "wandb@0.31.0"
    result = gql(token, CREATE, entity="ml", project="model-registry", queues=[global_id("RunQueue", other.pk)], hostname="h")
    assert code(result) == "FORBIDDEN"
    assert code(gql(token, PUSH, entityName="ml", projectName="p", queueName="proc-queue", runSpec=json.dumps({"project": "proj"}))) == "FORBIDDEN"


def test_another_teams_agent_is_not_found(gql, keys, queue, outsider, make_queue):
    agent_id = register(gql, keys["admin"], queue)
    theirs = ApiToken.issue(outsider, "x")[1]
    assert code(gql(theirs, AGENT, agentId=agent_id)) == "NOT_FOUND"
    assert code(gql(theirs, POP, entity="other", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)) == "NOT_FOUND"


def test_a_revoked_agent_is_told_to_stop_and_gets_no_runs(gql, keys, queue, member_user):
    from django.utils import timezone

    agent_id = register(gql, keys["admin"], queue)
    launch(queue, member_user)
    Agent.objects.update(revoked_at=timezone.now())
    assert data(gql(keys["admin"], AGENT, agentId=agent_id))["launchAgent"]["stopPolling"] is True
    assert code(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)) == "AGENT_REVOKED"
    assert Run.objects.get().state == RunState.PENDING


# --- taking runs ----------------------------------------------------------------------------------


def test_pop_leases_like_launchqs_own_pop_and_hands_over_the_run_spec(gql, keys, queue, member_user):
    agent_id = register(gql, keys["admin"], queue)
    low = launch(queue, member_user, priority="low")
    high = launch(queue, member_user, values={"epochs": 7, "note": "warm start"}, priority="high", name="big-one")
    popped = data(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id))["popFromRunQueue"]
    assert popped["runQueueItemId"] == high.run_id  # the most urgent first
    spec = popped["runSpec"]  # an object, not a JSON string: W&B's agent reads it as one
    assert spec == {
        "entity": "ml", "project": "proj", "name": "big-one", "run_id": high.run_id, "resource": "local-process",
        "resource_args": {"local-process": {"epochs": 7, "note": "warm start"}},
        "uri": LOCAL_COMMAND_URI, "overrides": {"entry_point": ["python", "train.py", "--fast"]}, "docker": {}, "git": {},
    }
    high.refresh_from_db()
    assert (high.state, high.agent.name, high.attempts) == (RunState.LEASED, "wandb-gpu-box", 1)
    assert high.lease_expires_at is not None
    assert data(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id))["popFromRunQueue"]["runQueueItemId"] == low.run_id
    assert data(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id))["popFromRunQueue"] is None


def test_a_run_spec_on_a_container_queue_runs_the_image_with_the_command_as_arguments(gql, keys, make_queue, team, admin_user, member_user):
    queue = make_queue(team, "k8s", "spec:\n  gpus: 1\nbuilder:\n  accelerator:\n    base_image: nvidia/cuda:12.4.1-runtime-ubuntu22.04\n", resource="kubernetes", user=admin_user)
    agent_id = register(gql, keys["admin"], queue)
    launch_run(queue, member_user, {}, project="proj", job={"image": "ghcr.io/acme/train:1.2", "command": "python train.py"})
    built = launch_run(queue, member_user, {}, project="proj", job={"source_dir": "/src", "command": "python train.py"})
    spec = data(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="k8s", launchAgentId=agent_id))["popFromRunQueue"]["runSpec"]
    assert spec["docker"] == {"docker_image": "ghcr.io/acme/train:1.2"} and spec["overrides"] == {"args": ["python", "train.py"]}
    assert spec["resource_args"] == {"kubernetes": {"spec": {"gpus": 1}}}  # builder is the agent's, not the resource's
    assert "uri" not in spec
    assert data(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="k8s", launchAgentId=agent_id))["popFromRunQueue"] is None
    built.refresh_from_db()
    assert built.state == RunState.FAILED and "runs images only" in built.failure_reason  # said on the run, not dropped


def test_a_member_macro_fails_the_run_at_pop_and_the_next_run_is_handed_over(gql, keys, queue, member_user):
    agent_id = register(gql, keys["admin"], queue)
    leak = launch(queue, member_user, values={"note": "${AWS_SECRET_ACCESS_KEY}"})
    fine = launch(queue, member_user)
    popped = data(gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id))["popFromRunQueue"]
    assert popped["runQueueItemId"] == fine.run_id
    leak.refresh_from_db()
    assert leak.state == RunState.FAILED and leak.values == {"epochs": 2, "note": "${AWS_SECRET_ACCESS_KEY}"}
    assert "note contains ${" in leak.failure_reason


def test_ack_then_stopped_polls_then_fail_move_the_run_and_keep_the_agents_reason(gql, keys, queue, member_user, admin_user):
    agent_id = register(gql, keys["admin"], queue)
    run = launch(queue, member_user)
    gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)
    assert data(gql(keys["admin"], ACK, itemId=run.run_id, runId=run.run_id))["ackRunQueueItem"]["success"] is True
    run.refresh_from_db()
    assert run.state == RunState.STARTING
    assert data(gql(keys["admin"], STOPPED, projectName="proj", entityName="ml", runId=run.run_id))["project"]["run"]["stopped"] is False
    run.refresh_from_db()
    assert run.state == RunState.RUNNING
    # the job never called wandb.init: W&B's agent then waits for it as `pending` before it reports
    assert data(gql(keys["admin"], STATE, project="proj", entity="ml", name=run.run_id))["project"]["run"]["state"] == "pending"
    result = gql(keys["admin"], FAIL, runQueueItemId=run.run_id, message="The submitted run was not successfully started", stage="run",
                 filePaths=[f"{run.run_id}/error/error.log"])
    assert data(result)["failRunQueueItem"]["success"] is True
    run.refresh_from_db()
    assert run.state == RunState.FAILED and "The submitted run was not successfully started" in run.failure_reason
    assert [e.state for e in run.events.order_by("at", "id")] == ["pending", "leased", "starting", "running", "failed"]


def test_only_whoever_acts_for_the_holding_agent_may_report_on_a_run(gql, keys, queue, member_user, team, admin_user):
    agent_id = register(gql, keys["admin"], queue)
    run = launch(queue, member_user)
    gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)
    assert code(gql(keys["member"], ACK, itemId=run.run_id, runId=run.run_id)) == "FORBIDDEN"
    assert code(gql(keys["member"], FAIL, runQueueItemId=run.run_id, message="x", stage="agent")) == "FORBIDDEN"
    _, other_token = Agent.issue(team, "other", created_by=admin_user)
    assert code(gql(other_token, ACK, itemId=run.run_id, runId=run.run_id)) == "FORBIDDEN"
    assert gql(keys["member"], STOPPED, projectName="proj", entityName="ml", runId=run.run_id)["data"]["project"]["run"]["stopped"] is False
    run.refresh_from_db()
    assert run.state == RunState.LEASED  # a member's poll keeps nothing going


def test_a_cancel_reaches_the_agent_and_its_job_ending_cancels_the_run(gql, keys, queue, member_user, admin_user):
    agent_id = register(gql, keys["admin"], queue)
    run = launch(queue, member_user)
    gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)
    gql(keys["admin"], ACK, itemId=run.run_id, runId=run.run_id)
    cancel(run, admin_user)
    assert data(gql(keys["admin"], STOPPED, projectName="proj", entityName="ml", runId=run.run_id))["project"]["run"]["stopped"] is True
    assert data(gql(keys["admin"], STATE, project="proj", entity="ml", name=run.run_id))["project"]["run"]["state"] == "failed"
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED


# --- files ------------------------------------------------------------------------------------------


def test_uploads_go_to_the_run_and_a_tampered_url_is_refused(gql, keys, queue, member_user, client):
    agent_id = register(gql, keys["admin"], queue)
    run = launch(queue, member_user)
    gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)
    urls = {f["name"]: f["uploadUrl"] for f in data(gql(keys["admin"], FILES, entity="ml", project="proj", run=run.run_id, files=["output.log"]))["createRunFiles"]["files"]}
    assert client.put(urls["output.log"], b"epoch 1\n", content_type="text/plain").status_code == 200
    assert bytes(RunFile.objects.get(run=run, name="output.log").content) == b"epoch 1\n"
    assert client.put(urls["output.log"][:-3] + "abc", b"x", content_type="text/plain").status_code == 403
    # the agent's own hidden run saves <run id>/error/error.log for a run it failed: it goes to that run
    hidden = data(gql(keys["admin"], FILES, entity="ml", project="model-registry", run="wandb-gpu-box",
                      files=[f"{run.run_id}/error/error.log", "output.log"]))["createRunFiles"]["files"]
    for f in hidden:
        client.put(f["uploadUrl"], b"Traceback: boom\n", content_type="text/plain")
    assert sorted(RunFile.objects.filter(run=run).values_list("name", flat=True)) == ["error/error.log", "output.log"]
    # someone else's file list for the run gets URLs that keep nothing
    for f in data(gql(keys["member"], FILES, entity="ml", project="proj", run=run.run_id, files=["evil.log"]))["createRunFiles"]["files"]:
        client.put(f["uploadUrl"], b"x", content_type="text/plain")
    assert not RunFile.objects.filter(name="evil.log").exists()


def test_a_file_stream_reports_output_and_the_jobs_end(gql, keys, queue, member_user, client):
    agent_id = register(gql, keys["admin"], queue)
    run = launch(queue, member_user)
    gql(keys["admin"], POP, entity="ml", project="model-registry", queueName="proc-queue", launchAgentId=agent_id)
    auth = {"Authorization": "Basic " + base64.b64encode(f"api:{keys['admin']}".encode()).decode()}
    url = f"/files/ml/proj/{run.run_id}/file_stream"
    lines = {"files": {"output.log": {"offset": 0, "content": ["2026-12-01T22:24:03.281883 epoch 0", "ERROR 2026-12-01T22:24:03.3 oops"]}}}
    assert client.post(url, json.dumps(lines), content_type="application/json", headers=auth).status_code == 200
    assert client.post(url, json.dumps(lines), content_type="application/json").status_code == 401
    assert client.post(url, "{nope", content_type="application/json", headers=auth).status_code == 400
    client.post(url, json.dumps({"complete": True, "exitcode": 2}), content_type="application/json", headers=auth)
    run.refresh_from_db()
    assert run.output == "epoch 0\noops\n"
    assert (run.state, run.exit_code) == (RunState.FAILED, 2)
