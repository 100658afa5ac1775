"""Launching runs and moving them through their states. Every launch path calls `launch_run`.

The browser form, the JSON API, the CLI (through the API) and the `wandb`
client (through GraphQL) all end here, so a value is checked by the same
validator and a run is stored the same way whichever door it came through.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from launchq.characters import describe, unwanted_character
from launchq.guardrails import GuardrailError, Problem, check_values
from launchq.images import base_image, is_image_reference
from launchq.models import DONE, ConfigVersion, IdempotencyKey, Priority, Project, Queue, Run, RunEvent, RunState
from launchq.templating import ConfigError, render_data, render_text

MAX_NAME_LENGTH = 128
MAX_COMMAND_LENGTH = 4096

UNKNOWN_PROJECT = "{value!r} is not a project of team {team}; choose one of: {bound}."
NO_PROJECTS = "Team {team} has no projects yet; an admin must create one before anyone can launch."
NAME_TOO_LONG = "The run name can be at most {bound} characters long."
NEEDS_COMMAND = "A {resource} queue runs a command: give the command to run."
NEEDS_IMAGE = "A {resource} queue runs a container: give an image URI, or a source directory and a command to build one from."
NO_IMAGE_HERE = "A {resource} queue runs a command in a process, not a container image: leave the image out."
IMAGE_AND_SOURCE = "Give an image to run or a source directory to build one from, not both."
BAD_IMAGE = "{value!r} is not a valid image reference, like ghcr.io/team/trainer:1.2."
COMMAND_TOO_LONG = "The command can be at most {bound} characters long."
BAD_PRIORITY = "Priority must be one of critical, high, medium, low (got {value!r})."
BASE_IMAGE_PATH = "builder.accelerator.base_image"
BAD_BASE_IMAGE = "With these values the accelerator base image would be {value!r}, which is not a valid image reference."
BAD_BASE_IMAGE_FROM = (
    "{field} makes the accelerator base image {value!r}, which is not a valid image reference "
    "(like nvidia/cuda:12.4.1-runtime-ubuntu22.04)."
)
NO_CONFIG = "Queue {queue} has no saved config yet."
NOT_READY = "Queue {queue} is not ready: an admin has not saved its template fields' guardrails yet."
CONTROL = "The {field} contains {char}; remove it."
MAX_KEY_LENGTH = 255
BAD_KEY = "An idempotency key is 1 to {bound} printable ASCII characters, such as a UUID."
KEY_REUSED = (
    "Idempotency key {key!r} already launched run {run_id} with other inputs (another queue or other values);"
    " a key stands for one launch. Send a new key for a new launch."
)
REPLAYED = "The same launch request came again from {who} via {via} ({why}); answered with this run, nothing new was enqueued."
SAME_KEY = "same idempotency key"
SAME_CONTENT = "identical to this one within {seconds} s, taken as the client's retry"
_KEY_TEXT = re.compile(r"[\x20-\x7e]{1,%d}" % MAX_KEY_LENGTH)


class LaunchRefused(Exception):
    """Every problem with a launch; nothing was enqueued."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class KeyReused(LaunchRefused):
    """The idempotency key already launched a run, for a different request; nothing was enqueued."""

    def __init__(self, key: str, run: Run):
        super().__init__([Problem("idempotency_key", "idempotency_key_reused", KEY_REUSED.format(key=key, run_id=run.run_id), value=key)])
        self.run = run


class InvalidTransition(Exception):
    def __init__(self, run: Run, to: str):
        super().__init__(f"Run {run.run_id} cannot move from {run.state} to {to}.")
        self.run = run
        self.to = to


# Which state may follow which. Back to pending is the lease running out.
TRANSITIONS: dict[str, set[str]] = {
    RunState.PENDING: {RunState.LEASED, RunState.CANCELLED, RunState.FAILED},
    RunState.LEASED: {RunState.STARTING, RunState.RUNNING, RunState.PENDING, RunState.FAILED, RunState.CANCELLED},
    RunState.STARTING: {RunState.RUNNING, RunState.PENDING, RunState.FAILED, RunState.CANCELLED, RunState.FINISHED, RunState.HANDED_OVER},
    RunState.RUNNING: {RunState.FINISHED, RunState.FAILED, RunState.CANCELLED, RunState.PENDING, RunState.HANDED_OVER},
    RunState.FINISHED: set(),
    RunState.FAILED: set(),
    RunState.CANCELLED: set(),
    RunState.HANDED_OVER: set(),
}


@dataclass(frozen=True)
class Job:
    """What a run executes: a command (and optional source directory), or a container image."""

    command: str = ""
    source_dir: str = ""
    image: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Job:
        data = data or {}
        return cls(*(str(data.get(k) or "").strip() for k in ("command", "source_dir", "image")))

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("command", self.command), ("source_dir", self.source_dir), ("image", self.image)) if v}


def parse_priority(value: int | str | None) -> int:
    """A priority from its name or W&B's number (0 = critical … 3 = low); medium when absent."""
    if value is None or value == "":
        return Priority.MEDIUM
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int) and value in Priority.values:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        for choice in Priority:
            if text == choice.label or text == str(choice.value):
                return choice.value
    raise ValueError(value)


def check_launch(
    queue: Queue,
    values: Mapping[str, object],
    *,
    project: str | Project | None,
    name: str = "",
    job: Mapping[str, Any] | Job | None = None,
    priority: int | str | None = None,
    version: ConfigVersion | None = None,
) -> dict[str, Any]:
    """Check everything about a launch without storing it; raise `LaunchRefused` with every problem.

    Returns what `launch_run` stores: typed values, rendered config, project, job, priority.
    """
    version = version or queue.current_version
    problems: list[Problem] = []
    if queue.draft_text:
        raise LaunchRefused([Problem("", "no_config", NOT_READY.format(queue=queue.name))])
    if version is None:
        raise LaunchRefused([Problem("", "no_config", NO_CONFIG.format(queue=queue.name))])

    job_obj = job if isinstance(job, Job) else Job.from_dict(job)
    if job_obj == Job() and queue.default_job:  # a launch that names no job runs the queue's default one
        job_obj = Job.from_dict(queue.default_job)
    problems.extend(_control_problems({"project": project if isinstance(project, str) else "", "name": name or "", **job_obj.to_dict()}))
    if problems:
        raise LaunchRefused(problems)

    project_obj = _project(queue, project, problems)
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        problems.append(Problem("name", "max_length", NAME_TOO_LONG.format(bound=MAX_NAME_LENGTH), MAX_NAME_LENGTH))
    problems.extend(_job_problems(queue, job_obj))
    try:
        priority_value = parse_priority(priority)
    except ValueError:
        priority_value = Priority.MEDIUM
        problems.append(Problem("priority", "invalid", BAD_PRIORITY.format(value=priority), [c.label for c in Priority], priority))

    typed: dict[str, Any] = {}
    try:
        typed = check_values(version.definitions, values)
    except GuardrailError as error:
        problems.extend(error.problems)

    rendered = ""
    if not problems:
        try:
            parsed = version.parsed()
        except ConfigError as error:  # a stored version always parsed once; keep the run out if it no longer does
            raise LaunchRefused([Problem("", "config_invalid", str(error))]) from None
        data, _ = render_data(parsed, typed)
        image = base_image(data)
        if image and parsed.holds_field(BASE_IMAGE_PATH) and not is_image_reference(image):
            makers = list(dict.fromkeys(o.name for o in parsed.occurrences if o.path == BASE_IMAGE_PATH))
            if len(makers) == 1:  # beside the one value that made it
                problems.append(Problem(makers[0], "invalid_image", BAD_BASE_IMAGE_FROM.format(field=makers[0], value=image), value=image))
            else:
                problems.append(Problem("", "invalid_image", BAD_BASE_IMAGE.format(value=image), value=image))
        rendered = render_text(parsed, typed).text
    if problems:
        raise LaunchRefused(problems)
    return {
        "version": version,
        "values": typed,
        "rendered_config": rendered,
        "project": project_obj,
        "name": name,
        "job": job_obj,
        "priority": priority_value,
    }


def launch_run(
    queue: Queue,
    user,
    values: Mapping[str, object],
    *,
    project: str | Project | None,
    name: str = "",
    job: Mapping[str, Any] | Job | None = None,
    priority: int | str | None = None,
    via: str = "form",
    idempotency_key: str | None = None,
    replay_window: timedelta | None = None,
) -> Run:
    """Check a launch with the shared validator and enqueue it as a pending run.

    Raises `LaunchRefused` with every problem found; nothing is stored then.
    The run is pinned to the queue's current config version.

    With an `idempotency_key` (the caller's, kept LAUNCHQ_IDEMPOTENCY_KEY_HOURS)
    or a `replay_window` (the request's own content is the key, kept that long),
    the same request from the same user again returns the run the first one
    launched, with `run.replayed` set, instead of launching another; requests
    racing with one key make one run (a unique constraint decides). A key that
    comes back with a different request raises `KeyReused`. A refused launch
    stores no key: the request may be fixed and sent again with it.
    """
    queue = Queue.objects.select_related("team", "current_version").get(pk=queue.pk)
    key = _launch_key(queue, user, values, idempotency_key, replay_window, project=project, name=name, job=job, priority=priority)
    if key is not None:
        IdempotencyKey.objects.filter(user=user, expires_at__lte=timezone.now()).delete()
        earlier = _replay(user, key, via)
        if earlier is not None:
            return earlier
    checked = check_launch(queue, values, project=project, name=name, job=job, priority=priority)
    try:
        with transaction.atomic():
            run = Run(
                queue=queue,
                config_version=checked["version"],
                project=checked["project"],
                launched_by=user,
                priority=checked["priority"],
                values=checked["values"],
                rendered_config=checked["rendered_config"],
                job=checked["job"].to_dict(),
            )
            run.name = checked["name"] or readable_name()
            run.save()
            who = user.get_username() if user is not None else "someone"
            RunEvent.objects.create(run=run, state=RunState.PENDING, actor=user, message=f"Launched by {who} via {via}.")
            if key is not None:  # waits here while another request holds the same key, until that one commits or rolls back
                now = timezone.now()
                IdempotencyKey.objects.create(user=user, key=key.text, fingerprint=key.fingerprint, run=run, created_at=now, expires_at=now + key.lifetime)
    except IntegrityError:
        earlier = _replay(user, key, via) if key is not None else None
        if earlier is None:
            raise
        return earlier
    run.replayed = False
    return run


def check_idempotency_key(key: str) -> str:
    """The key as stored: a structured-header string (`"abc"`) loses its quotes. Refuses a blank or odd one."""
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY_TEXT.fullmatch(key) or not key.strip():
        raise LaunchRefused([Problem("idempotency_key", "invalid", BAD_KEY.format(bound=MAX_KEY_LENGTH), MAX_KEY_LENGTH, key[:MAX_KEY_LENGTH])])
    return key


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class _Key:
    text: str
    fingerprint: str  # what the request asked for
    lifetime: timedelta
    why: str  # why a repeat is taken as the same launch, for the run's history


def _launch_key(queue: Queue, user, values: Mapping[str, object], given: str | None, window: timedelta | None, **request: Any) -> _Key | None:
    """The key a launch is known by: the one given (even blank: that is refused), or the request's content."""
    if given is None and not window:
        return None
    if user is None:
        raise ValueError("An idempotency key belongs to a user; launch_run got none.")
    project, job = request["project"], request["job"]
    asked = {
        "queue": queue.pk,
        "values": dict(values),
        "project": project.name if isinstance(project, Project) else project or "",
        "name": (request["name"] or "").strip(),
        "job": (job if isinstance(job, Job) else Job.from_dict(job)).to_dict(),
        "priority": "" if request["priority"] is None else str(request["priority"]),
    }
    fingerprint = hashlib.sha256(json.dumps(asked, sort_keys=True, default=repr).encode()).hexdigest()
    if given is not None:
        return _Key(check_idempotency_key(given), fingerprint, timedelta(hours=settings.LAUNCHQ_IDEMPOTENCY_KEY_HOURS), SAME_KEY)
    return _Key("content:" + fingerprint, fingerprint, window, SAME_CONTENT.format(seconds=int(window.total_seconds())))


def _replay(user, key: _Key, via: str) -> Run | None:
    """The run this key launched (noting the repeat in its history), or None; `KeyReused` for another request."""
    found = IdempotencyKey.objects.select_related("run").filter(user=user, key=key.text, expires_at__gt=timezone.now()).first()
    if found is None:
        return None
    run = found.run
    if found.fingerprint != key.fingerprint:
        raise KeyReused(key.text, run)
    RunEvent.objects.create(run=run, state=run.state, actor=user, message=REPLAYED.format(who=user.get_username(), via=via, why=key.why))
    run.replayed = True
    return run


def move(run: Run, to: str, *, message: str = "", actor=None, agent=None, **changes: Any) -> Run:
    """Move a run to state `to` if that move is allowed, recording it in the run's history.

    Call inside a transaction holding the run's row (select_for_update) when
    another process may move the same run.
    """
    if to not in TRANSITIONS[run.state]:
        raise InvalidTransition(run, to)
    run.state = to
    for key, value in changes.items():
        setattr(run, key, value)
    now = timezone.now()
    if to in DONE:
        run.finished_at = now
        run.lease_expires_at = None
    run.save()
    RunEvent.objects.create(run=run, state=to, message=message, actor=actor, agent=agent, at=now)
    return run


def cancel(run: Run, user) -> Run:
    """Cancel a pending run at once; a run an agent holds is asked to stop and its agent reports cancelled."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        who = user.get_username() if user is not None else "someone"
        if run.state == RunState.PENDING:
            return move(run, RunState.CANCELLED, message=f"Cancelled by {who}.", actor=user)
        if run.done:
            raise InvalidTransition(run, RunState.CANCELLED)
        if not run.cancel_requested:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested", "updated_at"])
            RunEvent.objects.create(run=run, state=run.state, message=f"Cancel requested by {who}; waiting for the agent to stop the job.", actor=user)
        return run


def _project(queue: Queue, project: str | Project | None, problems: list[Problem]) -> Project | None:
    if isinstance(project, Project):
        if project.team_id == queue.team_id:
            return project
        project = project.name
    names = list(queue.team.projects.values_list("name", flat=True))
    if not names:
        problems.append(Problem("project", "no_projects", NO_PROJECTS.format(team=queue.team.slug)))
        return None
    if not project and len(names) == 1:
        project = names[0]
    try:
        return queue.team.projects.get(name=project or "")
    except Project.DoesNotExist:
        problems.append(
            Problem("project", "unknown_project", UNKNOWN_PROJECT.format(value=project or "", team=queue.team.slug, bound=", ".join(names)), names, project)
        )
        return None


def check_default_job(resource: str, job: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with a job an admin sets as a queue's default (the same rules as a launched job's)."""
    job_obj = Job.from_dict(job)
    if job_obj == Job():
        return []
    return _job_problems(Queue(resource=resource), job_obj) + _control_problems(job_obj.to_dict())


def _control_problems(texts: Mapping[str, str]) -> list[Problem]:
    """A control character in any of these inputs, named by the input."""
    problems = []
    for key, text in texts.items():
        bad = unwanted_character(text)
        if bad:
            problems.append(Problem(key, "invalid_character", CONTROL.format(field=key.replace("_", " "), char=describe(bad)), value=text))
    return problems


def _job_problems(queue: Queue, job: Job) -> list[Problem]:
    problems = []
    resource = queue.resource
    if len(job.command) > MAX_COMMAND_LENGTH:
        problems.append(Problem("command", "max_length", COMMAND_TOO_LONG.format(bound=MAX_COMMAND_LENGTH), MAX_COMMAND_LENGTH))
    if not queue.runs_in_containers:
        if not job.command:
            problems.append(Problem("command", "required", NEEDS_COMMAND.format(resource=resource)))
        if job.image:
            problems.append(Problem("image", "not_allowed", NO_IMAGE_HERE.format(resource=resource), value=job.image))
    elif job.image:
        if job.source_dir:
            problems.append(Problem("source_dir", "not_allowed", IMAGE_AND_SOURCE, value=job.source_dir))
        if not is_image_reference(job.image):
            problems.append(Problem("image", "invalid_image", BAD_IMAGE.format(value=job.image), value=job.image))
    elif not (job.source_dir and job.command):
        problems.append(Problem("image", "required", NEEDS_IMAGE.format(resource=resource)))
    return problems


_ADJECTIVES = (
    "amber autumn bold brave bright calm clever cosmic crisp curious daring dusty eager early fancy fresh gentle "
    "glad golden grand happy hardy hidden icy jolly keen kind lively lucky lunar mellow misty noble quiet rapid "
    "royal rustic silent silver sleek smooth snowy solar spry steady stellar stormy sunny swift tidy vivid warm wild"
).split()
_NOUNS = (
    "brook canyon cedar cliff cloud comet coral creek dawn delta dune ember field fjord forest frost galaxy glade "
    "grove harbor hill lake leaf meadow mesa moon nebula ocean orbit peak pine planet pond prairie rain reef ridge "
    "river shadow sky snow spark star stone storm sun thunder tide valley wave wind"
).split()


def readable_name() -> str:
    """A run name people can say out loud: `swift-river-42`."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(900) + 100}"
