"""W&B's own launch agent (`wandb launch-agent`, wandb 0.31.0, the real one) taking runs off launchq.

Each agent is a real `wandb launch-agent` process in its own session (so the
test stops it, its wandb-core and its jobs together), with its own home,
config and data directories and only the live server on 127.0.0.1 to talk to.
Runs are pushed with the real `wandb launch` (or launched in launchq), and the
test watches launchq: the run's states, its output and files, the Agents page.

W&B's agent polls every 10 seconds, and it waits about a minute before it
reports a job that never called wandb.init; these tests wait on such clocks
with bounded deadlines, never assert on durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from launchq.graphql.run_spec import MEMBER_MACRO
from launchq.guardrails import Field, FieldType
from launchq.models import Agent, ApiToken, Run, RunFile, RunState
from launchq.runs import cancel, launch_run
from tests.test_agent_e2e import agents, alive, wait_for, wait_state  # noqa: F401  (agents is a fixture)

WANDB = Path(sys.executable).with_name("wandb")
SECRET = "s3cr3t-wJalrXUtnFEMI-K7MDENG"

EPOCHS = Field("epochs", FieldType.INTEGER, minimum=1, maximum=10, default=2)
NOTE = Field("note", FieldType.STRING, default="", max_length=200)

# A W&B job: it reports through its own wandb run (WANDB_* come from the agent).
WANDB_JOB = """\
import sys, time
import wandb
run = wandb.init()
for epoch in range(int(sys.argv[1])):
    print(f"epoch {epoch} of {sys.argv[1]}", flush=True)
    run.log({"loss": 1.0 / (epoch + 1)})
run.finish()
"""
# A job for either kind of agent: it notes each run that reaches it.
ANY_AGENT_JOB = """\
import os, sys, time
run_id = os.environ.get("LAUNCHQ_RUN_ID") or os.environ["WANDB_RUN_ID"]
with open(sys.argv[1], "a") as ran:
    ran.write(run_id + "\\n")
time.sleep(0.3)
if "WANDB_RUN_ID" in os.environ:
    import wandb
    wandb.init().finish()
"""
# Keeps printing until it is stopped (W&B's agent stops a local process when it next prints).
LONG_JOB = """\
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
for i in range(1200):
    print("working", i, flush=True)
    time.sleep(0.1)
"""


@pytest.fixture
def jobs(tmp_path) -> Path:
    path = tmp_path / "jobs"
    path.mkdir()
    for name, code in (("train.py", WANDB_JOB), ("any.py", ANY_AGENT_JOB), ("long.py", LONG_JOB)):
        (path / name).write_text(code)
    return path


@pytest.fixture
def admin_key(admin_user) -> str:
    return ApiToken.issue(admin_user, "w&b agent")[1]


@pytest.fixture
def member_key(member_user) -> str:
    return ApiToken.issue(member_user, "scripts")[1]


@pytest.fixture
def proc_queue(make_queue, team, admin_user):
    return make_queue(team, "proc-queue", "epochs: {{epochs}}\nnote: \"{{note}}\"\n", "yaml", (EPOCHS, NOTE), user=admin_user)


@pytest.fixture
def wandb_agents(wandb_environment, tmp_path):
    """Start real `wandb launch-agent` processes; each is stopped (with its wandb-core and jobs) when the test ends."""
    started: list[subprocess.Popen] = []

    def start(key: str, *queues: str, max_jobs: int = 1, env: dict[str, str] | None = None) -> subprocess.Popen:
        name = f"wandb-agent-{len(started)}"
        environ = {**wandb_environment(key, name), **(env or {})}
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"max_jobs: {max_jobs}\nstopped_run_timeout: 0\n")  # stop a cancelled job at the next check
        argv = [str(WANDB), "launch-agent", "--entity", "ml", "--config", str(config), "--log-file", str(tmp_path / f"{name}.debug.log")]
        for queue in queues:
            argv += ["--queue", queue]
        log = open(tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen(
            argv, env=environ, cwd=environ["HOME"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc.log_path = tmp_path / f"{name}.log"
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _stop_session(proc)


def _stop_session(proc: subprocess.Popen) -> None:
    """Ctrl-C for the agent (it reports KILLED), then the whole session: wandb-core and any job it left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(15)


def log_of(proc) -> str:
    return Path(proc.log_path).read_text(errors="replace")


def wandb_launch(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(WANDB), "launch", "--docker-image", "python:3.11", "--entity", "ml", "--project", "proj", *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=env["HOME"],
    )


def wandb_agent_of(team) -> Agent:
    return wait_for(lambda: Agent.objects.filter(team=team).exclude(client="").first(), 60, "the W&B agent to register")


def history(run: Run) -> list[str]:
    return list(run.events.order_by("at", "id").values_list("state", flat=True))


# --- a run, end to end ---------------------------------------------------------------------


def test_wandb_agent_runs_a_pushed_run_to_finished(proc_queue, team, admin_key, member_key, wandb_agents, wandb_environment, jobs, client, admin_user):
    proc = wandb_agents(admin_key, "proc-queue")
    agent = wandb_agent_of(team)
    pushed = wandb_launch(
        wandb_environment(member_key, "member"), "--queue", "proc-queue", "--set-var", "epochs=3",
        "--entry-point", f"{sys.executable} {jobs / 'train.py'} 3",
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    run = Run.objects.get()
    wait_state(run, "finished", "failed", timeout=120)
    assert run.state == RunState.FINISHED, (run.failure_reason, log_of(proc)[-3000:])
    assert run.agent == agent and agent.client.startswith("wandb@") and agent.created_by == admin_user
    assert history(run) == ["pending", "leased", "starting", "running", "finished"]
    assert run.exit_code == 0 and run.tracked_at is not None
    assert [f"epoch {i} of 3" for i in range(3)] == [line for line in run.output.splitlines() if line.startswith("epoch")]
    files = {f.name: bytes(f.content) for f in RunFile.objects.filter(run=run)}
    assert "config.yaml" in files and b"epoch 2 of 3" in files.get("output.log", b"")

    client.force_login(admin_user)
    page = client.get("/teams/ml/agents/").content.decode()
    assert agent.name in page and "W&amp;B agent" in page
    page = client.get(run.get_absolute_url()).content.decode()
    assert "epoch 2 of 3" in page and "output.log" in page
    assert client.get(f"{run.get_absolute_url()}files/output.log").content == files["output.log"]

    # Revoke on the Agents page: W&B's agent sees stopPolling at its next poll and stops
    client.post(f"/teams/ml/agents/{agent.pk}/revoke/")
    assert proc.wait(60) == 0, log_of(proc)[-2000:]


@pytest.mark.timeout(400)
def test_a_failing_command_fails_with_the_agents_reason(proc_queue, team, admin_key, member_user, wandb_agents, client):
    proc = wandb_agents(admin_key, "proc-queue")
    wandb_agent_of(team)
    command = f"{sys.executable} -c \"import sys; print('no such dataset: imagenet-21k'); sys.exit(3)\""
    run = launch_run(proc_queue, member_user, {}, project="proj", job={"command": command})
    wait_state(run, "failed", "finished", timeout=180)  # W&B's agent looks for the job's wandb run for a minute first
    assert run.state == RunState.FAILED, log_of(proc)[-3000:]
    assert "The submitted run was not successfully started" in run.failure_reason  # W&B's agent's own words
    error_log = wait_for(lambda: RunFile.objects.filter(run=run, name="error/error.log").first(), 60, "the agent's error.log")
    assert b"no such dataset: imagenet-21k" in bytes(error_log.content)
    client.force_login(member_user)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "The submitted run was not successfully started" in page and "error/error.log" in page


def test_cancelling_in_launchq_stops_the_wandb_agents_job(proc_queue, team, admin_key, admin_user, member_user, wandb_agents, jobs, tmp_path):
    proc = wandb_agents(admin_key, "proc-queue")
    wandb_agent_of(team)
    pid_file = tmp_path / "job.pid"
    run = launch_run(proc_queue, member_user, {}, project="proj", job={"command": f"{sys.executable} {jobs / 'long.py'} {pid_file}"})
    wait_state(run, "running", timeout=60)
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the job to start"))
    assert alive(pid)
    cancel(run, admin_user)
    wait_state(run, "cancelled", "failed", "finished", timeout=90)
    assert run.state == RunState.CANCELLED, (run.failure_reason, log_of(proc)[-3000:])
    wait_for(lambda: not alive(pid), 30, "the job to stop")
    assert "working" in run.output or run.events.filter(state="cancelled").exists()


@pytest.mark.timeout(400)
def test_a_plain_command_that_exits_0_finishes(proc_queue, team, admin_key, member_user, wandb_agents, client):
    """A job that never calls wandb.init(): W&B's agent says "failed to call wandb.init"; the job ended well."""
    proc = wandb_agents(admin_key, "proc-queue")
    wandb_agent_of(team)
    command = f"{sys.executable} -c \"print('trained without wandb')\""
    run = launch_run(proc_queue, member_user, {}, project="proj", job={"command": command})
    wait_state(run, "finished", "failed", timeout=180)  # W&B's agent looks for the job's wandb run for a minute first
    assert run.state == RunState.FINISHED, (run.failure_reason, log_of(proc)[-3000:])
    assert run.exit_code == 0 and not run.failure_reason
    assert history(run)[-1] == "finished"
    client.force_login(member_user)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "did not call wandb.init()" in page


# --- three agents, one queue ---------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_two_wandb_agents_and_launchqs_own_agent_run_each_of_50_runs_once(
    proc_queue, team, admin_user, member_user, admin_key, wandb_agents, agents, jobs, tmp_path
):
    ran = tmp_path / "ran.txt"
    registered, agent_token = Agent.issue(team, "wandb-box", created_by=admin_user)  # a W&B agent with its own agent token
    registered.queues.add(proc_queue)
    own, own_token = Agent.issue(team, "launchq-box", created_by=admin_user)
    own.queues.add(proc_queue)
    wandb_agents(admin_key, "proc-queue", max_jobs=4)
    wandb_agents(agent_token, "proc-queue", max_jobs=4)
    agents(own_token, "--queue", "proc-queue")
    wait_for(lambda: Agent.objects.filter(team=team, last_seen_at__isnull=False).count() == 3, 60, "three agents polling")

    command = f"{sys.executable} {jobs / 'any.py'} {ran}"
    runs = [launch_run(proc_queue, member_user, {}, project="proj", job={"command": command}) for _ in range(50)]
    wait_for(lambda: not Run.objects.exclude(state__in=("finished", "failed", "cancelled")).exists(), 400, "all 50 runs to end")

    states = Counter(Run.objects.values_list("state", flat=True))
    assert states == {"finished": 50}, [(r.run_id, r.state, r.failure_reason) for r in Run.objects.exclude(state="finished")]
    assert Counter(ran.read_text().split()) == {run.run_id: 1 for run in runs}  # each job ran exactly once
    for run in Run.objects.all():
        assert history(run).count("leased") == 1 and run.attempts == 1
    by_agent = Counter(Run.objects.values_list("agent__name", flat=True))
    assert set(by_agent) >= {"launchq-box", "wandb-box"} and len(by_agent) == 3, by_agent


# --- member text is never macro-expanded --------------------------------------------------------------


def test_member_macros_never_reach_a_wandb_agent(make_queue, team, admin_user, member_user, admin_key, wandb_agents, tmp_path):
    """W&B's agent fills every ${NAME} in what it gets from its environment: a member's `${SECRET}` is refused at pop.

    The queue runs containers; a `docker` on the agent's PATH records the `docker run` it is asked for (this
    machine has no Docker engine), so the test sees what W&B's agent would hand to Docker.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls.jsonl"
    (bin_dir / "docker").write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    (bin_dir / "docker").chmod(0o755)
    queue = make_queue(
        team, "container-queue", 'env:\n  - "REGION=${AGENT_REGION}"\n  - "NOTE={{note}}"\n', "yaml", (NOTE,),
        resource="local-container", user=admin_user,
    )
    proc = wandb_agents(admin_key, "container-queue", env={
        "SECRET_TOKEN": SECRET, "AGENT_REGION": "eu-west-1", "PATH": f"{bin_dir}:{os.environ['PATH']}",
    })
    wandb_agent_of(team)
    leak = launch_run(queue, member_user, {"note": "${SECRET_TOKEN}"}, project="proj", job={"image": "python:3.11"})
    named = launch_run(queue, member_user, {"note": "fine"}, project="proj", name="run-${SECRET_TOKEN}", job={"image": "python:3.11"})
    plain = launch_run(queue, member_user, {"note": "fine"}, project="proj", job={"image": "python:3.11", "command": "python -V"})

    run_calls = lambda: [c for c in map(json.loads, calls.read_text().splitlines()) if c[:1] == ["run"]] if calls.exists() else []  # noqa: E731
    wait_for(run_calls, 90, "the plain run to reach docker run")
    for run, field, value in ((leak, "note", "${SECRET_TOKEN}"), (named, "name", "run-${SECRET_TOKEN}")):
        wait_state(run, "failed", timeout=30)
        assert run.failure_reason.startswith("Not handed to W&B agent"), run.failure_reason
        assert MEMBER_MACRO.format(field=field, value=value) in run.failure_reason
        assert "starting" not in history(run)  # never acknowledged: the agent never had it
    assert Run.objects.get(pk=leak.pk).values == {"note": "${SECRET_TOKEN}"}  # nothing altered silently

    docker_run = run_calls()[0]
    assert "REGION=eu-west-1" in docker_run  # the admin's macro: W&B's agent filled it
    assert "NOTE=fine" in docker_run and docker_run[-2:] == ["python", "-V"]
    everything = calls.read_text() + log_of(proc) + json.dumps(list(Run.objects.values()), default=str)
    everything += "".join(bytes(f.content).decode(errors="replace") for f in RunFile.objects.all())
    assert SECRET not in everything
