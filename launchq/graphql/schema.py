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
    DocumentNode, GraphQLError, GraphQLSchema, NonNullTypeNode, StringValueNode, build_schema, execute, parse, validate,
)

from launchq import strictjson
from launchq.graphql import queued, resolvers
from launchq.graphql.resolvers import Context, Refusal

log = logging.getLogger(__name__)

SDL_PATH = Path(__file__).with_name("schema.graphql")
MAX_TOKENS = 2000  # the client's largest operation has about 60
MAX_VALIDATION_ERRORS = 20
UNUSED_NON_NULL = ("projectName",)  # variables a client may send as null although it declares them String!

INTERNAL = "launchq could not answer {field}; the error is in the server log."
UNKNOWN_FIELD_HINT = (
    " launchq serves the wandb client's Launch calls: pushing runs to a queue (wandb launch, launch_add)"
    " and waiting on them (QueuedRun, api.queued_run, api.run_queue, api.viewer); not artifacts, sweeps,"
    " run history, files or reports. See launchq/graphql/schema.graphql."
)
JSON_NOT_TEXT = "A JSONString must be a string holding JSON, like \"{{\\\"k\\\": \\\"v\\\"}}\" (got {kind})."
JSON_INVALID = "A JSONString must hold valid JSON: {reason}."

RESOLVERS = {
    "Query": {
        "viewer": resolvers.resolve_viewer,
        "project": resolvers.resolve_project,
        "entity": resolvers.resolve_entity,
    },
    "Mutation": {
        "pushToRunQueueByName": resolvers.resolve_push_to_run_queue_by_name,
        "pushToRunQueue": resolvers.resolve_push_to_run_queue,
        "deleteFromRunQueue": queued.resolve_delete_from_run_queue,
    },
    "Project": {
        "runQueue": resolvers.resolve_run_queue,
        "runQueues": resolvers.resolve_run_queues,
        "run": queued.resolve_run,
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


def run_operation(query: str, variables: dict[str, Any] | None, operation_name: str | None, context: Context) -> dict[str, Any]:
    """Parse, validate and execute one operation; the answer as the GraphQL response dict.

    When anything went wrong the answer is `{"errors": [...], "data": null}`: the
    `wandb` client reads that as a failure and prints the first message.
    """
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        return {"errors": [_format(error)], "data": None}
    errors = validate(SCHEMA, document, max_errors=MAX_VALIDATION_ERRORS)
    if errors:
        return {"errors": [_format(error, hint=UNKNOWN_FIELD_HINT) for error in errors], "data": None}
    variables = _unused_nulls_filled(document, variables)
    result = execute(SCHEMA, document, variable_values=variables, operation_name=operation_name, context_value=context)
    if result.errors:
        return {"errors": [_format(error) for error in result.errors], "data": None}
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
    return formatted
