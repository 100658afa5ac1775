"""A run as a SageMaker training job, through `boto3`.

The queue config is the arguments of `CreateTrainingJob`, as in W&B Launch
(`RoleArn`, `ResourceConfig`, `StoppingCondition`, `OutputDataConfig`…), plus
an optional top-level `region`. The runner fills in what the run owns:
`TrainingJobName` is `<TrainingJobName or "launchq">-<run id>` within SageMaker's
name rules, `AlgorithmSpecification.TrainingImage` is the run's image, its
command becomes `ContainerEntrypoint`, the run's identity goes into
`Environment` and into tags (`launchq:run-id`, `launchq:team`…). Credentials
and region are boto3's own (environment, profile, instance role); the region
is the config's, else the agent's `--aws-region`, else boto3's default.
"""

from __future__ import annotations

import copy
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

ENGINE = "sagemaker"
NAME_LIMIT = 63
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_LINES = 400
RETRYABLE = {"ThrottlingException", "Throttling", "ServiceUnavailable", "InternalFailure", "InternalServerError", "RequestTimeout"}
STARTING = {"Starting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack", "PreparingInstancesForTraining"}
NOT_FOUND = "Requested resource not found"

NO_IMAGE = "The run has no image and the config sets no AlgorithmSpecification.TrainingImage."
NOT_A_MAPPING = "The sagemaker queue config's {key} must be a mapping, not {value!r}."
NO_CREDENTIALS = (
    "no AWS credentials: give the agent AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "or run it with an instance or task role."
)
NO_REGION = "no AWS region: set region in the queue config, --aws-region on the agent, or AWS_REGION."
LOGS_DENIED = "CloudWatch logs are not readable by this agent ({code}: {message}); the job's logs are in {group}."


class SageMakerEngine:
    name = ENGINE

    def __init__(self, *, region: str | None = None, client=None, logs_client=None):
        self.region = region
        self.log_note = ""
        self._clients: dict[tuple[str, str | None], Any] = {}
        if client is not None:
            self._clients[("sagemaker", region)] = client
        if logs_client is not None:
            self._clients[("logs", region)] = logs_client

    def start(self, spec: JobSpec) -> Handle:
        region, args = training_job_args(spec, self.region)
        client = self._client("sagemaker", region)
        name = args["TrainingJobName"]
        if self._describe(client, name) is not None:
            return Handle(ENGINE, name, region or "", attached=True)
        try:
            client.create_training_job(**args)
        except Exception as error:
            if _code(error) == "ResourceInUse" and self._describe(client, name) is not None:
                return Handle(ENGINE, name, region or "", attached=True)
            raise self._error(error, f"CreateTrainingJob {name}") from None
        return Handle(ENGINE, name, region or "")

    def status(self, handle: Handle) -> Status:
        job = self._describe(self._client("sagemaker", handle.where or None), handle.name)
        if job is None:
            return Status(FAILED, reason=f"The training job {handle.name} no longer exists in SageMaker.")
        return job_status(job)

    def logs(self, handle: Handle) -> str | None:
        client = self._client("logs", handle.where or None)
        try:
            streams = client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{handle.name}/")["logStreams"]
            lines: list[str] = []
            for stream in sorted(streams, key=lambda s: s["logStreamName"]):
                events = client.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"],
                                               limit=LOG_LINES, startFromHead=False)["events"]
                lines += [e["message"].rstrip("\n") for e in events]
        except Exception as error:
            code = _code(error)
            if code == "ResourceNotFoundException":
                self.log_note = ""
                return None
            self.log_note = LOGS_DENIED.format(code=code or type(error).__name__, message=clip(_message(error), 300),
                                               group=f"{LOG_GROUP}/{handle.name}")
            return None
        self.log_note = ""
        return "\n".join(lines[-LOG_LINES:]) + "\n" if lines else None

    def cancel(self, handle: Handle) -> str:
        client = self._client("sagemaker", handle.where or None)
        try:
            client.stop_training_job(TrainingJobName=handle.name)
        except Exception as error:
            if _code(error) == "ValidationException" and self._describe(client, handle.name) is not None:
                return f"The training job {handle.name} had already ended; nothing to stop."
            raise self._error(error, f"StopTrainingJob {handle.name}") from None
        return f"StopTrainingJob was sent for {handle.name}; SageMaker stops it."

    # --- the client ------------------------------------------------------------

    def _client(self, service: str, region: str | None):
        key = (service, region)
        if key not in self._clients:
            import boto3
            from botocore.exceptions import NoRegionError

            try:
                self._clients[key] = boto3.session.Session().client(service, region_name=region)
            except NoRegionError:
                raise EngineError(NO_REGION, source="boto3") from None
        return self._clients[key]

    def _describe(self, client, name: str) -> dict | None:
        try:
            return client.describe_training_job(TrainingJobName=name)
        except Exception as error:
            if _code(error) in ("ValidationException", "ResourceNotFound") and ("not found" in _message(error).lower()
                                                                                  or "could not find" in _message(error).lower()):
                return None
            raise self._error(error, f"DescribeTrainingJob {name}") from None

    def _error(self, error: Exception, what: str) -> EngineError:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        if isinstance(error, ParamValidationError):
            return EngineError(f"{what} was not sent: {clip(error, 1500)}", source="boto3 (checked against the SageMaker API model)")
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return EngineError(NO_CREDENTIALS, source="boto3")
        if isinstance(error, ClientError):
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = _code(error)
            return EngineError(f"{what} was refused ({code}, HTTP {status}): {clip(_message(error), 1500)}",
                               source="SageMaker", retryable=code in RETRYABLE or (status or 0) >= 500)
        if isinstance(error, EndpointConnectionError):
            return EngineError(f"{what}: cannot reach SageMaker: {clip(error, 500)}", source="boto3", retryable=True)
        return EngineError(f"{what}: {type(error).__name__}: {clip(error, 500)}", source="boto3", retryable=True)


def training_job_args(spec: JobSpec, agent_region: str | None = None) -> tuple[str | None, dict[str, Any]]:
    """The region and the `CreateTrainingJob` arguments for a run."""
    args = copy.deepcopy(spec.config or {})
    region = args.pop("region", None) or agent_region
    args["TrainingJobName"] = derived_name(str(args.get("TrainingJobName") or "launchq"), spec.run_id, limit=NAME_LIMIT,
                                           allowed="a-zA-Z0-9-", lower=False)
    algorithm = args.setdefault("AlgorithmSpecification", {})
    if not isinstance(algorithm, dict):
        raise EngineError(NOT_A_MAPPING.format(key="AlgorithmSpecification", value=algorithm), source="launchq agent (before sending)")
    if spec.image:
        algorithm["TrainingImage"] = spec.image
    elif not algorithm.get("TrainingImage") and not algorithm.get("AlgorithmName"):
        raise EngineError(NO_IMAGE, source="launchq agent (before sending)")
    algorithm.setdefault("TrainingInputMode", "File")
    if spec.command:
        algorithm["ContainerEntrypoint"] = list(spec.command)
        algorithm.pop("ContainerArguments", None)
    environment = args.setdefault("Environment", {})
    if not isinstance(environment, dict):
        raise EngineError(NOT_A_MAPPING.format(key="Environment", value=environment), source="launchq agent (before sending)")
    environment.update(spec.env)
    tags = [t for t in args.get("Tags") or [] if not (isinstance(t, dict) and str(t.get("Key", "")).startswith("launchq:"))]
    args["Tags"] = tags + [{"Key": f"launchq:{k}", "Value": v[:256]} for k, v in spec.labels.items() if v]
    return (str(region) if region else None), args


def job_status(job: dict[str, Any]) -> Status:
    """launchq's state for a `DescribeTrainingJob` answer."""
    name = job.get("TrainingJobName", "")
    state, secondary = job.get("TrainingJobStatus"), job.get("SecondaryStatus") or ""
    transitions = job.get("SecondaryStatusTransitions") or []
    detail = (transitions[-1].get("StatusMessage") if transitions else "") or ""
    said = f" ({secondary}: {detail})" if secondary and detail else (f" ({secondary})" if secondary else "")
    if state == "Completed":
        return Status(FINISHED, message=f"Training job {name} completed{said}.", exit_code=0)
    if state == "Failed":
        return Status(FAILED, reason=f"Training job {name} failed: {job.get('FailureReason') or 'SageMaker gave no reason'}.")
    if state == "Stopped":
        return Status(CANCELLED, message=f"Training job {name} was stopped{said}.")
    if state == "Stopping":
        return Status(RUNNING, message=f"Training job {name} is stopping{said}.")
    if secondary in STARTING or not secondary:
        return Status(WAITING, message=f"Training job {name} is starting{said}.")
    return Status(RUNNING, message=f"Training job {name} is in progress{said}.")


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _message(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Message"):
        return str(response["Error"]["Message"])
    return str(error)
