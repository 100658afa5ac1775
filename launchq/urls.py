"""URLs: the app under `launchq:`, Django's login and admin beside it."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, register_converter
from django.views.generic import RedirectView

from launchq.api import api
from launchq.graphql import files
from launchq.graphql.views import graphql
from launchq.numbers import MAX_ID, NumberRefused, read_count
from launchq.views import agents, config, queues, runs, tokens

app_name = "launchq"
handler400 = "launchq.views.errors.bad_request"


class IdConverter:
    """A number in a path (a version, a token, an agent): read by the one strict reader; out of range is no match (404)."""

    regex = "[0-9]{1,12}"

    def to_python(self, value: str) -> int:
        try:
            return read_count(value, name="id", maximum=MAX_ID)
        except NumberRefused as refused:
            raise ValueError(refused.message) from None

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

queue_urls = [
    path("", queues.queue_detail, name="queue_detail"),
    path("runs/", runs.queue_runs, name="queue_runs"),
    path("launch/", runs.run_create, name="run_create"),
    path("launch/preview/", runs.launch_preview, name="launch_preview"),
    path("settings/", queues.queue_settings, name="queue_settings"),
    path("config/", config.queue_config, name="queue_config"),
    path("config/parse/", config.config_parse, name="config_parse"),
    path("config/tile/", config.config_tile, name="config_tile"),
    path("config/save/", config.config_save, name="config_save"),
    path("config/versions/<id:number>/", config.config_version, name="config_version"),
    path("config/versions/<id:number>/restore/", config.config_restore, name="config_restore"),
]

app_urls = [
    path("", RedirectView.as_view(pattern_name="launchq:launch"), name="home"),
    path("launch/", queues.launch, name="launch"),
    path("account/tokens/", tokens.token_list, name="token_list"),
    path("account/tokens/new/", tokens.token_create, name="token_create"),
    path("account/tokens/<id:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
    path("cli/launchq-cli.py", tokens.cli_download, name="cli_download"),
    path("teams/<slug:team>/queues/new/", queues.queue_create, name="queue_create"),
    path("agents/", agents.agents_home, name="agents_home"),
    path("teams/<slug:team>/agents/", agents.agent_list, name="agent_list"),
    path("teams/<slug:team>/agents/new/", agents.agent_create, name="agent_create"),
    path("teams/<slug:team>/agents/<id:agent>/revoke/", agents.agent_revoke, name="agent_revoke"),
    path("teams/<slug:team>/queues/<str:queue>/", include(queue_urls)),
    path("teams/<slug:team>/runs/<str:run_id>/", runs.run_detail, name="run_detail"),
    path("teams/<slug:team>/runs/<str:run_id>/cancel/", runs.run_cancel, name="run_cancel"),
    path("teams/<slug:team>/runs/<str:run_id>/files/<path:name>", runs.run_file, name="run_file"),
]

urlpatterns = [
    path("", include((app_urls, app_name))),
    path("api/", api.urls),
    path("graphql", graphql, name="graphql"),
    # W&B's agent and its jobs: a run's console lines, and the files they upload (see launchq/graphql/files.py)
    path("files/<str:entity>/<str:project>/<str:run>/file_stream", files.file_stream, name="launchq_file_stream"),
    path("files/uploads/<str:token>", files.file_upload, name="launchq_file_upload"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("favicon.ico", RedirectView.as_view(url=static("launchq/favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
]
