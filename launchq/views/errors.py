"""The 400 answer: a request launchq cannot read (a number that is not one, ...), said in a page or, under /api/, in
the API's error shape."""

from __future__ import annotations

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from launchq.api.errors import message_body

BAD_REQUEST = "The request cannot be read."


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Only our own refusals say why: other 400s (a bad Host header, ...) are Django's and stay terse.
    message = str(exception) if type(exception) is BadRequest else ""
    if request.path_info.startswith("/api/"):
        return JsonResponse(message_body("bad_request", message or BAD_REQUEST), status=400)
    return render(request, "400.html", {"message": message}, status=400)
