"""The shapes the API reads and writes; ninja turns them into the OpenAPI document.

Only translation lives here: what a field means and what a value may be is
decided by `launchq.guardrails` and `launchq.runs`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from launchq.numbers import MAX_ID, NumberRefused, read_count

PriorityName = Literal["critical", "high", "medium", "low"]


def whole_number(name: str, *, minimum: int = 0, maximum: int = MAX_ID) -> BeforeValidator:
    """A number the API reads, through launchq's one strict reader: ASCII digits, inside the range, else 422."""

    def read(raw: object) -> object:
        try:
            return read_count(raw, name=name, minimum=minimum, maximum=maximum)
        except NumberRefused as refused:
            raise PydanticCustomError(refused.code, refused.message) from None

    return BeforeValidator(read)


ExitCode = Annotated[int | None, whole_number("exit_code", minimum=-MAX_ID - 1)]
NOT_A_PRIORITY = "priority must be one of critical, high, medium, low, or W&B's number 0-3 (got {value})."


def _name_or_number(raw: object) -> object:
    """A priority is a name or an integer; JSON's false is not 0 (critical), nor 1.0 high."""
    if raw is None or isinstance(raw, str) or (isinstance(raw, int) and not isinstance(raw, bool)):
        return raw
    raise PydanticCustomError("type", NOT_A_PRIORITY.format(value=json_text(raw)))


def json_text(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:40] + "…"


class ProblemOut(Schema):
    """One thing wrong with a request, in the same shape as the launch form's errors."""

    field: str = Field(..., description='The template field or request field at fault ("" for the request as a whole).')
    code: str = Field(..., description="Machine-readable rule: required, type, minimum, maximum, not_allowed, pattern, …")
    message: str = Field(..., description="The rule, the bound and the value, in a sentence.")
    bound: Any = Field(None, description="The limit that was broken (a number, a list of allowed values, a pattern).")
    value: Any = Field(None, description="The value that broke it.")


class Message(Schema):
    """The request as a whole was refused (not authenticated, not found, not allowed, ...)."""

    errors: list[ProblemOut] = Field(..., description='One problem with field "" and a code such as unauthorized, not_found, forbidden.')
    detail: str = Field(..., description="What went wrong, in a sentence (the problem's message).")


class Problems(Schema):
    errors: list[ProblemOut]


class InvalidRequest(Schema):
    """The request body or query did not have the documented shape (answered before any launch check)."""

    errors: list[ProblemOut]
    detail: list[dict[str, Any]] = Field(..., description="The same errors in django-ninja's native form.")


# --- who is calling ---------------------------------------------------------


class TeamOut(Schema):
    slug: str
    name: str
    role: str = Field(..., description="admin or member")


class MeOut(Schema):
    username: str
    teams: list[TeamOut]


# --- queues -----------------------------------------------------------------


class QueueSummary(Schema):
    team: str
    name: str
    resource: str = Field(..., description="local-process, local-container, kubernetes, sagemaker or vertex")
    description: str
    version: int | None = Field(..., description="The current config version's number (null before the first save).")
    ready: bool = Field(..., description="False while the queue has no saved config, or its first config waits for its fields' guardrails: launches are refused.")
    fields: list[str] = Field(..., description="The template fields' names, in config order.")
    url: str = Field(..., description="This queue in the API.")


class QueueDetail(QueueSummary):
    format: str | None = Field(..., description="yaml or json")
    config: str = Field(..., description="The queue config as the admin wrote it, comments kept.")
    version_created_at: datetime | None
    version_created_by: str | None
    template_variables: dict[str, dict[str, Any]] = Field(
        ...,
        description='Each template field as JSON Schema, in the shape W&B uses: {"type": "integer", "minimum": 1, "maximum": 4, "default": 1}.',
    )
    required: list[str] = Field(..., description="Template fields without a default: a launch must set them.")
    projects: list[str] = Field(..., description="The team's projects, one of which a launch names.")
    runs_in_containers: bool = Field(..., description="True: a launch gives job.image (or job.source_dir and job.command); false: job.command.")
    default_job: dict[str, str] = Field(..., description="What a launch that gives no job runs: {command?, source_dir?, image?}; {} when the queue has none.")


# --- runs -------------------------------------------------------------------


class JobIn(Schema):
    model_config = ConfigDict(extra="forbid")

    command: str = Field("", description="The command to run (process queues; with source_dir to build an image).")
    source_dir: str = Field("", description="The directory the command runs in, or the image is built from.")
    image: str = Field("", description="A container image URI (container queues).")


class LaunchIn(Schema):
    """A launch: only template fields' values, within their guardrails, and where the run goes."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = Field(None, description="One of the team's projects; may be left out when the team has exactly one.")
    name: str = Field("", description="The run's name; a readable one is made up when empty.")
    template_variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Template field name → value. Strings are typed by the server (\"4\" is 4 for an Integer); numbers must be plain ASCII decimals.",
    )
    job: JobIn = Field(default_factory=JobIn)
    priority: Annotated[str | int | None, BeforeValidator(_name_or_number)] = Field(
        None,
        description="critical, high, medium (the default) or low; W&B's numbers 0-3 work too.",
        json_schema_extra={"examples": ["high"]},
    )


class EventOut(Schema):
    state: str
    at: datetime
    message: str
    actor: str | None = Field(..., description="The user who made the move, if a user did.")
    agent: str | None = Field(..., description="The agent that made the move, if an agent did.")


class Links(Schema):
    self: str = Field(..., description="This run in the API.")
    web: str | None = Field(..., description="This run's page in the browser.")
    queue: str = Field(..., description="The run's queue in the API.")
    cancel: str = Field(..., description="POST here to cancel the run.")


class RunSummary(Schema):
    run_id: str
    name: str
    team: str
    queue: str
    project: str
    state: str = Field(..., description="pending, leased, starting, running, finished, failed, cancelled or handed_over (a --submit command took the job; launchq does not follow it)")
    priority: PriorityName
    values: dict[str, Any] = Field(..., description="The template fields' typed values.")
    launched_by: str | None
    created_at: datetime
    finished_at: datetime | None
    cancel_requested: bool
    failure_reason: str
    links: Links


class RunOut(RunSummary):
    config_version: int
    job: dict[str, str]
    rendered_config: str = Field(..., description="The queue config with the values in; macros not filled yet.")
    resolved_config: str = Field(..., description="What the resource received: macros filled, builder removed (set by the agent).")
    warnings: list[Any]
    agent: str | None
    attempts: int
    image_uri: str
    exit_code: int | None
    started_at: datetime | None
    updated_at: datetime
    output: str = Field(..., description="The tail of the job's output.")
    events: list[EventOut] = Field(..., description="The run's state history, oldest first.")


class RunPage(Schema):
    count: int = Field(..., description="How many runs match, over all pages.")
    limit: int
    offset: int
    next: str | None = Field(..., description="The next page, or null on the last one.")
    items: list[RunSummary] = Field(..., description="Newest first.")
