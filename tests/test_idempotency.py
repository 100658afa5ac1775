"""Launch requests with an idempotency key: a retry gets the run the first request launched, never a second run.

Every launch path (the API's `Idempotency-Key` header, the launch form's hidden
token, the CLI's key, the `wandb` client's identical retries) ends in
`launch_run`, so the tests here drive the paths a user takes, including a
connection that drops after the server committed the launch.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from launchq.guardrails import Field, FieldType
from launchq.models import ApiToken, IdempotencyKey, Run, RunEvent
from launchq.runs import KeyReused, LaunchRefused, launch_run

CONFIG = 'resource_args:\n  instance: "{{aws_instance}}"\n  gpus: {{gpus}}\n'
FIELDS = (
    Field("aws_instance", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge")),
    Field("gpus", FieldType.INTEGER, default=1, minimum=1, maximum=4),
)
BODY = {"project": "proj", "template_variables": {"aws_instance": "ml.p3.xlarge", "gpus": 2}, "job": {"command": "python train.py"}}
URL = "/api/teams/ml/queues/train/runs"


@pytest.fixture
def queue(make_queue, team, admin_user):
    return make_queue(team, "train", CONFIG, "yaml", FIELDS, user=admin_user)


@pytest.fixture
def token(member_user) -> str:
    return ApiToken.issue(member_user, "tests")[1]


def post(client, token, body=BODY, key: str | None = "launch-1"):
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(URL, json.dumps(body), content_type="application/json", headers=headers)


# --- the API -------------------------------------------------------------------


def test_a_retry_with_the_same_key_answers_with_the_first_run(client, queue, token):
    first = post(client, token)
    again = post(client, token)

    assert first.status_code == again.status_code == 201, again.content
    assert again.json()["run_id"] == first.json()["run_id"] == Run.objects.get().run_id
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert {k: v for k, v in again.json().items() if k not in ("events", "updated_at")} == {
        k: v for k, v in first.json().items() if k not in ("events", "updated_at")
    }


def test_without_a_key_each_request_launches(client, queue, token):
    assert post(client, token, key=None).status_code == post(client, token, key=None).status_code == 201
    assert Run.objects.count() == 2


def test_the_key_with_another_request_is_refused_and_launches_nothing(client, queue, token):
    first = post(client, token)
    other = post(client, token, {**BODY, "template_variables": {"aws_instance": "ml.m4.xlarge"}})
    elsewhere = post(client, token, {**BODY, "priority": "high"})

    assert other.status_code == elsewhere.status_code == 422
    error = other.json()["errors"][0]
    assert (error["field"], error["code"]) == ("idempotency_key", "idempotency_key_reused")
    assert first.json()["run_id"] in error["message"]
    assert Run.objects.count() == 1


def test_keys_belong_to_their_user(client, queue, token, admin_user):
    admins = ApiToken.issue(admin_user, "tests")[1]

    mine = post(client, token)
    theirs = post(client, admins)

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["run_id"] != theirs.json()["run_id"]
    assert sorted(Run.objects.values_list("launched_by__username", flat=True)) == ["ada", "max"]


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "naïve", "tab\there"])
def test_a_blank_or_odd_key_is_refused(client, queue, token, key):
    response = post(client, token, key=key)

    assert response.status_code == 400, response.content
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("idempotency_key", "invalid")]
    assert not Run.objects.exists()


def test_a_quoted_key_is_the_same_key(client, queue, token):
    """The IETF draft sends the key as a structured-header string: "abc" is the key abc."""
    first = post(client, token, key="abc-123")
    quoted = post(client, token, key='"abc-123"')

    assert quoted.json()["run_id"] == first.json()["run_id"]
    assert Run.objects.count() == 1


def test_a_refused_launch_keeps_no_key_so_the_fixed_request_may_use_it(client, queue, token):
    refused = post(client, token, {**BODY, "template_variables": {"aws_instance": "ml.huge"}})
    fixed = post(client, token)

    assert refused.status_code == 400 and fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed.headers
    assert Run.objects.count() == 1


def test_a_key_is_forgotten_after_its_lifetime(client, queue, token, settings):
    first = post(client, token)
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    later = post(client, token)

    assert later.status_code == 201 and later.json()["run_id"] != first.json()["run_id"]
    assert IdempotencyKey.objects.get().run.run_id == later.json()["run_id"]  # the expired one is gone
    assert settings.LAUNCHQ_IDEMPOTENCY_KEY_HOURS == 24
    kept = IdempotencyKey.objects.get()
    assert kept.expires_at - kept.created_at == timedelta(hours=24)


def test_a_replay_is_noted_in_the_runs_history(client, queue, token):
    post(client, token)
    post(client, token)

    run = Run.objects.get()
    assert [e.state for e in run.events.all()] == ["pending", "pending"]
    assert "same idempotency key" in run.events.last().message


def test_the_header_is_in_the_openapi_document(client, db):
    document = client.get("/api/openapi.json").json()
    parameters = document["paths"]["/api/teams/{team}/queues/{queue}/runs"]["post"]["parameters"]
    assert "Idempotency-Key" in [p["name"] for p in parameters]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_requests_racing_with_one_key_make_one_run(live_server, queue, token):
    """Eight requests with one key at the same moment, each on its own connection and database session."""
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL pointing at PostgreSQL")
    import urllib.request

    start = threading.Barrier(8)
    answers: list[tuple[int, str, str | None]] = []

    def launch():
        request = urllib.request.Request(
            live_server.url + URL, data=json.dumps(BODY).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": "race"},
        )
        start.wait(30)
        with urllib.request.urlopen(request, timeout=60) as answer:
            answers.append((answer.status, json.loads(answer.read())["run_id"], answer.headers.get("Idempotent-Replayed")))

    threads = [threading.Thread(target=launch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    connections.close_all()

    assert len(answers) == 8, answers
    assert {status for status, _, _ in answers} == {201}
    assert len({run_id for _, run_id, _ in answers}) == 1
    assert Run.objects.count() == 1
    assert sorted(replayed or "" for _, _, replayed in answers) == [""] + ["true"] * 7
