"""The sagemaker runner through boto3: against moto's server over HTTP, and botocore's Stubber for what moto lacks.

moto completes a training job at once and has no StopTrainingJob, so the state
sequence, stop and failures run through `Stubber`, which checks every request
and answer against AWS's own SageMaker API model.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from launchq.agent.engines import CANCELLED, FAILED, FINISHED, RUNNING, WAITING, EngineError, JobSpec
from launchq.agent.engines.sagemaker import NO_CREDENTIALS, SageMakerEngine, training_job_args

pytestmark = pytest.mark.engine

CONFIG = {  # the source document's example, with its template field filled
    "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
    "ResourceConfig": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 2},
    "OutputDataConfig": {"S3OutputPath": "s3://team-bucket/outputs"},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def spec(run_id: str, config: dict | None = None, **kw) -> JobSpec:
    kw.setdefault("image", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/train:1")
    return JobSpec(run_id=run_id, config=dict(CONFIG) if config is None else config, entity="ml", project="vision",
                   queue="sagemaker-queue", env={"LAUNCHQ_RUN_ID": run_id}, **kw)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    from tests.servers import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as env:
        yield env


@pytest.fixture
def aws(moto, monkeypatch):
    for key, value in moto.items():
        monkeypatch.setenv(key, value)
    return moto


# --- the arguments, without a server ------------------------------------------------


def test_the_run_fills_name_image_entrypoint_environment_and_tags():
    config = dict(CONFIG, TrainingJobName="Vision Train!", region="us-west-2", Environment={"EPOCHS": "3"},
                  AlgorithmSpecification={"TrainingInputMode": "Pipe", "ContainerArguments": ["--old"]})
    region, args = training_job_args(spec("ab12cd34", config, command=["python", "train.py"]), "eu-west-1")
    assert region == "us-west-2" and "region" not in args
    assert args["TrainingJobName"] == "Vision-Train-ab12cd34" and SAGEMAKER_NAME.match(args["TrainingJobName"])
    assert args["AlgorithmSpecification"] == {"TrainingInputMode": "Pipe", "TrainingImage": spec("x").image,
                                              "ContainerEntrypoint": ["python", "train.py"]}
    assert args["Environment"] == {"EPOCHS": "3", "LAUNCHQ_RUN_ID": "ab12cd34"}
    assert {"Key": "launchq:run-id", "Value": "ab12cd34"} in args["Tags"] and {"Key": "launchq:team", "Value": "ml"} in args["Tags"]


def test_a_long_name_is_clipped_to_sagemakers_rules_and_keeps_the_run_id():
    _, args = training_job_args(spec("ab12cd34", dict(CONFIG, TrainingJobName="x" * 80)))
    assert len(args["TrainingJobName"]) <= 63 and args["TrainingJobName"].endswith("-ab12cd34")
    assert SAGEMAKER_NAME.match(args["TrainingJobName"])
    assert training_job_args(spec("r1"), None)[0] is None  # boto3's own default region then


# --- against moto's server ------------------------------------------------------------


def test_a_training_job_is_created_once_and_followed_to_completed(aws):
    import boto3

    engine = SageMakerEngine()
    handle = engine.start(spec("fin00001"))
    assert (handle.name, handle.where, handle.attached) == ("launchq-fin00001", "", False)
    client = boto3.client("sagemaker")
    job = client.describe_training_job(TrainingJobName="launchq-fin00001")
    assert job["AlgorithmSpecification"]["TrainingImage"] == spec("x").image
    assert job["RoleArn"] == CONFIG["RoleArn"]
    tags = client.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "launchq:run-id", "Value": "fin00001"} in tags

    again = SageMakerEngine().start(spec("fin00001"))  # popped again, or a restarted agent
    assert again.attached and again.name == handle.name
    names = [j["TrainingJobName"] for j in client.list_training_jobs()["TrainingJobSummaries"]]
    assert names.count("launchq-fin00001") == 1

    status = engine.status(handle)
    assert (status.state, status.exit_code) == (FINISHED, 0) and "launchq-fin00001 completed" in status.message


def test_logs_come_from_cloudwatch_and_their_absence_is_no_error(aws):
    import boto3

    engine = SageMakerEngine()
    handle = engine.start(spec("log00001"))
    assert engine.logs(handle) is None and engine.log_note == ""
    logs = boto3.client("logs")
    group = "/aws/sagemaker/TrainingJobs"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="launchq-log00001/algo-1-1700000000")
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="launchq-log00001/algo-1-1700000000",
                        logEvents=[{"timestamp": now, "message": "epoch 1 loss 0.9"}, {"timestamp": now + 1, "message": "epoch 2 loss 0.4"}])
    assert engine.logs(handle) == "epoch 1 loss 0.9\nepoch 2 loss 0.4\n"


def test_a_config_the_client_refuses_fails_before_anything_is_sent(aws):
    import boto3

    config = {k: v for k, v in CONFIG.items() if k != "RoleArn"}
    with pytest.raises(EngineError) as refused:
        SageMakerEngine().start(spec("bad00001", config))
    assert "RoleArn" in refused.value.message and refused.value.source.startswith("boto3") and not refused.value.retryable
    names = [j["TrainingJobName"] for j in boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]]
    assert "launchq-bad00001" not in names


def test_missing_credentials_say_where_the_agent_looks(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(EngineError) as refused:
        SageMakerEngine(region="eu-west-1").start(spec("cred0001"))
    assert refused.value.message == NO_CREDENTIALS


def test_an_unreachable_endpoint_may_be_retried(aws, monkeypatch):
    from tests.servers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(EngineError) as unreachable:
        SageMakerEngine().start(spec("net00001"))
    assert unreachable.value.retryable and "cannot reach SageMaker" in unreachable.value.message


# --- with botocore's Stubber: the states moto does not play ------------------------------


@pytest.fixture
def stubbed(monkeypatch):
    import boto3
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sagemaker = boto3.session.Session().client("sagemaker", region_name="eu-west-1")
    logs = boto3.session.Session().client("logs", region_name="eu-west-1")
    with Stubber(sagemaker) as sm, Stubber(logs) as cw:
        yield SageMakerEngine(region="eu-west-1", client=sagemaker, logs_client=logs), sm, cw
        sm.assert_no_pending_responses()
        cw.assert_no_pending_responses()


def describe(name: str, status: str, secondary: str, **extra) -> dict:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return {
        "TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://team-bucket/outputs/model.tar.gz"},
        "TrainingJobStatus": status, "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
        "ResourceConfig": CONFIG["ResourceConfig"], "StoppingCondition": CONFIG["StoppingCondition"], "CreationTime": now,
        **extra,
    }


def test_the_state_sequence_to_failed_with_sagemakers_reason(stubbed):
    engine, sm, _ = stubbed
    not_found = "Requested resource not found."
    sm.add_client_error("describe_training_job", "ValidationException", not_found, expected_params={"TrainingJobName": "launchq-seq00001"})
    sm.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/launchq-seq00001"})
    name = "launchq-seq00001"
    for status, secondary, extra in [
        ("InProgress", "Starting", {"SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": datetime(2026, 1, 1),
                                                                     "StatusMessage": "Preparing the instances for training"}]}),
        ("InProgress", "Training", {}),
        ("Failed", "Failed", {"FailureReason": "AlgorithmError: ExecuteUserScriptError: exit code 1: CUDA out of memory"}),
    ]:
        sm.add_response("describe_training_job", describe(name, status, secondary, **extra), {"TrainingJobName": name})
    handle = engine.start(spec("seq00001"))
    assert (handle.name, handle.where) == (name, "eu-west-1")
    first = engine.status(handle)
    assert first.state == WAITING and "Preparing the instances for training" in first.message
    assert engine.status(handle).state == RUNNING
    failed = engine.status(handle)
    assert failed.state == FAILED and "CUDA out of memory" in failed.reason


def test_cancel_stops_the_training_job_and_stopped_reads_cancelled(stubbed):
    engine, sm, _ = stubbed
    name = "launchq-stop0001"
    sm.add_response("describe_training_job", describe(name, "InProgress", "Training"), {"TrainingJobName": name})
    sm.add_response("stop_training_job", {}, {"TrainingJobName": name})
    sm.add_response("describe_training_job", describe(name, "Stopped", "Stopped"), {"TrainingJobName": name})
    handle = engine.start(spec("stop0001"))
    assert handle.attached
    assert "StopTrainingJob was sent" in engine.cancel(handle)
    assert engine.status(handle).state == CANCELLED


def test_a_quota_refusal_is_sagemakers_words_and_throttling_may_be_retried(stubbed):
    engine, sm, _ = stubbed
    for run_id, code, message, status in [
        ("quo00001", "ResourceLimitExceeded", "The account-level service limit 'ml.p3.16xlarge for training job usage' is 0 Instances", 400),
        ("thr00001", "ThrottlingException", "Rate exceeded", 400),
    ]:
        sm.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.")
        sm.add_client_error("create_training_job", code, message, http_status_code=status)
        with pytest.raises(EngineError) as refused:
            engine.start(spec(run_id))
        assert code in refused.value.message and message in refused.value.message and refused.value.source == "SageMaker"
        assert refused.value.retryable is (code == "ThrottlingException")


def test_logs_the_agent_may_not_read_leave_a_plain_note(stubbed):
    engine, sm, cw = stubbed
    sm.add_response("describe_training_job", describe("launchq-den00001", "InProgress", "Training"))
    cw.add_client_error("describe_log_streams", "AccessDeniedException", "User is not authorized to perform: logs:DescribeLogStreams")
    handle = engine.start(spec("den00001"))
    assert engine.logs(handle) is None
    assert "not readable by this agent" in engine.log_note and "logs:DescribeLogStreams" in engine.log_note
    assert "/aws/sagemaker/TrainingJobs/launchq-den00001" in engine.log_note
