"""`python manage.py demo`: a demo team to click through. Safe to run again: it only adds what is missing."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from launchq.configs import create_queue
from launchq.guardrails import Field, FieldType
from launchq.models import Agent, Membership, Project, Queue, Resource, Role, Team, hash_token

SAGEMAKER_CONFIG = """\
RoleArn: arn:aws:iam:region:account-id:resource-type/resource-id
ResourceConfig:
  InstanceType: "{{aws_instance}}"
  InstanceCount: 1
  VolumeSizeInGB: 2
OutputDataConfig:
  S3OutputPath: s3://bucketname
StoppingCondition:
  MaxRuntimeInSeconds: 3600
"""

ACCELERATOR_CONFIG = """\
{
    "builder": {
        "accelerator": {
            "base_image": "tensorflow/tensorflow:latest-gpu"
        }
    }
}
"""

LOCAL_CONFIG = """\
# Runs on the agent's own machine. The agent fills the ${macros}, writes this
# config to the file named by $LAUNCHQ_CONFIG_PATH and runs the job's command.
run:
  id: ${run_id}
  name: ${run_name}
  project: ${project_name}
  entity: ${entity_name}
training:
  epochs: "{{epochs}}"
  learning_rate: "{{learning_rate}}"
output_dir: /tmp/launchq-demo/${run_id}
"""

KUBERNETES_CONFIG = """\
# A batch/v1 Job manifest. The agent names it <metadata.name>-<run id>, labels the
# Job and its Pods (launchq/run-id, team, project, queue), gives its first container
# the run's image (this one when the run names none), command and LAUNCHQ_* identity,
# and follows it to Complete or Failed. Deleting the Job is how a run is cancelled.
apiVersion: batch/v1
kind: Job
metadata:
  name: train
  namespace: default
  labels:
    launched-into: ${project_name}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: {{max_runtime_seconds}}
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: train
          image: busybox:1.36
          command: ["sh", "-c", "echo training ${run_name} on {{gpus}} GPUs; sleep 10"]
          resources:
            limits:
              memory: "{{memory}}"
              nvidia.com/gpu: {{gpus}}
"""

GPUS = Field("gpus", FieldType.INTEGER, description="GPUs for the training Pod.", minimum=0, maximum=4, default=0)
MEMORY = Field("memory", FieldType.STRING, description="The Pod's memory limit.", allowed=("2Gi", "8Gi", "32Gi"), default="2Gi")
MAX_RUNTIME = Field(
    "max_runtime_seconds", FieldType.INTEGER, description="The Job is stopped (DeadlineExceeded) after this many seconds.",
    minimum=60, maximum=86400, default=3600,
)

EPOCHS = Field(
    "epochs", FieldType.INTEGER, description="How many epochs the demo job trains for (one second each).",
    minimum=1, maximum=10, default=3,
)
LEARNING_RATE = Field(
    "learning_rate", FieldType.FLOAT, description="The demo job's learning rate.", minimum=0.0001, maximum=1.0, default=0.01,
)

# The job local-queue runs in the demo: it reads its config and "trains".
DEMO_JOB = """\
\"\"\"launchq's demo job: read the resolved config, train for a few epochs, write a result.\"\"\"
import json, os, sys, time

import yaml

path = os.environ["LAUNCHQ_CONFIG_PATH"]
with open(path) as f:
    config = yaml.safe_load(f)
print(f"run {os.environ['LAUNCHQ_RUN_ID']} ({os.environ['LAUNCHQ_RUN_NAME']}) in {os.environ['LAUNCHQ_ENTITY']}/{os.environ['LAUNCHQ_PROJECT']}")
print("config:", json.dumps(config, sort_keys=True))
epochs, lr = config["training"]["epochs"], config["training"]["learning_rate"]
loss = 1.0
for epoch in range(1, epochs + 1):
    time.sleep(1)
    loss *= 1 - min(lr * 10, 0.9)
    print(f"epoch {epoch}/{epochs}: loss {loss:.4f}", flush=True)
os.makedirs(config["output_dir"], exist_ok=True)
with open(os.path.join(config["output_dir"], "result.json"), "w") as f:
    json.dump({"epochs": epochs, "loss": loss}, f)
print("wrote", os.path.join(config["output_dir"], "result.json"))
"""

AWS_INSTANCE = Field(
    "aws_instance",
    FieldType.STRING,
    description="The SageMaker instance type the training job runs on.",
    allowed=("ml.m4.xlarge", "ml.p3.xlarge"),
)


class Command(BaseCommand):
    help = "Create the demo team, its admin and member users, a project, four queues and an agent (idempotent)."

    def handle(self, *args, **options) -> None:
        password, source = _password()
        with transaction.atomic():
            team, _ = Team.objects.get_or_create(slug="demo", defaults={"name": "Demo team"})
            admin = _user("admin", password, superuser=True)
            member = _user("member", password, superuser=False)
            Membership.objects.update_or_create(team=team, user=admin, defaults={"role": Role.ADMIN})
            Membership.objects.update_or_create(team=team, user=member, defaults={"role": Role.MEMBER})
            Project.objects.get_or_create(team=team, name="demo-project")
            if not Queue.objects.filter(team=team, name="sagemaker-queue").exists():
                create_queue(
                    team, admin, "sagemaker-queue", Resource.SAGEMAKER, SAGEMAKER_CONFIG, "yaml",
                    {"aws_instance": AWS_INSTANCE}, "The source document's SageMaker example.",
                )
            if not Queue.objects.filter(team=team, name="gpu-queue").exists():
                create_queue(
                    team, admin, "gpu-queue", Resource.LOCAL_CONTAINER, ACCELERATOR_CONFIG, "json", {},
                    "Builds run images on a TensorFlow GPU base image.",
                )
            if not Queue.objects.filter(team=team, name="kubernetes-queue").exists():
                create_queue(
                    team, admin, "kubernetes-queue", Resource.KUBERNETES, KUBERNETES_CONFIG, "yaml",
                    {"gpus": GPUS, "memory": MEMORY, "max_runtime_seconds": MAX_RUNTIME},
                    "Runs each launch as a Kubernetes Job on the cluster of the agent's kubeconfig.",
                    {"image": "busybox:1.36"},
                )
            job_path = _demo_job()
            if not Queue.objects.filter(team=team, name="local-queue").exists():
                create_queue(
                    team, admin, "local-queue", Resource.LOCAL_PROCESS, LOCAL_CONFIG, "yaml",
                    {"epochs": EPOCHS, "learning_rate": LEARNING_RATE},
                    "Runs jobs as processes on the agent's machine; its default job is the demo's training script.",
                    {"command": f"{sys.executable} {job_path}"},
                )
            local = Queue.objects.get(team=team, name="local-queue")
            if not local.default_job:  # a demo made before queues had default jobs
                local.default_job = {"command": f"{sys.executable} {job_path}"}
                local.save(update_fields=["default_job"])
            agent_line = _demo_agent(team, admin)
        self.stdout.write(f"Demo team 'demo' is ready. Log in as admin or member, password: {password} ({source})")
        self.stdout.write(f"Start the demo agent for local-queue in another terminal:\n  {agent_line}")
        self.stdout.write(f"Then launch on local-queue: its default job runs {job_path}")


def _user(username: str, password: str, superuser: bool):
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created or not user.check_password(password):
        user.set_password(password)
    user.is_staff = user.is_superuser = superuser
    user.save()
    return user


def _demo_job() -> Path:
    """The demo job's script, kept in var/demo-job/train.py."""
    path = settings.VAR_DIR / "demo-job" / "train.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != DEMO_JOB:
        path.write_text(DEMO_JOB)
    return path


def _demo_agent(team: Team, admin) -> str:
    """An agent for local-queue whose token is kept in var/demo_agent_token; the line that starts it."""
    path = settings.VAR_DIR / "demo_agent_token"
    token = path.read_text().strip() if path.exists() else ""
    agent = Agent.objects.active().filter(team=team, digest=hash_token(token)).first() if token else None
    if agent is None:
        Agent.objects.filter(team=team, name="demo-agent").delete()
        agent, token = Agent.issue(team, "demo-agent", created_by=admin)
        path.write_text(token)
        path.chmod(0o600)
    agent.queues.add(*Queue.objects.filter(team=team, name="local-queue"))
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    return f"LAUNCHQ_AGENT_TOKEN=$(cat {path}) {sys.executable} -m launchq.agent --url {url} --queue local-queue"


def _password() -> tuple[str, str]:
    """LAUNCHQ_DEMO_PASSWORD, else one generated once and kept in var/demo_password."""
    if os.environ.get("LAUNCHQ_DEMO_PASSWORD"):
        return os.environ["LAUNCHQ_DEMO_PASSWORD"], "from LAUNCHQ_DEMO_PASSWORD"
    path = settings.VAR_DIR / "demo_password"
    if not path.exists():
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(9))
        path.chmod(0o600)
    return path.read_text().strip(), f"generated, kept in {path}"
