"""What a run becomes on each resource: the commands the agent runs for it.

- `local-process`: the job's command, in its source directory, with the resolved
  config in a file named by `LAUNCHQ_CONFIG_PATH`.
- `local-container`: `docker run` of the job's image (or the one built for it),
  with that file mounted and the same environment.
- `kubernetes`, `sagemaker`, `vertex`: the submit command configured on the agent
  for that resource, reading the resolved config as JSON on standard input.

A run that needs an image built from its source directory gets a Dockerfile
(see `launchq.images.make_dockerfile`) and `docker build` steps first. Nothing
here runs anything; `launchq.agent.loop` does, and reports what happened.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launchq.agent.process import RunFailed, Step
from launchq.agent.resolve import Resolved
from launchq.images import image_tag, is_image_reference, make_dockerfile

LOCAL_PROCESS = "local-process"
LOCAL_CONTAINER = "local-container"
SUBMITTED = ("kubernetes", "sagemaker", "vertex")
CONTAINER_CONFIG_DIR = "/launchq"
# What the agent keeps to itself: a job never sees the agent's token.
PRIVATE_ENV = ("LAUNCHQ_AGENT_TOKEN",)

NO_COMMAND = "The run has no command to run; a {resource} queue runs the job's command."
NO_SOURCE_DIR = "The job's source directory {path} does not exist on this agent ({host})."
NO_SUBMIT = (
    "No submit command for {resource} is configured on this agent: start it with "
    "--submit {resource}=\"COMMAND\" (the command reads the resolved config as JSON on standard input, "
    "e.g. {example})."
)
BAD_SUBMIT = "The submit command for {resource} on this agent cannot be read: {error}"
NO_ENGINE = "no Docker engine on this agent: {detail}"
NO_IMAGE = "The run has no image and nothing to build one from (a source directory and a command)."
BAD_BASE_IMAGE = "The accelerator base image {value!r} (after macros) is not a valid image reference."
BAD_OPTION = "The local-container config key {key!r} is not a docker run option name."
UNKNOWN_RESOURCE = "This agent cannot run {resource} queues."
SUBMIT_EXAMPLES = {
    "kubernetes": "kubectl apply -f -",
    "sagemaker": "my-sagemaker-submit",
    "vertex": "my-vertex-submit",
}
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9-]*\Z")


@dataclass
class Options:
    """How this agent was started."""

    submit: dict[str, str] = field(default_factory=dict)
    image_repository: str = "launchq-runs"
    python_image: str = "python:3.12-slim"
    docker: str = "docker"
    hostname: str = ""


@dataclass
class Plan:
    """The commands for one run: build steps (maybe none), then the job step."""

    build: list[Step]
    job: Step
    image_uri: str | None
    dockerfile: str = ""
    needs_engine: bool = False


def image_uri_for(run: Mapping[str, Any], resource: str, options: Options) -> str | None:
    """`${image_uri}`: the job's own image, the tag the agent builds, or None for a local process."""
    job = run.get("job") or {}
    if resource == LOCAL_PROCESS:
        return job.get("image") or None
    if job.get("image"):
        return job["image"]
    if job.get("source_dir") and job.get("command"):
        return image_tag(options.image_repository, run["id"])
    return None


def plan_run(
    run: Mapping[str, Any],
    resolved: Resolved,
    *,
    options: Options,
    workdir: Path,
    environ: Mapping[str, str],
) -> Plan:
    """The commands that carry out a run on its resource. Raises `RunFailed` for what is missing."""
    resource = run["resource"]
    job = run.get("job") or {}
    config_path = write_config(resolved, workdir)
    image_uri = image_uri_for(run, resource, options)
    env = job_environment(environ, run, str(config_path), image_uri)

    if resource == LOCAL_PROCESS:
        argv = _command(job, resource)
        cwd = _source_dir(job, options) or str(workdir)
        return Plan([], Step(argv, "the job", cwd=cwd, env=env), image_uri)

    if resource not in (LOCAL_CONTAINER, *SUBMITTED):
        raise RunFailed(UNKNOWN_RESOURCE.format(resource=resource))
    submit_argv = _submit_command(resource, options) if resource in SUBMITTED else None
    build, dockerfile = [], ""
    if not job.get("image"):
        if not image_uri:
            raise RunFailed(NO_IMAGE)
        dockerfile, build = _build_steps(run, resolved, options, workdir, image_uri, push=resource in SUBMITTED)

    if resource == LOCAL_CONTAINER:
        mounted = f"{CONTAINER_CONFIG_DIR}/{config_path.name}"
        container_env = {k: v for k, v in env.items() if k.startswith("LAUNCHQ_")}
        container_env["LAUNCHQ_CONFIG_PATH"] = mounted
        name = f"launchq-{run['id']}"
        argv = [options.docker, "run", "--rm", "--name", name, "--volume", f"{config_path}:{mounted}:ro"]
        for key, value in sorted(container_env.items()):
            argv += ["--env", f"{key}={value}"]
        argv += docker_run_options(resolved.data)
        argv.append(image_uri)
        if job.get("image") and job.get("command"):
            argv += _command(job, resource)
        cleanup = [options.docker, "rm", "--force", name]
        return Plan(build, Step(argv, "docker run", cwd=str(workdir), env=env, cleanup=cleanup), image_uri, dockerfile, True)

    stdin = json.dumps(resolved.data, indent=2, ensure_ascii=False).encode() + b"\n"
    what = f"the submit command `{shlex.join(submit_argv)}`"
    return Plan(build, Step(submit_argv, what, cwd=str(workdir), env=env, stdin=stdin), image_uri, dockerfile, bool(build))


def engine_problem(docker: str, timeout: float = 20.0) -> str | None:
    """Why no Docker engine answers this agent, or None when one does (`docker info`)."""
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
    except FileNotFoundError:
        return NO_ENGINE.format(detail=f"the {docker!r} command is not installed")
    except subprocess.TimeoutExpired:
        return NO_ENGINE.format(detail=f"`docker info` did not answer within {timeout:.0f} seconds")
    except OSError as error:
        return NO_ENGINE.format(detail=str(error))
    if result.returncode != 0 or not result.stdout.strip():
        detail = " ".join((result.stderr or result.stdout).split()) or f"`docker info` exited with status {result.returncode}"
        return NO_ENGINE.format(detail=detail[:500])
    return None


def write_config(resolved: Resolved, workdir: Path) -> Path:
    """The resolved config, in the queue's format, in the run's work directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"launchq-config.{resolved.format.value}"
    path.write_text(resolved.text, encoding="utf-8")
    return path


def job_environment(environ: Mapping[str, str], run: Mapping[str, Any], config_path: str, image_uri: str | None) -> dict[str, str]:
    """The agent's environment (minus its token) and the run's identity."""
    env = {k: v for k, v in environ.items() if k not in PRIVATE_ENV}
    env.setdefault("PYTHONUNBUFFERED", "1")  # a Python job's output reaches the run page as it is printed
    env.update(
        LAUNCHQ_RUN_ID=str(run["id"]),
        LAUNCHQ_RUN_NAME=str(run.get("name") or ""),
        LAUNCHQ_PROJECT=str(run.get("project") or ""),
        LAUNCHQ_ENTITY=str(run.get("entity") or ""),
        LAUNCHQ_QUEUE=str(run.get("queue") or ""),
        LAUNCHQ_CONFIG_PATH=config_path,
    )
    if image_uri:
        env["LAUNCHQ_IMAGE_URI"] = image_uri
    return env


def docker_run_options(data: Mapping[str, Any]) -> list[str]:
    """A local-container config's keys as `docker run` options: `{"gpus": "all"}` → `--gpus all`.

    A list repeats the option, a mapping gives KEY=VALUE pairs, true gives a bare
    flag, false or null leaves it out. Each value is its own argument; no shell.
    """
    argv: list[str] = []
    for key, value in data.items():
        if not isinstance(key, str) or not _OPTION.match(key):
            raise RunFailed(BAD_OPTION.format(key=key))
        flag = f"-{key}" if len(key) == 1 else f"--{key}"
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or item is False:
                continue
            if item is True:
                argv.append(flag)
            elif isinstance(item, dict):
                argv += [part for k, v in item.items() for part in (flag, f"{k}={_text(v)}")]
            else:
                argv += [flag, _text(item)]
    return argv


def _build_steps(run, resolved: Resolved, options: Options, workdir: Path, image_uri: str, *, push: bool) -> tuple[str, list[Step]]:
    job = run.get("job") or {}
    source = _source_dir(job, options)
    base = _base_image(resolved)
    command = _command(job, run["resource"])
    dockerfile = make_dockerfile(
        base, command, requirements=(Path(source) / "requirements.txt").is_file(), python_image=options.python_image, run_id=run["id"]
    )
    path = workdir / "Dockerfile"
    path.write_text(dockerfile, encoding="utf-8")
    steps = [
        Step(
            [options.docker, "build", "--tag", image_uri, "--file", str(path), "--label", f"launchq.run_id={run['id']}", source],
            "docker build", cwd=str(workdir),
        )
    ]
    if push:
        steps.append(Step([options.docker, "push", image_uri], "docker push", cwd=str(workdir)))
    return dockerfile, steps


def _base_image(resolved: Resolved) -> str | None:
    """The accelerator base image after macros, checked again: a macro may have filled it on this agent."""
    accelerator = (resolved.builder or {}).get("accelerator")
    value = accelerator.get("base_image") if isinstance(accelerator, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not is_image_reference(value):
        raise RunFailed(BAD_BASE_IMAGE.format(value=value))
    return value


def _command(job: Mapping[str, Any], resource: str) -> list[str]:
    try:
        argv = shlex.split(job.get("command") or "")
    except ValueError as error:
        raise RunFailed(f"The job's command cannot be read: {error}.") from None
    if not argv:
        raise RunFailed(NO_COMMAND.format(resource=resource))
    return argv


def _source_dir(job: Mapping[str, Any], options: Options) -> str | None:
    source = job.get("source_dir")
    if not source:
        return None
    path = Path(os.path.expanduser(source))
    if not path.is_dir():
        raise RunFailed(NO_SOURCE_DIR.format(path=source, host=options.hostname or "this machine"))
    return str(path.resolve())


def _submit_command(resource: str, options: Options) -> list[str]:
    command = options.submit.get(resource)
    if not command:
        raise RunFailed(NO_SUBMIT.format(resource=resource, example=SUBMIT_EXAMPLES[resource]))
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise RunFailed(BAD_SUBMIT.format(resource=resource, error=error)) from None
    if not argv:
        raise RunFailed(NO_SUBMIT.format(resource=resource, example=SUBMIT_EXAMPLES[resource]))
    return argv


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
