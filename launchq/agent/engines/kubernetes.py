"""A run as a Kubernetes `batch/v1` Job, through the official `kubernetes` client.

The queue config is a Job manifest, whole or partial (`metadata`, `spec.template.spec`…).
The runner completes it: the Job's name is `<metadata.name or "launchq">-<run id>`,
the labels `launchq/run-id`, `launchq/team`, `launchq/project`, `launchq/queue`
go on the Job and its Pods, the first container gets the run's image and command,
every container gets the run's identity as `LAUNCHQ_*` environment variables,
and the Pod's `restartPolicy` is `Never` unless the config says otherwise. The
namespace is the config's, else the agent's `--namespace`, else `default`.

Status reads the Job and its Pods: a Job whose Pod is not scheduled, or whose
image cannot be pulled, says so; a failed Job says why (BackoffLimitExceeded,
DeadlineExceeded, OOMKilled, the container's exit code and message).
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from launchq.agent.engines import (
    CANCELLED,
    FAILED,
    FINISHED,
    RUNNING,
    WAITING,
    EngineError,
    Handle,
    JobSpec,
    Status,
    clip,
    derived_name,
)

ENGINE = "kubernetes"
LABEL_PREFIX = "launchq/"
JOB_KEYS = ("apiVersion", "kind", "metadata", "spec")
NAME_LIMIT = 63
LOG_LINES = 400
TIMEOUT = (10, 30)  # connect, read: seconds per API call
# Waiting reasons after which a Pod will not start without someone changing something.
STUCK = {
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImagePull": None,  # often transient: it becomes ImagePullBackOff when it is not
    "InvalidImageName": "the image name is not valid",
    "ErrImageNeverPull": "the image is not on the node and the pull policy is Never",
    "CreateContainerConfigError": "the container's configuration is wrong (a missing ConfigMap or Secret?)",
    "CreateContainerError": "the container could not be created",
}

NOT_A_JOB = "The kubernetes queue config is a {kind}; it must be a batch/v1 Job manifest (or a part of one)."
BAD_API_VERSION = "The kubernetes queue config has apiVersion {value!r}; a Job is batch/v1."
UNKNOWN_KEY = "The kubernetes queue config has the top-level key {key!r}; a Job manifest has only apiVersion, kind, metadata and spec."
NOT_A_MAPPING = "The kubernetes queue config's {where} must be a mapping, not {value!r}."
NO_CONTAINER_IMAGE = (
    "The run has no image and the Job's first container sets none: give the run an image (or a source directory to "
    "build one from), or set spec.template.spec.containers[0].image in the queue config."
)
NO_CLUSTER = (
    "no cluster to talk to: no kubeconfig ({detail}) and not inside a cluster. Give the agent --kubeconfig, set "
    "KUBECONFIG, or run it in a Pod with a service account."
)
UNREACHABLE = "cannot reach the API server at {host}: {detail}"
REFUSED = "the API server refused {what} ({status} {reason}): {message}"


class KubernetesEngine:
    name = ENGINE

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None):
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace
        self.log_note = ""
        self._api = None

    # --- the interface ---------------------------------------------------------

    def start(self, spec: JobSpec) -> Handle:
        namespace, body = job_manifest(spec, self.namespace)
        existing = self._find(spec.run_id, namespace)
        if existing is not None:
            return existing
        batch = self._batch()
        try:
            job = batch.create_namespaced_job(namespace, body, _request_timeout=TIMEOUT)
        except self._api_exception() as error:
            if error.status == 409:  # created meanwhile (a lease race), or a name taken by something else
                found = self._find(spec.run_id, namespace)
                if found is not None:
                    return found
            raise self._refused(error, f"the Job {body['metadata']['name']}") from None
        except Exception as error:
            raise self._unreachable(error) from None
        return Handle(ENGINE, job.metadata.name, namespace, extra={"uid": job.metadata.uid})

    def status(self, handle: Handle) -> Status:
        batch, core = self._batch(), self._core()
        try:
            job = batch.read_namespaced_job(handle.name, handle.where, _request_timeout=TIMEOUT)
        except self._api_exception() as error:
            if error.status == 404:
                return Status(FAILED, reason=f"The Job {handle.describe()} was deleted outside launchq before it ended.")
            raise self._refused(error, f"reading the Job {handle.name}") from None
        except Exception as error:
            raise self._unreachable(error) from None
        try:
            pods = core.list_namespaced_pod(
                handle.where, label_selector=f"controller-uid={job.metadata.uid}", _request_timeout=TIMEOUT
            ).items
        except self._api_exception() as error:
            raise self._refused(error, f"listing the Pods of Job {handle.name}") from None
        except Exception as error:
            raise self._unreachable(error) from None
        return job_status(job, pods, self._warnings(handle) if not pods else [])

    def logs(self, handle: Handle) -> str | None:
        core = self._core()
        try:
            pods = core.list_namespaced_pod(handle.where, label_selector=f"job-name={handle.name}", _request_timeout=TIMEOUT).items
            pods = [p for p in pods if (p.spec.node_name and p.status.phase in ("Running", "Succeeded", "Failed"))]
            if not pods:
                return None
            pod = max(pods, key=lambda p: p.metadata.creation_timestamp)
            container = pod.spec.containers[0].name
            text = core.read_namespaced_pod_log(
                pod.metadata.name, handle.where, container=container, tail_lines=LOG_LINES, _request_timeout=TIMEOUT
            )
        except self._api_exception() as error:
            self.log_note = f"Pod logs are not readable: {_status_text(error)}"
            return None
        except Exception as error:
            self.log_note = f"Pod logs are not readable: {clip(error, 300)}"
            return None
        self.log_note = ""
        return text if isinstance(text, str) else None

    def cancel(self, handle: Handle, *, wait: float = 30.0) -> str:
        """Delete the Job with foreground propagation: its Pods go first, then the Job."""
        batch = self._batch()
        try:
            batch.delete_namespaced_job(handle.name, handle.where, propagation_policy="Foreground", _request_timeout=TIMEOUT)
        except self._api_exception() as error:
            if error.status == 404:
                return f"The Job {handle.describe()} was already gone."
            raise self._refused(error, f"deleting the Job {handle.name}") from None
        except Exception as error:
            raise self._unreachable(error) from None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                batch.read_namespaced_job(handle.name, handle.where, _request_timeout=TIMEOUT)
            except self._api_exception() as error:
                if error.status == 404:
                    return f"The Job {handle.describe()} and its Pods were deleted."
            except Exception:
                break
            time.sleep(0.5)
        return f"The Job {handle.describe()} is being deleted (its Pods first)."

    # --- the client ------------------------------------------------------------

    def _client(self):
        if self._api is not None:
            return self._api
        from kubernetes import client, config

        try:
            self._api = config.new_client_from_config(config_file=self.kubeconfig, context=self.context)
        except (config.ConfigException, OSError, TypeError) as error:
            if self.kubeconfig or self.context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise EngineError(NO_CLUSTER.format(detail=clip(error, 300)), source="Kubernetes client") from None
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as in_cluster:
                raise EngineError(NO_CLUSTER.format(detail=clip(in_cluster, 300)), source="Kubernetes client") from None
            self._api = client.ApiClient(configuration)
        return self._api

    def _batch(self):
        from kubernetes import client

        return client.BatchV1Api(self._client())

    def _core(self):
        from kubernetes import client

        return client.CoreV1Api(self._client())

    @staticmethod
    def _api_exception():
        from kubernetes.client.exceptions import ApiException

        return ApiException

    def _host(self) -> str:
        return self._client().configuration.host

    def _find(self, run_id: str, namespace: str) -> Handle | None:
        try:
            jobs = self._batch().list_namespaced_job(
                namespace, label_selector=f"{LABEL_PREFIX}run-id={run_id}", _request_timeout=TIMEOUT
            ).items
        except self._api_exception() as error:
            raise self._refused(error, f"looking for this run's Job in namespace {namespace}") from None
        except EngineError:
            raise
        except Exception as error:
            raise self._unreachable(error) from None
        jobs = [j for j in jobs if not j.metadata.deletion_timestamp] or jobs
        if not jobs:
            return None
        job = min(jobs, key=lambda j: j.metadata.creation_timestamp)
        return Handle(ENGINE, job.metadata.name, namespace, attached=True, extra={"uid": job.metadata.uid})

    def _warnings(self, handle: Handle) -> list[str]:
        """Why the Job controller could not make a Pod (a quota, an admission webhook), newest last."""
        try:
            events = self._core().list_namespaced_event(
                handle.where,
                field_selector=f"involvedObject.kind=Job,involvedObject.name={handle.name},type=Warning",
                _request_timeout=TIMEOUT,
            ).items
        except Exception:
            return []
        events.sort(key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
        return [f"{e.reason}: {e.message}" for e in events]

    def _refused(self, error, what: str) -> EngineError:
        retryable = error.status in (429, 500, 502, 503, 504) or error.status == 0
        return EngineError(
            REFUSED.format(what=what, status=error.status, reason=error.reason, message=_status_text(error)),
            source=f"Kubernetes API server at {self._host()}",
            retryable=retryable,
        )

    def _unreachable(self, error: Exception) -> EngineError:
        if isinstance(error, EngineError):
            return error
        detail = getattr(error, "reason", None) or error
        return EngineError(UNREACHABLE.format(host=self._host(), detail=clip(detail, 400)), source="Kubernetes client", retryable=True)


# --- the manifest: plain data in, plain data out --------------------------------


def job_manifest(spec: JobSpec, agent_namespace: str | None = None) -> tuple[str, dict[str, Any]]:
    """The namespace and the complete Job for a run, from the queue's (maybe partial) manifest."""
    data = copy.deepcopy(spec.config or {})
    for key in data:
        if key not in JOB_KEYS:
            raise EngineError(UNKNOWN_KEY.format(key=key), source="launchq agent (before sending)")
    if data.get("kind", "Job") != "Job":
        raise EngineError(NOT_A_JOB.format(kind=data.get("kind")), source="launchq agent (before sending)")
    if data.get("apiVersion", "batch/v1") != "batch/v1":
        raise EngineError(BAD_API_VERSION.format(value=data.get("apiVersion")), source="launchq agent (before sending)")
    data["apiVersion"], data["kind"] = "batch/v1", "Job"
    metadata = _mapping(data, "metadata", "metadata")
    job_spec = _mapping(data, "spec", "spec")
    template = _mapping(job_spec, "template", "spec.template")
    pod_metadata = _mapping(template, "metadata", "spec.template.metadata")
    pod_spec = _mapping(template, "spec", "spec.template.spec")

    namespace = str(metadata.get("namespace") or agent_namespace or "default")
    metadata["namespace"] = namespace
    metadata["name"] = derived_name(str(metadata.get("name") or "launchq"), spec.run_id, limit=NAME_LIMIT)
    metadata.pop("generateName", None)
    labels = {f"{LABEL_PREFIX}{key}": label_value(value) for key, value in spec.labels.items() if value}
    for where, path in ((metadata, "metadata"), (pod_metadata, "spec.template.metadata")):
        _mapping(where, "labels", f"{path}.labels").update(labels)

    pod_spec.setdefault("restartPolicy", "Never")
    containers = pod_spec.get("containers")
    if containers is None:
        containers = pod_spec["containers"] = [{}]
    if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
        raise EngineError(NOT_A_MAPPING.format(where="spec.template.spec.containers", value=containers)
                          .replace("a mapping", "a list of containers"), source="launchq agent (before sending)")
    first = containers[0]
    first.setdefault("name", "job")
    if spec.image:
        first["image"] = spec.image
    elif not first.get("image"):
        raise EngineError(NO_CONTAINER_IMAGE, source="launchq agent (before sending)")
    if spec.command:
        first["command"] = list(spec.command)
        first.pop("args", None)
    for container in containers:
        env = [e for e in container.get("env") or [] if not (isinstance(e, dict) and e.get("name") in spec.env)]
        container["env"] = env + [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    return namespace, data


def label_value(value: str) -> str:
    """A label value Kubernetes accepts: at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(value))[:NAME_LIMIT]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)


def job_status(job, pods: list, warnings: list[str] = ()) -> Status:
    """launchq's state for a Job and its Pods (the client's model objects)."""
    conditions = {c.type: c for c in (job.status.conditions or []) if c.status == "True"}
    newest = max(pods, key=lambda p: p.metadata.creation_timestamp) if pods else None
    if "Complete" in conditions:
        succeeded = job.status.succeeded or 0
        return Status(FINISHED, message=f"Job {job.metadata.name} complete: {succeeded} Pod(s) succeeded.", exit_code=0)
    if "Failed" in conditions:
        cond = conditions["Failed"]
        detail = _pod_failure(_failed_pod(pods) or newest)
        reason = f"Job {job.metadata.name} failed: {cond.reason}" + (f" ({cond.message})" if cond.message else "")
        return Status(FAILED, reason=reason + (f"; {detail[0]}" if detail[0] else "") + ".", exit_code=detail[1])
    if job.metadata.deletion_timestamp:
        return Status(CANCELLED, message=f"Job {job.metadata.name} is being deleted.")
    if newest is None:
        why = f": {warnings[-1]}" if warnings else ""
        return Status(WAITING, message=f"Job {job.metadata.name} created; waiting for its Pod{why}.")
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        stuck = _stuck(pod)
        if stuck:
            return Status(FAILED, reason=f"Pod {pod.metadata.name} cannot start: {stuck}.")
    if any(p.status.phase == "Running" for p in pods):
        running = next(p for p in pods if p.status.phase == "Running")
        where = f" on node {running.spec.node_name}" if running.spec.node_name else ""
        return Status(RUNNING, message=f"Pod {running.metadata.name} is running{where}.")
    if newest.status.phase == "Pending":
        return Status(WAITING, message=_pending(newest))
    return Status(RUNNING, message=f"Pod {newest.metadata.name} is {str(newest.status.phase).lower()}; the Job goes on.")


def _pending(pod) -> str:
    name = pod.metadata.name
    for cond in pod.status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"Pod {name} is waiting to be scheduled: {cond.reason or 'Unschedulable'}" + (f": {cond.message}" if cond.message else "") + "."
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason:
            return f"Pod {name} is waiting: {waiting.reason}" + (f": {clip(waiting.message, 300)}" if waiting.message else "") + "."
    if not pod.spec.node_name:
        return f"Pod {name} is waiting to be scheduled on a node."
    return f"Pod {name} is starting on node {pod.spec.node_name}."


def _stuck(pod) -> str:
    for status in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason in STUCK and STUCK[waiting.reason]:
            message = f"; {clip(waiting.message, 400)}" if waiting.message else ""
            return f"{waiting.reason} in container {status.name} ({STUCK[waiting.reason]}{message})"
    return ""


def _failed_pod(pods: list):
    failed = [p for p in pods if p.status.phase == "Failed"]
    return max(failed, key=lambda p: p.metadata.creation_timestamp) if failed else None


def _pod_failure(pod) -> tuple[str, int | None]:
    """What ended a Pod badly: the container's reason, exit code and message, or the Pod's own reason."""
    if pod is None:
        return "", None
    for status in pod.status.container_statuses or []:
        term = (status.state.terminated if status.state else None) or (status.last_state.terminated if status.last_state else None)
        if term and (term.exit_code or term.reason not in (None, "Completed")):
            text = f"container {status.name} in Pod {pod.metadata.name} ended: {term.reason or 'Error'}, exit code {term.exit_code}"
            if term.message:
                text += f": {clip(term.message, 500)}"
            return text, term.exit_code
    if pod.status.reason or pod.status.message:
        return f"Pod {pod.metadata.name}: {pod.status.reason or 'Failed'}" + (f": {clip(pod.status.message, 500)}" if pod.status.message else ""), None
    return "", None


def _mapping(parent: dict, key: str, where: str) -> dict:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise EngineError(NOT_A_MAPPING.format(where=where, value=value), source="launchq agent (before sending)")
    return value


def _status_text(error) -> str:
    """The API server's own words: its Status message, with each refused field (a 422) on its own."""
    import json

    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        return clip(error.body or error.reason or "", 1000)
    if not isinstance(body, Mapping):
        return clip(str(body), 1000)
    causes = (body.get("details") or {}).get("causes") or []
    if causes:
        return clip("; ".join(f"{c.get('field', '?')}: {c.get('message', c.get('reason', ''))}" for c in causes), 2000)
    return clip(body.get("message") or error.reason or "", 1000)
