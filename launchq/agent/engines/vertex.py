"""A run as a Vertex AI CustomJob, through the `aiplatform_v1` JobService client.

The queue config is a `CustomJobSpec` (`worker_pool_specs`, `scheduling`,
`service_account`, `network`, `base_output_directory`…, snake_case or
camelCase) with optional `display_name` and `labels` of the CustomJob, and
`project` and `region` (else the agent's `--gcp-project` / `--gcp-region`). The
runner puts the run's image, command and identity (`LAUNCHQ_*` variables) into
every worker pool's container spec and the run's identity into the job's labels
(`launchq-run-id`…), by which a restarted agent finds the job again.
Credentials are Google's Application Default Credentials.
"""

from __future__ import annotations

import copy
import json
import re
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

ENGINE = "vertex"
JOB_KEYS = ("display_name", "displayName", "labels")
PLACE_KEYS = ("project", "region", "location")
TIMEOUT = 60.0

NO_PROJECT = "no Google Cloud project: set project in the queue config or --gcp-project on the agent."
NO_REGION = "no Vertex AI region: set region in the queue config or --gcp-region on the agent."
NO_IMAGE = "The run has no image and worker pool {index} of the config has no container_spec.image_uri."
NO_POOLS = "The vertex queue config has no worker_pool_specs: a CustomJob needs at least one worker pool."
NO_CREDENTIALS = "no Google credentials: {detail} Set GOOGLE_APPLICATION_CREDENTIALS or run the agent with a service account."
LOG_NOTE = "Vertex AI writes the job's logs to Cloud Logging (resource.type=\"ml_job\" resource.labels.job_id=\"{id}\"); this agent does not copy them here."
STATES = {
    "JOB_STATE_QUEUED": WAITING, "JOB_STATE_PENDING": WAITING, "JOB_STATE_RUNNING": RUNNING, "JOB_STATE_UPDATING": RUNNING,
    "JOB_STATE_CANCELLING": RUNNING, "JOB_STATE_PAUSED": WAITING, "JOB_STATE_SUCCEEDED": FINISHED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": FAILED, "JOB_STATE_FAILED": FAILED, "JOB_STATE_EXPIRED": FAILED, "JOB_STATE_CANCELLED": CANCELLED,
}


class VertexEngine:
    name = ENGINE

    def __init__(self, *, project: str | None = None, region: str | None = None, endpoint: str | None = None, credentials=None):
        self.project = project
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
        self.log_note = ""
        self._clients: dict[str, Any] = {}

    def start(self, spec: JobSpec) -> Handle:
        project, region, job = custom_job(spec, self.project, self.region)
        parent = f"projects/{project}/locations/{region}"
        client = self._client(region)
        found = self._find(client, parent, spec.run_id)
        if found is not None:
            return found
        try:
            created = client.create_custom_job(parent=parent, custom_job=job, timeout=TIMEOUT)
        except Exception as error:
            raise self._error(error, f"creating CustomJob {job.display_name}", region) from None
        return Handle(ENGINE, created.name, region)

    def status(self, handle: Handle) -> Status:
        client = self._client(handle.where)
        try:
            job = client.get_custom_job(name=handle.name, timeout=TIMEOUT)
        except Exception as error:
            if type(error).__name__ == "NotFound":
                return Status(FAILED, reason=f"The CustomJob {handle.name} no longer exists in Vertex AI.")
            raise self._error(error, f"reading CustomJob {handle.name}", handle.where) from None
        return job_status(job)

    def logs(self, handle: Handle) -> str | None:
        self.log_note = LOG_NOTE.format(id=handle.name.rsplit("/", 1)[-1])
        return None

    def cancel(self, handle: Handle) -> str:
        try:
            self._client(handle.where).cancel_custom_job(name=handle.name, timeout=TIMEOUT)
        except Exception as error:
            refused = self._error(error, f"cancelling CustomJob {handle.name}", handle.where)
            try:
                if self.status(handle).done:  # Vertex AI refuses to cancel a job that has ended (FAILED_PRECONDITION)
                    return f"The CustomJob {handle.name} had already ended; nothing to cancel."
            except EngineError:
                pass
            raise refused from None
        return f"Vertex AI was asked to cancel CustomJob {handle.name}."

    # --- the client ------------------------------------------------------------

    def _client(self, region: str):
        if region not in self._clients:
            from google.api_core.client_options import ClientOptions
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

            endpoint = self.endpoint or f"https://{region}-aiplatform.googleapis.com"
            try:
                self._clients[region] = JobServiceClient(
                    credentials=self.credentials, transport="rest", client_options=ClientOptions(api_endpoint=endpoint)
                )
            except DefaultCredentialsError as error:
                raise EngineError(NO_CREDENTIALS.format(detail=clip(error, 400)), source="google-auth") from None
        return self._clients[region]

    def _find(self, client, parent: str, run_id: str) -> Handle | None:
        try:
            page = client.list_custom_jobs(request={"parent": parent, "filter": f'labels.launchq-run-id="{run_id.lower()}"'}, timeout=TIMEOUT)
            jobs = list(page)
        except Exception as error:
            raise self._error(error, "looking for this run's CustomJob", parent.rsplit("/", 1)[-1]) from None
        if not jobs:
            return None
        job = min(jobs, key=lambda j: j.create_time)
        return Handle(ENGINE, job.name, parent.rsplit("/", 1)[-1], attached=True)

    def _error(self, error: Exception, what: str, region: str) -> EngineError:
        from google.api_core import exceptions as api
        from google.auth.exceptions import DefaultCredentialsError, TransportError

        source = f"Vertex AI ({self.endpoint or region + '-aiplatform.googleapis.com'})"
        if isinstance(error, DefaultCredentialsError):
            return EngineError(NO_CREDENTIALS.format(detail=clip(error, 400)), source="google-auth")
        if isinstance(error, api.GoogleAPICallError) and error.code:
            retryable = isinstance(error, (api.TooManyRequests, api.ServiceUnavailable, api.InternalServerError, api.GatewayTimeout))
            return EngineError(f"{what} was refused ({error.code} {type(error).__name__}): {clip(error.message, 1500)}",
                               source=source, retryable=retryable)
        if isinstance(error, (TransportError, OSError)) or "Connection" in type(error).__name__:
            return EngineError(f"{what}: cannot reach Vertex AI: {clip(error, 500)}", source=source, retryable=True)
        return EngineError(f"{what}: {type(error).__name__}: {clip(error, 500)}", source=source, retryable=True)


def custom_job(spec: JobSpec, agent_project: str | None = None, agent_region: str | None = None):
    """The project, the region and the `aiplatform_v1.CustomJob` for a run. The client's own types check the config."""
    from google.cloud.aiplatform_v1.types import custom_job as types
    from google.protobuf.json_format import ParseError

    data = copy.deepcopy(spec.config or {})
    project = data.pop("project", None) or agent_project
    region = data.pop("region", None) or data.pop("location", None) or agent_region
    if not project:
        raise EngineError(NO_PROJECT, source="launchq agent (before sending)")
    if not region:
        raise EngineError(NO_REGION, source="launchq agent (before sending)")
    display = data.pop("display_name", None) or data.pop("displayName", None) or "launchq"
    labels = data.pop("labels", None) or {}
    try:
        job_spec = types.CustomJobSpec.from_json(json.dumps(data), ignore_unknown_fields=False)
    except (ParseError, ValueError, TypeError) as error:
        raise EngineError(f"the config is not a CustomJobSpec: {clip(error, 1500)}", source="aiplatform_v1 client (before sending)") from None
    if not job_spec.worker_pool_specs:
        raise EngineError(NO_POOLS, source="launchq agent (before sending)")
    for index, pool in enumerate(job_spec.worker_pool_specs):
        if "python_package_spec" in pool:
            continue
        container = pool.container_spec
        if spec.image:
            container.image_uri = spec.image
        elif not container.image_uri:
            raise EngineError(NO_IMAGE.format(index=index), source="launchq agent (before sending)")
        if spec.command:
            container.command = list(spec.command)
            del container.args[:]
        kept = [e for e in container.env if e.name not in spec.env]
        del container.env[:]
        container.env.extend(kept + [types.env_var.EnvVar(name=k, value=v) for k, v in sorted(spec.env.items())])
    if not isinstance(labels, dict):
        raise EngineError(f"the config's labels must be a mapping, not {labels!r}", source="launchq agent (before sending)")
    labels = {str(k): str(v) for k, v in labels.items()}
    labels.update({f"launchq-{k}": label_value(v) for k, v in spec.labels.items() if v})
    job = types.CustomJob(
        display_name=derived_name(str(display), spec.run_id, limit=128, allowed="A-Za-z0-9_. -", lower=False),
        job_spec=job_spec,
        labels=labels,
    )
    return str(project), str(region), job


def label_value(value: str) -> str:
    """A label value Google Cloud accepts: at most 63 lowercase letters, digits, `_` and `-`."""
    return re.sub(r"[^a-z0-9_-]+", "-", str(value).lower())[:63]


def job_status(job) -> Status:
    """launchq's state for a CustomJob."""
    state = job.state.name if hasattr(job.state, "name") else str(job.state)
    name = job.display_name or job.name
    launchq_state = STATES.get(state, WAITING)
    if launchq_state == FAILED:
        error = f": {job.error.message}" if job.error and job.error.message else ""
        code = f" (code {job.error.code})" if job.error and job.error.code else ""
        return Status(FAILED, reason=f"CustomJob {name} ended {state}{code}{error}.")
    if launchq_state == FINISHED:
        return Status(FINISHED, message=f"CustomJob {name} succeeded.", exit_code=0)
    if launchq_state == CANCELLED:
        return Status(CANCELLED, message=f"CustomJob {name} was cancelled.")
    words = {"JOB_STATE_QUEUED": "is queued", "JOB_STATE_PENDING": "is pending: Vertex AI is provisioning its machines",
             "JOB_STATE_CANCELLING": "is being cancelled", "JOB_STATE_PAUSED": "is paused"}
    return Status(launchq_state, message=f"CustomJob {name} {words.get(state, 'is running')}.")
