"""The agent's life: poll for a run, carry it out, report, and again; stop cleanly when told.

One run at a time. While it holds a run the agent heartbeats, which keeps the
lease alive and brings back a cancel request; reports go through the
`Reporter`, so the server may go down and come back without the run being
lost. If the lease is lost anyway (the server gave the run to another agent),
the job is stopped and nothing more is reported for it.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launchq.agent.client import LeaseLost, Refused, Server, ServerUnavailable, Unauthorized
from launchq.agent.process import JobProcess, RunFailed, Step, Tail, describe_exit
from launchq.agent.reporter import Reporter
from launchq.agent.resolve import builtins_for, resolve_config
from launchq.agent.runners import LOCAL_PROCESS, SUBMITTED, Options, engine_problem, image_uri_for, plan_run
from launchq.templating import ConfigError

log = logging.getLogger("launchq.agent")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNAUTHORIZED = 3
STOP_FLUSH_SECONDS = 15.0
TICK = 0.5


@dataclass
class Settings:
    url: str
    token: str
    queues: list[str] = field(default_factory=list)
    options: Options = field(default_factory=Options)
    work_dir: Path = Path("/tmp/launchq-agent")
    poll_min: float = 1.0
    poll_max: float = 10.0
    keep_work_dirs: bool = False


@dataclass
class Outcome:
    state: str
    message: str = ""
    reason: str = ""
    exit_code: int | None = None

    def body(self) -> dict[str, Any]:
        return {"state": self.state, "message": self.message, "reason": self.reason, "exit_code": self.exit_code}


class LeaseGone(Exception):
    """The run is no longer this agent's; its job was stopped and nothing more is reported."""


class Watch(threading.Thread):
    """Heartbeats for the run the agent holds; notices a cancel request or a lost lease."""

    def __init__(self, agent: Agent, run_id: str, interval: float):
        super().__init__(name=f"launchq-heartbeat-{run_id}", daemon=True)
        self.agent = agent
        self.run_id = run_id
        self.interval = interval
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        failing = False
        while not self._halt.wait(self.interval):
            try:
                answer = self.agent.server.post(f"runs/{self.run_id}/heartbeat", {"status": "running"}) or {}
            except LeaseLost as error:
                log.warning("Run %s: lease lost (%s).", self.run_id, error.message)
                self.lost.set()
                return
            except Unauthorized:
                self.agent.unauthorized()
                return
            except (ServerUnavailable, Refused) as error:
                if not failing:
                    log.warning("Run %s: heartbeat failed (%s); the job goes on, retrying.", self.run_id, error)
                failing = True
                continue
            if failing:
                log.info("Run %s: heartbeats answered again.", self.run_id)
            failing = False
            self.answer(answer)

    def answer(self, answer: Mapping[str, Any]) -> None:
        if answer.get("cancel"):
            self.cancel.set()

    def halt(self) -> None:
        self._halt.set()


class Agent:
    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.server = Server(settings.url, settings.token)
        self.hostname = settings.options.hostname or socket.gethostname()
        self.settings.options.hostname = self.hostname
        self.stopping = threading.Event()
        self.stop_signal = ""
        self.exit_code = EXIT_OK
        self.name = "agent"
        self._watch: Watch | None = None
        self.reporter = Reporter(
            self.server, on_answer=self._answered, on_lost=self._lost, on_unauthorized=self.unauthorized
        )

    # --- life ------------------------------------------------------------------

    def serve(self) -> int:
        """Poll and run until stopped; the process's exit status."""
        if not self._hello():
            return self.exit_code
        delay = self.settings.poll_min
        outage = False
        while not self.stopping.is_set():
            try:
                run = self.server.post("pop", {"queues": self.settings.queues, "hostname": self.hostname})
            except ServerUnavailable as error:
                if not outage:
                    log.warning("Server unavailable (%s); waiting and retrying.", error)
                outage = True
                delay = self._pause(delay, 30.0)
                continue
            except Unauthorized:
                self.unauthorized()
                break
            except Refused as error:
                log.error("The server refused to give this agent work: %s", error.message)
                self.exit_code = EXIT_USAGE
                break
            if outage:
                log.info("Server reachable again.")
            outage = False
            if run is None:
                delay = self._pause(delay, self.settings.poll_max)
                continue
            delay = self.settings.poll_min
            self.handle(run)
        self._goodbye()
        return self.exit_code

    def stop(self, signum: int | None = None) -> None:
        if signum is not None:
            self.stop_signal = signal.Signals(signum).name
            log.info("Got %s: stopping%s.", self.stop_signal, " the job and then the agent" if self._watch else "")
        self.stopping.set()

    def unauthorized(self) -> None:
        log.error("The server refused the agent token (revoked, or for another server); stopping.")
        self.exit_code = EXIT_UNAUTHORIZED
        self.stopping.set()

    # --- one run ---------------------------------------------------------------

    def handle(self, run: dict[str, Any]) -> None:
        """Carry out a leased run and report how it ended, unless its lease was lost."""
        run_id = run["id"]
        log.info("Run %s (%s) leased from queue %s: attempt %s.", run_id, run.get("name"), run.get("queue"), run.get("attempts"))
        interval = max(0.2, min(float(run.get("lease_seconds") or 60) / 3, 5.0))
        watch = self._watch = Watch(self, run_id, interval)
        watch.start()
        workdir = self.settings.work_dir / run_id
        tail = Tail()
        try:
            try:
                outcome = self._carry_out(run, watch, workdir, tail)
            except LeaseGone:
                outcome = None
            except RunFailed as failed:
                outcome = Outcome("failed", reason=failed.reason)
            except Exception as error:  # a bug here must still end the run honestly, as failed
                log.exception("Run %s: the agent hit an error.", run_id)
                outcome = Outcome("failed", reason=f"The agent hit an error: {type(error).__name__}: {error}")
            self._send_output(run_id, tail)
            if outcome is not None and not watch.lost.is_set():
                log.info("Run %s: %s. %s", run_id, outcome.state, outcome.reason or outcome.message)
                self.reporter.send(run_id, f"runs/{run_id}/state", outcome.body())
            self._deliver(run_id, watch)
        finally:
            watch.halt()
            self._watch = None
            if not self.settings.keep_work_dirs:
                shutil.rmtree(workdir, ignore_errors=True)

    def _carry_out(self, run: dict[str, Any], watch: Watch, workdir: Path, tail: Tail) -> Outcome:
        run_id, resource = run["id"], run["resource"]
        self._report(run_id, "state", {"state": "starting", "message": f"Agent {self.name} on {self.hostname} is preparing the run."})
        image_uri = image_uri_for(run, resource, self.settings.options)
        try:
            resolved = resolve_config(
                run["config"]["text"], run["config"]["format"], run.get("values") or {},
                builtins_for(run, image_uri), self.environ,
            )
        except ConfigError as error:
            raise RunFailed(f"The queue config could not be resolved: {error}") from None
        except KeyError as error:
            raise RunFailed(f"The run has no value for template field {error}.") from None
        plan = None
        try:
            plan = plan_run(run, resolved, options=self.settings.options, workdir=workdir, environ=self.environ)
        finally:
            self._report(run_id, "resolved", {
                "resolved_config": resolved.text,
                "warnings": resolved.warnings,
                "dockerfile": plan.dockerfile if plan else "",
            })
        if plan.needs_engine:
            problem = engine_problem(self.settings.options.docker)
            if problem:
                raise RunFailed(problem)
        for step in plan.build:
            ended = self._supervise(run_id, step, watch, tail)
            if ended is not None:
                return ended
        if plan.build or (plan.image_uri and resource != LOCAL_PROCESS):
            self._report(run_id, "resolved", {"image_uri": plan.image_uri})
        if watch.lost.is_set():
            raise LeaseGone
        if watch.cancel.is_set():
            return Outcome("cancelled", message="Cancelled on request before the job started.")
        if self.stopping.is_set():
            return Outcome("failed", reason=f"The agent was stopped ({self.stop_signal or 'shutting down'}) before the job started.")
        return self._supervise(run_id, plan.job, watch, tail, job=True, resource=resource)

    def _supervise(self, run_id: str, step: Step, watch: Watch, tail: Tail, *, job: bool = False, resource: str = "") -> Outcome | None:
        """Run one step to its end. For a build step: None when it succeeded, else how the run ended."""
        if not (job and resource == LOCAL_PROCESS):  # the job's own output stays the job's own
            tail.write(f"$ {step.shown}\n")
        process = JobProcess(step, tail)
        process.start()
        if job:
            self._report(run_id, "state", {"state": "running", "message": f"{step.title} started: {step.shown}"})
        last_flush = 0.0
        while True:
            code = process.wait(TICK)
            if code is not None:
                break
            if time.monotonic() - last_flush >= 1.0:
                self._send_output(run_id, tail)
                last_flush = time.monotonic()
            if watch.lost.is_set():
                process.stop()
                log.warning("Run %s: stopped %s because the lease was lost.", run_id, step.what)
                raise LeaseGone
            if watch.cancel.is_set():
                code = process.stop()
                return Outcome("cancelled", message=f"Cancelled on request; {step.what} was stopped.", exit_code=code)
            if self.stopping.is_set():
                code = process.stop()
                why = f"The agent was stopped ({self.stop_signal or 'shutting down'}) while {step.what} ran; it was stopped too."
                return Outcome("failed", reason=why, exit_code=code)
        process.finish()
        if code == 0:
            if not job:
                return None
            if resource in SUBMITTED:
                return Outcome("finished", message=f"{step.title} exited with status 0: the job was handed to {resource}.", exit_code=0)
            return Outcome("finished", message=f"{step.title} exited with status 0.", exit_code=0)
        return Outcome("failed", reason=f"{step.title} exited with {describe_exit(code)}.", exit_code=code)

    # --- talking to the server ---------------------------------------------------

    def _hello(self) -> bool:
        """Say who we are and which queues we serve; wait for the server if it is not up yet."""
        delay = self.settings.poll_min
        while not self.stopping.is_set():
            try:
                answer = self.server.post("heartbeat", {"status": "polling", "hostname": self.hostname, "queues": self.settings.queues}) or {}
            except ServerUnavailable as error:
                log.warning("Server unavailable (%s); waiting for it.", error)
                delay = self._pause(delay, 30.0)
                continue
            except Unauthorized:
                self.unauthorized()
                return False
            except Refused as error:
                log.error("%s", error.message)
                self.exit_code = EXIT_USAGE
                return False
            self.name = answer.get("agent", self.name)
            queues = ", ".join(answer.get("queues") or []) or "none yet"
            log.info("Agent %s of team %s on %s: serving queues %s at %s.", self.name, answer.get("team"), self.hostname, queues, self.settings.url)
            return True
        return False

    def _goodbye(self) -> None:
        self.reporter.wait_idle(STOP_FLUSH_SECONDS)
        self.reporter.close()
        if self.exit_code == EXIT_UNAUTHORIZED:
            return
        try:
            self.server.post("heartbeat", {"status": "offline", "hostname": self.hostname}, timeout=5)
        except (ServerUnavailable, Refused):
            pass
        log.info("Agent %s stopped.", self.name)

    def _report(self, run_id: str, what: str, body: dict[str, Any]) -> None:
        self.reporter.send(run_id, f"runs/{run_id}/{what}", body)

    def _send_output(self, run_id: str, tail: Tail) -> None:
        text = tail.take()
        if text is not None:
            self.reporter.send(run_id, f"runs/{run_id}/output", {"text": text, "replace": True}, kind="output")

    def _deliver(self, run_id: str, watch: Watch) -> None:
        """Wait until the run's reports are delivered: through an outage, but not past a stop's grace."""
        stop_deadline = None
        while self.reporter.pending(run_id):
            if watch.lost.is_set() or self.exit_code == EXIT_UNAUTHORIZED:
                self.reporter.drop(run_id)
                return
            if self.stopping.is_set():
                stop_deadline = stop_deadline or time.monotonic() + STOP_FLUSH_SECONDS
                if time.monotonic() > stop_deadline:
                    log.warning("Run %s: could not deliver its last reports before stopping.", run_id)
                    return
            self.reporter.wait_idle(TICK, run_id)

    def _answered(self, run_id: str, answer: dict[str, Any]) -> None:
        watch = self._watch
        if watch is not None and watch.run_id == run_id:
            watch.answer(answer)

    def _lost(self, run_id: str) -> None:
        watch = self._watch
        if watch is not None and watch.run_id == run_id:
            watch.lost.set()

    def _pause(self, delay: float, ceiling: float) -> float:
        """Sleep about `delay` seconds (or until stopped); the next, longer delay."""
        self.stopping.wait(delay * random.uniform(0.8, 1.2))
        return min(delay * 1.5, ceiling)
