"""The vertex runner: the real aiplatform_v1 JobService client over REST, against a faithful fake on 127.0.0.1."""

from __future__ import annotations

import pytest

from launchq.agent.engines import CANCELLED, FAILED, FINISHED, RUNNING, WAITING, EngineError, JobSpec
from launchq.agent.engines.vertex import NO_PROJECT, VertexEngine, custom_job

pytestmark = pytest.mark.engine

CONFIG = {
    "project": "ml-team", "region": "europe-west4",
    "worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_TESLA_T4",
                                            "accelerator_count": 1},
                           "replica_count": 1, "container_spec": {"args": ["--old"], "env": [{"name": "EPOCHS", "value": "3"}]}}],
    "scheduling": {"timeout": "3600s"},
    "service_account": "trainer@ml-team.iam.gserviceaccount.com",
}


def spec(run_id: str, config: dict | None = None, **kw) -> JobSpec:
    kw.setdefault("image", "europe-docker.pkg.dev/ml-team/runs/train:1")
    return JobSpec(run_id=run_id, config=CONFIG if config is None else config, entity="ML", project="vision",
                   queue="vertex-queue", env={"LAUNCHQ_RUN_ID": run_id}, **kw)


@pytest.fixture(scope="module")
def fake():
    from tests.vertex_fake import VertexFake

    with VertexFake() as fake:
        yield fake


@pytest.fixture
def engine(fake):
    from google.auth.credentials import AnonymousCredentials

    return VertexEngine(endpoint=fake.url, credentials=AnonymousCredentials())


def test_the_custom_job_gets_the_runs_image_command_identity_and_labels():
    project, region, job = custom_job(spec("ab12cd34", command=["python", "train.py"]))
    assert (project, region) == ("ml-team", "europe-west4")
    container = job.job_spec.worker_pool_specs[0].container_spec
    assert container.image_uri == spec("x").image and list(container.command) == ["python", "train.py"] and not container.args
    assert [(e.name, e.value) for e in container.env] == [("EPOCHS", "3"), ("LAUNCHQ_RUN_ID", "ab12cd34")]
    assert job.display_name == "launchq-ab12cd34" and job.job_spec.service_account == CONFIG["service_account"]
    assert dict(job.labels) == {"launchq-run-id": "ab12cd34", "launchq-team": "ml", "launchq-project": "vision", "launchq-queue": "vertex-queue"}


def test_the_agents_project_and_region_stand_in_for_the_configs():
    config = {k: v for k, v in CONFIG.items() if k not in ("project", "region")}
    assert custom_job(spec("r1", config), "agent-project", "us-central1")[:2] == ("agent-project", "us-central1")
    with pytest.raises(EngineError) as refused:
        custom_job(spec("r1", config), None, "us-central1")
    assert refused.value.message == NO_PROJECT


def test_an_unknown_custom_job_field_is_refused_by_the_client_types_before_sending(fake, engine):
    before = len(fake.requests)
    with pytest.raises(EngineError) as refused:
        engine.start(spec("bad00001", dict(CONFIG, worker_pool_spec=[])))
    assert "worker_pool_spec" in refused.value.message and refused.value.source.startswith("aiplatform_v1 client")
    assert len(fake.requests) == before


def test_a_job_is_created_once_and_followed_to_succeeded(fake, engine):
    handle = engine.start(spec("fin00001", command=["python", "train.py"]))
    assert handle.where == "europe-west4" and handle.name.startswith("projects/ml-team/locations/europe-west4/customJobs/")
    assert not handle.attached
    sent = fake.jobs[handle.name]
    assert sent.job_spec.worker_pool_specs[0].container_spec.image_uri == spec("x").image

    again = engine.start(spec("fin00001"))  # popped again, or a restarted agent
    assert again.attached and again.name == handle.name
    assert sum(1 for j in fake.jobs.values() if j.labels.get("launchq-run-id") == "fin00001") == 1

    assert engine.status(handle).state == WAITING
    fake.set_state(handle.name, "JOB_STATE_RUNNING")
    assert engine.status(handle).state == RUNNING
    fake.set_state(handle.name, "JOB_STATE_SUCCEEDED")
    status = engine.status(handle)
    assert (status.state, status.exit_code) == (FINISHED, 0)
    assert engine.logs(handle) is None and "Cloud Logging" in engine.log_note


def test_a_failed_job_fails_the_run_with_vertex_ais_error(fake, engine):
    handle = engine.start(spec("err00001"))
    fake.set_state(handle.name, "JOB_STATE_FAILED", code=3, message="The replica workerpool0-0 exited with a non-zero status of 1.")
    status = engine.status(handle)
    assert status.state == FAILED and "non-zero status of 1" in status.reason and "code 3" in status.reason


def test_cancel_cancels_the_job(fake, engine):
    handle = engine.start(spec("can00001"))
    assert "asked to cancel" in engine.cancel(handle)
    assert engine.status(handle).state == RUNNING and "being cancelled" in engine.status(handle).message
    fake.set_state(handle.name, "JOB_STATE_CANCELLED")
    assert engine.status(handle).state == CANCELLED
    assert "already ended" in engine.cancel(handle)


def test_what_vertex_refuses_is_its_own_words(engine):
    config = dict(CONFIG, worker_pool_specs=[{"replica_count": 1, "container_spec": {}}])
    with pytest.raises(EngineError) as refused:
        engine.start(spec("req00001", config))
    assert "400" in refused.value.message and "machine_spec.machine_type must be set" in refused.value.message
    assert refused.value.source.startswith("Vertex AI (http://127.0.0.1:") and not refused.value.retryable


def test_an_unreachable_endpoint_may_be_retried():
    from google.auth.credentials import AnonymousCredentials

    from tests.servers import free_port

    engine = VertexEngine(endpoint=f"http://127.0.0.1:{free_port()}", credentials=AnonymousCredentials())
    with pytest.raises(EngineError) as unreachable:
        engine.start(spec("net00001"))
    assert unreachable.value.retryable and "cannot reach Vertex AI" in unreachable.value.message


def test_missing_google_credentials_say_how_to_give_them(tmp_path, monkeypatch):
    from tests.servers import free_port

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    closed = f"127.0.0.1:{free_port()}"  # Google's metadata server is never asked for, only a closed local port
    monkeypatch.setenv("GCE_METADATA_HOST", closed)
    monkeypatch.setenv("GCE_METADATA_IP", closed)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    with pytest.raises(EngineError) as refused:
        VertexEngine(endpoint="http://127.0.0.1:9").start(spec("cred0001"))
    assert "no Google credentials" in refused.value.message and "GOOGLE_APPLICATION_CREDENTIALS" in refused.value.message
