"""The queue's Config tab: edit the queue config, parse it into tiles, save a version."""

from __future__ import annotations

import difflib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from launchq.access import queue_for, require_admin
from launchq.configs import ConfigConflict, ConfigRejected, save_config
from launchq.editor import EditorState
from launchq.forms import ConfigPost, Tile, request_number
from launchq.guardrails import FieldType
from launchq.models import ConfigVersion, Run
from launchq.templating import ConfigError, parse_config

EMPTY_SAVE = (
    "The queue config is empty. Saving it would leave the queue with no resource config; "
    "if that is what you want, write {} and press Save config."
)


@login_required
@require_GET
def queue_config(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    queue_obj, membership = queue_for(request.user, team, queue)
    version = queue_obj.current_version
    if queue_obj.draft_text and membership.is_admin:
        base = version.number if version else None
        state = EditorState.from_post(ConfigPost(queue_obj.draft_text, queue_obj.draft_format, base, {}, None), version)
    else:
        state = EditorState.from_version(version)
    if membership.is_admin:  # a saved version can fail a rule made stricter since (a pattern RE2 cannot run): say so
        state.check_tiles()
    return _render_page(request, queue_obj, membership, state)


@login_required
@require_http_methods(["GET", "POST"])
def config_parse(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """Parse configuration: one tile per template field, keeping what the admin already set."""
    if request.method == "GET":  # the address of a form that failed, reloaded or bookmarked
        return redirect("launchq:queue_config", team, queue)
    queue_obj, membership = queue_for(request.user, team, queue)
    require_admin(membership)
    post = ConfigPost.read(request.POST)
    state = EditorState.from_post(post, queue_obj.current_version)
    if post.tile_action and post.tile_action[0] in state.tiles:
        state.tiles[post.tile_action[0]].apply(post.tile_action[1])
    state.check_tiles()
    if request.htmx:
        return render(request, "launchq/_parse_result.html", _context(queue_obj, membership, state))
    return _render_page(request, queue_obj, membership, state)


@login_required
@require_POST
def config_tile(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """One tile again, after its type changed or an allowed value was added or removed."""
    queue_obj, membership = queue_for(request.user, team, queue)
    require_admin(membership)
    post = ConfigPost.read(request.POST)
    name = post.tile_action[0] if post.tile_action else request.POST.get("tile", "")
    if name not in post.tiles:
        raise Http404("No such tile.")
    tile = post.tiles[name]
    if post.tile_action:
        tile.apply(post.tile_action[1])
        tile.check_allowed()
    else:
        _reset_for_type(tile, request.POST.get(f"f.{name}.shown_type", tile.type))
    try:
        tile.occurrences = parse_config(post.text, post.format).where(name)
    except ConfigError:
        pass
    return render(request, "launchq/_tile.html", {"tile": tile, "queue": queue_obj, "can_edit": True})


@login_required
@require_http_methods(["GET", "POST"])
def config_save(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """Save config: check the config and every tile together; store a new version or change nothing."""
    if request.method == "GET":  # the address of a form that failed, reloaded or bookmarked
        return redirect("launchq:queue_config", team, queue)
    queue_obj, membership = queue_for(request.user, team, queue)
    require_admin(membership)
    post = ConfigPost.read(request.POST)
    current = queue_obj.current_version
    state = EditorState.from_post(post, current)
    definitions, problems = state.check_tiles()
    if _would_wipe(post.text, current):
        state.config_error = ConfigError("empty", EMPTY_SAVE)
    if state.config_error or problems or state.unreviewed:
        state.refused = True
        return _render_page(request, queue_obj, membership, state, status=400)
    try:
        result = save_config(queue_obj, request.user, post.text, post.format, definitions, post.base_number)
    except ConfigRejected as rejected:
        state.config_error = rejected.config_error
        state.unreviewed = rejected.unreviewed
        state.refused = True
        return _render_page(request, queue_obj, membership, state, status=400)
    except ConfigConflict as conflict:
        state.conflict = conflict.newer
        return _render_page(request, queue_obj, membership, state, status=409)
    if result.created:
        note = f"Saved version {result.version.number}."
        if result.dropped:
            note += " Removed template fields: " + ", ".join(result.dropped) + "."
        messages.success(request, note)
    else:
        messages.info(request, f"Nothing changed; version {result.version.number} is still current.")
    return redirect("launchq:queue_config", team, queue)


@login_required
@require_GET
def config_version(request: HttpRequest, team: str, queue: str, number: int) -> HttpResponse:
    queue_obj, membership = queue_for(request.user, team, queue)
    try:
        version = queue_obj.versions.select_related("created_by").get(number=number)
    except ConfigVersion.DoesNotExist:
        raise Http404("No such version.") from None
    previous = queue_obj.versions.filter(number__lt=number).order_by("-number").first()
    diff = []
    if previous is not None:
        diff = list(
            difflib.unified_diff(
                previous.text.splitlines(), version.text.splitlines(), f"v{previous.number}", f"v{version.number}", lineterm=""
            )
        )
    tiles = [Tile.from_field(f) for f in version.definitions]
    is_current = queue_obj.current_version_id == version.pk
    return render(
        request,
        "launchq/config_version.html",
        {
            "queue": queue_obj,
            "membership": membership,
            "version": version,
            "previous": previous,
            "diff": diff,
            "tiles": tiles,
            "is_current": is_current,
            "current_number": queue_obj.current_version.number if queue_obj.current_version else None,
            "tab": "config",
        },
    )


# --- helpers -----------------------------------------------------------------


def _would_wipe(text: str, current: ConfigVersion | None) -> bool:
    """Whether saving `text` would replace a config with nothing (refused: write {} to mean that)."""
    return not text.strip() and current is not None and bool(current.text.strip())


def _reset_for_type(tile: Tile, shown_type: str) -> None:
    """After a type change, drop the inputs that belonged to the old type."""
    numbers = {FieldType.INTEGER.value, FieldType.FLOAT.value}
    if tile.type == shown_type or (tile.type in numbers and shown_type in numbers):
        return
    tile.allowed, tile.pattern, tile.max_length = [], "", ""
    tile.minimum, tile.maximum, tile.default = "", "", ""


def _context(queue, membership, state: EditorState) -> dict:
    return {
        "queue": queue,
        "membership": membership,
        "can_edit": membership.is_admin,
        "state": state,
        "tiles": list(state.tiles.values()),
        "tab": "config",
    }


def _render_page(request, queue, membership, state: EditorState, status: int = 200) -> HttpResponse:
    context = _context(queue, membership, state)
    context["versions"] = queue.versions.select_related("created_by").order_by("-number")[:50]
    context["overrides"] = (
        Run.objects.filter(queue=queue).select_related("launched_by", "config_version").order_by("-created_at")[:20]
    )
    context["formats"] = [("yaml", "YAML"), ("json", "JSON")]
    return render(request, "launchq/queue_config.html", context, status=status)


@login_required
@require_POST
def config_restore(request: HttpRequest, team: str, queue: str, number: int) -> HttpResponse:
    """Restore an earlier version: its text and field definitions saved again as the newest version."""
    queue_obj, membership = queue_for(request.user, team, queue)
    require_admin(membership)
    try:
        version = queue_obj.versions.get(number=number)
    except ConfigVersion.DoesNotExist:
        raise Http404("No such version.") from None
    base = request_number(request.POST.get("base_version", ""), name="base_version (the version this page was drawn for)")
    if _would_wipe(version.text, queue_obj.current_version):
        messages.error(request, f"Version {number} is empty; restoring it would wipe the queue's config. {EMPTY_SAVE}")
        return redirect("launchq:config_version", team, queue, number)
    definitions = {f.name: f for f in version.definitions}
    try:
        result = save_config(queue_obj, request.user, version.text, version.format, definitions, base)
    except ConfigConflict as conflict:
        newer = conflict.newer.number if conflict.newer else "a newer version"
        messages.error(request, f"Not restored: version {newer} was saved since you opened this page. Look at it first.")
        return redirect("launchq:config_version", team, queue, number)
    except ConfigRejected as rejected:
        # A version that was once accepted can fail today's checks (a stricter rule); say which.
        messages.error(request, f"Version {number} cannot be restored: {rejected}")
        return redirect("launchq:config_version", team, queue, number)
    if result.created:
        messages.success(request, f"Restored version {number} as version {result.version.number}.")
    else:
        messages.info(request, f"Version {result.version.number} already has this config; nothing changed.")
    return redirect("launchq:queue_config", team, queue)
