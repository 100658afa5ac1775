"""Scripts that launch with the real `wandb` client and then wait on their runs.

`launch_add(...)` answers a `QueuedRun`; its `.state`, `wait_until_running()`,
`wait_until_finished()` and `delete()`, `api.queued_run(...)`,
`api.run_queue(...).items` and `api.viewer` read launchq's runs. The scripts
run as subprocesses of the real client against the live server; launchq's own
agent (`python -m launchq.agent`) runs the job.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from launchq.graphql.queued import NOT_PENDING, NOT_YOURS
from launchq.guardrails import Field, FieldType
from launchq.models import Agent, ApiToken, Run, RunState
from launchq.queueing import pop
from launchq.runs import launch_run
from tests.test_agent_e2e import agents, wait_for, wait_state  # noqa: F401  (agents is a fixture)

TIMEOUT = 120
GPUS = Field("gpus", FieldType.INTEGER, minimum=1, maximum=4, default=1)

WAIT = """\
import json, sys
import wandb
from wandb.sdk.launch import launch_add

args = json.loads(sys.argv[1])
api = wandb.Api()
viewer = api.viewer
print("VIEWER " + json.dumps({"username": viewer.username, "entity": viewer.entity, "teams": viewer.teams}), flush=True)
queued = launch_add(**args)
print("QUEUED " + json.dumps({"id": queued.id, "state": queued.state}), flush=True)
again = api.queued_run("ml", "proj", args["queue_name"], queued.id)
items = [item.id for item in api.run_queue("ml", args["queue_name"]).items]
print("AGAIN " + json.dumps({"state": again.state, "items": items}), flush=True)
sys.stdin.readline()  # the test starts an agent, then lets the script wait
run = queued.wait_until_finished()
print("DONE " + json.dumps({"id": run.id, "name": run.name, "state": run.state, "config": run.config, "item": queued.state}), flush=True)
"""

DELETE = """\
import sys
import wandb

api = wandb.Api()
try:
    api.queued_run("ml", "proj", sys.argv[1], sys.argv[2]).delete()
except Exception as error:
    print(f"REFUSED {error}")
    sys.exit(3)
print("DELETED")
"""


@pytest.fixture
def queue(make_queue, team, admin_user):
    return make_queue(team, "proc-queue", "gpus: {{gpus}}\n", "yaml", (GPUS,), resource="local-process", user=admin_user)


@pytest.fixture
def member_env(wandb_environment, member_user):
    return wandb_environment(ApiToken.issue(member_user, "scripts")[1])


def script(env, code: str, *args: str, stdin=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, cwd=env["HOME"], text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def line(proc: subprocess.Popen, tag: str) -> dict:
    """The JSON after `tag` on the script's next output line."""
    text = proc.stdout.readline()
    if not text.startswith(tag + " "):
        proc.kill()
        raise AssertionError(f"expected {tag}, got {text!r}; stderr: {proc.stderr.read()[-3000:]}")
    return json.loads(text[len(tag) + 1 :])


def test_launch_add_then_wait_until_finished_returns_the_finished_run(queue, member_env, team, admin_user, agents):
    job = [sys.executable, "-c", "print('trained')"]
    proc = script(member_env, WAIT, json.dumps({
        "queue_name": "proc-queue", "entity": "ml", "project": "proj", "docker_image": "python:3.11",
        "entry_point": job, "template_variables": {"gpus": 2},
    }))
    try:
        viewer = line(proc, "VIEWER")
        assert viewer == {"username": "max", "entity": "ml", "teams": ["ml"]}
        queued = line(proc, "QUEUED")
        run = Run.objects.get(run_id=queued["id"])
        assert queued["state"] == "pending"
        assert line(proc, "AGAIN") == {"state": "pending", "items": [run.run_id]}

        agent, token = Agent.issue(team, "box", created_by=admin_user)
        agent.queues.add(queue)
        agents(token, "--queue", "proc-queue")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        done = line(proc, "DONE")
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run.refresh_from_db()
    assert run.state == RunState.FINISHED and "trained" in run.output
    assert done == {"id": run.run_id, "name": run.name, "state": "finished", "config": {"gpus": 2}, "item": "finished"}


def test_delete_cancels_a_pending_run(queue, member_env, member_user):
    run = launch_run(queue, member_user, {"gpus": 1}, project="proj", job={"command": "true"})
    proc = script(member_env, DELETE, "proc-queue", run.run_id)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0 and "DELETED" in out, out + err
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert "Cancelled by max" in run.events.last().message  # nothing deleted: the history keeps it


def test_delete_refuses_a_run_an_agent_holds_and_another_members_run(queue, member_env, member_user, admin_user, team):
    theirs = launch_run(queue, admin_user, {"gpus": 1}, project="proj", job={"command": "true"})
    proc = script(member_env, DELETE, "proc-queue", theirs.run_id)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 3 and NOT_YOURS.format(run=theirs.run_id) in out, out + err

    held = launch_run(queue, member_user, {"gpus": 1}, project="proj", job={"command": "true"})
    agent, _ = Agent.issue(team, "box", created_by=admin_user)
    agent.queues.add(queue)
    assert pop(agent) == theirs  # the older run first
    assert pop(agent) == held
    proc = script(member_env, DELETE, "proc-queue", held.run_id)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 3 and NOT_PENDING.format(run=held.run_id, state="leased") in out, out + err
    for run in (theirs, held):
        run.refresh_from_db()
        assert run.state == RunState.LEASED
