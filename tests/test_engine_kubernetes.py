"""The kubernetes runner, driven through the official client against a real API server with the real Job controller.

The test plays the scheduler and the kubelet (there is none): it binds the Pods
the Job controller makes and reports their status, and the Job controller turns
that into the Job's own Complete or Failed, as in a cluster.
"""

from __future__ import annotations

import json
import time

import pytest

from launchq.agent.engines import CANCELLED, FAILED, FINISHED, RUNNING, WAITING, EngineError, JobSpec
from launchq.agent.engines.kubernetes import UNKNOWN_KEY, KubernetesEngine, job_manifest
from tests import kube_helpers as kube

pytestmark = pytest.mark.engine


@pytest.fixture
def cluster(kube_cluster):
    return kube_cluster


@pytest.fixture
def engine(cluster):
    return KubernetesEngine(kubeconfig=str(cluster.kubeconfig))


def spec(run_id: str, config: dict | None = None, **kw) -> JobSpec:
    kw.setdefault("image", "registry.example/team/train:1")
    return JobSpec(run_id=run_id, config=config or {}, entity="ml", project="vision", queue="gpu queue",
                   env={"LAUNCHQ_RUN_ID": run_id}, **kw)


def follow(engine, handle, until, *, timeout: float = 60):
    """Statuses until one is in `until`: the Job controller and GC work in the background."""
    deadline = time.monotonic() + timeout
    status = engine.status(handle)
    while status.state not in until and time.monotonic() < deadline:
        time.sleep(0.2)
        status = engine.status(handle)
    return status


# --- the manifest, without a server ----------------------------------------------


def test_a_partial_manifest_is_completed_with_what_the_run_owns():
    config = {"metadata": {"name": "train", "labels": {"tier": "gpu"}},
              "spec": {"backoffLimit": 0, "template": {"spec": {"containers": [
                  {"resources": {"limits": {"nvidia.com/gpu": 2}}, "args": ["--old"], "env": [{"name": "LAUNCHQ_RUN_ID", "value": "forged"}]},
                  {"name": "sidecar", "image": "busybox"}]}}}}
    namespace, job = job_manifest(spec("ab12cd34", config, command=["python", "train.py"]), "ml-jobs")
    assert namespace == "ml-jobs" and job["metadata"]["namespace"] == "ml-jobs"
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("batch/v1", "Job", "train-ab12cd34")
    labels = {"tier": "gpu", "launchq/run-id": "ab12cd34", "launchq/team": "ml", "launchq/project": "vision", "launchq/queue": "gpu-queue"}
    assert job["metadata"]["labels"] == labels
    assert job["spec"]["template"]["metadata"]["labels"] == {k: v for k, v in labels.items() if k != "tier"}
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    first, sidecar = pod["containers"]
    assert first["image"] == "registry.example/team/train:1" and first["command"] == ["python", "train.py"] and "args" not in first
    assert first["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert first["env"] == [{"name": "LAUNCHQ_RUN_ID", "value": "ab12cd34"}]  # the run's identity wins over the config's
    assert sidecar["image"] == "busybox" and sidecar["env"] == [{"name": "LAUNCHQ_RUN_ID", "value": "ab12cd34"}]


def test_the_config_namespace_wins_over_the_agents_and_default_comes_last():
    assert job_manifest(spec("r1", {"metadata": {"namespace": "team-a"}}), "agent-ns")[0] == "team-a"
    assert job_manifest(spec("r1", {}), "agent-ns")[0] == "agent-ns"
    assert job_manifest(spec("r1", {}), None)[0] == "default"


@pytest.mark.parametrize("config", [{"containers": []}, {"kind": "Deployment"}, {"apiVersion": "apps/v1"}, {"spec": "x"}])
def test_what_is_not_a_job_manifest_is_refused_before_sending(config):
    with pytest.raises(EngineError) as refused:
        job_manifest(spec("r1", config))
    assert refused.value.source.startswith("launchq agent")


def test_a_run_without_an_image_uses_the_manifests_and_fails_without_either():
    _, job = job_manifest(spec("r1", {"spec": {"template": {"spec": {"containers": [{"image": "busybox:1"}]}}}}, image=None))
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    with pytest.raises(EngineError):
        job_manifest(spec("r1", {}, image=None))


# --- against the real API server ----------------------------------------------------


def test_a_job_runs_to_complete_and_is_found_again_instead_of_submitted_twice(cluster, engine):
    handle = engine.start(spec("fin00001", {"spec": {"backoffLimit": 0}}, command=["python", "train.py"]))
    assert (handle.name, handle.where, handle.attached) == ("launchq-fin00001", "default", False)
    job = cluster.api("/apis/batch/v1/namespaces/default/jobs/launchq-fin00001")
    assert job["metadata"]["labels"]["launchq/run-id"] == "fin00001"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "train.py"]

    again = engine.start(spec("fin00001", {"spec": {"backoffLimit": 0}}))  # popped again, or the agent restarted
    assert (again.name, again.attached) == ("launchq-fin00001", True)
    jobs = cluster.api("/apis/batch/v1/namespaces/default/jobs?labelSelector=launchq%2Frun-id%3Dfin00001")["items"]
    assert len(jobs) == 1

    pod = kube.wait_for_pod(cluster, "default", handle.name)["metadata"]["name"]
    status = engine.status(handle)
    assert status.state == WAITING and "waiting to be scheduled" in status.message

    kube.bind(cluster, "default", pod)
    kube.set_status(cluster, "default", pod, kube.running())
    status = engine.status(handle)
    assert status.state == RUNNING and pod in status.message and "node-1" in status.message

    kube.set_status(cluster, "default", pod, kube.terminated("Succeeded", 0, "Completed"))
    status = follow(engine, handle, (FINISHED, FAILED))
    assert (status.state, status.exit_code) == (FINISHED, 0)


def test_a_failed_pod_fails_the_run_with_the_jobs_and_the_containers_reasons(cluster, engine):
    handle = engine.start(spec("oom00001", {"spec": {"backoffLimit": 0}}))
    pod = kube.wait_for_pod(cluster, "default", handle.name)["metadata"]["name"]
    kube.bind(cluster, "default", pod)
    kube.set_status(cluster, "default", pod, kube.terminated("Failed", 137, "OOMKilled", "memory limit 2Gi exceeded"))
    status = follow(engine, handle, (FINISHED, FAILED))
    assert status.state == FAILED and status.exit_code == 137
    for words in ("BackoffLimitExceeded", "OOMKilled", "exit code 137", "memory limit 2Gi exceeded", pod):
        assert words in status.reason


def test_a_deadline_fails_the_run_with_deadline_exceeded(cluster, engine):
    handle = engine.start(spec("ddl00001", {"spec": {"activeDeadlineSeconds": 1, "backoffLimit": 0}}))
    pod = kube.wait_for_pod(cluster, "default", handle.name)["metadata"]["name"]
    kube.bind(cluster, "default", pod)
    kube.set_status(cluster, "default", pod, kube.running())
    status = follow(engine, handle, (FINISHED, FAILED))
    assert status.state == FAILED and "DeadlineExceeded" in status.reason


def test_an_image_that_cannot_be_pulled_fails_the_run_instead_of_waiting_forever(cluster, engine):
    handle = engine.start(spec("img00001", image="registry.example/missing:1"))
    pod = kube.wait_for_pod(cluster, "default", handle.name)["metadata"]["name"]
    kube.bind(cluster, "default", pod)
    kube.set_status(cluster, "default", pod, kube.waiting("ImagePullBackOff", 'Back-off pulling image "registry.example/missing:1"'))
    status = engine.status(handle)
    assert status.state == FAILED
    assert "ImagePullBackOff" in status.reason and "registry.example/missing:1" in status.reason


def test_a_pod_that_cannot_be_scheduled_shows_that_it_waits_and_why(cluster, engine):
    handle = engine.start(spec("gpu00001"))
    pod = kube.wait_for_pod(cluster, "default", handle.name)["metadata"]["name"]
    kube.set_status(cluster, "default", pod, kube.unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu."))
    status = engine.status(handle)
    assert status.state == WAITING
    assert "Unschedulable" in status.message and "3 Insufficient nvidia.com/gpu" in status.message


def test_cancel_deletes_the_job_and_its_pods(cluster, engine):
    handle = engine.start(spec("can00001"))
    kube.wait_for_pod(cluster, "default", handle.name)
    message = engine.cancel(handle)
    assert "deleted" in message
    jobs = cluster.api("/apis/batch/v1/namespaces/default/jobs?labelSelector=launchq%2Frun-id%3Dcan00001")["items"]
    assert jobs == [] and kube.pods_of(cluster, "default", handle.name) == []
    status = engine.status(handle)
    assert status.state == FAILED and "deleted outside launchq" in status.reason  # as the agent sees a Job gone under it


def test_a_manifest_the_api_server_refuses_fails_with_its_field_by_field_message(engine):
    config = {"spec": {"backoffLimit": -1, "template": {"spec": {"restartPolicy": "Always"}}}}
    with pytest.raises(EngineError) as refused:
        engine.start(spec("bad00001", config))
    error = refused.value
    assert "422" in error.message and not error.retryable and error.source.startswith("Kubernetes API server at https://127.0.0.1:")
    assert "spec.backoffLimit" in error.message and "spec.template.spec.restartPolicy" in error.message


def test_an_unknown_namespace_is_the_servers_refusal(engine):
    with pytest.raises(EngineError) as refused:
        engine.start(spec("ns000001", {"metadata": {"namespace": "nowhere"}}))
    assert "404" in refused.value.message and "nowhere" in refused.value.message


def test_a_token_the_server_refuses_is_a_401_and_an_unreachable_server_may_be_retried(cluster, tmp_path):
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    (tmp_path / "wrong-token").write_text(json.dumps(config))
    with pytest.raises(EngineError) as refused:
        KubernetesEngine(kubeconfig=str(tmp_path / "wrong-token")).start(spec("tok00001"))
    assert "401" in refused.value.message and not refused.value.retryable

    from tests.servers import free_port

    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    (tmp_path / "closed").write_text(json.dumps(config))
    with pytest.raises(EngineError) as unreachable:
        KubernetesEngine(kubeconfig=str(tmp_path / "closed")).start(spec("net00001"))
    assert unreachable.value.retryable and "cannot reach the API server" in unreachable.value.message


def test_no_kubeconfig_and_no_cluster_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(EngineError) as refused:
        KubernetesEngine(kubeconfig=str(tmp_path / "missing")).start(spec("cfg00001"))
    assert "--kubeconfig" in refused.value.message


def test_pod_logs_come_through_the_api_server_from_the_pods_kubelet(cluster, engine, tmp_path):
    handle = engine.start(spec("log00001"))
    pod = kube.wait_for_pod(cluster, "default", handle.name)["metadata"]["name"]
    assert engine.logs(handle) is None and engine.log_note == ""  # not started: nothing to read yet
    kubelet = kube.Kubelet(cluster, tmp_path, node="node-logs")
    try:
        kube.bind(cluster, "default", pod, node="node-logs")
        kube.set_status(cluster, "default", pod, kube.running())
        kubelet.logs[("default", pod, "job")] = "epoch 1 loss 0.9\nepoch 2 loss 0.4\n"
        assert engine.logs(handle) == "epoch 1 loss 0.9\nepoch 2 loss 0.4\n"
        assert engine.log_note == "" and any("tailLines=" in r for r in kubelet.requests)
    finally:
        kubelet.close()
    assert engine.logs(handle) is None  # the node went away
    assert engine.log_note.startswith("Pod logs are not readable")
    assert "being deleted" in engine.cancel(handle, wait=0)  # no kubelet confirms the Pod's end
    assert engine.status(handle).state == CANCELLED
