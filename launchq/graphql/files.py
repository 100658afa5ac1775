"""The HTTP side of W&B's run tracking: `file_stream` posts and file uploads (see `tracking.py`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from launchq import strictjson
from launchq.graphql.tracking import record_stream, store_upload
from launchq.graphql.views import caller, unauthenticated
from launchq.models import RunFile

MAX_STREAM = 4 * 1024 * 1024  # wandb-core sends at most a few MiB per post

POST_ONLY = "Send file_stream updates as POST with a JSON body."
STREAM_TOO_BIG = "A file_stream post can be at most {bound} bytes."
STREAM_NOT_JSON = "A file_stream post must be a JSON object: {reason}."
BAD_UPLOAD_URL = "This upload URL is not valid (or it expired); ask createRunFiles for a new one."


@csrf_exempt
def file_stream(request: HttpRequest, entity: str, project: str, run: str) -> JsonResponse:
    """`{"files": {name: {"offset": n, "content": [lines]}}, "complete": bool, "exitcode": n}` from a run's wandb."""
    if request.method != "POST":
        return JsonResponse({"error": POST_ONLY}, status=405, headers={"Allow": "POST"})
    context = caller(request)
    if context is None:
        return unauthenticated(request)
    data = request.read(MAX_STREAM + 1)
    if len(data) > MAX_STREAM:
        return JsonResponse({"error": STREAM_TOO_BIG.format(bound=MAX_STREAM)}, status=413)
    try:
        body = strictjson.loads(data)
    except (ValueError, RecursionError) as error:
        return JsonResponse({"error": STREAM_NOT_JSON.format(reason=error if isinstance(error, ValueError) else "nested too deeply")}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": STREAM_NOT_JSON.format(reason=f"got {type(body).__name__}")}, status=400)
    record_stream(context, entity, run, body)
    return JsonResponse({"exitcode": None, "limits": {}})


@csrf_exempt
def file_upload(request: HttpRequest, token: str) -> HttpResponse:
    """The `PUT` of one file to the URL `createRunFiles` gave; the signed URL is the permission."""
    if request.method != "PUT":
        return HttpResponse(POST_ONLY.replace("POST", "PUT"), status=405, headers={"Allow": "PUT"}, content_type="text/plain")
    data = request.read(RunFile.MAX_BYTES)
    size = len(data)
    while chunk := request.read(64 * 1024):  # the rest is counted, not kept
        size += len(chunk)
    if not store_upload(token, data, size):
        return HttpResponse(BAD_UPLOAD_URL, status=403, content_type="text/plain")
    return HttpResponse(status=200)
