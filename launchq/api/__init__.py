"""The JSON API under /api/, described by the OpenAPI document at /api/openapi.json.

Each area is a router in its own module; this file only puts them together.
"""

from ninja import NinjaAPI

from launchq.api import errors, queues, runs

api = NinjaAPI(
    title="launchq API",
    version="1",
    description="Launch runs onto launchq queues within their guardrails, and follow them.",
    urls_namespace="api",
    parser=errors.StrictJsonParser(),
)
errors.install(api)

api.add_router("", queues.router)
api.add_router("", runs.router)

from launchq.api import agents  # noqa: E402

api.add_router("/agent/", agents.router)
