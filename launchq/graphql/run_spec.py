"""What a `wandb` run spec asks launchq to run. No Django here.

The `wandb` client describes a launch as a run spec (W&B's launch spec):

    {"entity": "ml", "project": "vision", "name": "...", "docker": {"docker_image": "IMG"},
     "resource": null, "git": {}, "overrides": {"entry_point": ["python", "train.py"], "args": ["--lr", "0.1"]}}

`read_run_spec` maps it onto a launchq launch:

- `project` and `name` are the run's project and name;
- on a container queue the job is `{"image": docker.docker_image}`, plus a command when the
  spec has an entry point or args (run in the image, like `docker run IMAGE COMMAND`);
- on a local-process queue the job is the command `overrides.entry_point + overrides.args`
  (the client always sends a docker image: it is not used there);
- the queue decides the resource: a different `resource` is refused;
- team members set only the queue's template fields, so `resource_args`, `overrides.run_config`
  and other overrides are refused rather than silently dropped, and so are W&B jobs and URIs
  (launchq cannot fetch W&B artifacts or build from a repository URI).

`author`, `sweep_id`, `run_id`, `git` and the rest of what the client may add are not used.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from launchq.guardrails import Problem

SUPPORTED_OVERRIDES = ("entry_point", "args")

NOT_AN_OBJECT = "The run spec must be a JSON object (got {value})."
NOT_TEXT = "The run spec's {field} must be text (got {value})."
NOT_AN_OBJECT_FIELD = "The run spec's {field} must be an object (got {value})."
NOT_A_LIST = "The run spec's {field} must be a list of strings, like [\"python\", \"train.py\"]."
OTHER_TEAM = "The run spec's entity {value!r} is not this queue's team {bound!r}: runs go into a project of the queue's team."
OTHER_RESOURCE = "This queue runs on {bound}; the run spec asks for {value!r}. Leave --resource out: the queue decides where runs go."
NO_JOBS = "launchq runs container images and commands, not W&B jobs ({value!r}); use --docker-image instead."
NO_URI = "launchq cannot build from a URI ({value!r}); use --docker-image instead."
NO_RESOURCE_ARGS = "Only the queue's template fields can be changed (--set-var / template_variables); resource_args are not accepted."
NO_OVERRIDE = "{field} is not supported by launchq (it takes {bound}); set the queue's template fields instead."
NO_DOCKER_OPTION = "{field} is not supported by launchq; only docker.docker_image is."


@dataclass(frozen=True)
class RunSpecLaunch:
    """The launch a run spec asks for: what `launch_run` takes besides the values."""

    project: str | None = None
    name: str = ""
    job: dict[str, str] = field(default_factory=dict)


class RunSpecRefused(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def read_run_spec(spec: object, *, team: str, resource: str, runs_in_containers: bool) -> RunSpecLaunch:
    """The launch `spec` asks for on a queue of `team` running on `resource`; `RunSpecRefused` lists every problem."""
    if not isinstance(spec, Mapping):
        raise RunSpecRefused([Problem("runSpec", "type", NOT_AN_OBJECT.format(value=_kind(spec)))])
    problems: list[Problem] = []

    def problem(field_: str, code: str, message: str, bound: Any = None, value: Any = None) -> None:
        problems.append(Problem(field_, code, message.format(field=field_, bound=bound, value=value), bound, value))

    project = _text(spec, "project", problem)
    name = _text(spec, "name", problem) or ""
    entity = _text(spec, "entity", problem)
    if entity and entity != team:
        problem("entity", "other_team", OTHER_TEAM, team, entity)
    asked = _text(spec, "resource", problem)
    if asked and asked != resource:
        problem("resource", "other_resource", OTHER_RESOURCE, resource, asked)
    if spec.get("job"):
        problem("job", "unsupported", NO_JOBS, value=spec["job"])
    if spec.get("uri"):
        problem("uri", "unsupported", NO_URI, value=spec["uri"])
    if spec.get("resource_args"):
        problem("resource_args", "unsupported", NO_RESOURCE_ARGS)

    docker = spec.get("docker") or {}
    image = ""
    if not isinstance(docker, Mapping):
        problem("docker", "type", NOT_AN_OBJECT_FIELD, value=_kind(docker))
    else:
        image = _text(docker, "docker_image", problem) or ""
        for key, value in docker.items():
            if key != "docker_image" and value not in (None, "", [], {}):
                problem(f"docker.{key}", "unsupported", NO_DOCKER_OPTION)

    overrides = spec.get("overrides") or {}
    words: list[str] = []
    entry_text = ""
    if not isinstance(overrides, Mapping):
        problem("overrides", "type", NOT_AN_OBJECT_FIELD, value=_kind(overrides))
    else:
        for key, value in overrides.items():
            if key not in SUPPORTED_OVERRIDES and value not in (None, "", [], {}):
                problem(f"overrides.{key}", "unsupported", NO_OVERRIDE, " and ".join(SUPPORTED_OVERRIDES))
        entry = overrides.get("entry_point")
        if isinstance(entry, str):
            entry_text = entry.strip()
        elif entry is not None:
            words += _words(entry, "overrides.entry_point", problem)
        words += _words(overrides.get("args"), "overrides.args", problem)

    if problems:
        raise RunSpecRefused(problems)
    command = " ".join(part for part in (entry_text, shlex.join(words) if words else "") if part)
    job = {"image": image, "command": command} if runs_in_containers else {"command": command}
    return RunSpecLaunch(project=project, name=name, job={k: v for k, v in job.items() if v})


def _text(spec: Mapping, key: str, problem) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problem(key, "type", NOT_TEXT, value=_kind(value))
        return None
    return value.strip() or None


def _words(value: object, name: str, problem) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        problem(name, "type", NOT_A_LIST)
        return []
    return list(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


# --- what W&B's launch agent gets ----------------------------------------------------

# W&B's agent runs a plain command on local-process only for a run spec with a URI it
# treats as a placeholder (its sweep scheduler uses one too: this one is not that).
LOCAL_COMMAND_URI = "placeholder-launchq-command"
# Runs the command in its source directory; the directory and the words are arguments, never shell text.
IN_SOURCE_DIR = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh"]

MEMBER_MACRO = (
    "{field} contains ${{ (got {value!r}): W&B's launch agent fills every ${{NAME}} it receives from its own "
    "environment, so launchq does not hand this run to a W&B agent. launchq's own agent keeps member text as written; "
    "launch without ${{ here, or on a queue that launchq's agent serves."
)
NEEDS_BUILD = (
    "This run asks launchq's agent to build an image from the source directory {value!r}; W&B's launch agent runs "
    "images only. Launch it with an image, or on a queue that launchq's agent serves."
)
BAD_COMMAND = "The command cannot be split into words: {value}."
MEMBER_TEXT = ("name", "command", "source_dir", "image")


def member_macro_problems(*, values: Mapping[str, Any], name: str, job: Mapping[str, Any]) -> list[Problem]:
    """Text a member typed that holds `${`: a W&B agent would fill it from its environment."""
    problems = []
    texts = [(key, value) for key, value in values.items()]
    texts += [("name", name)] + [(key, job.get(key)) for key in MEMBER_TEXT[1:]]
    for key, value in texts:
        if isinstance(value, str) and "${" in value:
            problems.append(Problem(key, "member_macro", MEMBER_MACRO.format(field=key, value=_short(value)), value=value))
    return problems


def agent_run_spec(
    *, run_id: str, name: str, entity: str, project: str, resource: str, job: Mapping[str, Any], resource_args: Any
) -> dict[str, Any]:
    """The run spec W&B's launch agent runs a launchq run from; `RunSpecRefused` when it cannot.

    The run's identity (`run_id`, `name`, `entity`, `project`) becomes the W&B run's, so the
    job's own `wandb.init` reports to the same run. The rendered queue config goes to
    `resource_args[resource]`. A local-process command becomes the entry point; on a
    container resource the image is `docker.docker_image` and the command its arguments
    (like `docker run IMAGE COMMAND`).
    """
    try:
        words = shlex.split(job.get("command") or "")
    except ValueError as error:
        raise RunSpecRefused([Problem("command", "invalid", BAD_COMMAND.format(value=error))]) from None
    spec: dict[str, Any] = {
        "entity": entity, "project": project, "name": name, "run_id": run_id,
        "resource": resource, "resource_args": {resource: resource_args},
        "docker": {}, "git": {}, "overrides": {},
    }
    if resource == "local-process":
        if job.get("source_dir"):
            words = [*IN_SOURCE_DIR, job["source_dir"], *words]
        spec["uri"] = LOCAL_COMMAND_URI
        spec["overrides"] = {"entry_point": words}
        return spec
    if not job.get("image"):
        raise RunSpecRefused([Problem("source_dir", "needs_build", NEEDS_BUILD.format(value=job.get("source_dir", "")))])
    spec["docker"] = {"docker_image": job["image"]}
    if words:
        spec["overrides"] = {"args": words}
    return spec


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
