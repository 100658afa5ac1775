"""Scripts that wait on their runs: a launchq run as W&B's run queue item, and as W&B's run.

`launch_add(...)` answers a `QueuedRun`; `api.queued_run(...)` and
`api.run_queue(...).items` make more. Their `.state` reads the run queue item
(launchq's own state), `wait_until_running()` waits for `associatedRunId` and
then loads W&B's run of that name, and `wait_until_finished()` polls that run's
`state` until it is finished, failed or crashed. A launchq run is both at once:
the item's id and the run's name are the run id, so no second identity exists.

A cancelled run reads `failed` as W&B's run (wandb 0.31.0 waits forever on any
other ended state); its item says CANCELLED. `QueuedRun.delete()` cancels a
pending run, under the same rule as Cancel run; nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from launchq.access import may_cancel
from launchq.graphql.resolvers import Refusal, entity_node, global_id, membership_of, person, queue_by_id
from launchq.models import HELD_BY_AGENT, Run, RunState
from launchq.runs import cancel

MAX_ITEMS = 100
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # W&B's timestamps: UTC, no zone

NO_ITEM = "Queue {queue} has no run {value!r}."
NOT_YOURS = "Only a team admin or the member who launched run {run} may cancel it."
NOT_PENDING = (
    "Run {run} is {state}: only a pending run can be taken off the queue. "
    "Cancel it in launchq to stop the agent running it."
)

# W&B's run states for launchq's. A run is W&B-`running` once its job runs.
WANDB_RUN_STATES = {
    RunState.PENDING: "pending",
    RunState.LEASED: "pending",
    RunState.STARTING: "pending",
    RunState.RUNNING: "running",
    RunState.FINISHED: "finished",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "failed",
    # W&B has no word for a job handed to another system: it was started there, and launchq does not know its end.
    RunState.HANDED_OVER: "running",
}
NOT_TAKEN = (RunState.PENDING, RunState.LEASED)


def resolve_run_queue_item(queue_node: Mapping, info, id: str) -> dict[str, Any] | None:  # noqa: A002
    run = queue_node["queue"].runs.filter(run_id=id).first()
    return item_node(run) if run is not None else None


def resolve_run_queue_items(queue_node: Mapping, info, first: int | None = None) -> dict[str, Any]:
    count = MAX_ITEMS if first is None else max(0, min(first, MAX_ITEMS))
    runs = queue_node["queue"].runs.order_by("-created_at", "-id")[:count]
    return {"edges": [{"node": item_node(run)} for run in runs]}


def resolve_run(project: Mapping, info, name: str) -> dict[str, Any] | None:
    """The team's run by run id; the project name the client sends does not matter (a run id is unique)."""
    run = (
        Run.objects.filter(queue__team=project["team"], run_id=name)
        .select_related("queue__team", "project", "launched_by")
        .first()
    )
    return run_node(run) if run is not None else None


def resolve_delete_from_run_queue(_root, info, input: Mapping[str, Any]) -> dict[str, Any]:  # noqa: A002
    user = person(info.context)
    queue = queue_by_id(user, input["queueID"], "RunQueue", "queue")
    run = queue.runs.filter(run_id=input["runQueueItemId"]).first()
    if run is None:
        raise Refusal(NO_ITEM.format(queue=queue.name, value=input["runQueueItemId"]), "NOT_FOUND")
    if not may_cancel(run, membership_of(user, queue.team), user):
        raise Refusal(NOT_YOURS.format(run=run.run_id), "FORBIDDEN")
    if run.state != RunState.PENDING:
        raise Refusal(NOT_PENDING.format(run=run.run_id, state=run.state), "NOT_PENDING")
    cancel(run, user)
    return {"success": True, "clientMutationId": input.get("clientMutationId")}


# --- shapes --------------------------------------------------------------------


def item_node(run: Run) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "state": run.state.upper(),
        "associatedRunId": None if run.state in NOT_TAKEN else run.run_id,
        "createdAt": run.created_at.strftime(TIME_FORMAT),
    }


def run_node(run: Run) -> dict[str, Any]:
    user = run.launched_by
    summary = {"exit_code": run.exit_code} if run.exit_code is not None else {}
    return {
        "id": global_id("Run", run.pk),
        "name": run.run_id,
        "displayName": run.name,
        "state": wandb_state(run),  # the field's resolver (graphql/agents.py) may first learn that the job ended
        "stopped": run.cancel_requested,
        "config": {key: {"value": value, "desc": None} for key, value in (run.values or {}).items()},
        "summaryMetrics": summary,
        "systemMetrics": {},
        "tags": [],
        "sweepName": None,
        "group": None,
        "jobType": None,
        "commit": None,
        "readOnly": True,
        "createdAt": run.created_at.strftime(TIME_FORMAT),
        "heartbeatAt": run.updated_at.strftime(TIME_FORMAT),
        "description": run.failure_reason or None,
        "notes": None,
        "historyLineCount": 0,
        "historyKeys": None,
        "projectId": run.project_id,
        "user": {"name": user.get_full_name() or user.get_username(), "username": user.get_username()} if user else None,
        "project": {"id": global_id("Project", run.project_id), "name": run.project.name, "entity": entity_node(run.queue.team)},
        "run": run,
    }


def wandb_state(run: Run) -> str:
    """W&B's state of a launchq run. Under a W&B agent a job that never called wandb.init stays `pending`:
    the agent then reports how it ended (`failRunQueueItem`) instead of taking it as a W&B run that reported."""
    if run.state in HELD_BY_AGENT and run.tracked_at is None and run.agent_id is not None and run.agent.is_wandb:
        return "pending"
    return WANDB_RUN_STATES[run.state]
