"""Launching in real Chromium: the form, its live preview, the errors, the run page and the Runs tab."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from launchq.forms import html_pattern
from launchq.guardrails import Field, FieldType
from launchq.models import Run, RunState
from launchq.runs import move
from tests.conftest import log_in
from tests.proxy import LosingProxy

pytestmark = pytest.mark.browser

CONFIG = """\
resources:
  gpus: {{gpus}}          # whole GPUs
  instance: "{{aws_instance}}"
output: s3://bucket/${run_id}/
"""
FIELDS = (
    Field("gpus", FieldType.INTEGER, description="How many GPUs the job gets.", minimum=1, maximum=4, default=1),
    Field("aws_instance", FieldType.STRING, description="SageMaker instance type.", allowed=("ml.m4.xlarge", "ml.p3.xlarge")),
)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queue(team, make_queue, admin_user):
    return make_queue(team, "train", CONFIG, "yaml", FIELDS, user=admin_user)


def test_member_launches_within_the_guardrails(page, live_server, member_user, queue, artifacts):
    log_in(page, live_server, "max")
    page.goto(f"{live_server.url}/teams/ml/queues/train/")
    expect(page.get_by_role("link", name="Runs", exact=True)).to_have_attribute("aria-current", "page")
    page.locator(".queue-actions").get_by_role("link", name="Launch").click()
    expect(page.get_by_role("heading", name="Launch a run on train")).to_be_visible()
    page.wait_for_load_state("load")  # htmx is wired up before the inputs are used

    preview = page.locator("#launch-preview")
    page.get_by_label("Command").fill("python train.py")
    page.get_by_label("aws_instance").select_option("ml.p3.xlarge")
    page.get_by_label("gpus").fill("9")
    expect(preview).to_contain_text("gpus must be at most 4 (got 9).")
    expect(preview.locator("#preview-text")).to_have_count(0)

    # The browser itself stops the obvious mistake first...
    page.get_by_role("button", name="Launch run").click()
    assert page.get_by_label("gpus").evaluate("input => input.validity.rangeOverflow")
    assert "/launch/" in page.url
    # ...and the server refuses it when the browser is talked out of that.
    page.locator("#launch-form").evaluate("form => { form.noValidate = true }")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#var-gpus-error")).to_have_text("gpus must be at most 4 (got 9).")
    expect(page.get_by_label("gpus")).to_have_value("9")
    expect(page.get_by_label("Command")).to_have_value("python train.py")
    assert Run.objects.count() == 0
    page.screenshot(path=str(artifacts / "launch-form-refused.png"), full_page=True)

    page.get_by_label("gpus").fill("2")
    expect(page.locator("#var-gpus-error")).to_be_hidden()  # the refusal was about the old value
    expect(preview.locator("#preview-text mark")).to_have_text(["2", "ml.p3.xlarge"])
    expect(preview.locator("#preview-text .macro")).to_have_text("${run_id}")
    page.screenshot(path=str(artifacts / "launch-form-preview.png"), full_page=True)

    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/teams/ml/runs/[a-z0-9]+/$"))
    run = Run.objects.get()
    expect(page.get_by_role("heading", name=run.name)).to_be_visible()
    expect(page.locator("#run-live")).to_contain_text("pending")
    expect(page.locator("#rendered-config mark")).to_have_text(["2", "ml.p3.xlarge"])
    page.screenshot(path=str(artifacts / "launch-run-page.png"), full_page=True)

    page.get_by_role("link", name="Runs", exact=True).first.click()
    row = page.locator(f"#run-{run.run_id}")
    expect(row).to_contain_text("pending")
    expect(row).to_contain_text("gpus=2")
    expect(row).to_contain_text("aws_instance=ml.p3.xlarge")
    page.screenshot(path=str(artifacts / "launch-runs-tab.png"), full_page=True)


def test_runs_tab_follows_a_run_and_stops_when_it_is_done(page, live_server, member_user, queue):
    from launchq.runs import launch_run

    run = launch_run(queue, member_user, {"aws_instance": "ml.m4.xlarge"}, project="proj", job={"command": "x"})
    log_in(page, live_server, "max")
    page.goto(f"{live_server.url}/teams/ml/queues/train/runs/")
    table = page.locator("#runs-table")
    expect(table).to_have_attribute("hx-trigger", "every 2s")

    move(run, RunState.LEASED)
    move(run, RunState.RUNNING)
    expect(page.locator(f"#run-{run.run_id}")).to_contain_text("running", timeout=8000)
    move(run, RunState.FAILED, failure_reason="Traceback:\nRuntimeError: CUDA out of memory")
    expect(page.locator(f"#run-{run.run_id}")).to_contain_text("RuntimeError: CUDA out of memory", timeout=8000)
    expect(table).not_to_have_attribute("hx-trigger", re.compile("."))

    page.get_by_role("link", name=run.name).click()
    expect(page.locator("#failure-reason")).to_contain_text("RuntimeError: CUDA out of memory")


def test_demo_member_launches_on_the_sagemaker_queue(page, live_server, monkeypatch, artifacts, db):
    from django.core.management import call_command

    monkeypatch.setenv("LAUNCHQ_DEMO_PASSWORD", "demo password for tests")
    call_command("demo", stdout=open("/dev/null", "w"))
    log_in(page, live_server, "member", "demo password for tests")
    page.get_by_role("link", name="View queue sagemaker-queue").click()
    page.locator(".queue-actions").get_by_role("link", name="Launch").click()

    page.get_by_label("aws_instance").select_option("ml.p3.xlarge")
    page.get_by_label("Image URI").fill("ghcr.io/demo/trainer:1.0")
    expect(page.locator("#preview-text mark")).to_have_text(["ml.p3.xlarge"])
    page.screenshot(path=str(artifacts / "launch-sagemaker-form.png"), full_page=True)
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/teams/demo/runs/[a-z0-9]+/$"))

    page.get_by_role("link", name="Runs", exact=True).first.click()
    run = Run.objects.get()
    expect(page.locator(f"#run-{run.run_id}")).to_contain_text("pending")
    assert run.values == {"aws_instance": "ml.p3.xlarge"}


PATTERNS = [
    "[a-z0-9-]+", "[-a-z]+", "[a-z-_]+", "[]a]", "[ !#-~]+", r"[\w.+-]+@[\w-]+\.[a-z]+", "a{b}", r"v[0-9]+\.[0-9]+",
    "x{,3}", "[a-c-e]+", r"\Aab?\z", r"\s\S+", r"[\s\d]+", r"\pL+", r"\p{Greek}+", r"\PN+", "[[:alpha:]_]+",
    r"[[:punct:]]+", r"\x{e9}\x41", r"\Q.*\E+", r"(?P<v>[0-9]+)\.(?<w>[0-9]+)", r"\d+", r"\w+", "[^/]+",
]
TEXTS = [
    "abc", "a-b", "-", "_", "]", "a{b}", "x@y-z.io", "A B", "a.b", "~", "v1.2", "x{,3}", "e", "ab", "\u00a0x",
    " x", "٣", "αβγ", "éA", ".**", "12.34", "!?", "/", "日本", "x\u3000y",
]


def test_chromium_reads_each_pattern_as_re2_does(page):
    """The launch form's `pattern` attribute, as Chromium reads it, accepts exactly what the server's RE2 accepts,
    or is left out."""
    from launchq.patterns import matches

    spelled = [html_pattern(p) for p in PATTERNS]
    browser = page.evaluate(
        "([patterns, texts]) => patterns.map(p => p ? texts.map(t => new RegExp('^(?:' + p + ')$', 'v').test(t)) : null)",
        [spelled, TEXTS],
    )
    for pattern, js, answers in zip(PATTERNS, spelled, browser, strict=True):
        assert js, f"{pattern} should have a browser spelling"
        assert answers == [matches(pattern, t) for t in TEXTS], (pattern, js)


def test_a_launch_whose_answer_was_lost_makes_one_run_and_lands_on_it(page, live_server, member_user, queue):
    """The launch POST reaches the server and launches; then the connection drops before the answer arrives.
    The browser sends the form again (Chromium does so by itself on a kept-alive connection; a person would
    reload): the form's token makes that the same launch, and the browser lands on its run."""
    with LosingProxy(live_server.thread.port, marker=b"POST /teams/ml/queues/train/launch/ ") as proxy:
        site = SimpleNamespace(url=proxy.url)
        log_in(page, site, "max")
        page.goto(f"{proxy.url}/teams/ml/queues/train/launch/")
        page.wait_for_load_state("load")
        page.get_by_label("Command").fill("python train.py")
        page.get_by_label("aws_instance").select_option("ml.p3.xlarge")

        try:
            page.get_by_role("button", name="Launch run").click()
        except PlaywrightError:  # no answer at all: the person reloads, and confirms sending the form again
            page.reload()
        page.wait_for_url(re.compile(r"/teams/ml/runs/[a-z0-9]+/$"))

    launches = [f for f in proxy.forwarded if f.head.startswith(b"POST /teams/ml/queues/train/launch/ ")]
    assert [f.dropped for f in launches] == [True, False]
    run = Run.objects.get()
    assert page.url.endswith(f"/runs/{run.run_id}/")
    expect(page.get_by_role("heading", name=run.name)).to_be_visible()
