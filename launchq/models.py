"""Teams, their projects and queues, config versions, runs, tokens and agents."""

from __future__ import annotations

import hashlib
import secrets
import string
from datetime import timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from launchq.guardrails import Field
from launchq.templating import Format, ParsedConfig, parse_config

name_validator = RegexValidator(
    r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
    "Use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64).",
)


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Team(models.Model):
    """W&B's entity: owns projects and queues; users are members with a role."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True, help_text="The team's name in URLs and in `${entity_name}`.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class Project(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=64, validators=[name_validator])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_project_name")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"


class Resource(models.TextChoices):
    LOCAL_PROCESS = "local-process", "local-process"
    LOCAL_CONTAINER = "local-container", "local-container"
    KUBERNETES = "kubernetes", "kubernetes"
    SAGEMAKER = "sagemaker", "sagemaker"
    VERTEX = "vertex", "vertex"


class Queue(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=64, validators=[name_validator])
    resource = models.CharField(max_length=32, choices=Resource.choices, default=Resource.LOCAL_PROCESS)
    description = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    current_version = models.ForeignKey("ConfigVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # A queue created with template fields keeps its config here until an admin saves the
    # fields' guardrails; nobody can launch on it meanwhile.
    draft_text = models.TextField(blank=True, help_text="Config text waiting for its first Save config.")
    draft_format = models.CharField(max_length=8, blank=True)
    default_job = models.JSONField(
        default=dict, blank=True, help_text="The job a launch that names none runs: {command, source_dir, image}."
    )

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_queue_name")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("launchq:queue_config", args=[self.team.slug, self.name])

    @property
    def ready(self) -> bool:
        """Whether runs can be launched: a config is saved and no draft waits for its guardrails."""
        return self.current_version_id is not None and not self.draft_text

    @property
    def runs_in_containers(self) -> bool:
        return self.resource != Resource.LOCAL_PROCESS


class ConfigVersion(models.Model):
    """One saved queue config: the text as written and its template field definitions. Never changed."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    format = models.CharField(max_length=8, choices=[(f.value, f.label) for f in Format], default=Format.YAML.value)
    fields = models.JSONField(default=list, blank=True, help_text="Template field definitions, in config order.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["queue", "-number"]
        constraints = [models.UniqueConstraint(fields=["queue", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.queue} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ImmutableVersion(f"{self} is saved and cannot change; save a new version instead.")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("launchq:config_version", args=[self.queue.team.slug, self.queue.name, self.number])

    @property
    def definitions(self) -> list[Field]:
        return [Field.from_dict(d) for d in self.fields]

    def parsed(self) -> ParsedConfig:
        # A saved version was accepted once; a rule made stricter since must not break it.
        return parse_config(self.text, self.format, strict_keys=False)


class ImmutableVersion(Exception):
    pass


class Priority(models.IntegerChoices):
    """W&B's numbering: 0 is the most urgent."""

    CRITICAL = 0, "critical"
    HIGH = 1, "high"
    MEDIUM = 2, "medium"
    LOW = 3, "low"


class RunState(models.TextChoices):
    PENDING = "pending", "pending"
    LEASED = "leased", "leased"
    STARTING = "starting", "starting"
    RUNNING = "running", "running"
    FINISHED = "finished", "finished"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    # An agent's --submit command took the job (exit 0) for a system launchq does not follow: not known to have finished.
    HANDED_OVER = "handed_over", "handed over"


IN_FLIGHT = (RunState.PENDING, RunState.LEASED, RunState.STARTING, RunState.RUNNING)
HELD_BY_AGENT = (RunState.LEASED, RunState.STARTING, RunState.RUNNING)
DONE = (RunState.FINISHED, RunState.FAILED, RunState.CANCELLED, RunState.HANDED_OVER)


def new_run_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


class Run(models.Model):
    """One launch on a queue (W&B's run queue item), pinned to the config version it was launched with."""

    run_id = models.CharField(max_length=16, unique=True, default=new_run_id, editable=False)
    name = models.CharField(max_length=128)
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="runs")
    config_version = models.ForeignKey(ConfigVersion, on_delete=models.PROTECT, related_name="runs")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="runs")
    launched_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    values = models.JSONField(default=dict, blank=True, help_text="The template field values, typed.")
    rendered_config = models.TextField(blank=True, help_text="The queue config with the values in; macros not yet filled.")
    job = models.JSONField(default=dict, blank=True, help_text='{"command": ..., "source_dir": ..., "image": ...}')
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.PENDING, db_index=True)
    agent = models.ForeignKey("Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    resolved_config = models.TextField(blank=True, help_text="What the resource received: macros filled, builder removed.")
    dockerfile = models.TextField(blank=True)
    image_uri = models.CharField(max_length=512, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    failure_reason = models.TextField(blank=True)
    output = models.TextField(blank=True, help_text="The tail of the job's output.")
    exit_code = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tracked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job's own wandb run (wandb.init under a W&B agent) first reached launchq."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["queue", "state", "priority", "created_at"], name="run_dequeue_order")]

    def __str__(self) -> str:
        return f"{self.name} ({self.run_id})"

    def get_absolute_url(self) -> str:
        return reverse("launchq:run_detail", args=[self.queue.team.slug, self.run_id])

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    @property
    def done(self) -> bool:
        return self.state in DONE


class RunEvent(models.Model):
    """A run's state history: every move, who or what made it, and why."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=16, choices=RunState.choices)
    message = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    agent = models.ForeignKey("Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.run.run_id} → {self.state}"


class IdempotencyKey(models.Model):
    """A launch request's key: the same key from the same user again gets the run it launched, not a second one.

    The key comes from the API's `Idempotency-Key` header, the launch form's hidden token, the CLI, or (for the
    `wandb` client, which sends none) the push's own content. `fingerprint` is what was asked for, so the key
    reused for another launch is refused rather than answered with the wrong run.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64, help_text="A hash of the launch request the key first came with.")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True, help_text="After this the key is forgotten and may launch again.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_run_per_idempotency_key")]

    def __str__(self) -> str:
        return f"{self.key} → {self.run_id}"


class RunFile(models.Model):
    """A file a W&B agent or its job uploaded for a run (the agent's error.log, the job's output.log, ...)."""

    MAX_BYTES = 1024 * 1024  # the first MiB is kept; the page says when a file was longer

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=512)
    content = models.BinaryField(blank=True)
    size = models.BigIntegerField(default=0, help_text="The uploaded size, which may exceed what is kept.")
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="one_file_per_name")]

    def __str__(self) -> str:
        return f"{self.run.run_id}/{self.name}"

    @property
    def truncated(self) -> bool:
        return self.size > len(self.content)


TOKEN_ALPHABET = string.ascii_letters + string.digits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A personal API token. Only its hash is stored; the token is shown once."""

    PREFIX = "lq_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to tell tokens apart.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str) -> tuple[ApiToken, str]:
        # Letters and digits only: the wandb client takes a key with a "-" for "host-secret"
        # and refuses it when the part after the first "-" is under 40 characters.
        token = cls.PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(43))
        return cls.objects.create(user=user, name=name, prefix=token[:10], digest=hash_token(token)), token


class Agent(models.Model):
    """A launch agent registered by a team admin to serve some of the team's queues."""

    PREFIX = "lqa_"
    OFFLINE_AFTER = timedelta(seconds=90)

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=64, validators=[name_validator])
    queues = models.ManyToManyField(Queue, related_name="agents")
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    reported_status = models.CharField(max_length=16, blank=True, help_text="What the agent last said it was doing.")
    hostname = models.CharField(max_length=255, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    client = models.CharField(
        max_length=64, blank=True,
        help_text="W&B's launch agent and its version (wandb@0.31.0) when `wandb launch-agent` registered it; empty for launchq's own agent.",
    )

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_agent_name")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"

    @classmethod
    def issue(cls, team: Team, name: str, created_by=None, **fields) -> tuple[Agent, str]:
        # Letters and digits only, so W&B's agent takes the token as its API key too (see ApiToken.issue).
        token = cls.PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(43))
        agent = cls.objects.create(team=team, name=name, prefix=token[:10], digest=hash_token(token), created_by=created_by, **fields)
        return agent, token

    @property
    def is_wandb(self) -> bool:
        """Whether this is W&B's own launch agent (`wandb launch-agent`), talking to launchq's GraphQL door."""
        return bool(self.client)

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.last_seen_at is None or timezone.now() - self.last_seen_at > self.OFFLINE_AFTER:
            return "offline"
        return self.reported_status or "polling"
