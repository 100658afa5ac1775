"""How the API answers when something is wrong: always JSON, never a 500 for a client's mistake.

A refused launch answers 400 with `{"errors": [Problem, ...]}`. A body that is
not JSON, or JSON of the wrong shape, gets the same `errors` list (400 and 422),
so a client prints every kind of mistake the same way: one line per field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.parser import Parser
from ninja.errors import AuthenticationError, HttpError, ValidationError

from launchq import strictjson
from launchq.guardrails import Problem
from launchq.runs import InvalidTransition

NOT_JSON = "The request body is not valid JSON: {reason}."
NO_BODY = "The request needs a JSON body."
NOT_OBJECT = "The request body must be a JSON object."
UNAUTHORIZED = "Send a valid token as 'Authorization: Bearer <token>'; this one is missing, unknown or revoked."
FORBIDDEN = "You may not do this."
TOO_BIG = "The request body is too large."
NOT_FOUND = "Not found."


def problems_body(problems: Iterable[Problem]) -> dict[str, list[dict[str, Any]]]:
    """`{"errors": [...]}`, with values that strict JSON can carry (a NaN someone sent comes back as "nan")."""
    return {"errors": [{k: _jsonable(v) if k in ("value", "bound") else v for k, v in p.to_dict().items()} for p in problems]}


NOT_JSON_TYPE = "The API reads JSON: send the body with 'Content-Type: application/json' (this one is {type})."
NOT_UTF8_CHARSET = "The API reads JSON in UTF-8; this body says it is {charset}."
BYTE_ORDER_MARK = "it starts with a byte order mark (U+FEFF); send UTF-8 without one"
NOT_UTF8 = "it is not UTF-8 (byte {at} cannot be read)"
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class UnsupportedBody(Exception):
    """A body that is not JSON in UTF-8 by its own account: answered 415."""


class StrictJsonParser(Parser):
    """ninja's JSON parser made strict: `application/json` in UTF-8 only (no BOM, no UTF-16, no text/plain,
    which Python's reader would otherwise take), and a key given twice in one object is an error."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return strictjson.loads(read_json_text(request))


def read_json_text(request: HttpRequest) -> str:
    """The body as text, if it is `application/json` in UTF-8; `UnsupportedBody` (415) or ValueError (400)."""
    content_type = request.content_type or "none"
    if content_type != "application/json" and not (content_type.startswith("application/") and content_type.endswith("+json")):
        raise UnsupportedBody(NOT_JSON_TYPE.format(type=content_type[:80]))
    charset = (request.content_params or {}).get("charset", "utf-8").strip().lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedBody(NOT_UTF8_CHARSET.format(charset=charset[:40]))
    body = request.body
    if body.startswith(_BOMS):
        raise ValueError(BYTE_ORDER_MARK)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(NOT_UTF8.format(at=error.start)) from None


def message_body(code: str, message: str) -> dict[str, Any]:
    """A refusal of the request as a whole: the `errors` list every answer carries, and `detail`."""
    return {"errors": [{"field": "", "code": code, "message": message}], "detail": message}


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "too_large"}


def install(api: NinjaAPI) -> None:
    """Put launchq's answers in place of ninja's defaults for these errors."""

    def invalid_request(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        body = {"errors": [_problem_from_pydantic(e) for e in exc.errors], "detail": exc.errors}
        return api.create_response(request, body, status=422)

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        cause = exc.__cause__
        if isinstance(cause, UnsupportedBody):
            return api.create_response(request, message_body("unsupported_media_type", str(cause)), status=415)
        if exc.status_code == 400 and isinstance(cause, ValueError):  # ninja could not parse the body
            reason = cause.msg if isinstance(cause, json.JSONDecodeError) else str(cause)
            return api.create_response(request, message_body("invalid_json", NOT_JSON.format(reason=reason)), status=400)
        status = exc.status_code
        return api.create_response(request, message_body(_CODES.get(status, "error"), str(exc)), status=status)

    def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        response = api.create_response(request, message_body("unauthorized", UNAUTHORIZED), status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response

    def forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return api.create_response(request, message_body("forbidden", str(exc) or FORBIDDEN), status=403)

    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return api.create_response(request, message_body("not_found", str(exc) or NOT_FOUND), status=404)

    def conflict(request: HttpRequest, exc: InvalidTransition) -> HttpResponse:
        return api.create_response(request, message_body("invalid_transition", str(exc)), status=409)

    def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return api.create_response(request, message_body("too_large", TOO_BIG), status=413)

    api.add_exception_handler(ValidationError, invalid_request)
    api.add_exception_handler(RequestDataTooBig, too_big)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(AuthenticationError, unauthorized)
    api.add_exception_handler(PermissionDenied, forbidden)
    api.add_exception_handler(Http404, not_found)
    api.add_exception_handler(InvalidTransition, conflict)


def _problem_from_pydantic(error: dict[str, Any]) -> dict[str, Any]:
    """ninja's `{"loc": ["body", "payload", "job", "image"], "type": ..., "msg": ...}` as a Problem."""
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] == "body":
        loc = loc[2:]  # "body" and the name of the view's body parameter mean nothing to a client
    elif loc:
        loc = loc[1:]  # "query" / "path"
    code = str(error.get("type", "invalid"))
    message = str(error.get("msg", "Invalid value."))
    if not loc:
        message = NO_BODY if code == "missing" else NOT_OBJECT
    problem = {"field": ".".join(loc), "code": code, "message": message}
    ctx = error.get("ctx") or {}
    limits = [ctx[k] for k in ("ge", "gt", "le", "lt", "max_length", "min_length") if k in ctx]
    if len(limits) == 1:
        problem["bound"] = _jsonable(limits[0])
    if "input" in error and code != "missing":
        problem["value"] = _jsonable(error["input"])
    return problem


def _jsonable(value: Any) -> Any:
    """`value` if strict JSON can carry it and it is short; else a short text standing for it."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)[:200]
    return value if len(text) <= 200 else text[:200] + "…"
