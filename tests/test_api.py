"""The JSON API: launching within the guardrails, reading runs and queues, and who may do what."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from launchq.guardrails import Field, FieldType
from launchq.models import ApiToken, ConfigVersion, Queue, Run, RunState
from launchq.runs import launch_run, move

CONFIG = """\
resource_args:
  instance: "{{aws_instance}}"
  gpus: {{gpus}}
  learning_rate: {{lr}}
  output: s3://results/{{bucket}}/out
  run: ${run_id}
"""

FIELDS = (
    Field("aws_instance", FieldType.STRING, "The instance type.", allowed=("ml.m4.xlarge", "ml.p3.xlarge")),
    Field("gpus", FieldType.INTEGER, "GPUs per node.", default=1, minimum=1, maximum=4),
    Field("lr", FieldType.FLOAT, "Learning rate.", default=0.1, minimum=0.0, maximum=1.0),
    Field("bucket", FieldType.STRING, default="scratch", pattern="[a-z0-9-]+", max_length=20),
)

GOOD = {"aws_instance": "ml.p3.xlarge", "gpus": "3", "lr": "0.25", "bucket": "team-a"}
JOB = {"command": "python train.py"}


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    """Users here log in with tokens; hashing their passwords slowly only slows the tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queue(make_queue, team, admin_user):
    return make_queue(team, "train", CONFIG, "yaml", FIELDS, user=admin_user)


@pytest.fixture
def bearer():
    def headers(user):
        _, token = ApiToken.issue(user, "tests")
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def member_api(client, member_user, bearer):
    return _Api(client, bearer(member_user))


@pytest.fixture
def admin_api(client, admin_user, bearer):
    return _Api(client, bearer(admin_user))


@pytest.fixture
def outsider_api(client, outsider, bearer):
    return _Api(client, bearer(outsider))


class _Api:
    """The test client with a token, speaking JSON."""

    def __init__(self, client, headers):
        self.client = client
        self.headers = headers

    def get(self, path, **query):
        return self.client.get(f"/api{path}", query, headers=self.headers)

    def post(self, path, body=None, raw: str | None = None):
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(f"/api{path}", data, content_type="application/json", headers=self.headers)

    def launch(self, values=None, **body):
        body.setdefault("job", JOB)
        return self.post("/teams/ml/queues/train/runs", {"template_variables": GOOD if values is None else values, **body})


# --- launching ---------------------------------------------------------------


def test_launch_creates_a_pending_run_with_typed_values(member_api, member_user, queue):
    response = member_api.launch(project="proj", name="first try", priority="high")

    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get()
    assert body["run_id"] == run.run_id
    assert body["state"] == "pending"
    assert body["name"] == "first try"
    assert body["values"] == {"aws_instance": "ml.p3.xlarge", "gpus": 3, "lr": 0.25, "bucket": "team-a"}
    assert body["priority"] == "high"
    assert body["project"] == "proj"
    assert body["launched_by"] == "max"
    assert body["config_version"] == queue.current_version.number
    assert "gpus: 3\n" in body["rendered_config"]
    assert "${run_id}" in body["rendered_config"]  # the agent fills macros, not the launch
    assert body["job"] == JOB
    assert run.launched_by == member_user and run.values["gpus"] == 3
    assert [e["message"] for e in body["events"]] == ["Launched by max via api."]
    assert member_api.client.get(body["links"]["self"], headers=member_api.headers).json()["run_id"] == run.run_id


def test_launch_takes_defaults_numbers_and_the_only_project(member_api, queue):
    response = member_api.launch({"aws_instance": "ml.m4.xlarge", "gpus": 2, "lr": 1})

    assert response.status_code == 201, response.content
    assert response.json()["values"] == {"aws_instance": "ml.m4.xlarge", "gpus": 2, "lr": 1.0, "bucket": "scratch"}
    assert response.json()["project"] == "proj"
    assert response.json()["name"]  # a readable one was made up


@pytest.mark.parametrize(
    "changes, field, code, bound",
    [
        ({"aws_instance": None}, "aws_instance", "required", None),
        ({"aws_instance": "   "}, "aws_instance", "required", None),
        ({"aws_instance": "ml.x"}, "aws_instance", "not_allowed", ["ml.m4.xlarge", "ml.p3.xlarge"]),
        ({"aws_instance": 3}, "aws_instance", "type", None),
        ({"gpus": "two"}, "gpus", "type", None),
        ({"gpus": 2.5}, "gpus", "type", None),
        ({"gpus": True}, "gpus", "type", None),
        ({"gpus": [2]}, "gpus", "type", None),
        ({"gpus": "0"}, "gpus", "minimum", 1),
        ({"gpus": 5}, "gpus", "maximum", 4),
        ({"lr": "-0.5"}, "lr", "minimum", 0.0),
        ({"lr": 1.5}, "lr", "maximum", 1.0),
        ({"lr": "1e999"}, "lr", "not_finite", None),
        ({"bucket": "Team_A"}, "bucket", "pattern", "[a-z0-9-]+"),
        ({"bucket": "a" * 21}, "bucket", "max_length", 20),
        ({"extra": "1"}, "extra", "unknown_field", ["aws_instance", "bucket", "gpus", "lr"]),
    ],
)
def test_launch_refuses_values_outside_the_guardrails(member_api, queue, changes, field, code, bound):
    values = {**GOOD, **changes}
    values = {k: v for k, v in values.items() if v is not None}

    response = member_api.launch(values)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, code)]
    assert errors[0]["message"]
    assert errors[0].get("bound") == bound
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"project": "nope"}, "project", "unknown_project"),
        ({"job": {}}, "command", "required"),
        ({"name": "x" * 129}, "name", "max_length"),
        ({"priority": "urgent"}, "priority", "invalid"),
    ],
)
def test_launch_refuses_a_bad_project_job_name_or_priority(member_api, queue, body, field, code):
    response = member_api.launch(**body)

    assert response.status_code == 400, response.content
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]
    assert not Run.objects.exists()


def test_launch_reports_every_problem_at_once(member_api, queue):
    response = member_api.launch({"aws_instance": "ml.x", "gpus": "9", "nope": "1"}, project="nope")

    assert response.status_code == 400
    found = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert found == {("project", "unknown_project"), ("aws_instance", "not_allowed"), ("gpus", "maximum"), ("nope", "unknown_field")}


@pytest.mark.parametrize(
    "field, text, code",
    [
        ("gpus", "٣", "type"),  # Arabic-Indic digit three
        ("gpus", "３", "type"),  # full-width digit three
        ("gpus", "1_000", "type"),
        ("gpus", "0x10", "type"),
        ("gpus", "1e2", "type"),
        ("gpus", "2.0", "type"),
        ("gpus", "NaN", "not_finite"),
        ("gpus", "inf", "not_finite"),
        ("gpus", "1e999", "type"),
        ("lr", "٠.٥", "type"),
        ("lr", "0_5", "type"),
        ("lr", "0x1", "type"),
        ("lr", "NaN", "not_finite"),
        ("lr", "nan", "not_finite"),
        ("lr", "inf", "not_finite"),
        ("lr", "-Infinity", "not_finite"),
        ("lr", "1e999", "not_finite"),
    ],
)
def test_launch_refuses_numbers_not_written_in_plain_ascii_decimals(member_api, queue, field, text, code):
    response = member_api.launch({**GOOD, field: text})

    assert response.status_code == 400, response.content
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]
    assert not Run.objects.exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_launch_refuses_non_finite_json_numbers_and_answers_strict_json(member_api, queue, literal):
    raw = json.dumps({"template_variables": {**GOOD, "lr": "@"}, "job": JOB}).replace('"@"', literal)

    response = member_api.post("/teams/ml/queues/train/runs", raw=raw)

    assert response.status_code == 400
    errors = json.loads(response.content, parse_constant=_refuse_constant)["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("lr", "not_finite")]
    assert not Run.objects.exists()


def test_a_nan_for_a_string_field_comes_back_as_strict_json(member_api, queue):
    raw = json.dumps({"template_variables": {**GOOD, "aws_instance": "@"}, "job": JOB}).replace('"@"', "NaN")

    response = member_api.post("/teams/ml/queues/train/runs", raw=raw)

    assert response.status_code == 400
    errors = json.loads(response.content, parse_constant=_refuse_constant)["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("aws_instance", "type")]


def test_a_number_of_thousands_of_digits_is_refused_in_plain_words(member_api, queue):
    response = member_api.post("/teams/ml/queues/train/runs", raw='{"template_variables": {"gpus": ' + "9" * 5000 + "}}")

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == "invalid_json"
    assert "more digits than any value accepts" in error["message"] and "sys." not in error["message"]


@pytest.mark.parametrize("value, shown", [(True, "(got true)"), (False, "(got false)"), ([2], "(got [2])"), ({"n": 2}, '(got {"n": 2})')])
def test_a_json_value_of_the_wrong_kind_is_named_as_json_writes_it(member_api, queue, value, shown):
    response = member_api.launch({**GOOD, "gpus": value})

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "gpus" and shown in error["message"]
    assert "bool" not in error["message"] and "dict" not in error["message"]


@pytest.mark.parametrize(
    "raw, status, field, code",
    [
        ("this is not json", 400, "", "invalid_json"),
        ('{"template_variables": ', 400, "", "invalid_json"),
        ('{"template_variables": {"gpus": 1, "gpus": 9}}', 400, "", "invalid_json"),
        ("", 422, "", "missing"),
        ("[1, 2]", 422, "", "model_attributes_type"),
        ('"launch"', 422, "", "model_attributes_type"),
        ('{"template_variables": [1]}', 422, "template_variables", "dict_type"),
        ('{"template_vars": {"gpus": 2}}', 422, "template_vars", "extra_forbidden"),
        ('{"job": {"img": "x"}}', 422, "job.img", "extra_forbidden"),
        ('{"job": "python train.py"}', 422, "job", "model_attributes_type"),
        ('{"project": 5}', 422, "project", "string_type"),
    ],
)
def test_malformed_bodies_get_clear_errors_not_500(member_api, queue, raw, status, field, code):
    response = member_api.post("/teams/ml/queues/train/runs", raw=raw)

    assert response.status_code == status, response.content
    errors = response.json()["errors"]
    assert (errors[0]["field"], errors[0]["code"]) == (field, code)
    assert errors[0]["message"]
    assert not Run.objects.exists()


def test_a_queue_without_template_fields_takes_no_values(member_api, make_queue, team, admin_user):
    make_queue(team, "plain", "image: base\n", user=admin_user)

    refused = member_api.post("/teams/ml/queues/plain/runs", {"template_variables": {"image": "evil"}, "job": JOB})
    launched = member_api.post("/teams/ml/queues/plain/runs", {"job": JOB})

    assert refused.status_code == 400
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("image", "unknown_field")]
    assert launched.status_code == 201
    assert launched.json()["rendered_config"] == "image: base\n"


def test_a_container_queue_needs_an_image(member_api, make_queue, team, admin_user):
    make_queue(team, "box", "x: 1\n", resource="local-container", user=admin_user)

    missing = member_api.post("/teams/ml/queues/box/runs", {})
    bad = member_api.post("/teams/ml/queues/box/runs", {"job": {"image": "not an image!"}})
    good = member_api.post("/teams/ml/queues/box/runs", {"job": {"image": "ghcr.io/acme/train:1.2"}})

    assert [(e["field"], e["code"]) for e in missing.json()["errors"]] == [("image", "required")]
    assert [(e["field"], e["code"]) for e in bad.json()["errors"]] == [("image", "invalid_image")]
    assert good.status_code == 201 and good.json()["job"] == {"image": "ghcr.io/acme/train:1.2"}


def test_a_version_saved_before_repeated_keys_were_refused_still_launches(member_api, make_queue, team, admin_user):
    from launchq.models import ConfigVersion

    old = make_queue(team, "old", "a: 1\n", user=admin_user)
    ConfigVersion.objects.filter(pk=old.current_version_id).update(text="a: 1\nb: 2\na: 3\n")  # as stored back then

    launched = member_api.post("/teams/ml/queues/old/runs", {"job": JOB})

    assert launched.status_code == 201, launched.json()
    assert launched.json()["rendered_config"] == "a: 1\nb: 2\na: 3\n"


def test_a_launch_without_a_job_runs_the_queues_default_job(member_api, make_queue, team, admin_user):
    box = make_queue(team, "box", "x: 1\n", resource="local-container", user=admin_user)
    Queue.objects.filter(pk=box.pk).update(default_job={"image": "ghcr.io/acme/train:1.2"})

    detail = member_api.get("/teams/ml/queues/box").json()
    by_default = member_api.post("/teams/ml/queues/box/runs", {})
    chosen = member_api.post("/teams/ml/queues/box/runs", {"job": {"image": "ghcr.io/acme/other:2"}})

    assert detail["default_job"] == {"image": "ghcr.io/acme/train:1.2"}
    assert by_default.status_code == 201 and by_default.json()["job"] == {"image": "ghcr.io/acme/train:1.2"}
    assert chosen.status_code == 201 and chosen.json()["job"] == {"image": "ghcr.io/acme/other:2"}


def test_a_job_is_an_image_or_a_source_to_build_never_a_mix_nor_an_unused_image(member_api, make_queue, team, admin_user):
    make_queue(team, "box", "x: 1\n", resource="local-container", user=admin_user)
    make_queue(team, "proc", "x: 1\n", resource="local-process", user=admin_user)

    both = member_api.post("/teams/ml/queues/box/runs", {"job": {"image": "ghcr.io/acme/train:1.2", "source_dir": "./src", "command": "python t.py"}})
    image_here = member_api.post("/teams/ml/queues/proc/runs", {"job": {"image": "ghcr.io/acme/train:1.2", "command": "python t.py"}})
    in_image = member_api.post("/teams/ml/queues/box/runs", {"job": {"image": "ghcr.io/acme/train:1.2", "command": "python t.py"}})

    assert [(e["field"], e["code"]) for e in both.json()["errors"]] == [("source_dir", "not_allowed")]
    assert [(e["field"], e["code"]) for e in image_here.json()["errors"]] == [("image", "not_allowed")]
    assert "runs a command in a process, not a container image" in image_here.json()["errors"][0]["message"]
    assert in_image.status_code == 201 and in_image.json()["job"] == {"image": "ghcr.io/acme/train:1.2", "command": "python t.py"}
    assert Run.objects.count() == 1


# --- reading queues ----------------------------------------------------------


def test_a_queue_whose_config_waits_for_its_guardrails_says_it_is_not_ready(member_api, queue, team, admin_user):
    from launchq.configs import create_queue_with_draft

    create_queue_with_draft(team, admin_user, "drafted", "local-process", "n: '{{n}}'\n", "yaml")

    listed = {q["name"]: q for q in member_api.get("/queues").json()}
    detail = member_api.get("/teams/ml/queues/drafted").json()
    refused = member_api.post("/teams/ml/queues/drafted/runs", {"job": JOB})

    assert listed["drafted"]["ready"] is False and listed["train"]["ready"] is True
    assert detail["ready"] is False and detail["version"] is None and detail["config"] == ""
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "no_config"


def test_queue_list_shows_the_queues_of_all_my_teams_only(member_api, member_user, queue, make_team, make_queue, join, admin_user):
    second = make_team("vision")
    join(member_user, second)
    make_queue(second, "big", "a: 1\n", user=admin_user)
    make_queue(make_team("secret"), "hidden", "a: 1\n", user=admin_user)

    response = member_api.get("/queues")

    assert response.status_code == 200
    assert [(q["team"], q["name"]) for q in response.json()] == [("ml", "train"), ("vision", "big")]
    train = response.json()[0]
    assert train["resource"] == "local-process"
    assert train["version"] == 1
    assert train["fields"] == ["aws_instance", "gpus", "lr", "bucket"]
    assert train["url"].endswith("/api/teams/ml/queues/train")


def test_queue_detail_gives_config_and_fields_as_wandb_json_schema(member_api, queue):
    response = member_api.get("/teams/ml/queues/train")

    assert response.status_code == 200
    body = response.json()
    assert body["config"] == CONFIG
    assert body["format"] == "yaml"
    assert body["version"] == 1
    assert body["version_created_by"] == "ada"
    assert body["projects"] == ["proj"]
    assert body["required"] == ["aws_instance"]
    assert body["template_variables"] == {
        "aws_instance": {"type": "string", "enum": ["ml.m4.xlarge", "ml.p3.xlarge"], "description": "The instance type."},
        "gpus": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1, "description": "GPUs per node."},
        "lr": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.1, "description": "Learning rate."},
        "bucket": {"type": "string", "pattern": "[a-z0-9-]+", "maxLength": 20, "default": "scratch"},
    }
    assert list(body["template_variables"]) == ["aws_instance", "gpus", "lr", "bucket"]  # config order


def test_me_names_the_token_owner_and_teams(admin_api):
    assert admin_api.get("/me").json() == {"username": "ada", "teams": [{"slug": "ml", "name": "ML", "role": "admin"}]}


# --- reading runs ------------------------------------------------------------


def test_run_detail_shows_state_values_configs_and_history(member_api, queue, member_user):
    run = launch_run(queue, member_user, GOOD, project="proj", job=JOB)
    move(run, RunState.LEASED, message="Taken by agent.")
    Run.objects.filter(pk=run.pk).update(resolved_config="resolved: yes\n", warnings=["MY_VAR was not set"])

    response = member_api.get(f"/teams/ml/runs/{run.run_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "leased"
    assert body["values"]["gpus"] == 3
    assert body["resolved_config"] == "resolved: yes\n"
    assert body["warnings"] == ["MY_VAR was not set"]
    assert [e["state"] for e in body["events"]] == ["pending", "leased"]
    assert body["links"]["cancel"].endswith(f"/api/teams/ml/runs/{run.run_id}/cancel")


def test_a_failed_run_shows_its_reason(member_api, queue, member_user):
    run = launch_run(queue, member_user, GOOD, project="proj", job=JOB)
    move(run, RunState.FAILED, message="Agent gave up.", failure_reason="The image could not be built.")

    body = member_api.get(f"/teams/ml/runs/{run.run_id}").json()

    assert body["state"] == "failed"
    assert body["failure_reason"] == "The image could not be built."
    assert body["finished_at"]


def test_runs_are_listed_newest_first_in_pages(member_api, queue, member_user):
    start = timezone.now() - timedelta(hours=1)
    ids = []
    for i in range(25):
        run = launch_run(queue, member_user, {**GOOD, "gpus": str(i % 4 + 1)}, project="proj", job=JOB)
        Run.objects.filter(pk=run.pk).update(created_at=start + timedelta(minutes=i))
        ids.append(run.run_id)
    newest_first = ids[::-1]

    first = member_api.get("/teams/ml/queues/train/runs", limit=10).json()
    second = member_api.client.get(first["next"], headers=member_api.headers).json()
    last = member_api.get("/teams/ml/queues/train/runs", limit=10, offset=20).json()

    assert first["count"] == 25 and first["limit"] == 10 and first["offset"] == 0
    assert [r["run_id"] for r in first["items"]] == newest_first[:10]
    assert [r["run_id"] for r in second["items"]] == newest_first[10:20]
    assert [r["run_id"] for r in last["items"]] == newest_first[20:]
    assert last["next"] is None
    assert member_api.get("/teams/ml/queues/train/runs").json()["limit"] == 20


def test_runs_can_be_filtered_by_state(member_api, queue, member_user):
    kept = launch_run(queue, member_user, GOOD, project="proj", job=JOB)
    gone = launch_run(queue, member_user, GOOD, project="proj", job=JOB)
    move(gone, RunState.CANCELLED)

    page = member_api.get("/teams/ml/queues/train/runs", state="pending").json()

    assert [r["run_id"] for r in page["items"]] == [kept.run_id]
    assert page["count"] == 1


@pytest.mark.parametrize("query, field", [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"offset": -1}, "offset"), ({"state": "done"}, "state")])
def test_bad_page_parameters_are_refused_by_name(member_api, queue, query, field):
    response = member_api.get("/teams/ml/queues/train/runs", **query)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


# --- who may do what ---------------------------------------------------------

ENDPOINTS = [
    ("get", "/queues"),
    ("get", "/me"),
    ("get", "/teams/ml/queues/train"),
    ("post", "/teams/ml/queues/train/runs"),
    ("get", "/teams/ml/queues/train/runs"),
    ("get", "/teams/ml/runs/{run_id}"),
    ("post", "/teams/ml/runs/{run_id}/cancel"),
]


@pytest.fixture
def a_run(queue, member_user):
    return launch_run(queue, member_user, GOOD, project="proj", job=JOB)


@pytest.mark.parametrize("method, path", ENDPOINTS)
@pytest.mark.parametrize("authorization", [None, "Bearer lq_not-a-real-token", "Bearer ", "Basic bWF4OnB3", "lq_no-scheme"])
def test_anonymous_and_unknown_tokens_get_401(client, a_run, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = getattr(client, method)(f"/api{path.format(run_id=a_run.run_id)}", headers=headers, content_type="application/json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["errors"] == [{"field": "", "code": "unauthorized", "message": body["detail"]}]
    assert Run.objects.get().state == "pending"


@pytest.mark.parametrize("method, path", ENDPOINTS[2:])
def test_outsiders_get_404_for_a_teams_queues_and_runs(outsider_api, a_run, method, path):
    response = getattr(outsider_api, method)(path.format(run_id=a_run.run_id), **({"body": {"job": JOB}} if method == "post" else {}))

    assert response.status_code == 404
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("", "not_found")]
    assert Run.objects.count() == 1 and Run.objects.get().state == "pending"


def test_outsiders_see_none_of_the_teams_queues(outsider_api, queue):
    assert outsider_api.get("/queues").json() == []


def test_a_run_is_only_found_under_its_own_team(member_api, member_user, a_run, make_team, join):
    join(member_user, make_team("vision"))

    assert member_api.get(f"/teams/vision/runs/{a_run.run_id}").status_code == 404
    assert member_api.get(f"/teams/ml/runs/{a_run.run_id}").status_code == 200


def test_members_and_admins_may_launch(member_api, admin_api, queue):
    assert member_api.launch().status_code == 201
    assert admin_api.launch().status_code == 201
    assert sorted(Run.objects.values_list("launched_by__username", flat=True)) == ["ada", "max"]


def test_a_revoked_token_stops_working_at_once(client, member_user, queue):
    token, plaintext = ApiToken.issue(member_user, "laptop")
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.get("/api/queues", headers=headers).status_code == 200

    token.revoked_at = timezone.now()
    token.save()

    assert client.get("/api/queues", headers=headers).status_code == 401
    launch = client.post("/api/teams/ml/queues/train/runs", {"template_variables": GOOD, "job": JOB}, content_type="application/json", headers=headers)
    assert launch.status_code == 401
    assert not Run.objects.exists()


def test_a_deactivated_users_token_stops_working(client, member_user, queue):
    _, plaintext = ApiToken.issue(member_user, "laptop")
    member_user.is_active = False
    member_user.save()

    assert client.get("/api/queues", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 401


def test_using_a_token_records_when_it_was_last_used(client, member_user, queue):
    token, plaintext = ApiToken.issue(member_user, "laptop")
    assert token.last_used_at is None

    client.get("/api/queues", headers={"Authorization": f"Bearer {plaintext}"})

    token.refresh_from_db()
    assert token.last_used_at is not None


def test_an_agent_token_is_not_a_personal_token(client, team, queue):
    from launchq.models import Agent

    _, plaintext = Agent.issue(team, "runner")

    assert client.get("/api/queues", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 401


def test_the_browser_session_does_not_open_the_api(client, member_user, queue):
    client.force_login(member_user)

    assert client.get("/api/queues").status_code == 401


# --- cancelling --------------------------------------------------------------


def test_the_launcher_may_cancel_their_pending_run(member_api, a_run):
    response = member_api.post(f"/teams/ml/runs/{a_run.run_id}/cancel")

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["events"][-1]["message"] == "Cancelled by max."
    a_run.refresh_from_db()
    assert a_run.state == RunState.CANCELLED


def test_another_member_may_not_cancel_a_run(client, make_user, join, team, a_run, bearer):
    other = make_user("mia")
    join(other, team, "member")

    response = _Api(client, bearer(other)).post(f"/teams/ml/runs/{a_run.run_id}/cancel")

    assert response.status_code == 403
    assert response.json()["detail"]
    a_run.refresh_from_db()
    assert a_run.state == RunState.PENDING and not a_run.cancel_requested


def test_an_admin_may_cancel_anyones_run(admin_api, a_run):
    assert admin_api.post(f"/teams/ml/runs/{a_run.run_id}/cancel").json()["state"] == "cancelled"


def test_cancelling_a_run_an_agent_holds_asks_the_agent_to_stop(member_api, a_run):
    move(a_run, RunState.LEASED)
    move(a_run, RunState.RUNNING)

    body = member_api.post(f"/teams/ml/runs/{a_run.run_id}/cancel").json()

    assert body["state"] == "running"
    assert body["cancel_requested"] is True


def test_cancelling_a_finished_run_is_a_conflict(member_api, a_run):
    move(a_run, RunState.LEASED)
    move(a_run, RunState.RUNNING)
    move(a_run, RunState.FINISHED)

    response = member_api.post(f"/teams/ml/runs/{a_run.run_id}/cancel")

    assert response.status_code == 409
    assert "already ended" in response.json()["detail"]


# --- the OpenAPI document -----------------------------------------------------


def test_openapi_document_describes_every_endpoint_and_the_launch_body(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    doc = response.json()
    paths = doc["paths"]
    assert set(paths) >= {
        "/api/queues",
        "/api/teams/{team}/queues/{queue}",
        "/api/teams/{team}/queues/{queue}/runs",
        "/api/teams/{team}/runs/{run_id}",
        "/api/teams/{team}/runs/{run_id}/cancel",
    }
    launch = paths["/api/teams/{team}/queues/{queue}/runs"]["post"]
    assert set(launch["responses"]) >= {"201", "400", "401", "404", "422"}
    assert launch["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Problems")
    schemas = doc["components"]["schemas"]
    assert set(schemas["LaunchIn"]["properties"]) == {"project", "name", "template_variables", "job", "priority"}
    assert schemas["LaunchIn"]["additionalProperties"] is False
    assert {"field", "code", "message", "bound", "value"} <= set(schemas["ProblemOut"]["properties"])
    assert doc["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    assert all(op.get("security") for path in paths.values() for op in path.values())


def test_api_docs_page_is_served_from_our_own_static_files(client):
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert b"/static/ninja/swagger-ui-bundle.js" in response.content


def _refuse_constant(name):
    raise AssertionError(f"the answer is not strict JSON: it holds {name}")


@pytest.mark.parametrize("method, path, status, code", [
    ("get", "/no/such/endpoint", 404, "not_found"),
    ("delete", "/queues", 405, "method_not_allowed"),
    ("put", "/teams/ml/queues/train/runs", 405, "method_not_allowed"),
])
def test_unknown_endpoints_and_methods_answer_in_the_error_shape(member_api, queue, method, path, status, code):
    response = getattr(member_api.client, method)(f"/api{path}", headers=member_api.headers)

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == ("", code) and error["message"] == response.json()["detail"]


def test_a_version_saved_with_a_pattern_re2_cannot_run_keeps_launching_with_its_default(member_api, queue):
    """Patterns moved to RE2: a stored pattern it cannot run never reaches a backtracking engine, and never a 500."""
    version = queue.current_version
    version.fields = [{**f, "pattern": r"(?=[a-z])[a-z0-9-]+"} if f["name"] == "bucket" else f for f in version.fields]
    ConfigVersion.objects.filter(pk=version.pk).update(fields=version.fields)  # as stored before RE2

    refused = member_api.launch()
    assert refused.status_code == 400
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("bucket", "pattern_unusable")]
    launched = member_api.launch({k: v for k, v in GOOD.items() if k != "bucket"}, project="proj")
    assert launched.status_code == 201 and launched.json()["values"]["bucket"] == "scratch"


@pytest.mark.parametrize("name", ["exe\u202etxt.sh", "max\u200b", "\u2067x"])
def test_run_names_with_bidi_controls_or_invisible_characters_are_refused(member_api, queue, name):
    response = member_api.launch(project="proj", name=name)
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("name", "invalid_character")]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "query, field, code",
    [
        ({"offset": "99999999999999999999"}, "offset", "out_of_range"),
        ({"offset": "9" * 5000}, "offset", "type"),
        ({"offset": "²"}, "offset", "type"),
        ({"limit": "٣"}, "limit", "type"),
        ({"limit": "1_0"}, "limit", "type"),
        ({"limit": "101"}, "limit", "out_of_range"),
    ],
)
def test_crafted_numbers_in_a_query_are_a_422_in_the_error_shape(member_api, queue, query, field, code):
    response = member_api.get("/teams/ml/queues/train/runs", **query)
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]


@pytest.mark.parametrize("priority", [False, True, 1.0, [0]])
def test_a_priority_that_is_not_a_name_or_a_number_is_refused_not_taken_as_critical(member_api, queue, priority):
    response = member_api.launch(project="proj", priority=priority)
    assert response.status_code in (400, 422)
    assert [e["field"] for e in response.json()["errors"]] == ["priority"]
    assert not Run.objects.exists()


def test_fifty_thousand_unknown_keys_get_one_short_refusal(member_api, queue):
    response = member_api.launch({f"key{i}": "x" for i in range(50_000)}, project="proj")
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("", "too_many_values")]
    assert len(response.content) < 2000


@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        (json.dumps({"project": "proj"}).encode(), "text/plain", 415, "unsupported_media_type"),
        (json.dumps({"project": "proj"}).encode(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (json.dumps({"project": "proj"}).encode("utf-16"), "application/json", 400, "invalid_json"),
        (json.dumps({"project": "proj"}).encode("utf-16-le"), "application/json", 400, "invalid_json"),
        (b"\xef\xbb\xbf" + json.dumps({"project": "proj"}).encode(), "application/json", 400, "invalid_json"),
        (json.dumps({"project": "proj"}).encode("utf-16"), "application/json; charset=utf-16", 415, "unsupported_media_type"),
        (b'{"project": "pr\xff"}', "application/json", 400, "invalid_json"),
    ],
)
def test_the_api_reads_json_in_utf8_and_nothing_else(client, member_user, bearer, queue, body, content_type, status, code):
    headers = bearer(member_user)
    response = client.generic("POST", "/api/teams/ml/queues/train/runs", body, content_type=content_type, headers=headers)
    assert response.status_code == status
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("", code)]
    assert not Run.objects.exists()


def test_json_with_a_charset_of_utf8_is_fine(client, member_user, bearer, queue):
    body = json.dumps({"project": "proj", "template_variables": GOOD, "job": JOB}).encode()
    response = client.post("/api/teams/ml/queues/train/runs", body, content_type="application/json; charset=UTF-8", headers=bearer(member_user))
    assert response.status_code == 201
