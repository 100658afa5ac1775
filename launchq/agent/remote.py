"""Following a run's job on an engine: submit it (or find the one it has), follow it to its end, cancel it.

The agent's loop calls `follow` for runs on `kubernetes`, `sagemaker`, `vertex`
and `local-container` queues. It reports each change of the job's state with
the engine's words (a Pod waiting to be scheduled is `starting`, with why),
copies the job's output to the run page, cancels the job when the run is
cancelled, and hands back how the job ended. When the run stops being this
agent's (its lease was lost, or the agent lost touch with the server) it stops
following: a remote job goes on and the agent that gets the run next finds it
and follows it, a local container is stopped. An agent that is stopped leaves a
remote job running for the same reason, and stops a local container.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from launchq.agent.engines import CANCELLED, FAILED, RUNNING, WAITING, EngineError, JobSpec, Status

log = logging.getLogger("launchq.agent")

REMOTE = ("kubernetes", "sagemaker", "vertex")
LOCAL_CONTAINER = "local-container"
NOUNS = {"kubernetes": "Kubernetes Job", "sagemaker": "SageMaker training job", "vertex": "Vertex AI CustomJob",
         LOCAL_CONTAINER: "container"}
POLL_SECONDS = 2.0
LOG_SECONDS = 5.0
TICK = 0.25
# How long a job's engine may stay unreachable while the agent follows it before the run fails.
UNREACHABLE_SECONDS = 300.0

SUBMITTED = "Submitted {noun} {job}."
FOUND = "Found the {noun} {job} this run already has (an earlier attempt submitted it); following it instead of submitting another."
UNREACHABLE = "Cannot read the {noun} {job} ({error}); the job goes on and the agent keeps trying."
GAVE_UP = "Lost touch with the {noun} {job} for {seconds:.0f} s: {error}"
LET_GO_REMOTE = "the {noun} {job} goes on; the agent that gets this run next follows it"
LET_GO_LOCAL = "the container {job} was stopped"


@dataclass
class EngineOptions:
    """How the agent reaches each engine (the rest is the engine client's own configuration)."""

    kubeconfig: str | None = None
    kube_context: str | None = None
    namespace: str | None = None
    aws_region: str | None = None
    gcp_project: str | None = None
    gcp_region: str | None = None
    vertex_endpoint: str | None = None
    container_cli: str = "docker"
    container_env: dict[str, str] | None = None


class LetGo(Exception):
    """The run is no longer this agent's to follow; `what` says what became of its job."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class Engines:
    """One engine client per resource, made when first needed and kept (clients hold connections)."""

    def __init__(self, options: EngineOptions):
        self.options = options
        self._made: dict[str, Any] = {}

    def get(self, resource: str):
        if resource not in self._made:
            self._made[resource] = self._make(resource)
        return self._made[resource]

    def _make(self, resource: str):
        o = self.options
        if resource == "kubernetes":
            from launchq.agent.engines.kubernetes import KubernetesEngine

            return KubernetesEngine(kubeconfig=o.kubeconfig, context=o.kube_context, namespace=o.namespace)
        if resource == "sagemaker":
            from launchq.agent.engines.sagemaker import SageMakerEngine

            return SageMakerEngine(region=o.aws_region)
        if resource == "vertex":
            from launchq.agent.engines.vertex import VertexEngine

            return VertexEngine(project=o.gcp_project, region=o.gcp_region, endpoint=o.vertex_endpoint)
        if resource == LOCAL_CONTAINER:
            from launchq.agent.engines.container import ContainerEngine

            return ContainerEngine(docker=o.container_cli, env=o.container_env)
        raise ValueError(resource)


def job_spec(run: Mapping[str, Any], data: dict[str, Any], *, image: str | None, command: list[str] | None,
             env: Mapping[str, str]) -> JobSpec:
    return JobSpec(
        run_id=str(run["id"]), config=data, image=image, command=command, run_name=str(run.get("name") or ""),
        entity=str(run.get("entity") or ""), project=str(run.get("project") or ""), queue=str(run.get("queue") or ""),
        env=dict(env),
    )


def follow(
    engine,
    spec: JobSpec,
    *,
    report: Callable[[str, str], None],
    output: Callable[[str], None],
    cancelled: Callable[[], bool],
    let_go: Callable[[], str],
    stopping: Callable[[], str],
    local: bool = False,
    poll: float = POLL_SECONDS,
) -> Status:
    """Submit (or find) the run's job and follow it to its end; how it ended, in launchq's states.

    `report(state, message)` tells the server (`starting` or `running`), `output(text)` replaces the run's output,
    `cancelled()` is true once the run's cancel was asked, `let_go()` says why the run is no longer this agent's
    (else ""), `stopping()` why the agent is stopping (else ""). Raises `LetGo` when the run is no longer ours.
    """
    noun = NOUNS.get(engine.name, f"{engine.name} job")
    try:
        handle = engine.start(spec)
    except EngineError as error:
        return Status(FAILED, reason=f"{error.source}: {error.message}")
    job = handle.describe()
    report("starting", (FOUND if handle.attached else SUBMITTED).format(noun=noun, job=job))
    log.info("Run %s: %s %s %s.", spec.run_id, "following" if handle.attached else "submitted", noun, job)
    shown: tuple[str, str] | None = None
    unreachable_since: float | None = None
    next_poll = next_logs = 0.0
    try:
        while True:
            why = let_go()
            if why:
                raise LetGo(_stop_local(engine, handle, noun, job) if local else LET_GO_REMOTE.format(noun=noun, job=job))
            if cancelled():
                try:
                    said = engine.cancel(handle)
                except EngineError as error:
                    return Status(FAILED, reason=f"Cancel was asked, but {error.source} refused to stop {job}: {error.message}")
                _copy_logs(engine, handle, output)
                return Status(CANCELLED, message=f"Cancelled on request. {said}")
            why = stopping()
            if why:
                if not local:
                    raise LetGo(LET_GO_REMOTE.format(noun=noun, job=job))
                said = _stop_local(engine, handle, noun, job)
                _copy_logs(engine, handle, output)
                return Status(FAILED, reason=f"The agent was stopped ({why}) while the container ran; {said}.")
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + poll
                try:
                    status = engine.status(handle)
                except EngineError as error:
                    if not error.retryable:
                        return Status(FAILED, reason=f"{error.source}: {error.message}")
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since > UNREACHABLE_SECONDS:
                        return Status(FAILED, reason=GAVE_UP.format(noun=noun, job=job, seconds=now - unreachable_since, error=error))
                    if shown is None or shown[1] != "unreachable":
                        state = shown[0] if shown else WAITING
                        shown = (state, "unreachable")
                        report("running" if state == RUNNING else "starting", UNREACHABLE.format(noun=noun, job=job, error=error))
                    continue
                unreachable_since = None
                if status.done:
                    _copy_logs(engine, handle, output)
                    return status
                said = (status.state, status.message)
                if said != shown:
                    shown = said
                    report("running" if status.state == RUNNING else "starting", status.message)
            if now >= next_logs:
                next_logs = now + LOG_SECONDS
                _copy_logs(engine, handle, output)
            time.sleep(TICK)
    finally:
        if local and hasattr(engine, "remove"):
            _remove_when_done(engine, handle)


def _copy_logs(engine, handle, output: Callable[[str], None]) -> None:
    try:
        text = engine.logs(handle)
    except EngineError as error:
        text, engine.log_note = None, f"The job's output is not readable: {error}"
    if text is not None:
        output(text)
    elif engine.log_note:
        output(f"[launchq] {engine.log_note}\n")


def _stop_local(engine, handle, noun: str, job: str) -> str:
    try:
        engine.cancel(handle)
    except EngineError as error:
        return f"the {noun} {job} could not be stopped: {error}"
    return LET_GO_LOCAL.format(job=job)


def _remove_when_done(engine, handle) -> None:
    try:
        if engine.status(handle).state not in (WAITING, RUNNING):
            engine.remove(handle)
    except EngineError:
        pass
