"""The Config tab in real Chromium, as an admin and a member would use it."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from launchq.configs import save_config
from launchq.guardrails import Field
from launchq.models import Queue
from tests.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BEFORE = """\
RoleArn: arn:aws:iam:region:account-id:resource-type/resource-id
ResourceConfig:
  InstanceType: ml.m4.xlarge
  InstanceCount: 1
  VolumeSizeInGB: 2
OutputDataConfig:
  S3OutputPath: s3://bucketname
StoppingCondition:
  MaxRuntimeInSeconds: 3600
"""
DEMO_PASSWORD = "demo-password-for-tests"


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("LAUNCHQ_DEMO_PASSWORD", DEMO_PASSWORD)
    call_command("demo")
    queue = Queue.objects.get(team__slug="demo", name="sagemaker-queue")
    save_config(queue, None, BEFORE, "yaml", {}, queue.current_version.number)
    return queue


def open_config_tab(page, live_server, username: str) -> None:
    log_in(page, live_server, username, DEMO_PASSWORD)
    page.get_by_role("link", name="View queue sagemaker-queue").click()
    page.get_by_role("link", name="Config", exact=True).click()
    expect(page.get_by_role("heading", name="Queue config")).to_be_visible()
    page.wait_for_load_state("load")  # htmx is wired up (before that, buttons post their plain forms)


def parse_with_gpus_field(page):
    """Turn InstanceCount into the template field `gpus`, parse, and return its tile."""
    editor = page.get_by_label("Queue config")
    editor.fill(editor.input_value().replace("InstanceCount: 1", "InstanceCount: {{gpus}}"))
    page.get_by_role("button", name="Parse configuration").click()
    return page.locator("#tile-gpus")


def test_the_source_documents_example_end_to_end(page, live_server, demo, artifacts):
    open_config_tab(page, live_server, "admin")
    page.evaluate("window.__same_page = true")

    editor = page.get_by_label("Queue config")
    editor.fill(editor.input_value().replace("InstanceType: ml.m4.xlarge", 'InstanceType: "{{aws_instance}}"'))
    page.get_by_role("button", name="Parse configuration").click()

    tile = page.locator("#tile-aws_instance")
    expect(tile).to_be_visible()
    expect(tile).to_contain_text("ResourceConfig.InstanceType")
    tile.get_by_label("Type").select_option(label="String")
    for value in ("ml.m4.xlarge", "ml.p3.xlarge"):
        tile.get_by_label("Allowed values").fill(value)
        tile.get_by_role("button", name="Add value").click()
        expect(tile.locator(f'input[value="{value}"]')).to_be_visible()
    assert page.evaluate("window.__same_page === true"), "parsing and editing tiles must not reload the page"
    tile.screenshot(path=str(artifacts / "config-tab-aws_instance-tile.png"))

    page.get_by_role("button", name="Save config").click()
    expect(page.get_by_text("Saved version 3.")).to_be_visible()
    page.reload()
    tile = page.locator("#tile-aws_instance")
    expect(tile.get_by_label("Type")).to_have_value("string")
    expect(tile.get_by_label("Allowed value 1")).to_have_value("ml.m4.xlarge")
    expect(tile.get_by_label("Allowed value 2")).to_have_value("ml.p3.xlarge")
    expect(page.get_by_label("Queue config")).to_have_value(BEFORE.replace("InstanceType: ml.m4.xlarge", 'InstanceType: "{{aws_instance}}"'))
    page.screenshot(path=str(artifacts / "config-tab.png"), full_page=True)

    version = Queue.objects.get(pk=demo.pk).current_version
    assert version.number == 3
    assert version.fields[0]["allowed"] == ["ml.m4.xlarge", "ml.p3.xlarge"]


def test_type_switches_swap_the_constraint_form_and_errors_show_next_to_inputs(page, live_server, demo):
    open_config_tab(page, live_server, "admin")
    tile = parse_with_gpus_field(page)
    tile.get_by_label("Type").select_option(label="Integer")
    expect(tile.get_by_label("Minimum")).to_be_visible()
    expect(tile.get_by_label("Allowed values")).to_have_count(0)
    tile.get_by_label("Minimum").fill("8")
    tile.get_by_label("Maximum").fill("1")
    page.get_by_role("button", name="Save config").click()
    expect(page.locator("#tile-gpus")).to_contain_text("The minimum (8) is above the maximum (1).")
    expect(page.get_by_label("Queue config")).to_contain_text("{{gpus}}")
    assert Queue.objects.get(pk=demo.pk).versions.count() == 2


def test_a_yaml_mistake_is_shown_with_its_line_and_the_text_stays(page, live_server, demo):
    open_config_tab(page, live_server, "admin")
    broken = BEFORE + "Extra: [unclosed\n"
    page.get_by_label("Queue config").fill(broken)
    page.get_by_role("button", name="Parse configuration").click()
    expect(page.get_by_role("alert")).to_contain_text("Line 11, column 1")
    page.get_by_role("button", name="Save config").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.get_by_label("Queue config")).to_have_value(broken)


def test_members_see_the_config_tab_read_only(page, live_server, demo):
    field = Field("aws_instance", allowed=("ml.m4.xlarge",))
    save_config(demo, None, 'RoleArn: x\nInstanceType: "{{aws_instance}}"\n', "yaml", {"aws_instance": field}, 2)
    open_config_tab(page, live_server, "member")
    expect(page.get_by_role("button", name="Save config")).to_have_count(0)
    expect(page.get_by_role("button", name="Parse configuration")).to_have_count(0)
    expect(page.locator("#tile-aws_instance")).to_contain_text("ml.m4.xlarge")


def test_controls_swapped_in_by_htmx_answer_at_once(page, live_server, demo):
    """A tile's Type select works the moment the tile appears: htmx wires new
    content up in the same task that inserts it, so a quick click is never lost
    (with htmx's default 20 ms settle delay it was, now and then)."""
    open_config_tab(page, live_server, "admin")
    page.evaluate(
        """() => {
        window.__late = 0;
        document.body.addEventListener('htmx:afterSwap', () => {
            queueMicrotask(() => { window.__late += document.querySelectorAll('.htmx-added').length; });
        });
    }"""
    )
    tile = parse_with_gpus_field(page)
    tile.get_by_label("Type").select_option(label="Float")
    expect(tile.get_by_label("Minimum")).to_be_visible()
    assert page.evaluate("window.__late") == 0


def test_tiles_cannot_be_changed_while_a_parse_is_on_its_way(page, live_server, demo):
    """A change made to a tile while Parse is in flight would be overwritten by its answer, and a Save pressed then
    would post no tiles (disabled inputs are not sent); the tiles and both buttons wait instead."""
    field = Field("aws_instance", allowed=("ml.m4.xlarge",))
    save_config(demo, None, BEFORE.replace("ml.m4.xlarge", '"{{aws_instance}}"'), "yaml", {"aws_instance": field}, 2)
    open_config_tab(page, live_server, "admin")
    seen = {}

    def hold(route):
        seen["disabled"] = page.evaluate(
            """() => [document.querySelector('#tile-aws_instance').disabled,
                      ...[...document.querySelectorAll('#config-form .editor-actions button, #config-form .save-bar button')].map(b => b.disabled)]"""
        )
        route.continue_()

    page.route("**/config/parse/", hold)
    with page.expect_response("**/config/parse/"):
        page.get_by_role("button", name="Parse configuration").click()
    expect(page.locator("#tile-aws_instance")).to_be_enabled()
    expect(page.get_by_role("button", name="Save config")).to_be_enabled()
    assert seen == {"disabled": [True, True, True]}  # the tiles, Parse configuration and Save config
