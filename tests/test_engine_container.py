"""The local-container runner and the image build, for real: Debian's dockerd started by the test, images made offline.

The images are a FROM-scratch busybox and a debootstrap'd Debian with apt-get
and Python (what the generated Dockerfile needs); `.ci/engines containers`
makes both. A push goes to Debian's docker-registry on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from launchq.agent.engines import FAILED, FINISHED, RUNNING, EngineError, JobSpec
from launchq.agent.engines.container import ContainerEngine, run_argv
from tests.servers import BUSYBOX, debian_image, docker_engine, docker_registry

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    with docker_engine(tmp_path_factory.mktemp("docker")) as engine:
        yield engine


@pytest.fixture
def engine(docker):
    return ContainerEngine(docker=docker.docker, env=docker.env)


def spec(run_id: str, command: list[str], config: dict | None = None, image: str = BUSYBOX) -> JobSpec:
    return JobSpec(run_id=run_id, config=config or {}, image=image, command=command, entity="ml", project="vision",
                   queue="local", env={"LAUNCHQ_RUN_ID": run_id, "LAUNCHQ_RUN_NAME": "a run"})


def follow(engine, handle, timeout: float = 120):
    deadline = time.monotonic() + timeout
    status = engine.status(handle)
    while not status.done and time.monotonic() < deadline:
        time.sleep(0.2)
        status = engine.status(handle)
    return status


def test_a_container_runs_to_its_end_with_the_runs_identity_and_is_found_again(docker, engine):
    handle = engine.start(spec("fin00001", ["sh", "-c", 'echo "run $LAUNCHQ_RUN_ID: $LAUNCHQ_RUN_NAME"; echo to stderr >&2']))
    assert (handle.name, handle.attached) == ("launchq-fin00001", False)
    status = follow(engine, handle)
    assert (status.state, status.exit_code) == (FINISHED, 0)
    assert engine.logs(handle) == "run fin00001: a run\nto stderr\n"
    labels = json.loads(docker.cli("inspect", "--format", "{{json .Config.Labels}}", handle.name).stdout)
    assert labels["launchq.run-id"] == "fin00001" and labels["launchq.queue"] == "local"

    again = engine.start(spec("fin00001", ["sh", "-c", "echo second"]))  # popped again, or the agent restarted
    assert (again.name, again.attached) == (handle.name, True)
    assert docker.cli("ps", "--all", "--quiet", "--filter", "label=launchq.run-id=fin00001").stdout.split().__len__() == 1
    engine.remove(handle)
    assert docker.cli("ps", "--all", "--quiet", "--filter", "label=launchq.run-id=fin00001").stdout.strip() == ""


def test_a_failing_container_fails_the_run_with_its_exit_code(engine):
    handle = engine.start(spec("err00001", ["sh", "-c", "echo about to fail; exit 3"]))
    status = follow(engine, handle)
    assert (status.state, status.exit_code) == (FAILED, 3) and "exited with status 3" in status.reason
    assert engine.logs(handle) == "about to fail\n"
    engine.remove(handle)


def test_config_keys_are_docker_run_options(engine):
    handle = engine.start(spec("opt00001", ["sh", "-c", 'echo "$EPOCHS $(cat /etc/hostname)"'],
                                {"env": {"EPOCHS": "3"}, "hostname": "trainer"}))
    assert follow(engine, handle).state == FINISHED
    assert engine.logs(handle) == "3 trainer\n"
    engine.remove(handle)


@pytest.mark.parametrize("config", [{"name": "other"}, {"rm": True}, {"bad key": 1}])
def test_options_that_would_take_the_container_out_of_the_agents_hands_are_refused(config):
    with pytest.raises(EngineError):
        run_argv(spec("r1", ["true"], config))


def test_cancel_stops_a_running_container(engine):
    handle = engine.start(spec("can00001", ["sh", "-c", "trap 'echo got TERM; exit 143' TERM; while true; do sleep 1; done"]))
    deadline = time.monotonic() + 60
    while engine.status(handle).state != RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "was stopped" in engine.cancel(handle)
    status = engine.status(handle)
    assert status.done and status.exit_code == 143
    assert "got TERM" in engine.logs(handle)
    engine.remove(handle)


def test_an_image_that_is_not_there_is_the_engines_refusal(engine):
    with pytest.raises(EngineError) as refused:
        engine.start(spec("img00001", ["true"], {"pull": "never"}, image="launchq-test/missing:1"))
    assert "launchq-test/missing:1" in refused.value.message and refused.value.source.endswith("run")


def test_no_engine_is_a_clear_message(docker):
    engine = ContainerEngine(docker=docker.docker, env=dict(docker.env, DOCKER_HOST="unix:///nonexistent/docker.sock"))
    with pytest.raises(EngineError) as refused:
        engine.start(spec("eng00001", ["true"]))
    assert refused.value.message.startswith("no container engine answers") and refused.value.retryable


def test_a_source_directory_is_built_on_the_accelerator_base_image_pushed_and_run(docker, engine, tmp_path):
    """The generated Dockerfile for real: apt-get and Python on the Debian base, the build, the push, the run."""
    from launchq.agent.resolve import resolve_config
    from launchq.agent.runners import Options, plan_run

    base = debian_image(docker)
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("import os, sys\nprint('trained', os.environ['LAUNCHQ_RUN_ID'], sys.version_info[0])\n")
    with docker_registry(tmp_path / "registry") as registry:
        run = {"id": "bld00001", "name": "build", "resource": "kubernetes", "queue": "k", "project": "p", "entity": "e",
               "job": {"source_dir": str(source), "command": "python train.py"}}
        resolved = resolve_config(json.dumps({"builder": {"accelerator": {"base_image": base}}}), "json", {}, {}, {})
        options = Options(image_repository=f"{registry}/launchq-runs", docker=docker.docker, submit={"kubernetes": "true"})
        plan = plan_run(run, resolved, options=options, workdir=tmp_path / "work", environ={})
        assert f"FROM {base}" in plan.dockerfile and plan.image_uri == f"{registry}/launchq-runs:bld00001"
        for step in plan.build:  # docker build, then docker push
            result = docker.cli(*step.argv[1:], check=False, timeout=900)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        with urllib.request.urlopen(f"http://{registry}/v2/launchq-runs/tags/list", timeout=10) as answer:
            assert json.loads(answer.read())["tags"] == ["bld00001"]
    handle = engine.start(JobSpec(run_id="bld00001", config={}, image=plan.image_uri, env={"LAUNCHQ_RUN_ID": "bld00001"}))
    assert follow(engine, handle).state == FINISHED
    assert engine.logs(handle) == "trained bld00001 3\n"
    engine.remove(handle)
    assert Path(tmp_path / "work" / "Dockerfile").read_text() == plan.dockerfile


def test_followed_as_the_agent_does_a_container_is_removed_after_its_end_and_stopped_when_the_run_is_lost(docker, engine):
    from launchq.agent.remote import LetGo
    from tests.test_remote import Follower

    done = Follower(engine, spec("flw00001", ["sh", "-c", "echo working; sleep 1; echo done"]), local=True)
    done.run()
    assert done.result.state == FINISHED and done.outputs[-1] == "working\ndone\n"
    assert docker.cli("ps", "--all", "--quiet", "--filter", "label=launchq.run-id=flw00001").stdout.strip() == ""

    lost = Follower(engine, spec("flw00002", ["sh", "-c", "trap 'exit 143' TERM; while true; do sleep 1; done"]), local=True)
    lost.start()
    lost.wait_for_report("is running")
    lost.lost.set()
    lost.join(60)
    assert isinstance(lost.error, LetGo) and "was stopped" in lost.error.what
    assert docker.cli("ps", "--quiet", "--filter", "label=launchq.run-id=flw00002").stdout.strip() == ""
