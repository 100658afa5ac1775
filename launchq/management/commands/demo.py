"""`python manage.py demo`: a demo team to click through. Safe to run again: it only adds what is missing."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from launchq.configs import create_queue
from launchq.guardrails import Field, FieldType
from launchq.models import Membership, Project, Queue, Resource, Role, Team

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

AWS_INSTANCE = Field(
    "aws_instance",
    FieldType.STRING,
    description="The SageMaker instance type the training job runs on.",
    allowed=("ml.m4.xlarge", "ml.p3.xlarge"),
)


class Command(BaseCommand):
    help = "Create the demo team, its admin and member users, a project and two queues (idempotent)."

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
        self.stdout.write(f"Demo team 'demo' is ready. Log in as admin or member, password: {password} ({source})")


def _user(username: str, password: str, superuser: bool):
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created or not user.check_password(password):
        user.set_password(password)
    user.is_staff = user.is_superuser = superuser
    user.save()
    return user


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
