"""The browser's side of launching: the launch form, its preview, the Runs tab, a run's page, cancelling.

Every launch goes through `launch_run`; these tests check what a person sees and
that a form which was tampered with enqueues nothing.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from launchq.guardrails import Field, FieldType
from launchq.models import Priority, Run, RunEvent, RunState
from launchq.runs import launch_run, move

CONFIG = """\
# a training job
resources:
  gpus: {{gpus}}          # whole GPUs
  instance: "{{aws_instance}}"
  learning_rate: {{lr}}
output: s3://bucket/${run_id}/{{tag}}
"""

FIELDS = (
    Field("gpus", FieldType.INTEGER, description="How many GPUs the job gets.", minimum=1, maximum=4, default=1),
    Field("aws_instance", FieldType.STRING, description="SageMaker instance type.", allowed=("ml.m4.xlarge", "ml.p3.xlarge")),
    Field("lr", FieldType.FLOAT, minimum=0.0, maximum=1.0, default=0.1),
    Field("tag", FieldType.STRING, pattern="[a-z0-9-]+", max_length=20, default="main"),
)

VALID = {"var.gpus": "3", "var.aws_instance": "ml.p3.xlarge", "var.lr": "0.5", "var.tag": "nightly", "project": "proj", "command": "python train.py", "priority": "medium"}
HTMX = {"HTTP_HX_REQUEST": "true"}


# --- fixtures and helpers -----------------------------------------------------


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Users are made in every test; the production hasher would spend most of the run hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queue(team, make_queue, admin_user):
    return make_queue(team, "train", CONFIG, "yaml", FIELDS, user=admin_user)


@pytest.fixture
def member(client, member_user):
    client.force_login(member_user)
    return member_user


def url(name: str, *args) -> str:
    return reverse(f"launchq:{name}", args=args)


def launch_url(queue) -> str:
    return url("run_create", queue.team.slug, queue.name)


def preview_url(queue) -> str:
    return url("launch_preview", queue.team.slug, queue.name)


def runs_url(queue) -> str:
    return url("queue_runs", queue.team.slug, queue.name)


def run_url(run) -> str:
    return url("run_detail", run.queue.team.slug, run.run_id)


def cancel_url(run) -> str:
    return url("run_cancel", run.queue.team.slug, run.run_id)


def a_run(queue, user, **values) -> Run:
    return launch_run(queue, user, {"aws_instance": "ml.m4.xlarge", **values}, project="proj", job={"command": "python train.py"})


class Page(HTMLParser):
    """Elements by id, with their attributes and text; options of each select; top-level elements."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "wbr", "col", "area", "base", "embed", "track"}

    def __init__(self, html: str):
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.options: dict[str, list[dict]] = {}
        self.roots: list[str] = []
        self.order: list[str] = []
        self.labels: list[dict] = []
        self._open: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        if not self._open:
            self.roots.append(tag)
        if "id" in element["attrs"]:
            self.by_id[element["attrs"]["id"]] = element
            self.order.append(element["attrs"]["id"])
        if tag == "label":
            self.labels.append(element)
        if tag == "option":
            select = next((e for e in reversed(self._open) if e["tag"] == "select"), None)
            if select is not None:
                self.options.setdefault(select["attrs"].get("id", ""), []).append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def attrs(self, element_id: str) -> dict:
        return self.by_id[element_id]["attrs"]

    def text(self, element_id: str) -> str:
        return " ".join(self.by_id[element_id]["text"].split())

    def label_for(self, element_id: str) -> str:
        return next(" ".join(e["text"].split()) for e in self.labels if e["attrs"].get("for") == element_id)


def parse(response) -> Page:
    return Page(response.content.decode())


def codes(html: str) -> list[str]:
    """The machine-readable codes of the errors shown (`data-code`)."""
    return re.findall(r'data-code="([^"]+)"', html)


# --- the launch form ----------------------------------------------------------


def test_form_has_one_input_per_field_in_config_order_with_the_guardrails(client, member, queue):
    response = client.get(launch_url(queue))
    assert response.status_code == 200
    page = parse(response)

    field_ids = [i for i in page.order if i in {"var-gpus", "var-aws_instance", "var-lr", "var-tag"}]
    assert field_ids == ["var-gpus", "var-aws_instance", "var-lr", "var-tag"]  # config order, not alphabetical
    for name in ("gpus", "aws_instance", "lr", "tag"):
        assert page.label_for(f"var-{name}") == name

    gpus = page.attrs("var-gpus")
    assert (gpus["type"], gpus["min"], gpus["max"], gpus["step"], gpus["value"]) == ("number", "1", "4", "1", "1")
    assert "required" not in gpus  # it has a default
    assert "var-gpus-help" in gpus["aria-describedby"].split()
    assert page.text("var-gpus-help") == "How many GPUs the job gets."

    lr = page.attrs("var-lr")
    assert (lr["type"], lr["min"], lr["max"], lr["step"], lr["value"]) == ("number", "0.0", "1.0", "any", "0.1")

    instance = page.by_id["var-aws_instance"]
    assert instance["tag"] == "select" and "required" in instance["attrs"]  # no default: required
    choosable = [o["attrs"]["value"] for o in page.options["var-aws_instance"] if "disabled" not in o["attrs"]]
    assert choosable == ["ml.m4.xlarge", "ml.p3.xlarge"]

    tag = page.attrs("var-tag")
    assert (tag["type"], tag["maxlength"], tag["value"]) == ("text", "20", "main")
    assert tag["pattern"] == r"[a-z0-9\-]+"  # the browser's stricter spelling of the same rule

    priorities = page.options["launch-priority"]
    assert [o["attrs"]["value"] for o in priorities] == ["critical", "high", "medium", "low"]
    assert [o["attrs"]["value"] for o in priorities if "selected" in o["attrs"]] == ["medium"]
    assert [o["attrs"]["value"] for o in page.options["launch-project"] if "selected" in o["attrs"]] == ["proj"]


def test_form_shows_the_rendered_config_for_the_defaults_or_what_is_still_needed(client, member, queue, team, make_queue, admin_user):
    page = client.get(launch_url(queue)).content.decode()
    assert "Choose the required values" in page and codes(page) == ["required"]  # aws_instance has no default

    complete = make_queue(team, "defaults", "gpus: {{gpus}}\n", "yaml", [FIELDS[0]], user=admin_user)
    page = client.get(launch_url(complete)).content.decode()
    assert "gpus: <mark>1</mark>" in page


def test_container_queue_asks_for_an_image_or_a_build(client, member, team, make_queue, admin_user):
    queue = make_queue(team, "boxes", "x: 1\n", resource="local-container", user=admin_user)
    page = parse(client.get(launch_url(queue)))
    assert page.label_for("launch-image") == "Image URI"
    assert "required" not in page.attrs("launch-command")  # a command is one of two ways here

    response = client.post(launch_url(queue), {"project": "proj", "image": "not an image!"})
    assert response.status_code == 400
    assert "launch-image-error" in parse(response).by_id and codes(response.content.decode()) == ["invalid_image"]
    assert Run.objects.count() == 0

    response = client.post(launch_url(queue), {"project": "proj", "image": "ghcr.io/team/trainer:1.2"})
    assert response.status_code == 302
    assert Run.objects.get().job == {"image": "ghcr.io/team/trainer:1.2"}


def test_launch_again_fills_the_form_from_a_run(client, member, queue):
    run = a_run(queue, member, gpus="2", tag="again")
    page = parse(client.get(launch_url(queue) + f"?from={run.run_id}"))
    assert page.attrs("var-gpus")["value"] == "2"
    assert page.attrs("var-tag")["value"] == "again"
    assert page.attrs("launch-command")["value"] == "python train.py"
    assert [o["attrs"]["value"] for o in page.options["var-aws_instance"] if "selected" in o["attrs"]] == ["ml.m4.xlarge"]


# --- the live preview ---------------------------------------------------------


def test_preview_is_a_fragment_with_the_values_highlighted_and_macros_left(client, member, queue):
    response = client.post(preview_url(queue), VALID, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    page = Page(html)
    assert page.roots == ["section"] and page.attrs("launch-preview")  # one root, the stable id
    assert "<html" not in html and "<nav" not in html
    assert "gpus: <mark>3</mark>" in html  # typed: a number, not "3"
    assert "instance: &quot;<mark>ml.p3.xlarge</mark>&quot;" in html
    assert "learning_rate: <mark>0.5</mark>" in html
    assert '<span class="macro">${run_id}</span>/<mark>nightly</mark>' in html
    assert "# whole GPUs" in html  # the admin's comments are kept


@pytest.mark.parametrize(
    "field, value, code",
    [("gpus", "9", "maximum"), ("gpus", "0", "minimum"), ("gpus", "2.5", "type"), ("gpus", "٣", "type"),
     ("lr", "nan", "not_finite"), ("lr", "Infinity", "not_finite"), ("aws_instance", "ml.p4d.24xlarge", "not_allowed"),
     ("tag", "Bad Tag", "pattern"), ("tag", "x" * 21, "max_length")],
)
def test_preview_shows_the_error_instead_of_the_config(client, member, queue, field, value, code):
    response = client.post(preview_url(queue), {**VALID, f"var.{field}": value}, **HTMX)
    assert response.status_code == 200  # htmx swaps 200s; the fragment carries the error
    html = response.content.decode()
    assert Page(html).roots == ["section"]
    assert codes(html) == [code]
    assert 'id="preview-text"' not in html
    assert f'href="#var-{field}"' in html  # the error links to its input


def test_preview_does_not_wait_for_the_job(client, member, queue):
    response = client.post(preview_url(queue), {**VALID, "command": "", "project": ""}, **HTMX)
    assert "gpus: <mark>3</mark>" in response.content.decode()


def test_preview_needs_membership(client, outsider, queue):
    client.force_login(outsider)
    assert client.post(preview_url(queue), VALID, **HTMX).status_code == 404


# --- submitting ----------------------------------------------------------------


def test_valid_launch_enqueues_a_pending_run_and_opens_its_page(client, member, queue):
    response = client.post(launch_url(queue), {**VALID, "priority": "high", "name": "my-run"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == run_url(run)
    assert run.state == RunState.PENDING and run.name == "my-run" and run.launched_by == member
    assert run.values == {"gpus": 3, "aws_instance": "ml.p3.xlarge", "lr": 0.5, "tag": "nightly"}
    assert run.priority == Priority.HIGH
    assert run.config_version == queue.current_version
    assert "gpus: 3" in run.rendered_config
    assert "via form" in RunEvent.objects.get(run=run).message


def test_empty_run_name_gets_a_generated_one(client, member, queue):
    client.post(launch_url(queue), {**VALID, "name": ""})
    assert Run.objects.get().name.count("-") == 2


@pytest.mark.parametrize(
    "tamper, field, code",
    [
        ({"var.gpus": "99"}, "gpus", "maximum"),
        ({"var.aws_instance": "ml.p4d.24xlarge"}, "aws_instance", "not_allowed"),
        ({"var.lr": "1e400"}, "lr", "not_finite"),
        ({"var.gpus": "١"}, "gpus", "type"),
        ({"var.aws_instance": ""}, "aws_instance", "required"),
    ],
)
def test_tampered_value_is_refused_beside_its_field_and_nothing_is_enqueued(client, member, queue, tamper, field, code):
    response = client.post(launch_url(queue), {**VALID, **tamper})
    assert response.status_code == 400
    assert Run.objects.count() == 0
    page = parse(response)
    error = page.by_id[f"var-{field}-error"]
    assert f'data-code="{code}"' in response.content.decode()
    assert f"var-{field}-error" in page.attrs(f"var-{field}")["aria-describedby"]
    assert page.attrs(f"var-{field}").get("aria-invalid") == "true"
    assert error["text"].strip().startswith(field)  # the message names the field (and the rule and the bound)
    assert page.attrs("launch-command")["value"] == "python train.py"  # what was typed is kept


def test_out_of_range_error_names_the_bound_and_keeps_the_value(client, member, queue):
    response = client.post(launch_url(queue), {**VALID, "var.gpus": "99"})
    page = parse(response)
    assert page.text("var-gpus-error") == "gpus must be at most 4 (got 99)."
    assert page.attrs("var-gpus")["value"] == "99"


def test_extra_field_name_is_refused_and_nothing_is_enqueued(client, member, queue):
    response = client.post(launch_url(queue), {**VALID, "var.evil": "1"})
    assert response.status_code == 400
    assert Run.objects.count() == 0
    page = parse(response)
    assert "unknown_field" in codes(response.content.decode())
    assert page.text("launch-errors").count("evil is not a template field") == 1


def test_a_base_image_made_from_a_bad_value_is_refused_beside_that_value(client, member, team, make_queue, admin_user):
    text = "builder:\n  accelerator:\n    base_image: nvidia/cuda:{{cuda}}\n"
    make_queue(team, "gpu", text, "yaml", [Field("cuda", FieldType.STRING, default="12.4.1-runtime-ubuntu22.04")], user=admin_user)

    response = client.post(url("run_create", "ml", "gpu"), {"project": "proj", "command": "python t.py", "var.cuda": "12 with spaces"})

    assert response.status_code == 400 and Run.objects.count() == 0
    assert parse(response).text("var-cuda-error").startswith("cuda makes the accelerator base image 'nvidia/cuda:12 with spaces'")
    assert client.post(url("run_create", "ml", "gpu"), {"project": "proj", "command": "python t.py", "var.cuda": "12.6.0-devel"}).status_code == 302


def test_an_image_posted_to_a_process_queue_is_refused_in_plain_sight(client, member, queue):
    response = client.post(launch_url(queue), {**VALID, "image": "ghcr.io/acme/train:1"})
    assert response.status_code == 400 and Run.objects.count() == 0
    assert "not a container image" in parse(response).text("launch-errors")


@pytest.mark.parametrize(
    "repeated, field, beside", [({"var.gpus": ["2", "3"]}, "gpus", "var-gpus-error"), ({"project": ["proj", "other"]}, "project", "launch-project-error")]
)
def test_a_value_sent_twice_is_refused_not_guessed(client, member, queue, repeated, field, beside):
    response = client.post(launch_url(queue), {**VALID, **repeated})
    assert response.status_code == 400
    assert Run.objects.count() == 0
    assert set(codes(response.content.decode())) == {"repeated"}
    assert parse(response).text(beside) == f"{field} was sent more than once; send one value."


def test_other_inputs_are_checked_too(client, member, queue):
    response = client.post(launch_url(queue), {**VALID, "project": "nope", "command": "", "priority": "urgent"})
    assert response.status_code == 400
    assert Run.objects.count() == 0
    page = parse(response)
    assert "launch-project-error" in page.by_id and "launch-command-error" in page.by_id and "launch-priority-error" in page.by_id
    assert sorted(codes(response.content.decode())) == ["invalid", "required", "unknown_project"]


def test_config_saved_meanwhile_refuses_the_stale_form(client, member, queue, admin_user):
    from launchq.configs import save_config

    stale = queue.current_version.number
    save_config(queue, admin_user, CONFIG + "extra: 1\n", "yaml", {f.name: f for f in FIELDS}, stale)
    response = client.post(launch_url(queue), {**VALID, "config_version": str(stale)})
    assert response.status_code == 409
    assert "version_changed" in codes(response.content.decode())
    assert Run.objects.count() == 0


def test_the_form_carries_a_fresh_launch_token_each_time_it_is_shown(client, member, queue):
    first, second = (parse(client.get(launch_url(queue))).attrs("launch-idempotency-key")["value"] for _ in range(2))
    assert first and second and first != second


def test_a_form_submitted_twice_launches_once_and_both_land_on_the_run(client, member, queue):
    """A double click, or the browser sending the POST again after a dropped connection."""
    form = {**VALID, "idempotency_key": parse(client.get(launch_url(queue))).attrs("launch-idempotency-key")["value"]}

    first = client.post(launch_url(queue), form)
    again = client.post(launch_url(queue), form, follow=True)

    run = Run.objects.get()
    assert first["Location"] == again.redirect_chain[-1][0] == run_url(run)
    assert run.name in again.content.decode()


def test_a_used_form_sent_with_other_values_says_so_and_the_next_press_launches(client, member, queue):
    """The browser's Back button brings the used form back; changed and sent again it is a new launch, after one question."""
    token = parse(client.get(launch_url(queue))).attrs("launch-idempotency-key")["value"]
    client.post(launch_url(queue), {**VALID, "idempotency_key": token})
    first = Run.objects.get()

    changed = client.post(launch_url(queue), {**VALID, "var.gpus": "4", "idempotency_key": token})

    assert changed.status_code == 409 and codes(changed.content.decode()) == ["form_used"]
    assert run_url(first) in changed.content.decode()
    page = parse(changed)
    assert page.attrs("var-gpus")["value"] == "4"
    fresh = page.attrs("launch-idempotency-key")["value"]
    assert fresh != token
    assert client.post(launch_url(queue), {**VALID, "var.gpus": "4", "idempotency_key": fresh}).status_code == 302
    assert Run.objects.count() == 2


# --- the Runs tab ----------------------------------------------------------------


def test_queue_opens_on_its_runs_tab(client, member, queue):
    response = client.get(url("queue_detail", queue.team.slug, queue.name))
    assert response.status_code == 302 and response["Location"] == runs_url(queue)


def test_runs_tab_lists_each_run(client, member, queue, admin_user):
    run = a_run(queue, member, gpus="2")
    launch_run(queue, admin_user, {"aws_instance": "ml.p3.xlarge"}, project="proj", job={"command": "x"}, priority="critical")
    response = client.get(runs_url(queue))
    html = response.content.decode()
    page = parse(response)
    assert page.attrs("runs-table")["hx-trigger"] == "every 2s"
    row = page.text(f"run-{run.run_id}")
    assert run.name in row and "pending" in row and "medium" in row and "max" in row and "gpus=2" in row
    assert f'href="{run_url(run)}"' in html
    assert "critical" in html
    assert html.index("critical") < html.index(run.name)  # newest first
    assert '<a href="' + runs_url(queue) + '" aria-current="page">Runs</a>' in html


def test_runs_fragment_polls_only_while_a_run_is_in_flight(client, member, queue):
    run = a_run(queue, member)
    response = client.get(runs_url(queue), **HTMX)
    html = response.content.decode()
    page = Page(html)
    assert page.roots == ["div"] and page.attrs("runs-table")["hx-trigger"] == "every 2s"
    assert "<html" not in html

    move(run, RunState.CANCELLED)
    page = Page(client.get(runs_url(queue), **HTMX).content.decode())
    assert page.roots == ["div"] and "runs-table" in page.by_id
    assert "hx-trigger" not in page.attrs("runs-table")


def test_runs_tab_shows_why_a_run_failed(client, member, queue):
    run = a_run(queue, member)
    move(run, RunState.FAILED, failure_reason="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory")
    html = client.get(runs_url(queue)).content.decode()
    assert "RuntimeError: CUDA out of memory" in html


def test_runs_tab_filters_by_state_and_keeps_the_filter_while_polling(client, member, queue):
    pending, done = a_run(queue, member), a_run(queue, member)
    move(done, RunState.CANCELLED)
    response = client.get(runs_url(queue) + "?state=cancelled")
    page = parse(response)
    assert f"run-{done.run_id}" in page.by_id and f"run-{pending.run_id}" not in page.by_id
    assert page.text("runs-table").startswith("1 cancelled run ·")
    assert page.attrs("runs-table")["hx-get"] == runs_url(queue) + "?state=cancelled&page=1"
    assert "No finished runs" in client.get(runs_url(queue) + "?state=finished").content.decode()
    assert f"run-{pending.run_id}" in parse(client.get(runs_url(queue) + "?state=bogus")).by_id


def test_runs_tab_says_when_no_agent_is_online_for_the_queue(client, member, queue, team):
    from django.utils import timezone

    from launchq.models import Agent

    assert "No agent is online for this queue" in client.get(runs_url(queue)).content.decode()
    agent, _ = Agent.issue(team, "gpu-box-1")
    agent.queues.add(queue)
    assert "No agent is online for this queue" in client.get(runs_url(queue)).content.decode()  # never seen yet
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=timezone.now())
    text = parse(client.get(runs_url(queue))).text("queue-agents")
    assert "Served by gpu-box-1 (polling)." == text


def test_runs_tab_without_runs_invites_a_launch(client, member, queue):
    html = client.get(runs_url(queue)).content.decode()
    assert "No runs yet" in html and launch_url(queue) in html


# --- a run's page ------------------------------------------------------------------


def test_run_page_shows_what_was_launched(client, member, queue):
    run = a_run(queue, member, gpus="2")
    response = client.get(run_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    assert "gpus: <mark>2</mark>" in html  # rendered config, highlighted
    assert '<span class="macro">${run_id}</span>' in html
    assert "Not yet resolved" in html
    assert url("config_version", queue.team.slug, queue.name, run.config_version.number) in html
    assert "Launched by max via form." in html
    assert "python train.py" in html
    assert Page(html).attrs("run-live")["hx-trigger"] == "every 2s"


def test_failed_run_shows_its_reason_first(client, member, queue):
    run = a_run(queue, member)
    move(run, RunState.LEASED)
    move(
        run, RunState.FAILED, failure_reason="ImagePullBackOff: no such image", exit_code=3,
        resolved_config="resources:\n  gpus: 1\n", dockerfile="FROM python:3.12-slim\n", warnings=["${MY_TOKEN} was not filled"],
        output="step 1\nstep 2\nboom\n",
    )
    html = client.get(run_url(run)).content.decode()
    page = Page(html)
    assert "ImagePullBackOff: no such image" in page.text("failure-reason")
    assert html.index('id="failure-reason"') < html.index('id="run-live"') < html.index("Details")
    assert "exit code 3" in page.text("failure-reason")
    assert "${MY_TOKEN} was not filled" in page.text("run-warnings")
    assert "FROM python:3.12-slim" in html and "Not yet resolved" not in html
    assert "boom" in page.text("run-live")
    assert "hx-trigger" not in page.attrs("run-live")  # done: no polling


def test_run_fragment_polls_while_in_flight_and_reloads_the_page_after_a_change(client, member, queue):
    run = a_run(queue, member)
    response = client.get(run_url(run) + "?events=1", **HTMX)
    html = response.content.decode()
    assert Page(html).roots == ["section"] and Page(html).attrs("run-live")["hx-trigger"] == "every 2s"
    assert "<html" not in html

    run.output = "epoch 1\n"
    run.save()
    assert "epoch 1" in client.get(run_url(run) + "?events=1", **HTMX).content.decode()

    move(run, RunState.LEASED)
    response = client.get(run_url(run) + "?events=1", **HTMX)
    assert response["HX-Refresh"] == "true"


# --- cancelling ----------------------------------------------------------------------


def test_launcher_cancels_a_pending_run(client, member, queue):
    run = a_run(queue, member)
    assert "Cancel run" in client.get(run_url(run)).content.decode()
    response = client.post(cancel_url(run))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED


def test_cancel_from_htmx_reloads_the_page(client, member, queue):
    run = a_run(queue, member)
    response = client.post(cancel_url(run), **HTMX)
    assert response["HX-Refresh"] == "true"
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED


def test_admin_cancels_a_running_run_by_asking_its_agent(client, admin_user, member_user, queue):
    run = a_run(queue, member_user)
    move(run, RunState.LEASED)
    move(run, RunState.RUNNING)
    client.force_login(admin_user)
    client.post(cancel_url(run))
    run.refresh_from_db()
    assert run.state == RunState.RUNNING and run.cancel_requested
    html = client.get(run_url(run)).content.decode()
    assert "Cancel requested" in html and "Cancel run" not in html


def test_another_member_may_not_cancel(client, queue, member_user, make_user, join, team):
    run = a_run(queue, member_user)
    other = make_user("mia")
    join(other, team, "member")
    client.force_login(other)
    assert "Cancel run" not in client.get(run_url(run)).content.decode()
    assert client.post(cancel_url(run)).status_code == 403
    run.refresh_from_db()
    assert run.state == RunState.PENDING


def test_cancelling_a_finished_run_changes_nothing(client, member, queue):
    run = a_run(queue, member)
    move(run, RunState.CANCELLED)
    response = client.post(cancel_url(run), follow=True)
    assert "already cancelled" in response.content.decode()
    assert client.get(cancel_url(run)).status_code == 405


# --- who may see what ----------------------------------------------------------------


def _pages(queue, run):
    return [
        ("get", launch_url(queue)), ("post", launch_url(queue)), ("post", preview_url(queue)),
        ("get", runs_url(queue)), ("get", run_url(run)), ("post", cancel_url(run)),
    ]


def test_anonymous_users_are_sent_to_log_in(client, queue, member_user):
    run = a_run(queue, member_user)
    for method, path in _pages(queue, run):
        response = getattr(client, method)(path, VALID if method == "post" else None)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], path
    assert Run.objects.count() == 1


def test_outsiders_get_404_for_everything(client, queue, member_user, outsider):
    run = a_run(queue, member_user)
    client.force_login(outsider)
    for method, path in _pages(queue, run):
        response = getattr(client, method)(path, VALID if method == "post" else None)
        assert response.status_code == 404, path
    assert client.get(url("run_detail", "other", run.run_id)).status_code == 404  # not through their own team
    assert Run.objects.count() == 1
    run.refresh_from_db()
    assert run.state == RunState.PENDING


@pytest.mark.parametrize("who", ["member_user", "admin_user"])
def test_members_and_admins_launch_and_see_runs(client, queue, who, request):
    user = request.getfixturevalue(who)
    client.force_login(user)
    assert client.get(launch_url(queue)).status_code == 200
    response = client.post(launch_url(queue), VALID)
    assert response.status_code == 302
    run = Run.objects.get(launched_by=user)
    assert client.get(runs_url(queue)).status_code == 200
    assert client.get(run_url(run)).status_code == 200


def test_a_field_named_like_a_launch_input_keeps_its_own_errors(client, member, team, make_queue, admin_user):
    field = Field("command", FieldType.INTEGER, minimum=1, maximum=3)
    queue = make_queue(team, "clash", "retries: {{command}}\n", "yaml", [field], user=admin_user)
    response = client.post(launch_url(queue), {"project": "proj", "command": "", "var.command": "7"})
    assert response.status_code == 400
    page = parse(response)
    assert page.text("var-command-error") == "command must be at most 3 (got 7)."
    assert "A local-process queue runs a command" in page.text("launch-command-error")
    assert "at most 3" not in page.text("launch-command-error")
    assert Run.objects.count() == 0


def test_pending_run_shows_its_place_in_the_queue(client, member, queue):
    first = a_run(queue, member)
    second = a_run(queue, member)
    urgent = launch_run(queue, member, {"aws_instance": "ml.m4.xlarge"}, project="proj", job={"command": "x"}, priority="critical")
    assert "next" in Page(client.get(run_url(urgent)).content.decode()).text("run-live")
    assert "3 (2 ahead)" in Page(client.get(run_url(second)).content.decode()).text("run-live")
    move(first, RunState.LEASED)
    assert "Position in queue" not in client.get(run_url(first)).content.decode()
    assert "2 (1 ahead)" in Page(client.get(run_url(second)).content.decode()).text("run-live")


def test_launch_again_after_a_field_was_removed_offers_only_todays_fields(client, member, queue, admin_user):
    from launchq.configs import save_config

    run = a_run(queue, member, gpus="2")
    save_config(queue, admin_user, "gpus: {{gpus}}\n", "yaml", {"gpus": FIELDS[0]}, queue.current_version.number)
    html = client.get(launch_url(queue) + f"?from={run.run_id}").content.decode()
    assert "gpus: <mark>2</mark>" in html and "unknown_field" not in codes(html)


def test_finished_run_says_how_long_it_ran(client, member, queue):
    from datetime import timedelta

    run = a_run(queue, member)
    move(run, RunState.LEASED)
    move(run, RunState.RUNNING)
    move(run, RunState.FINISHED, exit_code=0)
    run.started_at = run.finished_at - timedelta(minutes=3, seconds=20)
    run.save()
    assert "after 3 min 20 s" in Page(client.get(run_url(run)).content.decode()).text("run-live")


@pytest.mark.parametrize("tamper", [{"var.tag": "a\x00b"}, {"name": "run\x00"}, {"command": "python\x00 x"}])
def test_control_characters_are_refused_not_stored(client, member, queue, tamper):
    response = client.post(launch_url(queue), {**VALID, **tamper})
    assert response.status_code == 400
    assert "invalid_character" in codes(response.content.decode())
    assert Run.objects.count() == 0


# --- numbers the form carries -------------------------------------------------


@pytest.mark.parametrize("version", ["²", "9" * 5000, "-1", "1e3", "99999999999"])
def test_a_crafted_config_version_is_a_400_with_its_reason_and_launches_nothing(client, member, queue, version):
    for target in (launch_url(queue), preview_url(queue)):
        for headers in ({}, HTMX):
            response = client.post(target, {**VALID, "config_version": version}, **headers)
            assert response.status_code == 400
            assert 'id="bad-request"' in response.content.decode() and "config_version" in response.content.decode()
    assert not Run.objects.exists()


@pytest.mark.parametrize("page", ["²", "9" * 5000, "0"])
def test_a_crafted_page_number_on_the_runs_tab_is_a_400(client, member, queue, page):
    assert client.get(runs_url(queue), {"page": page}).status_code == 400


def test_a_control_character_in_one_input_and_a_bad_value_in_another_is_no_500(client, member, queue):
    """Found by the fuzz pass: the launch check stops at a control character before it checks the values, and the
    preview then checked them without catching the refusal."""
    data = {**VALID, "name": "\x1b[31mred", "var.gpus": "0.5"}
    preview = client.post(preview_url(queue), data, **HTMX)
    assert preview.status_code == 200 and 'data-code="type"' in preview.content.decode()
    launch = client.post(launch_url(queue), data)
    assert launch.status_code == 400 and not Run.objects.exists()
