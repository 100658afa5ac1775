"""The schema (from `schema.graphql`) with its resolvers, and running one operation against it.

graphql-core parses, validates and executes; this module only binds the SDL
to `resolvers` and turns errors into what the `wandb` client prints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, GraphQLSchema, InlineFragmentNode,
    NonNullTypeNode, OperationDefinitionNode, OperationType, SelectionSetNode, StringValueNode, build_schema, execute,
    get_operation_ast, parse, validate,
)

from launchq import strictjson
from launchq.graphql import agents, queued, resolvers, tracking
from launchq.graphql.resolvers import Context, Refusal

log = logging.getLogger(__name__)

SDL_PATH = Path(__file__).with_name("schema.graphql")
MAX_TOKENS = 2000  # the client's largest operation has about 60
MAX_VALIDATION_ERRORS = 20
UNUSED_NON_NULL = ("projectName",)  # variables a client may send as null although it declares them String!

INTERNAL = "launchq could not answer {field}; the error is in the server log."
UNKNOWN_FIELD_HINT = (
    " launchq serves the wandb client's Launch calls: pushing runs to a queue (wandb launch, launch_add),"
    " waiting on them (QueuedRun, api.queued_run, api.run_queue, api.viewer) and W&B's launch agent"
    " (wandb launch-agent); not W&B jobs, artifacts, sweeps, run history or reports."
    " See launchq/graphql/schema.graphql."
)
JSON_NOT_TEXT = "A JSONString must be a string holding JSON, like \"{{\\\"k\\\": \\\"v\\\"}}\" (got {kind})."
JSON_INVALID = "A JSONString must hold valid JSON: {reason}."
ONE_PUSH = (
    "A request may push one run; this one has {count} pushes ({names}), so nothing was done."
    " Send each push as its own request: each gets its own answer."
)

RESOLVERS = {
    "Query": {
        "viewer": resolvers.resolve_viewer,
        "project": resolvers.resolve_project,
        "entity": resolvers.resolve_entity,
        "launchAgent": agents.resolve_launch_agent,
    },
    "Mutation": {
        "pushToRunQueueByName": resolvers.resolve_push_to_run_queue_by_name,
        "pushToRunQueue": resolvers.resolve_push_to_run_queue,
        "deleteFromRunQueue": queued.resolve_delete_from_run_queue,
        "createLaunchAgent": agents.resolve_create_launch_agent,
        "updateLaunchAgent": agents.resolve_update_launch_agent,
        "popFromRunQueue": agents.resolve_pop_from_run_queue,
        "ackRunQueueItem": agents.resolve_ack_run_queue_item,
        "failRunQueueItem": agents.resolve_fail_run_queue_item,
        "updateRunQueueItemWarning": agents.resolve_update_run_queue_item_warning,
        "upsertBucket": tracking.resolve_upsert_bucket,
        "createRunFiles": tracking.resolve_create_run_files,
    },
    "Project": {
        "runQueue": resolvers.resolve_run_queue,
        "runQueues": resolvers.resolve_run_queues,
        "run": queued.resolve_run,
    },
    "Run": {
        "state": agents.resolve_run_state,
        "stopped": agents.resolve_run_stopped,
    },
    "RunQueue": {
        "runQueueItem": queued.resolve_run_queue_item,
        "runQueueItems": queued.resolve_run_queue_items,
    },
    "Entity": {
        "defaultResourceConfig": resolvers.resolve_default_resource_config,
    },
}


def make_schema() -> GraphQLSchema:
    schema = build_schema(SDL_PATH.read_text())
    for type_name, fields in RESOLVERS.items():
        for field_name, resolve in fields.items():
            schema.type_map[type_name].fields[field_name].resolve = resolve
    scalar = schema.type_map["JSONString"]
    scalar.coerce_output_value = serialize_json
    scalar.coerce_input_value = parse_json
    scalar.coerce_input_literal = parse_json_literal
    raw = schema.type_map["JSON"]
    raw.coerce_output_value = lambda value: value  # runSpec goes out as an object
    return schema


def serialize_json(value: Any) -> str:
    return json.dumps(value)


def parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        raise GraphQLError(JSON_NOT_TEXT.format(kind=type(value).__name__))
    try:
        return strictjson.loads(value)
    except ValueError as error:
        raise GraphQLError(JSON_INVALID.format(reason=error)) from None
    except RecursionError:
        raise GraphQLError(JSON_INVALID.format(reason="nested too deeply")) from None


def parse_json_literal(node: Any) -> Any:
    if not isinstance(node, StringValueNode):
        raise GraphQLError(JSON_NOT_TEXT.format(kind=type(node).__name__.removesuffix("ValueNode").lower()))
    return parse_json(node.value)


SCHEMA = make_schema()
PUSHES = frozenset({"pushToRunQueueByName", "pushToRunQueue"})  # the mutations that launch a run


def run_operation(query: str, variables: dict[str, Any] | None, operation_name: str | None, context: Context) -> dict[str, Any]:
    """Parse, validate and execute one operation; the answer as the GraphQL response dict.

    A request refused before it runs (syntax, validation, more than one push)
    answers `{"errors": [...], "data": null}`: nothing was done. When a field
    of a mutation fails while it runs, `data` says what was done (the failed
    field null) beside the errors; a query that failed keeps `data` null, as
    the client expects. The `wandb` client takes any error as a failure and
    prints the first message.
    """
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        return {"errors": [_format(error)], "data": None}
    errors = validate(SCHEMA, document, max_errors=MAX_VALIDATION_ERRORS) or _several_pushes(document)
    if errors:
        return {"errors": [_format(error, hint=UNKNOWN_FIELD_HINT) for error in errors], "data": None}
    variables = _unused_nulls_filled(document, variables)
    result = execute(SCHEMA, document, variable_values=variables, operation_name=operation_name, context_value=context)
    if result.errors:
        operation = get_operation_ast(document, operation_name)
        done = result.data if operation is not None and operation.operation == OperationType.MUTATION else None
        return {"errors": [_format(error) for error in result.errors], "data": done}
    return {"data": result.data}


def _unused_nulls_filled(document: DocumentNode, variables: dict[str, Any] | None) -> dict[str, Any] | None:
    """`api.queued_run(e, p, q, id)` (wandb 0.31.0) sends `projectName: null` for a `String!`.

    launchq finds a queue by its team and name whatever project name comes, so
    such a null reads as "" instead of failing the whole request.
    """
    filled = dict(variables or {})
    for definition in document.definitions:
        for variable in getattr(definition, "variable_definitions", None) or ():
            name = variable.variable.name.value
            if name in UNUSED_NON_NULL and isinstance(variable.type, NonNullTypeNode) and filled.get(name, "") is None:
                filled[name] = ""
    return filled


def _several_pushes(document: DocumentNode) -> list[GraphQLError]:
    """An error for a mutation that pushes more than one run (aliases, fragments): each push must get its own answer."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode) or operation.operation != OperationType.MUTATION:
            continue
        pushes = [f for f in _root_fields(operation.selection_set, fragments, set()) if f.name.value in PUSHES]
        if len(pushes) > 1:
            names = ", ".join((f.alias or f.name).value for f in pushes[:5]) + (", ..." if len(pushes) > 5 else "")
            message = ONE_PUSH.format(count=len(pushes), names=names)
            return [GraphQLError(message, pushes, extensions={"code": "ONE_PUSH_PER_REQUEST"})]
    return []


def _root_fields(selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], spread: set[str]):
    """The fields of a selection, through inline fragments and fragment spreads (each fragment once)."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, spread)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in spread:
            spread.add(selection.name.value)
            yield from _root_fields(fragments[selection.name.value].selection_set, fragments, spread)


def _format(error: GraphQLError, hint: str = "") -> dict[str, Any]:
    original = error.original_error
    if isinstance(original, Refusal):
        return {"message": original.message, "extensions": original.extensions}
    if original is not None and not isinstance(original, GraphQLError):
        field = ".".join(str(p) for p in error.path or ()) or "the request"
        log.error("GraphQL resolver failed at %s", field, exc_info=original)
        return {"message": INTERNAL.format(field=field), "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    message = error.message
    if hint and message.startswith("Cannot query field"):
        message += hint
    formatted: dict[str, Any] = {"message": message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.extensions:
        formatted["extensions"] = error.extensions
    return formatted
