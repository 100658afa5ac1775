"""Following a run's job on an engine (launchq.agent.remote), with the real Kubernetes API server and dockerd.

`follow` runs in a thread as it does in the agent; the test plays the kubelet.
"""

from __future__ import annotations

import threading
import time

import pytest

from launchq.agent.engines import CANCELLED, FAILED, FINISHED, JobSpec
from launchq.agent.engines.kubernetes import KubernetesEngine
from launchq.agent.remote import LetGo, follow
from tests import kube_helpers as kube

pytestmark = pytest.mark.engine


class Follower(threading.Thread):
    """`follow` in a thread, with what it reported kept for the test."""

    def __init__(self, engine, spec, *, local=False):
        super().__init__(daemon=True)
        self.engine, self.spec, self.local = engine, spec, local
        self.reports: list[tuple[str, str]] = []
        self.outputs: list[str] = []
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self.stop = threading.Event()
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = follow(
                self.engine, self.spec, report=lambda s, m: self.reports.append((s, m)), output=self.outputs.append,
                cancelled=self.cancel.is_set, let_go=lambda: "lost" if self.lost.is_set() else "",
                stopping=lambda: "SIGTERM" if self.stop.is_set() else "", local=self.local, poll=0.2,
            )
        except LetGo as error:
            self.error = error

    def wait_for_report(self, words: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(words in m for _, m in self.reports):
                return
            time.sleep(0.1)
        raise AssertionError(f"no report with {words!r}: {self.reports}")


def spec(run_id: str, config: dict | None = None) -> JobSpec:
    return JobSpec(run_id=run_id, config=config or {"spec": {"backoffLimit": 0}}, image="busybox:1.36", entity="ml",
                   queue="k8s", env={"LAUNCHQ_RUN_ID": run_id})


@pytest.fixture
def engine(kube_cluster):
    return KubernetesEngine(kubeconfig=str(kube_cluster.kubeconfig))


def test_a_job_is_followed_from_waiting_to_running_to_finished_with_its_logs(kube_cluster, engine, tmp_path):
    follower = Follower(engine, spec("flw00001"))
    follower.start()
    pod = kube.wait_for_pod(kube_cluster, "default", "launchq-flw00001")["metadata"]["name"]
    kube.set_status(kube_cluster, "default", pod, kube.unschedulable("0/2 nodes are available: 2 Insufficient memory."))
    follower.wait_for_report("2 Insufficient memory")
    kubelet = kube.Kubelet(kube_cluster, tmp_path, node="node-follow")
    try:
        kubelet.logs[("default", pod, "job")] = "step 1\nstep 2\n"
        kube.bind(kube_cluster, "default", pod, node="node-follow")
        kube.set_status(kube_cluster, "default", pod, kube.running())
        follower.wait_for_report("is running on node node-follow")
        kube.set_status(kube_cluster, "default", pod, kube.terminated("Succeeded", 0, "Completed"))
        follower.join(60)
    finally:
        kubelet.close()
    assert follower.result.state == FINISHED
    states = [s for s, _ in follower.reports]
    assert follower.reports[0] == ("starting", "Submitted Kubernetes Job launchq-flw00001 (default).")
    assert states[:2] == ["starting", "starting"] and "running" in states and states.index("running") > 1
    assert "step 1\nstep 2\n" in follower.outputs


def test_a_second_follower_of_the_same_run_finds_its_job_and_cancel_deletes_it(kube_cluster, engine):
    first = Follower(engine, spec("flw00002"))
    first.start()
    first.wait_for_report("Submitted")
    first.lost.set()  # the lease was lost: stop following, leave the job to whoever gets the run next
    first.join(30)
    assert isinstance(first.error, LetGo) and "goes on" in first.error.what
    assert kube_cluster.api("/apis/batch/v1/namespaces/default/jobs/launchq-flw00002")["metadata"]["name"]

    second = Follower(KubernetesEngine(kubeconfig=str(kube_cluster.kubeconfig)), spec("flw00002"))
    second.start()
    second.wait_for_report("Found the Kubernetes Job launchq-flw00002")
    second.cancel.set()
    second.join(60)
    assert second.result.state == CANCELLED and "deleted" in second.result.message
    jobs = kube_cluster.api("/apis/batch/v1/namespaces/default/jobs?labelSelector=launchq%2Frun-id%3Dflw00002")["items"]
    assert jobs == []


def test_an_agent_that_stops_leaves_a_remote_job_running(kube_cluster, engine):
    follower = Follower(engine, spec("flw00003"))
    follower.start()
    follower.wait_for_report("Submitted")
    follower.stop.set()
    follower.join(30)
    assert isinstance(follower.error, LetGo)
    assert kube_cluster.api("/apis/batch/v1/namespaces/default/jobs/launchq-flw00003")["metadata"]["name"]


def test_a_refused_job_fails_with_the_servers_words_and_where_they_came_from(engine):
    follower = Follower(engine, spec("flw00004", {"spec": {"backoffLimit": -1}}))
    follower.run()
    assert follower.result.state == FAILED and follower.reports == []
    assert follower.result.reason.startswith("Kubernetes API server at https://127.0.0.1:")
    assert "spec.backoffLimit" in follower.result.reason
