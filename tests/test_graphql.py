"""POST /graphql answering the `wandb` client's operations, with the request bodies the client sends.

The bodies in tests/graphql_fixtures/ were captured from wandb 0.31.0; each test
keeps the client's query text and puts its own team, queue and values in the
variables. The answer shapes are those of ../shared/wandb-push-protocol.md.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from launchq.guardrails import Field, FieldType, json_schema
from launchq.models import ApiToken, Priority, Run, RunState

FIXTURES = Path(__file__).parent / "graphql_fixtures"

SAGEMAKER = """\
RoleArn: arn:aws:iam:region:account-id:resource-type/resource-id
ResourceConfig:
  InstanceType: "{{aws_instance}}"
  InstanceCount: 1
builder:
  accelerator:
    base_image: tensorflow/tensorflow:latest-gpu
"""
AWS_INSTANCE = Field("aws_instance", FieldType.STRING, description="Instance type", allowed=("ml.m4.xlarge", "ml.p3.xlarge"))
GPUS = Field("gpus", FieldType.INTEGER, minimum=1, maximum=4, default=1)
LR = Field("lr", FieldType.FLOAT, minimum=0.0, maximum=1.0, default=0.1)


def spec(**changes) -> str:
    """A run spec as the client builds it for `--docker-image python:3.11 --entity ml --project proj`."""
    data = {"entity": "ml", "project": "proj", "docker": {"docker_image": "python:3.11"}, "resource": None, "git": {}, "overrides": {}}
    data.update(changes)
    return json.dumps(data)


def body(operation: str, **variables) -> dict:
    captured = json.loads((FIXTURES / f"{operation}.json").read_text())
    if "variables" in captured or variables:
        captured["variables"] = {**captured.get("variables", {}), **variables}
    return captured


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"api:{token}".encode()).decode()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """These tests log in with tokens, not passwords: skip the slow password hashing when making users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def sagemaker(make_queue, team, admin_user):
    return make_queue(team, "sagemaker-queue", SAGEMAKER, "yaml", (AWS_INSTANCE,), resource="sagemaker", user=admin_user)


@pytest.fixture
def proc(make_queue, team, admin_user):
    return make_queue(team, "proc-queue", "gpus: {{gpus}}\nlr: {{lr}}\n", "yaml", (GPUS, LR), resource="local-process", user=admin_user)


@pytest.fixture
def token(member_user) -> str:
    return ApiToken.issue(member_user, "wandb")[1]


@pytest.fixture
def ask(token):
    """POST a body to /graphql as the client does (Basic auth, JSON); returns (status, answer)."""
    client = Client(enforce_csrf_checks=True)

    def post(data, auth: str | None = None, raw: bytes | None = None):
        response = client.post(
            "/graphql", raw if raw is not None else json.dumps(data), content_type="application/json",
            headers={"Authorization": auth if auth is not None else basic(token)},
        )
        return response.status_code, response.json()

    return post


def answer(ask, operation: str, **variables) -> dict:
    status, result = ask(body(operation, **variables))
    assert status == 200
    return result


def refused(result: dict) -> dict:
    """The one error of a failed answer, checked for the shape the client reads: nothing answered beside it."""
    assert result["data"] is None or set(result["data"].values()) == {None}
    assert len(result["errors"]) == 1
    return result["errors"][0]


# --- Viewer, GetDefaultEntity ----------------------------------------------------


def test_viewer_is_the_token_owner_with_their_teams(ask, member_user):
    result = answer(ask, "Viewer")
    viewer = result["data"]["viewer"]
    assert set(viewer) == {"id", "entity", "username", "email", "flags", "teams"}
    assert viewer["username"] == "max"
    assert viewer["entity"] == "ml"  # the only team is the default entity
    assert viewer["teams"] == {"edges": [{"node": {"name": "ml"}}]}


def test_viewer_with_several_teams_defaults_to_the_username(ask, member_user, make_team, join):
    join(member_user, make_team("alpha"))
    viewer = answer(ask, "Viewer")["data"]["viewer"]
    assert viewer["entity"] == "max"
    assert [e["node"]["name"] for e in viewer["teams"]["edges"]] == ["alpha", "ml"]


def test_get_default_entity(ask, member_user):
    assert set(answer(ask, "GetDefaultEntity")["data"]["viewer"]) == {"id", "entity"}
    assert answer(ask, "GetDefaultEntity")["data"]["viewer"]["entity"] == "ml"


# --- GetRunQueueMetadata, GetDefaultResourceConfig ---------------------------------


def test_run_queue_metadata_has_all_five_keys_whatever_the_project_name(ask, sagemaker):
    result = answer(ask, "GetRunQueueMetadata", entityName="ml", runQueue="sagemaker-queue")
    assert body("GetRunQueueMetadata")["variables"]["projectName"] == "model-registry"
    queue = result["data"]["project"]["runQueue"]
    assert set(queue) == {"id", "access", "defaultResourceConfigID", "prioritizationMode", "externalLinks"}
    assert queue["access"] == "PROJECT"
    assert queue["prioritizationMode"] == "V0"
    assert isinstance(queue["id"], str) and isinstance(queue["defaultResourceConfigID"], str)
    links = json.loads(queue["externalLinks"])  # a JSONString is a string
    assert links["launchq"].endswith("/teams/ml/queues/sagemaker-queue/config/")


def test_unknown_queue_is_an_error_not_a_null_queue(ask, sagemaker):
    error = refused(answer(ask, "GetRunQueueMetadata", entityName="ml", runQueue="nope"))
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "'nope'" in error["message"] and "sagemaker-queue" in error["message"]


def test_outsiders_cannot_tell_a_team_exists(ask, sagemaker, outsider):
    token = ApiToken.issue(outsider, "x")[1]
    status, theirs = ask(body("GetRunQueueMetadata", entityName="ml", runQueue="sagemaker-queue"), auth=basic(token))
    status_none, nobody = ask(body("GetRunQueueMetadata", entityName="zzz", runQueue="sagemaker-queue"), auth=basic(token))
    assert status == status_none == 200
    assert refused(theirs)["message"] == refused(nobody)["message"].replace("'zzz'", "'ml'")
    assert "sagemaker-queue" not in refused(theirs)["message"]


def test_default_resource_config_lists_fields_as_json_schema_strings(ask, proc):
    metadata = answer(ask, "GetRunQueueMetadata", entityName="ml", runQueue="proc-queue")
    config_id = metadata["data"]["project"]["runQueue"]["defaultResourceConfigID"]
    result = answer(ask, "GetDefaultResourceConfig", entityName="ml", id=config_id)
    config = result["data"]["entity"]["defaultResourceConfig"]
    assert config["resource"] == "local-process"
    assert json.loads(config["config"]) == {"gpus": "{{gpus}}", "lr": "{{lr}}"}
    variables = config["templateVariables"]
    assert [v["name"] for v in variables] == ["gpus", "lr"]
    assert all(isinstance(v["schema"], str) for v in variables)
    assert json.loads(variables[0]["schema"]) == json_schema(GPUS) == {"type": "integer", "minimum": 1, "maximum": 4, "default": 1}
    assert json.loads(variables[1]["schema"])["type"] == "number"


def test_default_resource_config_string_field_has_its_allowed_values(ask, sagemaker):
    config_id = answer(ask, "GetRunQueueMetadata", entityName="ml", runQueue="sagemaker-queue")["data"]["project"]["runQueue"]["defaultResourceConfigID"]
    config = answer(ask, "GetDefaultResourceConfig", entityName="ml", id=config_id)["data"]["entity"]["defaultResourceConfig"]
    schema = json.loads(config["templateVariables"][0]["schema"])
    assert schema["type"] == "string" and schema["enum"] == ["ml.m4.xlarge", "ml.p3.xlarge"]
    assert json.loads(config["config"])["ResourceConfig"]["InstanceType"] == "{{aws_instance}}"


@pytest.mark.parametrize("config_id", ["bm9wZQ==", "not base64!", "UnVuUXVldWU6MQ=="])
def test_unknown_resource_config_id(ask, sagemaker, config_id):
    error = refused(answer(ask, "GetDefaultResourceConfig", entityName="ml", id=config_id))
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_resource_config_of_another_team_is_not_found(ask, make_team, make_queue, sagemaker, token):
    other = make_queue(make_team("other"), "secret-queue")
    from launchq.graphql.resolvers import global_id

    error = refused(answer(ask, "GetDefaultResourceConfig", entityName="ml", id=global_id("DefaultResourceConfig", other.pk)))
    assert error["extensions"]["code"] == "NOT_FOUND"


# --- pushToRunQueueByName ---------------------------------------------------------


def test_push_enqueues_the_run_with_its_values(ask, sagemaker, member_user):
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(),
        templateVariableValues=json.dumps({"aws_instance": "ml.p3.xlarge"}),
    )
    payload = result["data"]["pushToRunQueueByName"]
    run = Run.objects.get()
    assert payload["runQueueItemId"] == run.run_id
    assert (run.queue, run.project.name, run.launched_by) == (sagemaker, "proj", member_user)
    assert run.values == {"aws_instance": "ml.p3.xlarge"}
    assert run.job == {"image": "python:3.11"}
    assert run.priority == Priority.MEDIUM and run.state == RunState.PENDING
    assert "via wandb" in run.events.get().message
    enqueued = json.loads(payload["runSpec"])  # a JSON string, as the client expects
    assert enqueued["resource"] == "sagemaker"
    assert enqueued["resource_args"]["sagemaker"]["ResourceConfig"]["InstanceType"] == "ml.p3.xlarge"
    assert "builder" not in enqueued["resource_args"]["sagemaker"]


def test_push_with_priority(ask, sagemaker):
    result = answer(
        ask, "pushToRunQueueByName_priority", entityName="ml", queueName="sagemaker-queue", runSpec=spec(),
        templateVariableValues=json.dumps({"aws_instance": "ml.m4.xlarge"}), priority=Priority.HIGH,
    )
    assert Run.objects.get(run_id=result["data"]["pushToRunQueueByName"]["runQueueItemId"]).priority == Priority.HIGH


@pytest.mark.parametrize(
    ("values", "code", "field", "bound"),
    [
        ({"aws_instance": "ml.p4d.24xlarge"}, "not_allowed", "aws_instance", ["ml.m4.xlarge", "ml.p3.xlarge"]),
        ({"aws_instance": "ml.m4.xlarge", "gpus": 2}, "unknown_field", "gpus", ["aws_instance"]),
        ({"aws_instance": 3}, "type", "aws_instance", None),
        ({}, "required", "aws_instance", None),
    ],
)
def test_push_outside_the_guardrails_is_refused_and_enqueues_nothing(ask, sagemaker, values, code, field, bound):
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(), templateVariableValues=json.dumps(values)
    )
    error = refused(result)
    assert error["extensions"]["code"] == "LAUNCH_REFUSED"
    problem = error["extensions"]["problems"][0]
    assert (problem["code"], problem["field"], problem.get("bound")) == (code, field, bound)
    assert problem["message"] in error["message"]  # the client prints the message: it names field, rule and bound
    assert error["message"].startswith("Queue ml/sagemaker-queue refused the run")
    assert not Run.objects.exists()


def test_push_without_template_values_uses_defaults(ask, proc):
    result = answer(
        ask, "pushToRunQueueByName_no_values", entityName="ml", queueName="proc-queue",
        runSpec=spec(overrides={"entry_point": ["python", "train.py"]}),
    )
    assert Run.objects.get(run_id=result["data"]["pushToRunQueueByName"]["runQueueItemId"]).values == {"gpus": 1, "lr": 0.1}


def test_integer_out_of_range_names_the_bound(ask, proc):
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="proc-queue",
        runSpec=spec(overrides={"entry_point": ["python", "train.py"]}), templateVariableValues=json.dumps({"gpus": 9}),
    )
    problem = refused(result)["extensions"]["problems"][0]
    assert (problem["code"], problem["bound"], problem["value"]) == ("maximum", 4, 9)
    assert not Run.objects.exists()


def test_local_process_queue_runs_the_entry_point_with_args(ask, proc):
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="proc-queue",
        runSpec=spec(name="sweep-1", overrides={"entry_point": ["python", "train.py"], "args": ["--note", "two words"]}),
        templateVariableValues=json.dumps({"gpus": 2, "lr": 0.5}),
    )
    run = Run.objects.get(run_id=result["data"]["pushToRunQueueByName"]["runQueueItemId"])
    assert run.job == {"command": "python train.py --note 'two words'"}  # the image is not used by a local process
    assert run.name == "sweep-1"
    assert run.values == {"gpus": 2, "lr": 0.5}


def test_local_process_queue_without_an_entry_point_says_how_to_give_one(ask, proc):
    error = refused(answer(ask, "pushToRunQueueByName", entityName="ml", queueName="proc-queue", runSpec=spec(), templateVariableValues="{}"))
    assert error["extensions"]["problems"][0]["field"] == "command"
    assert "--entry-point" in error["message"]


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"project": "elsewhere"}, "project", "unknown_project"),
        ({"entity": "other"}, "entity", "other_team"),
        ({"resource": "kubernetes"}, "resource", "other_resource"),
        ({"resource_args": {"sagemaker": {"InstanceType": "ml.p4d.24xlarge"}}}, "resource_args", "unsupported"),
        ({"overrides": {"run_config": {"lr": 1}}}, "overrides.run_config", "unsupported"),
        ({"job": "ml/proj/job:latest", "docker": {}}, "job", "unsupported"),
        ({"docker": {"docker_image": "Not An Image!"}}, "image", "invalid_image"),
        ({"overrides": {"entry_point": "python train.py", "args": "--x"}}, "overrides.args", "type"),
    ],
)
def test_run_spec_problems_are_refused(ask, sagemaker, changes, field, code):
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(**changes),
        templateVariableValues=json.dumps({"aws_instance": "ml.p3.xlarge"}),
    )
    problems = refused(result)["extensions"]["problems"]
    assert [(p["field"], p["code"]) for p in problems] == [(field, code)]
    assert not Run.objects.exists()


def test_bad_priority_is_refused(ask, sagemaker):
    result = answer(
        ask, "pushToRunQueueByName_priority", entityName="ml", queueName="sagemaker-queue", runSpec=spec(),
        templateVariableValues=json.dumps({"aws_instance": "ml.p3.xlarge"}), priority=7,
    )
    assert refused(result)["extensions"]["problems"][0]["field"] == "priority"
    assert not Run.objects.exists()


def test_template_values_must_be_an_object(ask, sagemaker):
    result = answer(ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(), templateVariableValues="[1]")
    assert refused(result)["extensions"]["code"] == "BAD_USER_INPUT"


def test_run_spec_must_be_a_json_string(ask, sagemaker):
    result = answer(ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec="{not json")
    assert "JSONString" in refused(result)["message"]
    result = answer(ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec={"entity": "ml"})
    assert "JSONString" in refused(result)["message"]
    assert not Run.objects.exists()


def test_outsider_cannot_push(ask, sagemaker, outsider):
    token = ApiToken.issue(outsider, "x")[1]
    status, result = ask(
        body("pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(), templateVariableValues='{"aws_instance": "ml.p3.xlarge"}'),
        auth=basic(token),
    )
    assert status == 200 and refused(result)["extensions"]["code"] == "NOT_FOUND"
    assert not Run.objects.exists()


# --- the fallback pair: ProjectRunQueues, pushToRunQueue ------------------------------


def test_project_run_queues_lists_the_team_queues(ask, sagemaker, proc, make_team, make_queue):
    make_queue(make_team("other"), "secret-queue")
    queues = answer(ask, "ProjectRunQueues", entity="ml")["data"]["project"]["runQueues"]
    assert [(q["name"], q["access"], q["createdBy"]) for q in queues] == [("proc-queue", "PROJECT", "ada"), ("sagemaker-queue", "PROJECT", "ada")]


def test_push_to_run_queue_by_id(ask, sagemaker):
    queue_id = next(q["id"] for q in answer(ask, "ProjectRunQueues", entity="ml")["data"]["project"]["runQueues"] if q["name"] == "sagemaker-queue")
    result = answer(ask, "pushToRunQueue", queueID=queue_id, runSpec=spec(), templateVariableValues='{"aws_instance": "ml.m4.xlarge"}')
    assert set(result["data"]["pushToRunQueue"]) == {"runQueueItemId"}
    assert Run.objects.get(run_id=result["data"]["pushToRunQueue"]["runQueueItemId"]).values == {"aws_instance": "ml.m4.xlarge"}

    error = refused(answer(ask, "pushToRunQueue", queueID=queue_id, runSpec=spec(), templateVariableValues='{"aws_instance": "ml.p4d.24xlarge"}'))
    assert error["extensions"]["problems"][0]["code"] == "not_allowed"
    assert Run.objects.count() == 1


def test_push_to_run_queue_of_another_team_is_not_found(ask, make_team, make_queue, sagemaker):
    from launchq.graphql.resolvers import global_id

    other = make_queue(make_team("other"), "secret-queue", resource="local-container")
    for queue_id in (global_id("RunQueue", other.pk), "garbage"):
        error = refused(answer(ask, "pushToRunQueue", queueID=queue_id, runSpec=spec()))
        assert error["extensions"]["code"] == "NOT_FOUND"
    assert not Run.objects.exists()


# --- authentication ------------------------------------------------------------------


def test_no_api_key_is_401(ask, db):
    status, result = ask(body("Viewer"), auth="")
    assert status == 401
    assert refused(result)["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("auth", ["Basic " + base64.b64encode(b"api:lq_nottoken").decode(), "Basic !!!", "Token abc", basic("")])
def test_unknown_api_key_is_401(ask, db, auth):
    status, result = ask(body("Viewer"), auth=auth)
    assert status == 401
    assert "Invalid API key" in refused(result)["message"]


def test_revoked_token_is_401(ask, member_user):
    token_obj, token = ApiToken.issue(member_user, "old")
    assert ask(body("Viewer"), auth=basic(token))[0] == 200
    token_obj.revoked_at = timezone.now()
    token_obj.save()
    status, result = ask(body("Viewer"), auth=basic(token))
    assert status == 401 and refused(result)["extensions"]["code"] == "UNAUTHENTICATED"


def test_inactive_user_is_401(ask, member_user, token):
    member_user.is_active = False
    member_user.save()
    assert ask(body("Viewer"))[0] == 401


def test_bearer_token_works_too(ask, token):
    assert ask(body("Viewer"), auth=f"Bearer {token}")[0] == 200


def test_api_tokens_are_accepted_by_the_wandb_client_key_check(member_user):
    """The client refuses keys whose part after the first '-' is under 40 characters."""
    from wandb.sdk.lib.wbauth.validation import check_api_key

    for _ in range(50):
        assert check_api_key(ApiToken.issue(member_user, "t")[1]) is None


# --- what launchq does not answer --------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        'query Runs { project(name: "proj", entityName: "ml") { runs(first: 5) { edges { node { name } } } } }',
        'mutation { createArtifact(input: {artifactTypeName: "model"}) { artifact { id } } }',
        "query { models { edges { node { name } } } }",
    ],
)
def test_unsupported_operations_are_graphql_errors(ask, db, token, query):
    status, result = ask({"query": query, "variables": {}, "operationName": ""})
    assert status == 200
    error = refused(result)
    assert error["message"].startswith("Cannot query field") and "wandb launch" in error["message"]


def test_syntax_error_is_a_graphql_error(ask, db, token):
    status, result = ask({"query": "query { viewer { id }", "operationName": ""})
    assert status == 200
    assert "Syntax Error" in refused(result)["message"]
    assert refused(result)["locations"]


def test_query_too_long_is_refused(ask, db, token):
    status, result = ask({"query": "query { " + "viewer { id } " * 1000 + "}"})
    assert status == 200 and "tokens" in refused(result)["message"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "must be JSON"),
        (b"[]", "one JSON object"),
        (b'{"variables": {}}', '"query"'),
        (b'{"query": ""}', '"query"'),
        (b'{"query": "{ viewer { id } }", "variables": [1]}', '"variables"'),
        (b'{"query": "{ viewer { id } }", "operationName": 3}', '"operationName"'),
        (b"\xff\xfe", "must be JSON"),
    ],
)
def test_malformed_bodies_are_400_with_a_message(ask, db, token, raw, words):
    status, result = ask(None, raw=raw)
    assert status == 400
    assert words in refused(result)["message"]


def test_get_is_405(client, db):
    response = client.get("/graphql")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["errors"][0]["message"]


def test_telemetry_probe_is_404(client, db):
    assert client.post("/sdk/otel/v1/metrics", b"", content_type="application/x-protobuf").status_code == 404


def test_a_failing_resolver_is_an_error_not_a_500(ask, sagemaker, monkeypatch):
    import launchq.graphql.resolvers as resolvers

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(resolvers, "render_data", broken)
    config_id = answer(ask, "GetRunQueueMetadata", entityName="ml", runQueue="sagemaker-queue")["data"]["project"]["runQueue"]["defaultResourceConfigID"]
    error = refused(answer(ask, "GetDefaultResourceConfig", entityName="ml", id=config_id))
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret internals" not in error["message"]


def test_push_with_a_value_given_twice_is_refused_and_enqueues_nothing(ask, sagemaker):
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(),
        templateVariableValues='{"aws_instance": "ml.m4.xlarge", "aws_instance": "ml.p4d.24xlarge"}',
    )
    assert "given twice" in refused(result)["message"]
    assert not Run.objects.exists()


# --- waiting on runs: QueuedRun, api.queued_run, api.run_queue(...).items ------------------

ITEM = """query GetRunQueueItem($projectName: String!, $entityName: String!, $runQueue: String!, $itemId: ID!) {
  project(name: $projectName, entityName: $entityName) { runQueue(name: $runQueue) { runQueueItem(id: $itemId) { id state associatedRunId } } }
}"""
ITEMS = """query GetRunQueueItems($projectName: String!, $entityName: String!, $runQueue: String!) {
  project(name: $projectName, entityName: $entityName) { runQueue(name: $runQueue) { runQueueItems(first: 100) { edges { node { id } } } } }
}"""
RUN = """query Run($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { id name displayName state config projectId user { username } } }
}"""
DELETE = """mutation DeleteFromRunQueue($queueID: ID!, $runQueueItemId: ID!) {
  deleteFromRunQueue(input: {queueID: $queueID, runQueueItemId: $runQueueItemId}) { success clientMutationId }
}"""


def run_on(queue, user, **values):
    from launchq.runs import launch_run

    job = {"image": "python:3.11"} if queue.runs_in_containers else {"command": "python train.py"}
    return launch_run(queue, user, values or {"gpus": 2}, project="proj", job=job)


def item(ask, queue, run_id, project="model-registry"):
    variables = {"projectName": project, "entityName": "ml", "runQueue": queue.name, "itemId": run_id}
    return ask({"query": ITEM, "variables": variables, "operationName": ""})[1]


def test_run_queue_item_follows_the_run_and_names_its_run_once_taken(ask, proc, member_user, team, admin_user):
    from launchq.models import Agent
    from launchq.queueing import pop, report_state

    run = run_on(proc, member_user)
    node = item(ask, proc, run.run_id)["data"]["project"]["runQueue"]["runQueueItem"]
    assert node == {"id": run.run_id, "state": "PENDING", "associatedRunId": None}
    agent, _ = Agent.issue(team, "box", created_by=admin_user)
    agent.queues.add(proc)
    pop(agent)
    report_state(agent, run.run_id, "running")
    node = item(ask, proc, run.run_id, project=None)["data"]["project"]["runQueue"]["runQueueItem"]  # the client may send null
    assert node == {"id": run.run_id, "state": "RUNNING", "associatedRunId": run.run_id}
    found = ask({"query": RUN, "variables": {"project": "proj", "entity": "ml", "name": run.run_id}, "operationName": ""})[1]
    node = found["data"]["project"]["run"]
    assert json.loads(node.pop("config")) == {"gpus": {"value": 2, "desc": None}, "lr": {"value": 0.1, "desc": None}}
    assert node == {
        "id": node["id"], "name": run.run_id, "displayName": run.name, "state": "running",
        "projectId": run.project_id, "user": {"username": "max"},
    }


def test_unknown_run_queue_item_and_run_are_null(ask, proc):
    assert item(ask, proc, "nope")["data"]["project"]["runQueue"]["runQueueItem"] is None
    found = ask({"query": RUN, "variables": {"project": "proj", "entity": "ml", "name": "nope"}, "operationName": ""})[1]
    assert found == {"data": {"project": {"run": None}}}


def test_run_queue_items_are_the_queue_runs_newest_first(ask, proc, sagemaker, member_user):
    runs = [run_on(proc, member_user) for _ in range(3)]
    run_on(sagemaker, member_user, aws_instance="ml.m4.xlarge")  # another queue's run is not listed
    variables = {"projectName": "model-registry", "entityName": "ml", "runQueue": "proc-queue"}
    edges = ask({"query": ITEMS, "variables": variables, "operationName": ""})[1]["data"]["project"]["runQueue"]["runQueueItems"]["edges"]
    assert [e["node"]["id"] for e in edges] == [r.run_id for r in reversed(runs)]


def test_outsiders_cannot_read_a_team_run(ask, proc, member_user, outsider):
    run = run_on(proc, member_user)
    token = ApiToken.issue(outsider, "x")[1]
    status, result = ask({"query": RUN, "variables": {"project": "proj", "entity": "ml", "name": run.run_id}, "operationName": ""}, auth=basic(token))
    assert status == 200 and refused(result)["extensions"]["code"] == "NOT_FOUND"


def test_a_cancelled_run_reads_failed_as_a_run_so_waiting_scripts_return(ask, proc, member_user):
    from launchq.runs import cancel

    run = cancel(run_on(proc, member_user), member_user)
    assert item(ask, proc, run.run_id)["data"]["project"]["runQueue"]["runQueueItem"]["state"] == "CANCELLED"
    found = ask({"query": RUN, "variables": {"project": "x", "entity": "ml", "name": run.run_id}, "operationName": ""})[1]
    assert found["data"]["project"]["run"]["state"] == "failed"


@pytest.mark.parametrize(("who", "take", "code"), [("admin", False, None), ("admin", True, "NOT_PENDING"), ("other", False, "FORBIDDEN")])
def test_delete_from_run_queue_cancels_a_pending_run_under_the_cancel_rule(ask, proc, member_user, admin_user, team, who, take, code):
    from launchq.graphql.resolvers import global_id
    from launchq.models import Agent
    from launchq.queueing import pop

    run = run_on(proc, member_user if who == "admin" else admin_user)
    if take:
        agent, _ = Agent.issue(team, "box", created_by=admin_user)
        agent.queues.add(proc)
        pop(agent)
    variables = {"queueID": global_id("RunQueue", proc.pk), "runQueueItemId": run.run_id}
    result = ask({"query": DELETE, "variables": variables, "operationName": ""})[1]
    run.refresh_from_db()
    if code is None:
        assert result == {"data": {"deleteFromRunQueue": {"success": True, "clientMutationId": None}}}
        assert run.state == RunState.CANCELLED
    else:
        assert refused(result)["extensions"]["code"] == code
        assert run.state == (RunState.LEASED if take else RunState.PENDING)


def test_get_viewer_has_the_user_fragment(ask, member_user, token):
    from wandb.apis._generated import GET_VIEWER_GQL, GetViewer

    status, result = ask({"query": GET_VIEWER_GQL, "operationName": "GetViewer"})
    viewer = GetViewer.model_validate(result["data"]).viewer  # the client's own parser
    assert (viewer.username, viewer.entity, viewer.name) == ("max", "ml", "max")
    assert [edge.node.name for edge in viewer.api_keys.edges] == ["wandb"]
    assert token not in json.dumps(result)  # names and first characters only


# --- one push per request, and what a push that came again gets ------------------

PUSH = 'push{n}: pushToRunQueueByName(input: {{entityName: "ml", projectName: "proj", queueName: "sagemaker-queue", runSpec: {spec}, templateVariableValues: {values}}}) {{ runQueueItemId }}'


def push_field(n: int, instance: str) -> str:
    return PUSH.format(n=n, spec=json.dumps(spec()), values=json.dumps(json.dumps({"aws_instance": instance})))


@pytest.mark.parametrize(
    "query",
    [
        # the audit's request: one valid push and one refused
        "mutation { %s %s }" % (push_field(1, "ml.m4.xlarge"), push_field(2, "ml.p4d.24xlarge")),
        # sixty valid ones
        "mutation { %s }" % " ".join(push_field(n, "ml.m4.xlarge") for n in range(60)),
        # hidden in fragments, and by id
        "mutation { ...A ... on Mutation { %s } } fragment A on Mutation { %s }" % (push_field(1, "ml.m4.xlarge"), push_field(2, "ml.p3.xlarge")),
        'mutation { %s byId: pushToRunQueue(input: {queueID: "x", runSpec: "{}"}) { runQueueItemId } }' % push_field(1, "ml.m4.xlarge"),
    ],
    ids=["valid-and-refused", "sixty", "fragments", "by-name-and-by-id"],
)
def test_a_request_with_several_pushes_is_refused_before_anything_is_enqueued(ask, sagemaker, query):
    status, result = ask({"query": query})

    assert status == 200
    assert result["data"] is None
    assert [e["extensions"]["code"] for e in result["errors"]] == ["ONE_PUSH_PER_REQUEST"]
    assert not Run.objects.exists()


def test_a_push_and_a_fragment_spread_twice_is_one_push(ask, sagemaker):
    query = "mutation { ...A ...A } fragment A on Mutation { %s }" % push_field(1, "ml.m4.xlarge")

    status, result = ask({"query": query})

    assert status == 200 and "errors" not in result, result
    assert result["data"]["push1"]["runQueueItemId"] == Run.objects.get().run_id


def test_a_push_that_failed_after_enqueueing_says_what_was_enqueued(ask, sagemaker, monkeypatch):
    """The answer names the run that was enqueued beside the error, instead of `data: null`."""
    import launchq.graphql.schema as schema

    def broken(value):
        raise RuntimeError("cannot write the run spec")

    monkeypatch.setattr(schema.SCHEMA.type_map["JSONString"], "coerce_output_value", broken)
    result = answer(
        ask, "pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(),
        templateVariableValues=json.dumps({"aws_instance": "ml.m4.xlarge"}),
    )

    assert result["data"]["pushToRunQueueByName"]["runQueueItemId"] == Run.objects.get().run_id
    assert result["data"]["pushToRunQueueByName"]["runSpec"] is None
    assert [e["extensions"]["code"] for e in result["errors"]] == ["INTERNAL_SERVER_ERROR"]


def test_the_same_push_again_is_taken_as_the_clients_retry(ask, sagemaker, settings):
    """The wandb client sends no idempotency key and sends a push again when its answer is lost."""
    push = {"entityName": "ml", "queueName": "sagemaker-queue", "runSpec": spec(), "templateVariableValues": json.dumps({"aws_instance": "ml.m4.xlarge"})}

    first = answer(ask, "pushToRunQueueByName", **push)["data"]["pushToRunQueueByName"]["runQueueItemId"]
    again = answer(ask, "pushToRunQueueByName", **push)["data"]["pushToRunQueueByName"]["runQueueItemId"]
    queue_id = answer(ask, "GetRunQueueMetadata", entityName="ml", runQueue="sagemaker-queue")["data"]["project"]["runQueue"]["id"]
    fallback = answer(ask, "pushToRunQueue", queueID=queue_id, runSpec=push["runSpec"], templateVariableValues=push["templateVariableValues"])
    named = answer(ask, "pushToRunQueueByName", **{**push, "runSpec": spec(name="seed-2")})["data"]["pushToRunQueueByName"]["runQueueItemId"]

    assert again == first == fallback["data"]["pushToRunQueue"]["runQueueItemId"]
    assert named != first
    assert Run.objects.count() == 2
    assert "taken as the client's retry" in Run.objects.get(run_id=first).events.last().message

    settings.LAUNCHQ_WANDB_REPLAY_SECONDS = 0
    assert answer(ask, "pushToRunQueueByName", **push)["data"]["pushToRunQueueByName"]["runQueueItemId"] != first


def test_the_same_push_after_the_window_is_a_new_run(ask, sagemaker):
    from launchq.models import IdempotencyKey

    push = {"entityName": "ml", "queueName": "sagemaker-queue", "runSpec": spec(), "templateVariableValues": json.dumps({"aws_instance": "ml.m4.xlarge"})}
    first = answer(ask, "pushToRunQueueByName", **push)["data"]["pushToRunQueueByName"]["runQueueItemId"]
    key = IdempotencyKey.objects.get()
    assert key.expires_at - key.created_at == timezone.timedelta(seconds=60)
    IdempotencyKey.objects.update(expires_at=timezone.now())

    assert answer(ask, "pushToRunQueueByName", **push)["data"]["pushToRunQueueByName"]["runQueueItemId"] != first


def test_a_graphql_client_may_send_an_idempotency_key(token, sagemaker):
    client = Client()
    push = body("pushToRunQueueByName", entityName="ml", queueName="sagemaker-queue", runSpec=spec(),
                templateVariableValues=json.dumps({"aws_instance": "ml.m4.xlarge"}))

    def send(data, key):
        return client.post("/graphql", json.dumps(data), content_type="application/json",
                           headers={"Authorization": basic(token), "Idempotency-Key": key}).json()

    first = send(push, "k-1")["data"]["pushToRunQueueByName"]["runQueueItemId"]
    other = send({**push, "variables": {**push["variables"], "templateVariableValues": json.dumps({"aws_instance": "ml.p3.xlarge"})}}, "k-1")

    assert send(push, "k-1")["data"]["pushToRunQueueByName"]["runQueueItemId"] == first
    assert refused(other)["extensions"]["problems"][0]["code"] == "idempotency_key_reused"
    assert Run.objects.count() == 1


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        (b'{"query": "{ viewer { username } }"}', "text/plain", 415),
        ('{"query": "{ viewer { username } }"}'.encode("utf-16"), "application/json", 400),
        (b'\xef\xbb\xbf{"query": "{ viewer { username } }"}', "application/json", 400),
    ],
)
def test_graphql_reads_json_in_utf8_only(token, raw, content_type, status):
    response = Client().generic("POST", "/graphql", raw, content_type=content_type, headers={"Authorization": basic(token)})
    assert response.status_code == status
    assert response.json()["data"] is None and response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
