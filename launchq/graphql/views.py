"""POST /graphql: the `wandb` client's endpoint. Authenticates, reads the body, runs the operation."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from launchq import strictjson
from launchq.api.auth import agent_for_token, user_for_token
from launchq.api.errors import UnsupportedBody, read_json_text
from launchq.graphql.resolvers import Context
from launchq.graphql.schema import run_operation

NO_KEY = (
    "No API key: set WANDB_API_KEY to a launchq API token, or an agent token for `wandb launch-agent`"
    " (sent as HTTP Basic auth, user \"api\")."
)
BAD_KEY = (
    "Invalid API key: it is not an active launchq API token (it may have been revoked)."
    " Create a token on launchq's API tokens page and set WANDB_API_KEY to it."
)
POST_ONLY = "Send GraphQL requests as POST with a JSON body {\"query\": ..., \"variables\": {...}}."
TOO_BIG = "The request body is too large."
NOT_JSON = "The request body must be JSON: {reason}."
NOT_AN_OBJECT = "The request body must be one JSON object {{\"query\": ..., \"variables\": ..., \"operationName\": ...}} (got {kind})."
NO_QUERY = "The request body needs \"query\": the GraphQL document, as text."
BAD_VARIABLES = "\"variables\" must be a JSON object (or absent)."
BAD_OPERATION_NAME = "\"operationName\" must be text (or absent)."


@csrf_exempt
def graphql(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        response = _errors(405, POST_ONLY, "METHOD_NOT_ALLOWED")
        response["Allow"] = "POST"
        return response
    context = caller(request)
    if context is None:
        return unauthenticated(request)

    try:
        body = strictjson.loads(read_json_text(request))
    except UnsupportedBody as error:
        return _errors(415, str(error), "BAD_REQUEST")
    except RequestDataTooBig:
        return _errors(413, TOO_BIG, "BAD_REQUEST")
    except (ValueError, RecursionError) as error:
        return _errors(400, NOT_JSON.format(reason=error if isinstance(error, ValueError) else "nested too deeply"), "BAD_REQUEST")
    if not isinstance(body, dict):
        return _errors(400, NOT_AN_OBJECT.format(kind=type(body).__name__), "BAD_REQUEST")
    query, variables, operation_name = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        return _errors(400, NO_QUERY, "BAD_REQUEST")
    if variables is not None and not isinstance(variables, dict):
        return _errors(400, BAD_VARIABLES, "BAD_REQUEST")
    if operation_name is not None and not isinstance(operation_name, str):
        return _errors(400, BAD_OPERATION_NAME, "BAD_REQUEST")

    # The client leaves operationName empty and sends one operation: graphql-core takes it from the query.
    result = run_operation(query, variables, operation_name or None, context)
    return JsonResponse(result)


def caller(request: HttpRequest) -> Context | None:
    """Who sent the request: a person's API token, or an agent token (W&B's launch agent); None for neither."""
    token = _token(request)
    user = user_for_token(token) if token else None
    agent = agent_for_token(token) if token and user is None else None
    if user is None and agent is None:
        return None
    return Context(user=user, request=request, agent=agent)


def unauthenticated(request: HttpRequest) -> JsonResponse:
    response = _errors(401, BAD_KEY if "Authorization" in request.headers else NO_KEY, "UNAUTHENTICATED")
    response["WWW-Authenticate"] = 'Basic realm="launchq"'
    return response


def _token(request: HttpRequest) -> str:
    """The API key from `Authorization: Basic base64("api:<key>")` (the wandb client) or `Bearer <key>`."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    _, colon, key = decoded.partition(":")
    return key.strip() if colon else ""


def _errors(status: int, message: str, code: str) -> JsonResponse:
    body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}], "data": None}
    return JsonResponse(body, status=status)
