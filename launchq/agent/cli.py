"""`python -m launchq.agent`: the command line that starts an agent."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from launchq.agent.loop import Agent, Settings
from launchq.agent.runners import SUBMITTED, Options
from launchq.images import image_tag

EPILOG = """\
Environment: LAUNCHQ_URL, LAUNCHQ_AGENT_TOKEN and LAUNCHQ_QUEUES (comma-separated)
stand in for --url, --token and --queue. Macros other than the five built-ins
(${project_name} ${entity_name} ${run_id} ${run_name} ${image_uri}) are filled
from this process's environment; jobs get that environment too, without the
agent token.

Example:
  LAUNCHQ_AGENT_TOKEN=lqa_... python -m launchq.agent --url https://launchq.example.com \\
      --queue gpu-queue --submit kubernetes="kubectl apply -f -"
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launchq.agent",
        description="Take runs off launchq queues and carry them out on this machine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default=os.environ.get("LAUNCHQ_URL"), help="The launchq server, e.g. https://launchq.example.com")
    p.add_argument("--token", default=os.environ.get("LAUNCHQ_AGENT_TOKEN"), help="The agent token (lqa_…) shown when the agent was registered")
    p.add_argument("--queue", action="append", default=[], metavar="QUEUE", help="A queue to serve (repeat for more); default: every queue the agent is registered for")
    p.add_argument("--submit", action="append", default=[], metavar="RESOURCE=COMMAND",
                   help=f"The command that submits a run to {', '.join(SUBMITTED)}; it reads the resolved config as JSON on stdin")
    p.add_argument("--image-repository", default=os.environ.get("LAUNCHQ_IMAGE_REPOSITORY", "launchq-runs"),
                   help="Where built images go, e.g. ghcr.io/team/runs; tagged with the run ID (default: %(default)s)")
    p.add_argument("--python-image", default="python:3.12-slim", help="Base image when the queue sets no accelerator base image (default: %(default)s)")
    p.add_argument("--docker", default="docker", help="The Docker CLI (default: %(default)s)")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / f"launchq-agent-{os.getuid()}",
                   help="Where run config files and Dockerfiles are written (default: %(default)s)")
    p.add_argument("--keep-work-dirs", action="store_true", help="Keep each run's work directory after it ends")
    p.add_argument("--poll-max", type=float, default=10.0, help="Longest wait between polls of an empty queue, in seconds (default: %(default)s)")
    p.add_argument("--hostname", default="", help="The name this machine reports (default: its host name)")
    p.add_argument("--log-level", default=os.environ.get("LAUNCHQ_LOG_LEVEL", "INFO"), choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def settings_from(argv: list[str] | None = None) -> Settings:
    p = parser()
    args = p.parse_args(argv)
    if not args.url:
        p.error("give the server's URL with --url or LAUNCHQ_URL")
    if not args.token:
        p.error("give the agent token with --token or LAUNCHQ_AGENT_TOKEN")
    queues = list(args.queue) or [q.strip() for q in os.environ.get("LAUNCHQ_QUEUES", "").split(",") if q.strip()]
    submit = {}
    for item in args.submit:
        resource, sep, command = item.partition("=")
        resource = resource.strip()
        if not sep or resource not in SUBMITTED or not command.strip():
            p.error(f"--submit takes RESOURCE=COMMAND with RESOURCE one of {', '.join(SUBMITTED)} (got {item!r})")
        submit[resource] = command.strip()
    try:
        image_tag(args.image_repository, "run")
    except ValueError:
        p.error(f"--image-repository {args.image_repository!r} is not an image repository, like ghcr.io/team/runs")
    if args.poll_max < 0.1:
        p.error("--poll-max must be at least 0.1 seconds")
    logging.basicConfig(level=args.log_level, format="%(asctime)s launchq-agent %(levelname)s %(message)s", stream=sys.stderr)
    return Settings(
        url=args.url,
        token=args.token,
        queues=queues,
        options=Options(submit=submit, image_repository=args.image_repository, python_image=args.python_image,
                        docker=args.docker, hostname=args.hostname),
        work_dir=args.work_dir,
        poll_min=min(1.0, args.poll_max),
        poll_max=args.poll_max,
        keep_work_dirs=args.keep_work_dirs,
    )


def main(argv: list[str] | None = None) -> int:
    agent = Agent(settings_from(argv))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: agent.stop(signum))
    return agent.serve()
