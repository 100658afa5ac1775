"""Saving queue configs: check the config and every tile together, then store a new version.

A saved `ConfigVersion` is never changed. Saving is a compare-and-swap on the
queue's current version, so two admins who started from the same version
cannot overwrite each other: the second gets `ConfigConflict` naming the newer
version, and nothing of theirs is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from launchq.guardrails import Field, GuardrailError, Problem
from launchq.images import check_base_image
from launchq.models import ConfigVersion, Queue
from launchq.templating import ConfigError, Format, ParsedConfig, parse_config


class ConfigConflict(Exception):
    def __init__(self, newer: ConfigVersion | None):
        super().__init__("The queue config changed since you started editing.")
        self.newer = newer


@dataclass
class ConfigRejected(Exception):
    """Everything wrong with a config and its tiles, found in one pass."""

    config_error: ConfigError | None = None
    problems: list[Problem] = field(default_factory=list)
    unreviewed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [str(self.config_error)] if self.config_error else []
        parts += [p.message for p in self.problems]
        if self.unreviewed:
            parts.append("New template fields to review: " + ", ".join(self.unreviewed))
        return "; ".join(parts)


@dataclass(frozen=True)
class SaveResult:
    version: ConfigVersion
    created: bool
    dropped: list[str]


def check_config(text: str, fmt: Format | str) -> ParsedConfig:
    """Parse a config and check what the server checks beyond syntax (the accelerator base image)."""
    parsed = parse_config(text, fmt)
    problem = check_base_image(parsed)
    if problem is not None:
        raise problem
    return parsed


def save_config(
    queue: Queue,
    user,
    text: str,
    fmt: Format | str,
    definitions: dict[str, Field],
    base_number: int | None,
) -> SaveResult:
    """Save `text` and the definitions of its fields as the queue's next version.

    `definitions` maps field names to already-checked `Field`s (tiles that
    failed their own checks never get here). Raises `ConfigRejected` when the
    config fails to parse or a field has no definition, `ConfigConflict` when
    the queue moved on from `base_number`.
    """
    fmt = Format(fmt)
    try:
        parsed = check_config(text, fmt)
    except ConfigError as error:
        raise ConfigRejected(config_error=error) from None
    names = parsed.fields
    unreviewed = [n for n in names if n not in definitions]
    if unreviewed:
        raise ConfigRejected(unreviewed=unreviewed)
    fields = [definitions[n].to_dict() for n in names]

    try:
        with transaction.atomic():
            current = Queue.objects.get(pk=queue.pk).current_version
            if (current.number if current else None) != base_number:
                raise ConfigConflict(current)
            dropped = [f["name"] for f in (current.fields if current else []) if f["name"] not in names]
            if current and current.text == text and current.format == fmt and current.fields == fields:
                return SaveResult(current, False, [])
            version = ConfigVersion.objects.create(
                queue=queue, number=(base_number or 0) + 1, text=text, format=fmt.value, fields=fields, created_by=user
            )
            moved = Queue.objects.filter(pk=queue.pk, current_version=current).update(
                current_version=version, draft_text="", draft_format=""
            )
            if not moved:
                raise ConfigConflict(None)
    except IntegrityError:
        raise ConfigConflict(None) from None
    except ConfigConflict as conflict:
        if conflict.newer is None:
            conflict.newer = Queue.objects.get(pk=queue.pk).current_version
        raise
    queue.current_version = version
    queue.draft_text = queue.draft_format = ""
    return SaveResult(version, True, dropped)


def create_queue(
    team, user, name: str, resource: str, text: str = "", fmt: Format | str = Format.YAML,
    definitions: dict[str, Field] | None = None, description: str = "", default_job: dict[str, str] | None = None,
) -> Queue:
    """A new queue with its first config version."""
    with transaction.atomic():
        queue = Queue.objects.create(
            team=team, name=name, resource=resource, created_by=user, description=description, default_job=default_job or {}
        )
        save_config(queue, user, text, fmt, definitions or {}, None)
    return queue


def create_queue_with_draft(
    team, user, name: str, resource: str, text: str, fmt: Format | str, description: str = "", default_job: dict[str, str] | None = None,
) -> Queue:
    """A new queue whose config has template fields still without guardrails.

    It has no config version yet: the text waits as the queue's draft, shown on
    the Config tab, until an admin saves the fields as version 1; launches are
    refused till then.
    """
    fmt = Format(fmt)
    return Queue.objects.create(
        team=team, name=name, resource=resource, created_by=user, description=description,
        draft_text=text, draft_format=fmt.value, default_job=default_job or {},
    )


def check_definitions(tiles) -> tuple[dict[str, Field], list[Problem]]:
    """Define every tile's field; collect the problems of those that fail."""
    definitions: dict[str, Field] = {}
    problems: list[Problem] = []
    for tile in tiles:
        try:
            definitions[tile.name] = tile.define()
        except GuardrailError as error:
            problems.extend(error.problems)
    return definitions, problems


__all__ = ["ConfigConflict", "ConfigRejected", "SaveResult", "check_config", "check_definitions", "create_queue", "create_queue_with_draft", "save_config", "GuardrailError"]
