"""A run as a container on this machine, through the Docker CLI (or podman's, which takes the same verbs).

The container is started detached, named `launchq-<run id>` and labelled
`launchq.run-id=<run id>` (and team, project, queue), so a restarted agent
finds it and goes on following it instead of starting another. The queue
config's keys are `docker run` options (`{"gpus": "all"}` is `--gpus all`).
Status comes from `inspect` (running, exited with its code, OOM-killed), the
output from `logs`, and cancel stops the container. The container is removed
once its end is known (`remove`).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from launchq.agent.engines import FAILED, FINISHED, RUNNING, WAITING, EngineError, Handle, JobSpec, Status, clip

ENGINE = "local-container"
LABEL = "launchq.run-id"
LOG_LINES = 400
STOP_SECONDS = 10
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9-]*\Z")
# Options the runner sets itself: the config may not change the container's identity or take it out of the agent's reach.
RESERVED = {"name", "label", "l", "detach", "d", "rm", "interactive", "i", "tty", "t", "entrypoint"}

BAD_OPTION = "The local-container config key {key!r} is not a docker run option name."
RESERVED_OPTION = "The local-container config may not set --{key}: the agent sets it to follow the run's container."
NO_IMAGE = "The run has no image (and nothing to build one from)."
NO_ENGINE = "no container engine answers: {detail}"


class ContainerEngine:
    name = ENGINE

    def __init__(self, *, docker: str = "docker", env: Mapping[str, str] | None = None, timeout: float = 120.0):
        self.docker = docker
        self.env = dict(env) if env is not None else None
        self.timeout = timeout
        self.log_note = ""

    def start(self, spec: JobSpec) -> Handle:
        found = self._find(spec.run_id)
        if found is not None:
            return found
        argv = run_argv(spec, self.docker)
        name = container_name(spec.run_id)
        result = self._run(argv, f"{self.docker} run", timeout=self.timeout * 5)  # may pull the image first
        if result.returncode != 0:
            if "is already in use" in result.stderr and (again := self._find(spec.run_id)) is not None:
                return again
            raise EngineError(f"`{self.docker} run` refused the container: {clip(result.stderr or result.stdout, 1500)}",
                              source=f"{self.docker} run")
        return Handle(ENGINE, name, "", extra={"id": result.stdout.strip()[:64]})

    def status(self, handle: Handle) -> Status:
        state = self._inspect(handle.name)
        if state is None:
            return Status(FAILED, reason=f"The container {handle.name} was removed outside launchq before it ended.")
        return container_status(handle.name, state)

    def logs(self, handle: Handle) -> str | None:
        result = self._run([self.docker, "logs", "--tail", str(LOG_LINES), handle.name], f"{self.docker} logs")
        if result.returncode != 0:
            self.log_note = f"The container's output is not readable: {clip(result.stderr, 300)}"
            return None
        self.log_note = ""
        return result.stdout + result.stderr  # docker logs replays the job's stdout and stderr on its own two

    def cancel(self, handle: Handle) -> str:
        result = self._run([self.docker, "stop", "--time", str(STOP_SECONDS), handle.name], f"{self.docker} stop",
                           timeout=self.timeout + STOP_SECONDS)
        if result.returncode != 0 and "No such container" not in result.stderr:
            raise EngineError(f"could not stop {handle.name}: {clip(result.stderr, 500)}", source=f"{self.docker} stop")
        return f"The container {handle.name} was stopped (SIGTERM, then SIGKILL after {STOP_SECONDS} s)."

    def remove(self, handle: Handle) -> None:
        self._run([self.docker, "rm", "--force", handle.name], f"{self.docker} rm")

    # --- the CLI -----------------------------------------------------------------

    def _find(self, run_id: str) -> Handle | None:
        result = self._run([self.docker, "ps", "--all", "--filter", f"label={LABEL}={run_id}", "--format", "{{.Names}}"],
                           f"{self.docker} ps")
        if result.returncode != 0:
            raise EngineError(NO_ENGINE.format(detail=clip(result.stderr or result.stdout, 500)), source=f"{self.docker} ps",
                              retryable=True)
        names = [n.strip().lstrip("/") for n in result.stdout.split() if n.strip()]
        return Handle(ENGINE, names[0], "", attached=True) if names else None

    def _inspect(self, name: str) -> dict | None:
        result = self._run([self.docker, "inspect", "--type", "container", "--format", "{{json .State}}", name], f"{self.docker} inspect")
        if result.returncode != 0:
            if "No such" in result.stderr or "no such" in result.stderr:
                return None
            raise EngineError(clip(result.stderr, 500), source=f"{self.docker} inspect", retryable=True)
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise EngineError(f"unreadable answer: {clip(result.stdout, 200)}", source=f"{self.docker} inspect", retryable=True) from None

    def _run(self, argv: list[str], what: str, *, timeout: float | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout or self.timeout,
                                  env=self.env)
        except FileNotFoundError:
            raise EngineError(NO_ENGINE.format(detail=f"the {self.docker!r} command is not installed"), source=what) from None
        except subprocess.TimeoutExpired:
            raise EngineError(NO_ENGINE.format(detail=f"{what} did not answer within {timeout or self.timeout:.0f} s"), source=what,
                              retryable=True) from None


def container_name(run_id: str) -> str:
    return f"launchq-{run_id}"


def run_argv(spec: JobSpec, docker: str = "docker") -> list[str]:
    """`docker run --detach` for a run: its name, labels, identity, the config's options, the image and command."""
    if not spec.image:
        raise EngineError(NO_IMAGE, source="launchq agent (before sending)")
    argv = [docker, "run", "--detach", "--name", container_name(spec.run_id)]
    for key, value in spec.labels.items():
        if value:
            argv += ["--label", f"launchq.{key}={value}"]
    for key, value in sorted(spec.env.items()):
        argv += ["--env", f"{key}={value}"]
    argv += run_options(spec.config or {})
    argv.append(spec.image)
    if spec.command:
        argv += list(spec.command)
    return argv


def run_options(data: Mapping[str, Any]) -> list[str]:
    """A local-container config's keys as `docker run` options: `{"gpus": "all"}` → `--gpus all`.

    A list repeats the option, a mapping gives KEY=VALUE pairs, true gives a bare
    flag, false or null leaves it out. Each value is its own argument; no shell.
    """
    argv: list[str] = []
    for key, value in data.items():
        if not isinstance(key, str) or not _OPTION.match(key):
            raise EngineError(BAD_OPTION.format(key=key), source="launchq agent (before sending)")
        if key in RESERVED:
            raise EngineError(RESERVED_OPTION.format(key=key), source="launchq agent (before sending)")
        flag = f"-{key}" if len(key) == 1 else f"--{key}"
        for item in value if isinstance(value, list) else [value]:
            if item is None or item is False:
                continue
            if item is True:
                argv.append(flag)
            elif isinstance(item, dict):
                argv += [part for k, v in item.items() for part in (flag, f"{k}={_text(v)}")]
            else:
                argv += [flag, _text(item)]
    return argv


def container_status(name: str, state: Mapping[str, Any]) -> Status:
    """launchq's state for `docker inspect`'s State of the run's container."""
    status = state.get("Status")
    code = state.get("ExitCode")
    if status in ("created",):
        return Status(WAITING, message=f"Container {name} is created, not started yet.")
    if status in ("running", "paused", "restarting"):
        return Status(RUNNING, message=f"Container {name} is {status}.")
    if status in ("exited", "dead", "stopped"):
        if state.get("OOMKilled"):
            return Status(FAILED, reason=f"Container {name} was killed for running out of memory (OOMKilled, exit code {code}).",
                          exit_code=code)
        if state.get("Error"):
            return Status(FAILED, reason=f"Container {name} could not run: {clip(state['Error'], 1000)}", exit_code=code)
        if code == 0:
            return Status(FINISHED, message=f"Container {name} exited with status 0.", exit_code=0)
        return Status(FAILED, reason=f"Container {name} exited with status {code}.", exit_code=code)
    return Status(WAITING, message=f"Container {name} is {status}.")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
