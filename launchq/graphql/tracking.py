"""What W&B's agent and its jobs send about runs besides GraphQL's run queue calls.

Under a W&B agent a job's own `wandb.init` reports as the W&B run the agent
named after the launchq run id (the run spec's `run_id`):

- `upsertBucket` (wandb.init): the run is running (`Run.tracked_at`);
- `POST /files/{entity}/{project}/{run}/file_stream` (`files.py`): the job's console lines
  become the run's output, every post keeps the lease, and the final post
  (`complete`, `exitcode`) finishes or fails the run;
- `createRunFiles` and a `PUT` to each upload URL: the run's files
  (output.log, config.yaml, ...), kept on the run page.

The agent's own hidden run (`agent-…` in project model-registry) is answered
but not kept, except the files it saves for a run it failed
(`<run id>/error/error.log`, named in `failRunQueueItem`), which go to that run.
Only calls from whoever acts for the agent holding a run change it; anything
else is answered and dropped, so the client carries on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.core import signing
from django.urls import reverse
from django.utils import timezone

from launchq import queueing
from launchq.graphql.agents import acts_for, holder
from launchq.graphql.queued import run_node
from launchq.graphql.resolvers import Refusal, entity_node, global_id, team_for
from launchq.models import Run, RunFile, RunState
from launchq.runs import InvalidTransition

UPLOAD_SALT = "launchq.graphql.tracking.upload"
UPLOAD_MAX_AGE = 24 * 3600
MAX_FILES = 100  # per run; more are accepted and dropped
OUTPUT_FILE = "output.log"
# wandb-core sends each console line as "[ERROR ]<ISO time> <text>" (ERROR: the line came on stderr)
CONSOLE_PREFIX = re.compile(r"(?:ERROR )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)? ")

JOB_STARTED = "The job's wandb run started (wandb.init) on W&B agent {agent}."
JOB_EXITED = "The job exited with status {code} (reported by its wandb run)."
JOB_FINISHED = "The job finished (reported by its wandb run)."
TOO_MANY_FILES = "createRunFiles takes at most {bound} files at a time."
JOB_STOPPED = "The job stopped after the cancel request (reported by its wandb run)."


# --- GraphQL ----------------------------------------------------------------------------


def resolve_upsert_bucket(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    context = info.context
    team = team_for(context, input.get("entityName"))
    name = input.get("name") or ""
    run = Run.objects.select_related("queue__team", "project", "launched_by").filter(queue__team=team, run_id=name).first()
    agent = holder(context, run) if run is not None else None
    inserted = False
    if agent is not None:
        inserted = bool(Run.objects.filter(pk=run.pk, tracked_at__isnull=True).update(tracked_at=timezone.now()))
        if run.state in (RunState.LEASED, RunState.STARTING):
            try:
                queueing.report_state(agent, run.run_id, RunState.RUNNING, message=JOB_STARTED.format(agent=agent.name))
            except (queueing.LeaseLost, InvalidTransition):
                pass
        run.refresh_from_db()
    node = run_node(run) if run is not None else _untracked_node(team, name, input)
    node["config"] = input.get("config") if input.get("config") is not None else node["config"]
    return {"bucket": node, "inserted": inserted}


def resolve_create_run_files(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    context = info.context
    if len(input["files"]) > MAX_FILES:
        raise Refusal(TOO_MANY_FILES.format(bound=MAX_FILES), "BAD_USER_INPUT")
    team = team_for(context, input["entityName"])
    run = Run.objects.select_related("agent").filter(queue__team=team, run_id=input["runName"]).first()
    mine = run if run is not None and run.agent is not None and acts_for(context, run.agent) else None
    kept = mine.files.count() if mine is not None else 0
    files = []
    for name in input["files"]:
        target, stored_as = _file_target(context, team, mine, name)
        if target is not None and kept >= MAX_FILES:
            target = None
        kept += target is not None
        token = signing.dumps({"r": target.pk if target else None, "n": stored_as}, salt=UPLOAD_SALT, compress=True)
        url = reverse("launchq_file_upload", args=[token])
        request = context.request
        files.append({"name": name, "uploadUrl": request.build_absolute_uri(url) if request is not None else url})
    return {"runID": global_id("Run", run.pk) if run else global_id("Bucket", 0), "uploadHeaders": [], "files": files}


# --- private ---------------------------------------------------------------------------


def record_stream(context, entity: str, run_id: str, body: Mapping[str, Any]) -> None:
    """A file_stream post: output lines, a kept lease, and the job's end; dropped unless the caller acts for the run's agent."""
    run = Run.objects.filter(queue__team__slug=entity, run_id=run_id).first()
    agent = holder(context, run) if run is not None else None
    if agent is not None:
        _stream(agent, run, body)


def store_upload(token: str, data: bytes, size: int) -> bool:
    """Keep an uploaded file where its signed upload URL says; False when the URL is not valid (or expired)."""
    try:
        target = signing.loads(token, salt=UPLOAD_SALT, max_age=UPLOAD_MAX_AGE)
    except signing.BadSignature:
        return False
    if target.get("r") is not None:
        RunFile.objects.update_or_create(
            run_id=target["r"], name=target["n"][:512], defaults={"content": data, "size": size, "uploaded_at": timezone.now()}
        )
    return True


def _stream(agent, run: Run, body: Mapping[str, Any]) -> None:
    files = body.get("files") if isinstance(body.get("files"), dict) else {}
    output = files.get(OUTPUT_FILE)
    try:
        if isinstance(output, dict) and isinstance(output.get("content"), list):
            lines = [CONSOLE_PREFIX.sub("", line, count=1) for line in output["content"] if isinstance(line, str)]
            if lines:
                queueing.record_output(agent, run.run_id, "".join(line if line.endswith("\n") else line + "\n" for line in lines))
        else:
            queueing.heartbeat(agent, run.run_id)
        if body.get("complete") is True:
            code = body.get("exitcode")
            code = code if isinstance(code, int) and not isinstance(code, bool) else None
            run.refresh_from_db(fields=["cancel_requested"])
            if run.cancel_requested:
                queueing.report_state(agent, run.run_id, RunState.CANCELLED, message=JOB_STOPPED, exit_code=code)
            elif code == 0:
                queueing.report_state(agent, run.run_id, RunState.FINISHED, message=JOB_FINISHED, exit_code=0)
            else:
                reason = JOB_EXITED.format(code=code if code is not None else "unknown")
                queueing.report_state(agent, run.run_id, RunState.FAILED, reason=reason, exit_code=code)
    except (queueing.LeaseLost, InvalidTransition, Run.DoesNotExist):
        pass


def _file_target(context, team, run: Run | None, name: str) -> tuple[Run | None, str]:
    """Which run keeps an uploaded file, and under what name; (None, name) to drop it."""
    if run is not None:
        return run, name
    run_id, _, rest = name.partition("/")  # the agent's hidden run saves <run id>/error/error.log for a run it failed
    if not rest:
        return None, name
    failed = Run.objects.select_related("agent").filter(queue__team=team, run_id=run_id).first()
    if failed is not None and failed.agent is not None and acts_for(context, failed.agent):
        return failed, rest
    return None, name


def _untracked_node(team, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A W&B run launchq does not keep (the agent's own): answered so the client carries on."""
    return {
        "id": global_id("Bucket", 0), "name": name, "displayName": data.get("displayName") or name, "state": "running",
        "stopped": False, "config": None, "summaryMetrics": None, "systemMetrics": None, "tags": data.get("tags") or [],
        "sweepName": None, "group": data.get("groupName"), "jobType": data.get("jobType"), "commit": None, "readOnly": False,
        "createdAt": None, "heartbeatAt": None, "description": data.get("description"), "notes": data.get("notes"),
        "historyLineCount": 0, "historyKeys": None, "projectId": None, "user": None,
        "project": {"id": global_id("Project", 0), "name": data.get("modelName") or "", "entity": entity_node(team)},
        "run": None,
    }

