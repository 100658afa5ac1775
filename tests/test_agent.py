"""The agent's own logic, without a server: macros, the builder section, runner plans and their failures.

The agent against a live server is in test_agent_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from launchq.agent.process import JobProcess, RunFailed, Step, Tail, describe_exit
from launchq.agent.resolve import builtins_for, resolve_config
from launchq.agent.runners import Options, docker_run_options, engine_problem, image_uri_for, job_environment, plan_run

ROOT = Path(__file__).resolve().parent.parent
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

CONFIG = """\
# the admin's config
run:
  id: ${run_id}
  name: ${run_name}
  project: ${project_name}
  entity: ${entity_name}
  image: ${image_uri}
  region: ${AWS_REGION}
  missing: ${NOT_ON_THIS_AGENT}
  note: "{{note}}"
  tagged: "note={{note}} run=${run_name}"
  epochs: "{{epochs}}"
builder:
  accelerator:
    base_image: ${BASE_IMAGE}
"""


def ticket(**overrides):
    run = {
        "id": "ab12cd34", "name": "swift-river-101", "queue": "q", "resource": "local-process",
        "project": "proj", "entity": "ml", "job": {"command": "python job.py"}, "values": {"note": "hi", "epochs": 3},
    }
    run.update(overrides)
    return run


def resolve(values=None, environ=None, image_uri=None, **run):
    r = ticket(**run)
    env = {"AWS_REGION": "eu-west-1", "BASE_IMAGE": "nvidia/cuda:12.4.1-runtime-ubuntu22.04", "AWS_SECRET_ACCESS_KEY": SECRET}
    env.update(environ or {})
    return resolve_config(CONFIG, "yaml", values or r["values"], builtins_for(r, image_uri), env)


# --- macros ------------------------------------------------------------------


def test_builtins_and_environment_fill_the_admins_macros():
    resolved = resolve(image_uri="ghcr.io/ml/runs:ab12cd34")
    run = resolved.data["run"]
    assert run["id"] == "ab12cd34"
    assert run["name"] == "swift-river-101"
    assert run["project"] == "proj"
    assert run["entity"] == "ml"
    assert run["image"] == "ghcr.io/ml/runs:ab12cd34"
    assert run["region"] == "eu-west-1"
    assert run["epochs"] == 3
    assert yaml.safe_load(resolved.text) == resolved.data


def test_builtins_win_over_environment_variables_of_the_same_name():
    resolved = resolve(environ={"run_id": "from-env", "project_name": "env-project", "entity_name": "evil", "run_name": "x"})
    assert resolved.data["run"]["id"] == "ab12cd34"
    assert resolved.data["run"]["project"] == "proj"
    assert resolved.data["run"]["entity"] == "ml"
    assert resolved.data["run"]["name"] == "swift-river-101"


def test_unfilled_macro_stays_as_written_and_is_a_warning_naming_it():
    resolved = resolve()
    assert resolved.data["run"]["missing"] == "${NOT_ON_THIS_AGENT}"
    assert resolved.data["run"]["image"] == "${image_uri}"  # a local process has no image
    by_macro = {w["macro"]: w for w in resolved.warnings}
    assert set(by_macro) == {"NOT_ON_THIS_AGENT", "image_uri"}
    assert all(w["code"] == "unfilled_macro" for w in resolved.warnings)
    assert "NOT_ON_THIS_AGENT" in by_macro["NOT_ON_THIS_AGENT"]["message"]


def test_builtin_image_uri_does_not_fall_through_to_the_environment():
    resolved = resolve(environ={"image_uri": "attacker/image"})
    assert resolved.data["run"]["image"] == "${image_uri}"


def test_member_values_and_run_name_are_never_expanded():
    """A member who types ${AWS_SECRET_ACCESS_KEY} gets that text, never the agent's secret."""
    leak = "${AWS_SECRET_ACCESS_KEY}"
    resolved = resolve(values={"note": leak, "epochs": 1}, name=leak)
    run = resolved.data["run"]
    assert run["note"] == leak
    assert run["name"] == leak
    assert run["tagged"] == f"note={leak} run={leak}"
    assert SECRET not in resolved.text
    assert "AWS_SECRET_ACCESS_KEY" not in [w["macro"] for w in resolved.warnings]


def test_builder_section_is_removed_from_what_the_resource_gets():
    resolved = resolve()
    assert "builder" not in resolved.data
    assert "builder" not in yaml.safe_load(resolved.text)
    assert "base_image" not in resolved.text
    # ...but the agent keeps it, macros filled, to build on
    assert resolved.builder == {"accelerator": {"base_image": "nvidia/cuda:12.4.1-runtime-ubuntu22.04"}}


def test_json_config_resolves_to_json():
    text = '{"builder": {"accelerator": {"base_image": "python:3.12"}}, "out": "s3://b/${project_name}/{{n}}"}'
    resolved = resolve_config(text, "json", {"n": 2}, builtins_for(ticket(), None), {})
    assert json.loads(resolved.text) == {"out": "s3://b/proj/2"}


# --- runner plans ------------------------------------------------------------


def test_local_process_plan(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    run = ticket(job={"command": "python job.py --name '${AWS_SECRET_ACCESS_KEY}'", "source_dir": str(source)})
    environ = {"PATH": os.environ["PATH"], "LAUNCHQ_AGENT_TOKEN": "lqa_secret", "CUDA_VISIBLE_DEVICES": "0"}
    plan = plan_run(run, resolve(), options=Options(), workdir=tmp_path / "work", environ=environ)
    step = plan.job
    assert plan.build == [] and plan.image_uri is None and not plan.needs_engine
    assert step.argv == ["python", "job.py", "--name", "${AWS_SECRET_ACCESS_KEY}"]  # shlex, no shell, no expansion
    assert step.cwd == str(source)
    config_path = Path(step.env["LAUNCHQ_CONFIG_PATH"])
    assert yaml.safe_load(config_path.read_text())["run"]["id"] == "ab12cd34"
    assert step.env["LAUNCHQ_RUN_ID"] == "ab12cd34"
    assert step.env["LAUNCHQ_RUN_NAME"] == "swift-river-101"
    assert step.env["LAUNCHQ_PROJECT"] == "proj"
    assert step.env["LAUNCHQ_ENTITY"] == "ml"
    assert step.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "LAUNCHQ_AGENT_TOKEN" not in step.env  # the job never sees the agent's token


def test_local_process_missing_source_dir_fails_plainly(tmp_path):
    run = ticket(job={"command": "python job.py", "source_dir": str(tmp_path / "nope")})
    with pytest.raises(RunFailed) as failed:
        plan_run(run, resolve(), options=Options(hostname="gpu-1"), workdir=tmp_path / "w", environ={})
    assert "does not exist on this agent (gpu-1)" in failed.value.reason


@pytest.mark.parametrize("resource", ["kubernetes", "sagemaker", "vertex"])
def test_submit_resource_without_submit_command_fails_with_that_reason(tmp_path, resource):
    run = ticket(resource=resource, job={"image": "ghcr.io/ml/trainer:1"})
    with pytest.raises(RunFailed) as failed:
        plan_run(run, resolve(), options=Options(), workdir=tmp_path, environ={})
    assert f"No submit command for {resource} is configured on this agent" in failed.value.reason
    assert f"--submit {resource}=" in failed.value.reason


def test_submit_plan_hands_the_resolved_config_as_json_on_stdin(tmp_path):
    run = ticket(resource="kubernetes", job={"image": "ghcr.io/ml/trainer:1"})
    options = Options(submit={"kubernetes": "kubectl apply -f -"})
    resolved = resolve(image_uri=image_uri_for(run, "kubernetes", options))
    plan = plan_run(run, resolved, options=options, workdir=tmp_path, environ={})
    assert plan.job.argv == ["kubectl", "apply", "-f", "-"]
    sent = json.loads(plan.job.stdin)
    assert sent == resolved.data and "builder" not in sent
    assert sent["run"]["image"] == "ghcr.io/ml/trainer:1"
    assert plan.build == [] and not plan.needs_engine
    assert plan.job.env["LAUNCHQ_IMAGE_URI"] == "ghcr.io/ml/trainer:1"


def test_container_build_plan_writes_dockerfile_on_the_accelerator_base_image(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.txt").write_text("numpy\n")
    run = ticket(resource="local-container", job={"command": "python train.py", "source_dir": str(source)})
    options = Options(image_repository="ghcr.io/ml/runs")
    uri = image_uri_for(run, "local-container", options)
    assert uri == "ghcr.io/ml/runs:ab12cd34"
    plan = plan_run(run, resolve(image_uri=uri), options=options, workdir=tmp_path / "w", environ={})
    assert plan.needs_engine
    assert plan.dockerfile.splitlines()[1] == "FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert (tmp_path / "w" / "Dockerfile").read_text() == plan.dockerfile
    assert "RUN python -m pip install -r requirements.txt" in plan.dockerfile
    assert plan.build[0].argv[:4] == ["docker", "build", "--tag", uri]
    assert plan.build[0].argv[-1] == str(source)
    assert len(plan.build) == 1  # local-container: built here, not pushed
    argv = plan.job.argv
    assert argv[:2] == ["docker", "run"] and argv[-1] == uri
    assert "--volume" in argv and argv[argv.index("--volume") + 1].endswith(":/launchq/launchq-config.yaml:ro")
    assert "LAUNCHQ_CONFIG_PATH=/launchq/launchq-config.yaml" in argv
    assert "LAUNCHQ_RUN_ID=ab12cd34" in argv
    assert plan.job.cleanup == ["docker", "rm", "--force", "launchq-ab12cd34"]


def test_container_base_image_filled_badly_by_a_macro_fails(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    run = ticket(resource="local-container", job={"command": "python train.py", "source_dir": str(source)})
    resolved = resolve(environ={"BASE_IMAGE": "not an image"}, image_uri="launchq-runs:ab12cd34")
    with pytest.raises(RunFailed) as failed:
        plan_run(run, resolved, options=Options(), workdir=tmp_path / "w", environ={})
    assert "not a valid image reference" in failed.value.reason


def test_remote_resource_builds_and_pushes(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    run = ticket(resource="vertex", job={"command": "python train.py", "source_dir": str(source)})
    options = Options(submit={"vertex": "submit-vertex"}, image_repository="europe-docker.pkg.dev/p/r/runs")
    plan = plan_run(run, resolve(image_uri=image_uri_for(run, "vertex", options)), options=options, workdir=tmp_path / "w", environ={})
    assert [s.argv[1] for s in plan.build] == ["build", "push"]
    assert plan.needs_engine


def test_docker_run_options_from_the_local_container_config():
    assert docker_run_options({"gpus": "all", "env": ["A=1", "B=2"], "rm": True, "privileged": False, "e": {"X": 1}, "shm-size": None}) == [
        "--gpus", "all", "--env", "A=1", "--env", "B=2", "--rm", "-e", "X=1",
    ]
    with pytest.raises(RunFailed):
        docker_run_options({"--bad key": 1})


def test_no_docker_engine_is_a_plain_failure_reason():
    """This machine has the docker client and no engine: the real check says so."""
    problem = engine_problem("docker")
    assert problem is not None and problem.startswith("no Docker engine on this agent: ")
    missing = engine_problem("/nonexistent/docker")
    assert missing == "no Docker engine on this agent: the '/nonexistent/docker' command is not installed"


def test_job_environment_drops_only_the_agent_token():
    env = job_environment({"HOME": "/h", "LAUNCHQ_AGENT_TOKEN": "lqa_x"}, ticket(), "/c.yaml", "img:1")
    assert env["HOME"] == "/h" and "LAUNCHQ_AGENT_TOKEN" not in env
    assert env["LAUNCHQ_IMAGE_URI"] == "img:1" and env["LAUNCHQ_CONFIG_PATH"] == "/c.yaml"


# --- processes ---------------------------------------------------------------


def test_tail_keeps_the_last_characters_and_says_when_it_changed():
    tail = Tail(limit=10)
    assert tail.take() is None
    tail.write("0123456789abc")
    assert tail.take() == "3456789abc"
    assert tail.take() is None
    tail.write("Z")
    assert tail.take() == "456789abcZ"


def test_job_process_collects_output_and_exit_status(tmp_path):
    tail = Tail()
    proc = JobProcess(Step([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], "the job"), tail)
    proc.start()
    assert proc.wait(20) == 3
    proc.finish()
    assert "out" in tail.text and "err" in tail.text


def test_job_process_feeds_stdin(tmp_path):
    tail = Tail()
    proc = JobProcess(Step([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], "x", stdin=b"hello"), tail)
    proc.start()
    assert proc.wait(20) == 0
    proc.finish()
    assert "HELLO" in tail.text


def test_job_process_stop_ends_the_whole_session(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = JobProcess(Step([sys.executable, "-c", script], "the job"), Tail())
    proc.start()
    deadline = time.monotonic() + 20
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    code = proc.stop(grace=5)
    assert code == -signal.SIGTERM
    assert describe_exit(code) == "signal SIGTERM"
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_command_that_cannot_start_fails_plainly():
    with pytest.raises(RunFailed) as failed:
        JobProcess(Step(["/nonexistent/python", "x.py"], "the job"), Tail()).start()
    assert failed.value.reason.startswith("The job could not start: No such file or directory")


def test_importing_the_agent_does_not_load_django():
    """The agent runs on machines without Django: importing every agent module must not pull it in."""
    code = (
        "import sys\n"
        "import launchq.agent, launchq.agent.cli, launchq.agent.loop, launchq.agent.runners\n"
        "import launchq.agent.reporter, launchq.agent.resolve, launchq.agent.client, launchq.agent.process\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'ninja', 'pydantic'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_agent_command_line_needs_url_and_token():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHQ_")}
    result = subprocess.run([sys.executable, "-m", "launchq.agent"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--url" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "launchq.agent", "--url", "http://127.0.0.1:9", "--token", "lqa_x", "--submit", "k8s=kubectl"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "--submit takes RESOURCE=COMMAND" in result.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
