"""Bare answers made readable: a 404 or 405 under /api/ in the API's JSON error shape, and a
405 elsewhere (someone opened the address a form posts to) as a page of the app."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from launchq.api.errors import message_body

API_NOT_FOUND = "There is no such API endpoint; the endpoints are listed at /api/docs."
API_NOT_ALLOWED = "This endpoint does not take {method}; it takes {allowed}."


class ReadableRefusals:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code not in (404, 405):
            return response
        allowed = response.get("Allow", "")
        if request.path_info.startswith("/api/"):
            if response.get("Content-Type", "").startswith("application/json"):
                return response
            if response.status_code == 404:
                answer = JsonResponse(message_body("not_found", API_NOT_FOUND), status=404)
            else:
                message = API_NOT_ALLOWED.format(method=request.method, allowed=allowed or "no method")
                answer = JsonResponse(message_body("method_not_allowed", message), status=405)
        elif response.status_code == 405 and not response.content:
            answer = render(request, "405.html", {"allowed": allowed}, status=405)
        else:
            return response
        if allowed:
            answer["Allow"] = allowed
        return answer


NUL_IN_ADDRESS = "The address contains a NUL character (%00); no name, filter or value in launchq holds one."


class RefuseNul:
    """A NUL in the path or the query string is refused with a 400 (JSON under /api/) before any view runs:
    no database column stores it (PostgreSQL refuses the query), and nothing a person names contains one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info or "\x00" in request.META.get("QUERY_STRING", "") or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            raise BadRequest(NUL_IN_ADDRESS)
        return self.get_response(request)
