"""Launching runs from the browser and watching them: the launch form, its live preview, the Runs tab, a run's page."""

from __future__ import annotations

import shlex

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.db.models.functions import Length
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from launchq.access import may_cancel, membership_for, queue_for
from launchq.forms import LAUNCH_INPUTS, VALUE_PREFIX, LaunchPost, request_number, value_inputs
from launchq.guardrails import GuardrailError, Problem, check_values
from launchq.macros import MACRO
from launchq.models import IN_FLIGHT, Membership, Priority, Queue, Run, RunFile, RunState
from launchq.numbers import plain_number
from launchq.runs import (
    NO_CONFIG, NOT_READY, InvalidTransition, KeyReused, LaunchRefused, cancel, check_launch, launch_run, new_idempotency_key,
)
from launchq.templating import ConfigError, RenderedText, render_text

RUNS_PER_PAGE = 50
FORM_USED = "This form already launched {name} with other values. Press Launch run again to launch another run with these."
VERSION_CHANGED = "The queue config changed to version {number} while you were filling in the form. Check the values below and launch again."


@login_required
@require_http_methods(["GET", "POST"])
def run_create(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """The launch form; a valid submit enqueues a run through `launch_run` and opens its page."""
    queue_obj, membership = queue_for(request.user, team, queue)
    if request.method == "GET":
        return _render_form(request, queue_obj, membership, _initial(request, queue_obj), [])

    post = LaunchPost.read(request.POST)
    if post.repeated:
        return _render_form(request, queue_obj, membership, post, post.repeat_problems(), status=400)
    current = queue_obj.current_version
    if current is not None and post.version is not None and post.version != current.number:
        problem = Problem("", "version_changed", VERSION_CHANGED.format(number=current.number))
        return _render_form(request, queue_obj, membership, post, [problem], status=409)
    try:
        run = launch_run(
            queue_obj, request.user, post.values,
            project=post.project, name=post.name, job=post.job, priority=post.priority, via="form",
            idempotency_key=post.idempotency_key,
        )
    except KeyReused as reused:  # this form already launched a run (the browser's Back, then other values): a new token
        post.idempotency_key = None
        return _render_form(request, queue_obj, membership, post, [_form_used(reused)], status=409)
    except LaunchRefused as refused:
        return _render_form(request, queue_obj, membership, post, refused.problems, status=400)
    messages.success(request, f"Launched {run.name} on {queue_obj.name}; it waits in the queue for an agent.")
    return redirect(run)


@login_required
@require_POST
def launch_preview(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """The rendered config for the values in the form, or what is wrong with them (an htmx fragment)."""
    queue_obj, _ = queue_for(request.user, team, queue)
    post = LaunchPost.read(request.POST)
    return render(request, "launchq/_preview.html", _preview(queue_obj, post))


@login_required
@require_GET
def queue_runs(request: HttpRequest, team: str, queue: str) -> HttpResponse:
    """The Runs tab, newest first. Its table polls itself while a run is in flight."""
    queue_obj, membership = queue_for(request.user, team, queue)
    runs = queue_obj.runs.select_related("launched_by", "project", "agent").order_by("-created_at", "-id")
    state = request.GET.get("state", "")
    if state not in RunState.values:
        state = ""
    if state:
        runs = runs.filter(state=state)
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request_number(request.GET.get("page", ""), name="page", minimum=1))
    for run in page:
        run.failure_line = _last_line(run.failure_reason)
    agents = [a for a in queue_obj.agents.filter(revoked_at__isnull=True).order_by("name") if a.state != "offline"]
    context = {
        "queue": queue_obj,
        "membership": membership,
        "page": page,
        "state": state,
        "states": RunState.choices,
        "state_label": RunState(state).label if state else "",
        "query": f"state={state}&" if state else "",
        "in_flight": queue_obj.runs.filter(state__in=IN_FLIGHT).count(),
        "agents_online": agents,
        "tab": "runs",
    }
    if request.htmx:
        return render(request, "launchq/_runs_table.html", context)
    return render(request, "launchq/queue_runs.html", context)


@login_required
@require_GET
def run_detail(request: HttpRequest, team: str, run_id: str) -> HttpResponse:
    """A run's page. While the run is in flight its status and output poll this view for a fresh fragment;
    when something happened to the run since the page was drawn (a new state-history entry), the page reloads."""
    run, membership = _run_for(request.user, team, run_id)
    context = _run_context(run, membership, request.user)
    if request.htmx:
        if request.GET.get("events", str(context["event_count"])) != str(context["event_count"]):
            return HttpResponseClientRefresh()
        return render(request, "launchq/_run_live.html", context)
    context.update(_run_static(run))
    return render(request, "launchq/run_detail.html", context)


@login_required
@require_POST
def run_cancel(request: HttpRequest, team: str, run_id: str) -> HttpResponse:
    """Cancel a run: an admin, or the member who launched it."""
    run, membership = _run_for(request.user, team, run_id)
    if not may_cancel(run, membership, request.user):
        raise PermissionDenied("Only a team admin or the member who launched this run may cancel it.")
    try:
        run = cancel(run, request.user)
    except InvalidTransition:
        messages.info(request, f"{run.name} is already {run.state}; there is nothing to cancel.")
    else:
        if run.state == RunState.CANCELLED:
            messages.success(request, f"Cancelled {run.name}.")
        else:
            messages.info(request, f"Asked the agent to stop {run.name}.")
    if request.htmx:
        return HttpResponseClientRefresh()
    return redirect(run)


@login_required
@require_GET
def run_file(request: HttpRequest, team: str, run_id: str, name: str) -> HttpResponse:
    """A file a W&B agent or its job uploaded for the run: text shown as plain text, anything else downloaded."""
    run, _ = _run_for(request.user, team, run_id)
    found = run.files.filter(name=name).first()
    if found is None:
        raise Http404("No such file.")
    content = bytes(found.content)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        response = HttpResponse(content, content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="{_safe_filename(name)}"'
        return response
    return HttpResponse(content, content_type="text/plain; charset=utf-8")


# --- helpers -----------------------------------------------------------------


def _initial(request: HttpRequest, queue: Queue) -> LaunchPost:
    """The form as first shown: defaults, or a run's inputs when launching it again (`?from=<run_id>`)."""
    source = request.GET.get("from", "")
    run = queue.runs.select_related("project").filter(run_id=source).first() if source else None
    if run is not None:
        job = run.job or {}
        names = {f.name for f in queue.current_version.definitions} if queue.current_version else set()
        return LaunchPost(
            project=run.project.name,
            command=job.get("command", ""),
            source_dir=job.get("source_dir", ""),
            image=job.get("image", ""),
            priority=Priority(run.priority).label,
            values={k: "" if v is None else plain_number(v) for k, v in run.values.items() if k in names},
        )
    projects = list(queue.team.projects.values_list("name", flat=True))
    last = queue.runs.filter(launched_by=request.user).select_related("project").order_by("-created_at").first()
    if len(projects) == 1:
        project = projects[0]
    elif last is not None:
        project = last.project.name
    else:
        project = ""
    job = queue.default_job or {}
    return LaunchPost(project=project, command=job.get("command", ""), source_dir=job.get("source_dir", ""), image=job.get("image", ""))


def _render_form(request, queue: Queue, membership: Membership, post: LaunchPost, problems: list[Problem], status: int = 200) -> HttpResponse:
    if not post.idempotency_key:
        post.idempotency_key = new_idempotency_key()
    version = queue.current_version
    fields = version.definitions if version else []
    errors = _errors_by_input(problems, {f.name for f in fields})
    if not queue.runs_in_containers and "image" in errors:  # no image input on a process queue's form
        errors.setdefault("", []).extend(errors.pop("image"))
    context = {
        "queue": queue,
        "membership": membership,
        "version": version,
        "post": post,
        "inputs": value_inputs(fields, post.values, errors),
        "errors": errors,
        "general_errors": errors.get("", []),
        "projects": list(queue.team.projects.values_list("name", flat=True)),
        "priorities": [c.label for c in Priority],
        "refused": bool(problems),
        "tab": "launch",
    }
    context.update(_preview(queue, post))
    return render(request, "launchq/launch_form.html", context, status=status)


def _form_used(reused: KeyReused) -> Problem:
    run = reused.run
    return Problem("", "form_used", FORM_USED.format(name=run.name), value=run.run_id)


def _preview(queue: Queue, post: LaunchPost) -> dict:
    """What the preview shows: the rendered config with its pieces to highlight, or the values' problems.

    The check is `check_launch`, the same one `launch_run` makes. Problems with
    the launch's other inputs (project, job, ...) are left to the submit; the
    values alone decide whether there is a config to show.
    """
    version = queue.current_version
    if version is None or not queue.ready:
        message = NOT_READY if queue.draft_text else NO_CONFIG
        return _problems_preview([Problem("", "no_config", message.format(queue=queue.name))], set())
    names = {f.name for f in version.definitions}
    if post.repeated:
        return _problems_preview(post.repeat_problems(), names)
    try:
        checked = check_launch(queue, post.values, project=post.project, name=post.name, job=post.job, priority=post.priority, version=version)
        typed = checked["values"]
    except LaunchRefused as refused:
        about_values = [p for p in refused.problems if _input_for(p, names) not in LAUNCH_INPUTS]
        if about_values:
            return _problems_preview(about_values, names)
        # Only the other inputs are wrong. check_launch stops before the values when an input holds a control
        # character, so the values may not have been checked yet: check them here.
        try:
            typed = check_values(version.definitions, post.values)
        except GuardrailError as error:
            return _problems_preview(error.problems, names)
    try:
        rendered = render_text(version.parsed(), typed)
    except ConfigError as error:
        return _problems_preview([Problem("", error.code, str(error))], names)
    pieces = _highlight(rendered)
    macros = list(dict.fromkeys(text for kind, text in pieces if kind == "macro"))
    return {"preview_problems": [], "pieces": pieces, "macros": macros, "preview_version": version}


def _problems_preview(problems: list[Problem], names: set[str]) -> dict:
    """Each problem with the id of the input it is about (to link to), and whether only required values are missing."""
    shown = [{"problem": p, "input_id": f"var-{p.field}" if p.field in names else ""} for p in problems]
    return {"preview_problems": shown, "pieces": [], "waiting": all(p.code == "required" for p in problems)}


def _highlight(rendered: RenderedText) -> list[tuple[str, str]]:
    """The rendered text in pieces: ("value", text) where a value went in, ("macro", text) for `${...}`, else ("", text)."""
    out: list[tuple[str, str]] = []
    for text, marked in rendered.pieces():
        if marked:
            out.append(("value", text))
            continue
        pos = 0
        for match in MACRO.finditer(text):
            out.append(("", text[pos : match.start()]))
            out.append(("macro", match.group(0)))
            pos = match.end()
        out.append(("", text[pos:]))
    return [(kind, text) for kind, text in out if text]


def _input_for(problem: Problem, field_names: set[str]) -> str:
    """The form input a problem belongs beside: a launch input, `var.<field>`, or "" (the form as a whole).

    A template field may share its name with a launch input (a field called
    `name`); the validator's messages start with the field's name, the launch
    inputs' messages never do, which tells the two apart.
    """
    if problem.field in field_names:
        if problem.field not in LAUNCH_INPUTS or problem.message.startswith(problem.field + " "):
            return VALUE_PREFIX + problem.field
    if problem.field in LAUNCH_INPUTS:
        return problem.field
    return ""


def _errors_by_input(problems: list[Problem], field_names: set[str]) -> dict[str, list[Problem]]:
    errors: dict[str, list[Problem]] = {}
    for problem in problems:
        errors.setdefault(_input_for(problem, field_names), []).append(problem)
    return errors


def _last_line(text: str) -> str:
    """The line of a failure reason that says the most: its last (a traceback ends with the error)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run_for(user, team: str, run_id: str) -> tuple[Run, Membership]:
    membership = membership_for(user, team)
    try:
        run = Run.objects.select_related(
            "queue__team", "queue__current_version", "project", "launched_by", "agent", "config_version"
        ).get(run_id=run_id, queue__team=membership.team)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None
    return run, membership


def _run_context(run: Run, membership: Membership, user) -> dict:
    events = list(run.events.select_related("actor", "agent").order_by("at", "id"))
    return {
        "run": run,
        "queue": run.queue,
        "membership": membership,
        "events": events,
        "event_count": len(events),
        "can_cancel": run.in_flight and not run.cancel_requested and may_cancel(run, membership, user),
        "position": _position(run),
        "ran_for": _duration(run.started_at, run.finished_at),
        "tab": "runs",
    }


def _duration(start, end) -> str:
    """`45 s`, `3 min 20 s`, `2 h 5 min`; "" unless both ends are known."""
    if start is None or end is None:
        return ""
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _position(run: Run) -> int | None:
    """Where a pending run stands in its queue: agents take the most urgent priority first, then the oldest."""
    if run.state != RunState.PENDING:
        return None
    same = Q(priority=run.priority)
    ahead = Q(priority__lt=run.priority) | (same & Q(created_at__lt=run.created_at)) | (same & Q(created_at=run.created_at, pk__lt=run.pk))
    return Run.objects.filter(queue_id=run.queue_id, state=RunState.PENDING).filter(ahead).count() + 1


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name.rsplit("/", 1)[-1]) or "file"


def _run_static(run: Run) -> dict:
    """What never changes once a run is launched: its values and rendered config, highlighted."""
    pieces: list[tuple[str, str]] = []
    try:
        rendered = render_text(run.config_version.parsed(), run.values)
        if rendered.text == run.rendered_config:
            pieces = _highlight(rendered)
    except (ConfigError, KeyError):
        pass
    return {
        "files": list(run.files.annotate(kept=Length("content")).defer("content")),
        "file_limit": RunFile.MAX_BYTES,
        "rendered_pieces": pieces or [("", run.rendered_config)],
        "version_is_current": run.queue.current_version_id == run.config_version_id,
        "cli_command": _cli_command(run),
    }


def _cli_command(run: Run) -> str:
    """The launchq CLI command that launches the same run again (see the API tokens page for the CLI)."""
    words = ["python3", "launchq-cli.py", "launch", f"{run.queue.team.slug}/{run.queue.name}", "--project", run.project.name]
    for name, value in run.values.items():
        words += ["--set-var", f"{name}={plain_number(value)}"]
    job = run.job or {}
    for key, flag in (("image", "--image"), ("command", "--command"), ("source_dir", "--source-dir")):
        if job.get(key):
            words += [flag, job[key]]
    if run.priority != Priority.MEDIUM:
        words += ["--priority", run.get_priority_display()]
    return shlex.join(words)
