"""Runs that leave the machine: one small interface over Kubernetes, SageMaker, Vertex AI and a container engine.

Each engine takes a `JobSpec` (the run's resolved config and what the run owns:
image, command, identity) and does four things with the engine's official client:

- `start(spec)`: find the job this run already has (by label or by the name
  derived from the run), or submit one. A run never gets two jobs, even when it
  is popped again or the agent restarted mid-job: the `Handle` says whether it
  re-attached.
- `status(handle)`: the job's state in launchq's words (`Status`), with the
  reason a person needs when it waits or fails.
- `logs(handle)`: the tail of the job's output, or None with `log_note` saying why not.
- `cancel(handle)`: stop the job on the engine.

Whatever the engine or its client refuses becomes an `EngineError` that says
what was refused, by whom, and whether asking again may help. Nothing here
knows about launchq's server: the agent's loop reports what these return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

WAITING = "waiting"  # submitted, not running yet (no Pod scheduled, image pulling, instances starting)
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
DONE = (FINISHED, FAILED, CANCELLED)


@dataclass(frozen=True)
class JobSpec:
    """What a remote job is made of: the queue's resolved config and what the run owns."""

    run_id: str
    config: dict[str, Any]
    image: str | None = None
    command: list[str] | None = None
    run_name: str = ""
    entity: str = ""
    project: str = ""
    queue: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        """The run's identity as labels an engine can filter on."""
        return {"run-id": self.run_id, "team": self.entity, "project": self.project, "queue": self.queue}


@dataclass(frozen=True)
class Handle:
    """The engine's job for a run: enough to follow, read and cancel it, also after a restart."""

    engine: str
    name: str
    where: str = ""
    attached: bool = False  # True when the job existed already and was found, not submitted now
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        return f"{self.name} ({self.where})" if self.where else self.name


@dataclass(frozen=True)
class Status:
    state: str
    message: str = ""
    reason: str = ""
    exit_code: int | None = None

    @property
    def done(self) -> bool:
        return self.state in DONE


class EngineError(Exception):
    """The engine or its client refused, or could not be reached. `source` says who said so."""

    def __init__(self, message: str, *, source: str, retryable: bool = False):
        super().__init__(f"{source}: {message}")
        self.message = message
        self.source = source
        self.retryable = retryable


class Engine(Protocol):
    name: str
    log_note: str

    def start(self, spec: JobSpec) -> Handle: ...

    def status(self, handle: Handle) -> Status: ...

    def logs(self, handle: Handle) -> str | None: ...

    def cancel(self, handle: Handle) -> str: ...


def derived_name(prefix: str, run_id: str, *, limit: int, allowed: str = "a-z0-9-", lower: bool = True) -> str:
    """A job name made from the run, valid under an engine's name rules: `<prefix>-<run id>`, clipped to `limit`.

    The run ID always survives whole at the end, so two runs never share a name.
    """
    text = prefix.lower() if lower else prefix
    text = re.sub(rf"[^{allowed}]+", "-", text).strip("-") or "launchq"
    suffix = f"-{run_id.lower() if lower else run_id}"
    head = text[: max(1, limit - len(suffix))].rstrip("-") or "launchq"[: max(1, limit - len(suffix))]
    return f"{head}{suffix}"


def clip(text: str, limit: int = 2000) -> str:
    """An engine's message, shortened for a run page; whitespace runs folded."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
