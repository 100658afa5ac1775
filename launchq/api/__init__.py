"""The JSON API under /api/, described by the OpenAPI document at /api/openapi.json.

Each area is a router in its own module; this file only puts them together.
"""

from ninja import NinjaAPI

api = NinjaAPI(
    title="launchq API",
    version="1",
    description="Launch runs onto launchq queues within their guardrails, and follow them.",
    urls_namespace="api",
)

from launchq.api import agents  # noqa: E402

api.add_router("/agent/", agents.router)
