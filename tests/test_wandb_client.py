"""The real `wandb` client (pinned in requirements-test.txt) pushing runs to a live launchq server.

Each test runs `wandb launch …` or a `launch_add(…)` script as a subprocess with
WANDB_BASE_URL pointing at pytest-django's live server and WANDB_API_KEY set to
a launchq API token. The client is kept to itself: its home, config, cache,
data and temp directories are the test's own, and the only server it is given
is 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from launchq.graphql.views import BAD_KEY
from launchq.guardrails import Field, FieldType, GuardrailError, check_values
from launchq.models import ApiToken, Priority, Run
from tests.proxy import LosingProxy

WANDB = Path(sys.executable).with_name("wandb")
TIMEOUT = 120

SAGEMAKER = """\
ResourceConfig:
  InstanceType: "{{aws_instance}}"
  InstanceCount: 1
"""
AWS_INSTANCE = Field("aws_instance", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge"))
GPUS = Field("gpus", FieldType.INTEGER, minimum=1, maximum=4)

LAUNCH_ADD = """\
import json, sys
from wandb.sdk.launch import launch_add
try:
    queued = launch_add(**json.loads(sys.argv[1]))
except Exception as error:
    print(f"REFUSED {error}")
    sys.exit(3)
print(f"QUEUED {queued.id}")
"""


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queues(make_queue, team, admin_user):
    """The source document's SageMaker queue, and a local-process queue with an Integer field."""
    return {
        "sagemaker": make_queue(team, "sagemaker-queue", SAGEMAKER, "yaml", (AWS_INSTANCE,), resource="sagemaker", user=admin_user),
        "proc": make_queue(team, "proc-queue", "gpus: {{gpus}}\n", "yaml", (GPUS,), resource="local-process", user=admin_user),
    }


@pytest.fixture
def token(member_user) -> str:
    return ApiToken.issue(member_user, "wandb")[1]


@pytest.fixture
def wandb_env(wandb_environment, token):
    return wandb_environment(token)


def wandb_launch(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(WANDB), "launch", "--docker-image", "python:3.11", "--entity", "ml", "--project", "proj", *args],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=env["HOME"],
    )


def launch_add(env, **kwargs) -> subprocess.CompletedProcess:
    kwargs = {"docker_image": "python:3.11", "entity": "ml", "project": "proj", **kwargs}
    return subprocess.run(
        [sys.executable, "-c", LAUNCH_ADD, json.dumps(kwargs)],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=env["HOME"],
    )


def message_for(fields, values) -> str:
    """What the shared validator says about these values: the message the client must print."""
    with pytest.raises(GuardrailError) as refused:
        check_values(fields, values)
    return refused.value.problems[0].message


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def test_launch_puts_the_run_on_the_queue(wandb_env, queues, member_user):
    result = wandb_launch(wandb_env, "--queue", "sagemaker-queue", "--set-var", "aws_instance=ml.p3.xlarge")
    assert result.returncode == 0, output(result)
    run = Run.objects.get()
    assert (run.queue, run.project.name, run.launched_by) == (queues["sagemaker"], "proj", member_user)
    assert run.values == {"aws_instance": "ml.p3.xlarge"}
    assert run.job == {"image": "python:3.11"}
    assert run.priority == Priority.MEDIUM


def test_value_not_allowed_fails_with_our_message(wandb_env, queues):
    result = wandb_launch(wandb_env, "--queue", "sagemaker-queue", "--set-var", "aws_instance=ml.p4d.24xlarge")
    assert result.returncode != 0
    assert message_for([AWS_INSTANCE], {"aws_instance": "ml.p4d.24xlarge"}) in output(result)
    assert not Run.objects.exists()


def test_integer_out_of_range_fails_with_our_message(wandb_env, queues):
    result = wandb_launch(wandb_env, "--queue", "proc-queue", "--entry-point", "python train.py", "--set-var", "gpus=9")
    assert result.returncode != 0
    assert message_for([GPUS], {"gpus": 9}) in output(result)
    assert not Run.objects.exists()


def test_priority_flag_sets_the_priority(wandb_env, queues):
    result = wandb_launch(wandb_env, "--queue", "sagemaker-queue", "--set-var", "aws_instance=ml.m4.xlarge", "-P", "high")
    assert result.returncode == 0, output(result)
    assert Run.objects.get().priority == Priority.HIGH


def test_entry_point_becomes_the_command_of_a_local_process_run(wandb_env, queues):
    result = wandb_launch(wandb_env, "--queue", "proc-queue", "--entry-point", "python train.py --epochs 3", "--set-var", "gpus=2")
    assert result.returncode == 0, output(result)
    run = Run.objects.get()
    assert run.job == {"command": "python train.py --epochs 3"}
    assert run.values == {"gpus": 2}


def test_launch_add_with_valid_values(wandb_env, queues):
    result = launch_add(wandb_env, queue_name="sagemaker-queue", template_variables={"aws_instance": "ml.m4.xlarge"})
    assert result.returncode == 0, output(result)
    run = Run.objects.get()
    assert f"QUEUED {run.run_id}" in result.stdout
    assert run.values == {"aws_instance": "ml.m4.xlarge"}


def test_launch_add_with_invalid_values_is_refused(wandb_env, queues):
    result = launch_add(wandb_env, queue_name="sagemaker-queue", template_variables={"aws_instance": "ml.p4d.24xlarge"})
    assert result.returncode == 3, output(result)
    assert message_for([AWS_INSTANCE], {"aws_instance": "ml.p4d.24xlarge"}) in result.stdout
    result = launch_add(wandb_env, queue_name="proc-queue", entry_point=["python", "train.py"], template_variables={"gpus": 0})
    assert result.returncode == 3, output(result)
    assert message_for([GPUS], {"gpus": 0}) in result.stdout
    assert not Run.objects.exists()


def test_launch_add_with_priority(wandb_env, queues):
    result = launch_add(wandb_env, queue_name="proc-queue", entry_point=["python", "train.py"], template_variables={"gpus": 4}, priority=0)
    assert result.returncode == 0, output(result)
    run = Run.objects.get()
    assert (run.priority, run.values, run.job) == (Priority.CRITICAL, {"gpus": 4}, {"command": "python train.py"})


def test_revoked_token_fails(wandb_env, queues, member_user):
    ApiToken.objects.filter(user=member_user).update(revoked_at=timezone.now())
    result = wandb_launch(wandb_env, "--queue", "sagemaker-queue", "--set-var", "aws_instance=ml.p3.xlarge")
    assert result.returncode != 0
    assert BAD_KEY in output(result)
    result = launch_add(wandb_env, queue_name="sagemaker-queue", template_variables={"aws_instance": "ml.m4.xlarge"})
    assert result.returncode == 3 and BAD_KEY in result.stdout
    assert not Run.objects.exists()


def test_a_push_whose_answer_was_lost_makes_one_run(wandb_env, queues, live_server):
    """The client sends the push again, byte for byte and with no key, when the connection drops after launchq enqueued
    it; launchq takes the identical push as that retry (LAUNCHQ_WANDB_REPLAY_SECONDS) and answers with the first run."""
    with LosingProxy(live_server.thread.port, marker=b"pushToRunQueueByName") as proxy:
        result = launch_add({**wandb_env, "WANDB_BASE_URL": proxy.url}, queue_name="sagemaker-queue",
                            template_variables={"aws_instance": "ml.p3.xlarge"})

    assert result.returncode == 0, output(result)
    run = Run.objects.get()
    assert f"QUEUED {run.run_id}" in result.stdout
    pushes = [f for f in proxy.forwarded if b"pushToRunQueueByName" in f.body]
    assert [p.dropped for p in pushes] == [True, False]
    assert pushes[0].body == pushes[1].body and pushes[0].head == pushes[1].head  # nothing tells the two apart
