"""Bare answers made readable: a 404 or 405 under /api/ in the API's JSON error shape, and a
405 elsewhere (someone opened the address a form posts to) as a page of the app."""

from __future__ import annotations

from collections.abc import Callable

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
