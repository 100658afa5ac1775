"""The agent as a real process against a live test server: runs, leases, outages, signals, concurrency.

Every agent here is `python -m launchq.agent` in a subprocess, talking HTTP to
pytest-django's live server (on localhost), stopped by the test that started it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.utils import timezone

from launchq.guardrails import Field, FieldType
from launchq.models import Agent, Run, RunEvent, RunState
from launchq.runs import cancel, launch_run

ROOT = Path(__file__).resolve().parent.parent
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
LEAK = "${AWS_SECRET_ACCESS_KEY}"

CONFIG = """\
# An end-to-end queue: macros the agent fills, fields a member fills.
run:
  id: ${run_id}
  name: ${run_name}
  project: ${project_name}
  entity: ${entity_name}
  image: ${image_uri}
region: ${LQ_REGION}
missing: ${LQ_NOT_SET}
note: "{{note}}"
epochs: "{{epochs}}"
builder:
  accelerator:
    base_image: nvidia/cuda:12.4.1-runtime-ubuntu22.04
"""
FIELDS = [
    Field("epochs", FieldType.INTEGER, minimum=1, maximum=10, default=3),
    Field("note", FieldType.STRING, default="", max_length=200),
]

JOB = """\
import json, os, sys, time
import yaml

text = open(os.environ["LAUNCHQ_CONFIG_PATH"]).read()
config = yaml.safe_load(text)
seen = {
    "config": config,
    "config_text": text,
    "env": {k: v for k, v in os.environ.items() if k.startswith("LAUNCHQ_")},
    "cwd": os.getcwd(),
}
with open(f"seen-{os.environ['LAUNCHQ_RUN_ID']}.json", "w") as f:
    json.dump(seen, f)
hold = os.environ.get("LQ_HOLD")
if hold and os.path.exists(hold):
    with open(hold + ".pid", "w") as f:
        f.write(str(os.getpid()))
    print("holding", flush=True)
    deadline = time.time() + 60
    while os.path.exists(hold) and time.time() < deadline:
        time.sleep(0.05)
for i in range(1, config["epochs"] + 1):
    print(f"epoch {i}/{config['epochs']}", flush=True)
sys.exit(int(os.environ.get("LQ_EXIT", "0")))
"""


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    (path / "job.py").write_text(JOB)
    return path


@pytest.fixture
def queue(team, admin_user, make_queue):
    return make_queue(team, "local-queue", CONFIG, fields=FIELDS, user=admin_user)


@pytest.fixture
def register(team, admin_user):
    def make(name, *queues):
        agent, token = Agent.issue(team, name, created_by=admin_user)
        agent.queues.add(*queues)
        return agent, token

    return make


@pytest.fixture
def agents(live_server, tmp_path):
    """Start `python -m launchq.agent` processes; every one is stopped when the test ends."""
    started: list[subprocess.Popen] = []

    def start(token: str, *args: str, url: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        n = len(started)
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHQ_", "DJANGO_SETTINGS"))}
        environ.update(LAUNCHQ_AGENT_TOKEN=token, **(env or {}))
        log = open(tmp_path / f"agent-{n}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "launchq.agent", "--url", url or live_server.url, "--poll-max", "0.5",
             "--work-dir", str(tmp_path / f"work-{n}"), "--hostname", f"test-box-{n}", *args],
            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        proc.log_path = tmp_path / f"agent-{n}.log"
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_state(run: Run, *states: str, timeout: float = 30.0) -> Run:
    def check():
        run.refresh_from_db()
        return run.state in states

    wait_for(check, timeout, f"run {run.run_id} to be {'/'.join(states)} (it is {run.state})")
    return run


def log_of(proc) -> str:
    return Path(proc.log_path).read_text(errors="replace")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, OSError):
        return False


# --- a run, end to end ---------------------------------------------------------


def test_member_launch_runs_on_an_agent_and_finishes(queue, member_user, register, agents, source):
    agent, token = register("box-1", queue)
    proc = agents(token, "--queue", "local-queue", env={
        "AWS_SECRET_ACCESS_KEY": SECRET, "LQ_REGION": "eu-west-1", "run_id": "from-the-agent-env",
    })
    run = launch_run(
        queue, member_user, {"epochs": 3, "note": LEAK}, project="proj", name=LEAK,
        job={"command": f"{sys.executable} job.py", "source_dir": str(source)},
    )
    wait_state(run, "finished", "failed")
    assert run.state == "finished", (run.failure_reason, run.output, log_of(proc))
    assert run.exit_code == 0

    seen = json.loads((source / f"seen-{run.run_id}.json").read_text())
    config = seen["config"]
    assert config["run"] == {"id": run.run_id, "name": LEAK, "project": "proj", "entity": "ml", "image": "${image_uri}"}
    assert config["region"] == "eu-west-1"  # from the agent's environment
    assert config["missing"] == "${LQ_NOT_SET}"  # left as written
    assert config["note"] == LEAK and config["epochs"] == 3
    assert "builder" not in config
    assert SECRET not in seen["config_text"] and SECRET not in json.dumps(seen)
    assert seen["env"]["LAUNCHQ_RUN_ID"] == run.run_id
    assert seen["env"]["LAUNCHQ_RUN_NAME"] == LEAK
    assert seen["env"]["LAUNCHQ_PROJECT"] == "proj" and seen["env"]["LAUNCHQ_ENTITY"] == "ml"
    assert "LAUNCHQ_AGENT_TOKEN" not in seen["env"]
    assert seen["cwd"] == str(source)

    # what the run page shows
    assert "epoch 3/3" in run.output
    assert run.resolved_config == seen["config_text"]
    assert SECRET not in run.resolved_config
    assert {w["macro"] for w in run.warnings} == {"LQ_NOT_SET", "image_uri"}
    assert [e.state for e in run.events.all()] == ["pending", "leased", "starting", "running", "finished"]
    assert run.agent == agent and run.attempts == 1 and run.started_at and run.finished_at
    agent.refresh_from_db()
    assert agent.state == "polling" and agent.hostname == "test-box-0"


def test_failed_job_fails_the_run_with_its_exit_status(queue, member_user, register, agents, source):
    _, token = register("box-1", queue)
    agents(token, env={"LQ_EXIT": "3"})
    run = launch_run(queue, member_user, {"epochs": 1}, project="proj", job={"command": f"{sys.executable} job.py", "source_dir": str(source)})
    wait_state(run, "finished", "failed")
    assert run.state == "failed" and run.exit_code == 3
    assert run.failure_reason == "The job exited with status 3."
    assert "epoch 1/1" in run.output


def test_runner_failure_reasons_and_submit_commands(team, member_user, register, agents, make_queue, source, admin_user):
    """No engine, no submit command, a failing submit command: each fails with its reason; a good submit finishes."""
    container = make_queue(team, "gpu-queue", CONFIG, fields=FIELDS, resource="local-container", user=admin_user)
    k8s = make_queue(team, "k8s-queue", CONFIG, fields=FIELDS, resource="kubernetes", user=admin_user)
    vertex = make_queue(team, "vertex-queue", CONFIG, fields=FIELDS, resource="vertex", user=admin_user)
    sagemaker = make_queue(team, "sagemaker-queue", CONFIG, fields=FIELDS, resource="sagemaker", user=admin_user)
    _, token = register("box-1", container, k8s, vertex, sagemaker)
    submit = f"{sys.executable} -c \"import json,sys; d=json.load(sys.stdin); print('submitted', sorted(d), d['run']['image'])\""
    proc = agents(token, "--submit", f"kubernetes={submit}", "--submit", f"vertex={sys.executable} -c 'import sys; sys.exit(4)'",
                  "--image-repository", "registry.example.com/ml/runs")

    built = launch_run(container, member_user, {}, project="proj", job={"command": "python job.py", "source_dir": str(source)})
    submitted = launch_run(k8s, member_user, {}, project="proj", job={"image": "ghcr.io/ml/trainer:1"})
    refused = launch_run(vertex, member_user, {}, project="proj", job={"image": "ghcr.io/ml/trainer:1"})
    unconfigured = launch_run(sagemaker, member_user, {}, project="proj", job={"image": "ghcr.io/ml/trainer:1"})
    for run in (built, submitted, refused, unconfigured):
        wait_state(run, "finished", "failed", timeout=60)

    assert built.state == "failed", log_of(proc)
    assert built.failure_reason.startswith("no Docker engine on this agent: ")
    assert built.dockerfile.splitlines()[1] == "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert "ENTRYPOINT [\"python\", \"job.py\"]" in built.dockerfile
    assert built.image_uri == ""  # nothing was built, so nothing claims an image
    assert "registry.example.com/ml/runs:" + built.run_id in built.resolved_config  # what ${image_uri} will be

    assert submitted.state == "finished", (submitted.failure_reason, submitted.output)
    assert "submitted ['epochs', 'missing', 'note', 'region', 'run'] ghcr.io/ml/trainer:1" in submitted.output
    assert submitted.image_uri == "ghcr.io/ml/trainer:1"
    assert "handed to kubernetes" in submitted.events.last().message

    assert refused.state == "failed" and refused.exit_code == 4
    assert refused.failure_reason.startswith("The submit command `") and refused.failure_reason.endswith("exited with status 4.")

    assert unconfigured.state == "failed"
    assert unconfigured.failure_reason.startswith("No submit command for sagemaker is configured on this agent")


# --- leases --------------------------------------------------------------------


def test_agent_killed_mid_run_run_returns_to_pending_and_another_agent_finishes_it(
    queue, member_user, register, agents, source, tmp_path, settings
):
    settings.LAUNCHQ_LEASE_SECONDS = 2
    hold = tmp_path / "hold"
    hold.write_text("hold")
    first, token1 = register("box-1", queue)
    second, token2 = register("box-2", queue)
    doomed = agents(token1, env={"LQ_HOLD": str(hold)})
    run = launch_run(queue, member_user, {"epochs": 2}, project="proj", job={"command": f"{sys.executable} job.py", "source_dir": str(source)})
    wait_state(run, "running")
    job_pid = int(wait_for(lambda: Path(str(hold) + ".pid").exists() and Path(str(hold) + ".pid").read_text(), what="the job to start"))

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    wait_for(lambda: not alive(job_pid), 10, "the dead agent's job to die with it")
    hold.unlink()
    run.refresh_from_db()
    wait_for(lambda: run.lease_expires_at < timezone.now(), 10, "the lease to run out")

    agents(token2)
    wait_state(run, "finished", "failed", timeout=60)
    assert run.state == "finished", run.failure_reason
    assert run.agent == second and run.attempts == 2
    events = list(run.events.values_list("state", "agent__name"))
    assert events == [
        ("pending", None), ("leased", "box-1"), ("starting", "box-1"), ("running", "box-1"),
        ("pending", "box-1"),  # the lease of box-1 ran out
        ("leased", "box-2"), ("starting", "box-2"), ("running", "box-2"), ("finished", "box-2"),
    ]
    assert "ran out" in run.events.get(state="pending", agent=first).message
    assert "epoch 2/2" in run.output and "holding" not in run.output  # the second attempt's output only


def test_cancel_stops_the_running_job(queue, member_user, register, agents, source, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("hold")
    _, token = register("box-1", queue)
    agents(token, env={"LQ_HOLD": str(hold)})
    run = launch_run(queue, member_user, {}, project="proj", job={"command": f"{sys.executable} job.py", "source_dir": str(source)})
    wait_state(run, "running")
    job_pid = int(wait_for(lambda: Path(str(hold) + ".pid").exists() and Path(str(hold) + ".pid").read_text(), what="the job"))
    cancel(run, member_user)
    wait_state(run, "cancelled", "failed", "finished", timeout=30)
    assert run.state == "cancelled"
    assert not alive(job_pid)
    assert "holding" in run.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_job_reports_it_and_exits_0(signum, queue, member_user, register, agents, source, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("hold")
    agent, token = register("box-1", queue)
    proc = agents(token, env={"LQ_HOLD": str(hold)})
    run = launch_run(queue, member_user, {}, project="proj", job={"command": f"{sys.executable} job.py", "source_dir": str(source)})
    wait_state(run, "running")
    job_pid = int(wait_for(lambda: Path(str(hold) + ".pid").exists() and Path(str(hold) + ".pid").read_text(), what="the job"))
    proc.send_signal(signum)
    assert proc.wait(30) == 0, log_of(proc)
    assert not alive(job_pid)
    run.refresh_from_db()
    assert run.state == "failed"
    assert f"The agent was stopped ({signum.name})" in run.failure_reason
    agent.refresh_from_db()
    assert agent.state == "offline"


def test_revoked_agent_stops(queue, register, agents):
    agent, token = register("box-1", queue)
    proc = agents(token)
    wait_for(lambda: Agent.objects.get(pk=agent.pk).last_seen_at, what="the agent to say hello")
    Agent.objects.filter(pk=agent.pk).update(revoked_at=timezone.now())
    assert proc.wait(30) == 3
    assert "refused the agent token" in log_of(proc)


def test_unknown_queue_is_a_clear_startup_error(queue, register, agents):
    _, token = register("box-1", queue)
    proc = agents(token, "--queue", "no-such-queue")
    assert proc.wait(30) == 2
    assert "not registered for queue(s) no-such-queue" in log_of(proc)


# --- the server going away --------------------------------------------------------


class Proxy:
    """A TCP proxy to the live server that can be taken down and brought back on the same port."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener:
            self._thread.join(5)  # closed only once nothing waits in accept(), so new connections are refused
            listener.close()
        with self._lock:
            for conn in list(self._open):
                conn.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_agent_rides_out_a_server_outage_without_losing_its_run(live_server, queue, member_user, register, agents, source, tmp_path):
    port = int(live_server.url.rsplit(":", 1)[1])
    proxy = Proxy(port)
    proxy.up()
    try:
        hold = tmp_path / "hold"
        hold.write_text("hold")
        _, token = register("box-1", queue)
        proc = agents(token, url=f"http://localhost:{proxy.port}", env={"LQ_HOLD": str(hold)})
        run = launch_run(queue, member_user, {"epochs": 4}, project="proj", job={"command": f"{sys.executable} job.py", "source_dir": str(source)})
        wait_state(run, "running")
        wait_for(lambda: Path(str(hold) + ".pid").exists(), what="the job")

        proxy.down()  # the server is unreachable...
        hold.unlink()  # ...while the job finishes
        wait_for(lambda: "Server unavailable" in log_of(proc), 20, "the agent to notice the outage")
        time.sleep(1.5)
        run.refresh_from_db()
        assert run.state == "running"  # its end is not reported yet, and not lost
        assert proc.poll() is None  # the agent did not crash

        proxy.up()
        wait_state(run, "finished", "failed", timeout=60)
        assert run.state == "finished", run.failure_reason
        assert "epoch 4/4" in run.output and run.attempts == 1
    finally:
        proxy.down()


def test_agent_waits_for_a_server_that_is_not_up_yet(live_server, queue, member_user, register, agents, source):
    port = int(live_server.url.rsplit(":", 1)[1])
    proxy = Proxy(port)
    proxy.up()
    proxy.down()
    try:
        _, token = register("box-1", queue)
        proc = agents(token, url=f"http://localhost:{proxy.port}")
        wait_for(lambda: "waiting for it" in log_of(proc), 20, "the agent to wait for the server")
        assert proc.poll() is None
        run = launch_run(queue, member_user, {"epochs": 1}, project="proj", job={"command": f"{sys.executable} job.py", "source_dir": str(source)})
        proxy.up()
        wait_state(run, "finished", timeout=60)
    finally:
        proxy.down()


# --- exactly once, across processes -------------------------------------------------

POPPER = textwrap.dedent("""\
    import sys, time
    from launchq.agent.client import Server, ServerUnavailable
    server = Server(sys.argv[1], sys.argv[2])
    deadline = time.monotonic() + 120
    for _ in range(2000):
        if time.monotonic() > deadline:
            sys.exit("out of time")
        try:
            run = server.post("pop", {})
        except ServerUnavailable:
            time.sleep(0.05)
            continue
        if run is None:
            break
        print(run["id"], flush=True)
""")


def test_agent_processes_pop_hundreds_of_runs_each_exactly_once(live_server, team, queue, member_user, register):
    tokens = [register(f"box-{i}", queue)[1] for i in range(6)]
    runs = {launch_run(queue, member_user, {}, project="proj", job={"command": "true"}).run_id for _ in range(300)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
    workers = [
        subprocess.Popen([sys.executable, "-c", POPPER, live_server.url, token], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for token in tokens
    ]
    taken: list[str] = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=180)
            assert worker.returncode == 0, err
            taken += out.split()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert [r for r, n in Counter(taken).items() if n > 1] == []
    assert set(taken) == runs and len(taken) == 300
    assert Run.objects.filter(state=RunState.LEASED, attempts=1).count() == 300
    assert RunEvent.objects.filter(state=RunState.LEASED).count() == 300
    assert len(set(Run.objects.values_list("agent", flat=True))) > 1  # the work was shared


def test_several_agents_finish_every_run_once(queue, member_user, register, agents):
    for i in range(3):
        agents(register(f"box-{i}", queue)[1])
    runs = [
        launch_run(queue, member_user, {}, project="proj", job={"command": f"{sys.executable} -c \"print('hello from the job')\""})
        for _ in range(24)
    ]
    for run in runs:
        wait_state(run, "finished", "failed", timeout=90)
        assert run.state == "finished", run.failure_reason
        assert "hello from the job" in run.output
    leased = Counter(RunEvent.objects.filter(state=RunState.LEASED).values_list("run__run_id", flat=True))
    assert set(leased.values()) == {1} and len(leased) == 24
