"""The Launch page and the Config tab through Django's test client: access, htmx fragments, bad input."""

from __future__ import annotations

import pytest
from django.test import Client

from launchq.guardrails import MAX_ALLOWED_VALUES, Field, FieldType
from launchq.models import ConfigVersion, Queue, Run

from .test_templating import SEED

HX = {"HTTP_HX_REQUEST": "true"}
INSTANCE = Field("aws_instance", FieldType.STRING, allowed=("ml.m4.xlarge", "ml.p3.xlarge"))


@pytest.fixture
def queue(make_queue, team, admin_user):
    return make_queue(team, "sagemaker", SEED, fields=[INSTANCE], resource="sagemaker", user=admin_user)


@pytest.fixture
def url(queue):
    base = f"/teams/{queue.team.slug}/queues/{queue.name}/config/"
    return {"config": base, "parse": base + "parse/", "tile": base + "tile/", "save": base + "save/", "v1": base + "versions/1/"}


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def tile_post(name: str, type_: str = "string", allowed=(), **parts) -> dict:
    data = {"tiles": name, f"f.{name}.type": type_, f"f.{name}.allowed": list(allowed)}
    data.update({f"f.{name}.{k}": v for k, v in parts.items()})
    return data


def form(text: str, *tiles: dict, base: int | None = 1, fmt: str = "yaml", **extra) -> dict:
    data = {"text": text, "format": fmt, "base_version": "" if base is None else str(base), "tiles": []}
    for tile in tiles:
        for key, value in tile.items():
            if key == "tiles":
                data["tiles"].append(value)
            else:
                data[key] = value
    return {**data, **extra}


def seed_tile() -> dict:
    return tile_post("aws_instance", "string", ["ml.m4.xlarge", "ml.p3.xlarge"])


# --- access ------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client, url):
    for response in (client.get(url["config"]), client.post(url["parse"], form("a: 1")), client.post(url["save"], form("a: 1"))):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_outsiders_get_404_for_every_page_of_the_team(url, outsider):
    client = as_user(outsider)
    assert client.get(url["config"]).status_code == 404
    assert client.get(url["v1"]).status_code == 404
    assert client.post(url["parse"], form("a: 1")).status_code == 404
    assert client.post(url["save"], form("a: 1")).status_code == 404
    assert client.get("/teams/ml/queues/new/").status_code == 404


def test_members_see_the_config_read_only_and_cannot_change_it(url, member_user, queue):
    client = as_user(member_user)
    page = client.get(url["config"]).content.decode()
    assert "Save config" not in page and 'name="text"' not in page
    assert "ml.p3.xlarge" in page and 'id="tile-aws_instance"' in page
    assert client.post(url["parse"], form("a: 1")).status_code == 403
    assert client.post(url["save"], form("a: 2")).status_code == 403
    assert client.post(url["tile"], form("a: 1", tile_post("x"), tile="x")).status_code == 403
    assert queue.versions.count() == 1


def test_admins_see_the_editor_with_the_seed_labels(url, admin_user, queue):
    page = as_user(admin_user).get(url["config"]).content.decode()
    for label in ("Queue config", "Parse configuration", "Save config", "Type", "Launch-time overrides", "Config versions"):
        assert label in page
    assert '<label for="config-text">Queue config</label>' in page
    assert 'id="tile-aws_instance"' in page
    assert "No runs yet" in page


def test_csrf_is_enforced_on_posts_htmx_ones_included(url, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(url["parse"], form("a: 1"), **HX).status_code == 403
    assert client.post(url["save"], form("a: 1")).status_code == 403


def test_the_launch_page_lists_only_the_users_teams_queues(client, admin_user, queue, make_team, make_queue):
    make_queue(make_team("secret"), "hidden-queue")
    page = as_user(admin_user).get("/launch/").content.decode()
    assert "View queue" in page and queue.name in page
    assert "hidden-queue" not in page


# --- parse configuration -------------------------------------------------------


def test_parse_over_htmx_returns_the_tiles_fragment(url, admin_user):
    text = SEED.replace("InstanceCount: 1", "InstanceCount: {{count}}")
    response = as_user(admin_user).post(url["parse"], form(text, seed_tile()), **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="parse-result"')
    assert "<html" not in body
    assert 'id="tile-count"' in body and 'id="tile-aws_instance"' in body
    assert "ResourceConfig.InstanceCount" in body


def test_parse_without_javascript_returns_the_whole_page(url, admin_user):
    text = SEED.replace("InstanceCount: 1", "InstanceCount: {{count}}")
    body = as_user(admin_user).post(url["parse"], form(text, seed_tile())).content.decode()
    assert "<html" in body and 'id="tile-count"' in body
    assert "{{count}}" in body


def test_reparse_keeps_saved_guardrails_and_lists_fields_that_will_go(url, admin_user):
    text = "a: '{{fresh}}'\n"
    body = as_user(admin_user).post(url["parse"], form(text), **HX).content.decode()
    assert 'id="tile-fresh"' in body and 'id="tile-aws_instance"' not in body
    assert "will be removed on save" in body and "aws_instance" in body
    back = as_user(admin_user).post(url["parse"], form(SEED), **HX).content.decode()
    assert 'value="ml.p3.xlarge"' in back


def test_a_parse_error_shows_line_and_column_and_keeps_the_text_and_tiles(url, admin_user):
    text = SEED + "broken: [1,\n"
    body = as_user(admin_user).post(url["parse"], form(text, seed_tile()), **HX).content.decode()
    assert "Line 11, column 1" in body
    assert 'id="tile-aws_instance"' in body


def test_tiles_are_kept_while_the_config_does_not_parse(url, admin_user):
    body = as_user(admin_user).post(url["parse"], form(SEED + "Extra: [unclosed\n", seed_tile()), **HX).content.decode()
    assert 'id="tile-aws_instance"' in body and 'value="ml.p3.xlarge"' in body
    assert "the tiles below are kept as they were until the config parses again" in body


def test_a_number_of_thousands_of_digits_in_a_config_is_refused_not_a_500(url, admin_user):
    for address in (url["parse"], url["save"]):
        response = as_user(admin_user).post(address, form("n: " + "9" * 5000 + "\n"))
        assert response.status_code in (200, 400) and "more digits than launchq reads" in response.content.decode()
    response = as_user(admin_user).post("/teams/ml/queues/new/", {"name": "big", "resource": "kubernetes", "format": "json", "config": '{"n": ' + "9" * 5000 + "}"})
    assert response.status_code == 400 and not Queue.objects.filter(name="big").exists()


def test_macros_are_listed_with_builtins_marked(url, admin_user):
    body = as_user(admin_user).post(url["parse"], form("a: ${run_id}/${MY_BUCKET}\n"), **HX).content.decode()
    assert "${run_id}" in body and "built-in" in body
    assert "${MY_BUCKET}" in body and "agent environment" in body


# --- tiles ---------------------------------------------------------------------


def test_changing_the_type_swaps_in_that_types_constraints(url, admin_user):
    data = form("a: '{{n}}'\n", tile_post("n", "integer"), **{"f.n.shown_type": "string", "tile": "n"})
    response = as_user(admin_user).post(url["tile"], data, **HX)
    body = response.content.decode()
    assert body.lstrip().startswith('<fieldset class="tile" id="tile-n"')
    assert 'id="f-n-minimum"' in body and 'id="f-n-maximum"' in body and 'id="f-n-default"' in body
    assert 'id="f-n-new"' not in body


def test_a_new_field_in_place_of_a_number_starts_with_that_type_and_default(url, admin_user, queue):
    text = queue.current_version.text
    assert "InstanceCount: 1" in text and "MaxRuntimeInSeconds: 3600" in text
    edited = text.replace("InstanceCount: 1", "InstanceCount: {{count}}").replace("S3OutputPath: s3://bucketname", "S3OutputPath: '{{bucket}}'")
    body = as_user(admin_user).post(url["parse"], form(edited, base=queue.current_version.number), **HX).content.decode()
    count = body[body.index('id="tile-count"'):body.index("</fieldset>", body.index('id="tile-count"'))]
    assert '<option value="integer" selected>' in count and 'value="1"' in count and "guessed from the value this field replaced" in count
    bucket = body[body.index('id="tile-bucket"'):body.index("</fieldset>", body.index('id="tile-bucket"'))]
    assert '<option value="string" selected>' in bucket and "guessed" not in bucket


def test_adding_and_removing_allowed_values_one_by_one(url, admin_user):
    client = as_user(admin_user)
    data = form(SEED, seed_tile(), **{"f.aws_instance.new": "ml.g5.xlarge", "tile_action": "aws_instance:add"})
    body = client.post(url["tile"], data, **HX).content.decode()
    assert body.count('name="f.aws_instance.allowed"') == 3 and 'value="ml.g5.xlarge"' in body
    data = form(SEED, seed_tile(), tile_action="aws_instance:remove:0")
    body = client.post(url["tile"], data, **HX).content.decode()
    assert body.count('name="f.aws_instance.allowed"') == 1 and 'value="ml.m4.xlarge"' not in body


def test_adding_a_value_already_allowed_says_so_at_once_and_adds_nothing(url, admin_user):
    data = form(SEED, seed_tile(), **{"f.aws_instance.new": "ml.p3.xlarge", "tile_action": "aws_instance:add"})
    body = as_user(admin_user).post(url["tile"], data, **HX).content.decode()
    assert body.count('name="f.aws_instance.allowed"') == 2
    assert "&#x27;ml.p3.xlarge&#x27; is already an allowed value." in body


def test_adding_past_the_cap_on_allowed_values_says_so_at_once(url, admin_user):
    many = ",".join(f"v{i}" for i in range(MAX_ALLOWED_VALUES))
    data = form(SEED, seed_tile(), **{"f.aws_instance.new": many, "tile_action": "aws_instance:add"})
    body = as_user(admin_user).post(url["tile"], data, **HX).content.decode()
    assert f"at most {MAX_ALLOWED_VALUES}" in body


def test_tile_actions_work_without_javascript_too(url, admin_user):
    data = form(SEED, seed_tile(), **{"f.aws_instance.new": "ml.g5.xlarge", "tile_action": "aws_instance:add"})
    body = as_user(admin_user).post(url["parse"], data).content.decode()
    assert "<html" in body and 'value="ml.g5.xlarge"' in body


def test_an_unknown_tile_is_404_not_500(url, admin_user):
    assert as_user(admin_user).post(url["tile"], {**form(SEED), "tile": "nope"}, **HX).status_code == 404


# --- save config -----------------------------------------------------------------


def test_save_config_stores_a_new_version_and_the_tiles(url, admin_user, queue):
    text = SEED.replace("InstanceCount: 1", "InstanceCount: {{count}}")
    data = form(text, seed_tile(), tile_post("count", "integer", minimum="1", maximum="4", default="1", description="How many"))
    client = as_user(admin_user)
    response = client.post(url["save"], data)
    assert response.status_code == 302
    queue.refresh_from_db()
    version = queue.current_version
    assert version.number == 2 and version.created_by == admin_user and version.text == text
    assert [f.name for f in version.definitions] == ["aws_instance", "count"]
    assert version.definitions[1] == Field("count", FieldType.INTEGER, "How many", minimum=1, maximum=4, default=1)
    page = client.get(url["config"]).content.decode()
    assert "Saved version 2" in page and 'value="4"' in page


def test_save_normalises_browser_line_endings_and_keeps_the_text_verbatim(url, admin_user, queue):
    text = "# comments stay\nz: 1\na: 2  # and order\n"
    as_user(admin_user).post(url["save"], form(text.replace("\n", "\r\n")))
    queue.refresh_from_db()
    assert queue.current_version.text == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SEED + "oops: [\n", "Line 11, column 1"),
        ("- a list\n", "mapping"),
        ("a: !!python/object/apply:os.system [ls]\n", "Tags that build objects"),
        ("a: {{}}\n", "is empty"),
        ("a: " + "x" * (256 * 1024), "The config is 262,147 bytes of UTF-8; the limit is 262,144 bytes"),
        ('{"builder": {"accelerator": {"base_image": "not an image"}}}', "builder.accelerator.base_image"),
    ],
)
def test_bad_configs_get_a_message_and_nothing_is_saved(url, admin_user, queue, text, message):
    fmt = "json" if text.startswith("{") else "yaml"
    response = as_user(admin_user).post(url["save"], form(text, seed_tile(), fmt=fmt))
    body = response.content.decode()
    assert response.status_code == 400
    assert message in body
    assert "Nothing was saved" in body
    if len(text) < 1000:
        assert text.replace('"', "&quot;")[:20] in body or text[:20] in body
    queue.refresh_from_db()
    assert queue.current_version.number == 1 and queue.versions.count() == 1


def test_contradicting_guardrails_get_messages_next_to_the_inputs(url, admin_user, queue):
    text = SEED.replace("InstanceCount: 1", "InstanceCount: {{count}}")
    data = form(text, tile_post("aws_instance", "string", ["a", "a"], default="b"), tile_post("count", "integer", minimum="5", maximum="1"))
    body = as_user(admin_user).post(url["save"], data).content.decode()
    assert "is in the allowed values twice" in body
    assert "The default &#x27;b&#x27; is not one of the allowed values" in body
    assert "The minimum (5) is above the maximum (1)" in body
    assert queue.versions.count() == 1


def test_new_fields_must_be_reviewed_before_they_are_saved(url, admin_user, queue):
    body = as_user(admin_user).post(url["save"], form("a: '{{brand_new}}'\n")).content.decode()
    assert "New template field" in body and 'id="tile-brand_new"' in body
    assert queue.versions.count() == 1


def test_a_second_save_from_the_same_version_is_a_conflict_linking_the_newer(url, admin_user, make_user, join, team, queue):
    other = make_user("bea")
    join(other, team, "admin")
    assert as_user(other).post(url["save"], form(SEED + "extra: 1\n", seed_tile())).status_code == 302
    response = as_user(admin_user).post(url["save"], form(SEED + "mine: 2\n", seed_tile()))
    body = response.content.decode()
    assert response.status_code == 409
    assert "someone else saved" in body and url["config"] + "versions/2/" in body
    assert "mine: 2" in body
    queue.refresh_from_db()
    assert "extra: 1" in queue.current_version.text and queue.versions.count() == 2
    response = as_user(admin_user).post(url["save"], form(SEED + "mine: 2\n", seed_tile(), base=2))
    assert response.status_code == 302
    queue.refresh_from_db()
    assert queue.current_version.number == 3


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"text": "a: 1", "format": "toml", "base_version": "x"},
        {"text": "a: 1", "base_version": "-1", "tiles": "<script>", "f.<script>.type": "weird"},
        {"text": "a: '{{n}}'", "base_version": "1", "tiles": "n", "f.n.type": "integer", "f.n.minimum": "1e999999"},
        {"text": "a: '{{n}}'", "base_version": "1", "tiles": "n", "f.n.type": "string", "f.n.pattern": "(" * 300},
        {"text": "a: 1", "base_version": "1", "tile_action": "nope:remove:x"},
    ],
)
def test_odd_posts_never_cause_a_500(url, admin_user, data):
    client = as_user(admin_user)
    for target in ("parse", "save", "tile"):
        assert client.post(url[target], data).status_code < 500
        assert client.post(url[target], data, **HX).status_code < 500


def test_a_version_page_shows_its_text_fields_and_changes(url, admin_user, queue):
    as_user(admin_user).post(url["save"], form(SEED.replace("3600", "7200"), seed_tile()))
    body = as_user(admin_user).get(url["config"] + "versions/2/").content.decode()
    assert "Config version 2" in body and "MaxRuntimeInSeconds: 7200" in body
    assert "-  MaxRuntimeInSeconds: 3600" in body and "+  MaxRuntimeInSeconds: 7200" in body
    assert as_user(admin_user).get(url["config"] + "versions/9/").status_code == 404



def test_restoring_an_old_version_saves_it_again_as_the_newest(url, admin_user, member_user, queue):
    admin = as_user(admin_user)
    admin.post(url["save"], form(SEED.replace("InstanceType: \"{{aws_instance}}\"", "InstanceType: ml.m4.xlarge")))
    queue.refresh_from_db()
    assert queue.current_version.number == 2 and queue.current_version.fields == []

    restore = url["v1"] + "restore/"
    assert as_user(member_user).post(restore, {"base_version": "2"}).status_code == 403
    assert 'Restore this version' not in as_user(member_user).get(url["v1"]).content.decode()
    assert 'Restore this version' in admin.get(url["v1"]).content.decode()

    # From a page opened before someone else saved: refused, nothing stored.
    response = admin.post(restore, {"base_version": "1"}, follow=True)
    assert "Not restored: version 2 was saved since you opened this page" in response.content.decode()
    assert ConfigVersion.objects.filter(queue=queue).count() == 2

    response = admin.post(restore, {"base_version": "2"}, follow=True)
    assert "Restored version 1 as version 3." in response.content.decode()
    queue.refresh_from_db()
    v1, v3 = queue.versions.get(number=1), queue.current_version
    assert v3.number == 3 and v3.text == v1.text and v3.fields == v1.fields and v3.created_by == admin_user
    assert 'Restore this version' not in admin.get(url["config"] + "versions/3/").content.decode()
    assert admin.post(url["config"] + "versions/9/restore/", {"base_version": "3"}).status_code == 404

def test_an_empty_version_is_not_restored_over_a_config(admin_user, team, make_queue):
    queue = make_queue(team, "q", text="")
    as_user(admin_user).post("/teams/ml/queues/q/config/save/", {"text": "a: 1\n", "format": "yaml", "base_version": "1"})
    response = as_user(admin_user).post("/teams/ml/queues/q/config/versions/1/restore/", {"base_version": "2"}, follow=True)
    assert "Version 1 is empty; restoring it would wipe the queue&#x27;s config." in response.content.decode()
    assert Queue.objects.get(pk=queue.pk).current_version.text == "a: 1\n" and queue.versions.count() == 2


def test_the_addresses_forms_post_to_lead_back_to_the_config_tab(url, admin_user):
    for address in (url["save"], url["parse"]):
        response = as_user(admin_user).get(address)
        assert response.status_code == 302 and response["Location"] == url["config"]


def test_a_refused_save_sums_up_what_to_fix_at_the_top(url, admin_user, queue):
    bad = tile_post("aws_instance", "string", ["ml.m4.xlarge"], default="ml.p9")
    response = as_user(admin_user).post(url["save"], form(SEED.replace("InstanceCount: 1", "InstanceCount: {{n}}"), bad))
    body = response.content.decode()
    assert response.status_code == 400
    summary = body[body.index('id="save-refused"'):body.index("</div>", body.index('id="save-refused"'))]
    assert "these 2 things" in summary and 'href="#tile-aws_instance"' in summary and 'href="#tile-n"' in summary
    assert "Not saved: see the" in body and queue.versions.count() == 1


def test_a_blank_editor_is_not_saved_over_a_config(admin_user, team, make_queue):
    queue = make_queue(team, "q", text="a: 1\n")
    response = as_user(admin_user).post("/teams/ml/queues/q/config/save/", {"text": "  \n", "format": "yaml", "base_version": "1"})
    assert response.status_code == 400
    assert "The queue config is empty." in response.content.decode()
    assert queue.versions.count() == 1
    response = as_user(admin_user).post("/teams/ml/queues/q/config/save/", {"text": "{}", "format": "yaml", "base_version": "1"})
    assert response.status_code == 302 and Queue.objects.get(pk=queue.pk).current_version.text == "{}"


# --- a queue's settings ------------------------------------------------------------


def test_admins_set_a_queues_description_and_default_job(admin_user, member_user, team, make_queue):
    queue = make_queue(team, "q", text="a: 1\n")
    admin = as_user(admin_user)
    assert as_user(member_user).get("/teams/ml/queues/q/settings/").status_code == 403
    assert 'href="/teams/ml/queues/q/settings/"' not in as_user(member_user).get("/teams/ml/queues/q/runs/").content.decode()

    response = admin.post("/teams/ml/queues/q/settings/", {"description": "Nightly jobs", "default_command": " python train.py ", "default_source_dir": "./src"})
    assert response.status_code == 302
    queue.refresh_from_db()
    assert queue.description == "Nightly jobs" and queue.default_job == {"command": "python train.py", "source_dir": "./src"}
    form = as_user(member_user).get("/teams/ml/queues/q/launch/").content.decode()
    assert 'value="python train.py"' in form and 'value="./src"' in form


@pytest.mark.parametrize(
    "resource, data, field",
    [
        ("local-process", {"default_source_dir": "./src"}, "default_command"),
        ("local-container", {"default_image": "not an image!"}, "default_image"),
        ("local-container", {"default_image": "ghcr.io/a/b:1", "default_source_dir": "./src"}, "default_source_dir"),
        ("local-process", {"default_command": "run\x00"}, "default_command"),
    ],
)
def test_a_default_job_that_could_not_run_is_refused_beside_its_input(admin_user, team, make_queue, resource, data, field):
    queue = make_queue(team, "q", text="a: 1\n", resource=resource)
    response = as_user(admin_user).post("/teams/ml/queues/q/settings/", {"description": "changed", **data})
    assert response.status_code == 400
    assert f'id="id_{field}-error"' in response.content.decode()
    queue.refresh_from_db()
    assert queue.default_job == {} and queue.description == ""


def test_a_new_queue_can_name_its_default_job(admin_user, team):
    data = {"name": "fresh", "resource": "local-process", "format": "yaml", "config": "", "default_command": "python go.py"}
    assert as_user(admin_user).post("/teams/ml/queues/new/", data).status_code == 302
    assert Queue.objects.get(team=team, name="fresh").default_job == {"command": "python go.py"}
    bad = {**data, "name": "other", "default_image": "ghcr.io/a/b:1"}
    assert as_user(admin_user).post("/teams/ml/queues/new/", bad).status_code == 400
    assert not Queue.objects.filter(name="other").exists()


# --- creating a queue ------------------------------------------------------------


def test_admins_create_queues_members_cannot(admin_user, member_user, team):
    assert as_user(member_user).get("/teams/ml/queues/new/").status_code == 403
    response = as_user(admin_user).post("/teams/ml/queues/new/", {"name": "fresh", "resource": "kubernetes", "format": "yaml", "config": "a: 1\n"})
    assert response.status_code == 302
    queue = Queue.objects.get(team=team, name="fresh")
    assert queue.current_version.text == "a: 1\n" and queue.created_by == admin_user


def test_a_new_queue_with_fields_opens_as_a_draft_to_review(admin_user, team):
    client = as_user(admin_user)
    client.post("/teams/ml/queues/new/", {"name": "drafted", "resource": "local-process", "format": "yaml", "config": "n: '{{n}}'\n"})
    queue = Queue.objects.get(team=team, name="drafted")
    assert queue.current_version is None and not queue.versions.exists() and not queue.ready
    for _ in range(2):  # the draft is kept until saved: a reload or a second visit still shows it
        body = client.get("/teams/ml/queues/drafted/config/").content.decode()
        assert 'id="tile-n"' in body and "{{n}}" in body and "Not ready for launches yet." in body
        assert '<input type="hidden" name="base_version" value="">' in body
        assert "No version saved yet: Save config saves version 1." in body


def test_nobody_launches_on_a_new_queue_until_its_fields_are_saved(admin_user, member_user, team):
    admin = as_user(admin_user)
    admin.post("/teams/ml/queues/new/", {"name": "drafted", "resource": "local-process", "format": "yaml", "config": "n: '{{n}}'\n"})
    member = as_user(member_user)
    launch = {"project": "proj", "command": "python train.py"}
    response = member.post("/teams/ml/queues/drafted/launch/", launch)
    assert response.status_code == 400
    assert "an admin has not saved its template fields&#x27; guardrails yet" in response.content.decode()
    runs_tab = member.get("/teams/ml/queues/drafted/runs/").content.decode()
    assert "Not ready for launches yet." in runs_tab and "Launch the first one" not in runs_tab and "No agent is online" not in runs_tab
    preview = member.post("/teams/ml/queues/drafted/launch/preview/", launch, HTTP_HX_REQUEST="true").content.decode()
    assert "is not ready: an admin has not saved its template fields" in preview
    launch_page = member.get("/launch/").content.decode()
    assert "not ready" in launch_page and 'aria-label="Launch on drafted"' not in launch_page
    member_config = member.get("/teams/ml/queues/drafted/config/").content.decode()
    assert "still setting up this queue" in member_config and "{{n}}" not in member_config
    assert not Run.objects.exists()

    saved = admin.post(
        "/teams/ml/queues/drafted/config/save/",
        {"text": "n: '{{n}}'\n", "format": "yaml", "base_version": "", "tiles": "n", "f.n.type": "integer", "f.n.default": "2"},
    )
    assert saved.status_code == 302
    queue = Queue.objects.get(team=team, name="drafted")
    assert queue.draft_text == "" and queue.current_version.number == 1 and queue.ready
    assert "Not ready" not in admin.get("/teams/ml/queues/drafted/config/").content.decode()
    assert member.post("/teams/ml/queues/drafted/launch/", launch).status_code == 302
    assert Run.objects.get().values == {"n": 2}


@pytest.mark.parametrize(
    "data",
    [
        {"name": "", "resource": "kubernetes", "format": "yaml"},
        {"name": "has space", "resource": "kubernetes", "format": "yaml"},
        {"name": "new", "resource": "kubernetes", "format": "yaml"},
        {"name": "ok", "resource": "mainframe", "format": "yaml"},
        {"name": "ok", "resource": "kubernetes", "format": "yaml", "config": "a: [\n"},
    ],
)
def test_bad_new_queue_input_is_refused_with_a_message(admin_user, team, data):
    response = as_user(admin_user).post("/teams/ml/queues/new/", data)
    assert response.status_code == 400
    assert not Queue.objects.filter(team=team).exists()
    assert ConfigVersion.objects.count() == 0


def test_values_typed_in_the_allowed_values_box_count_even_without_pressing_add(url, admin_user, queue):
    data = form(SEED, tile_post("aws_instance", "string", ["ml.m4.xlarge"]), **{"f.aws_instance.new": "ml.p3.xlarge, ml.g5.xlarge"})
    assert as_user(admin_user).post(url["save"], data).status_code == 302
    queue.refresh_from_db()
    assert queue.current_version.fields[0]["allowed"] == ["ml.m4.xlarge", "ml.p3.xlarge", "ml.g5.xlarge"]


def test_control_characters_in_tiles_are_refused_not_stored(url, admin_user, queue):
    data = form(SEED, tile_post("aws_instance", "string", ["ml.m4.xlarge", "bad\x00value"], description="x\x00"))
    response = as_user(admin_user).post(url["save"], data)
    assert response.status_code == 400
    assert "control character (U+0000)" in response.content.decode()
    assert queue.versions.count() == 1


# --- patterns are RE2 ---------------------------------------------------------


def test_a_pattern_re2_cannot_run_is_refused_beside_the_pattern_input(url, admin_user, queue):
    text = SEED + "branch: '{{branch}}'\n"
    response = as_user(admin_user).post(url["save"], form(text, seed_tile(), tile_post("branch", pattern=r"(a)\1")))
    assert response.status_code == 400
    body = response.content.decode()
    pattern_box = body[body.index('id="f-branch-pattern"') :]
    assert pattern_box.index('data-code="pattern_invalid"') < pattern_box.index("</div>")
    assert queue.versions.count() == 1


def test_a_saved_pattern_re2_cannot_run_shows_its_problem_to_admins(url, admin_user, queue):
    from launchq.models import ConfigVersion

    old = {"name": "branch", "type": "string", "pattern": r"(?=x)x", "default": "x"}
    ConfigVersion.objects.filter(pk=queue.current_version.pk).update(
        text=SEED + "branch: '{{branch}}'\n", fields=[*queue.current_version.fields, old]
    )
    body = as_user(admin_user).get(url["config"]).content.decode()
    pattern_box = body[body.index('id="f-branch-pattern"') :]
    assert pattern_box.index('data-code="pattern_invalid"') < pattern_box.index("</div>")


def test_descriptions_and_token_names_refuse_bidi_controls(admin_user, team, make_queue):
    from launchq.models import ApiToken

    make_queue(team, "q", text="a: 1\n")
    admin = as_user(admin_user)
    response = admin.post("/teams/ml/queues/q/settings/", {"description": "safe\u202egnp.exe"})
    assert response.status_code == 400 and "U+202E" in response.content.decode()
    queue = Queue.objects.get(name="q")
    assert queue.description == ""
    new = admin.post("/teams/ml/queues/new/", {"name": "fresh", "resource": "kubernetes", "format": "yaml", "description": "a\u2066b"})
    assert new.status_code == 400 and not Queue.objects.filter(name="fresh").exists()
    token = admin.post("/account/tokens/new/", {"name": "laptop\u202e"})
    assert token.status_code == 400 and not ApiToken.objects.exists()


# --- numbers the Config tab's form carries ------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{"base_version": "²"}, {"base_version": "9" * 5000}, {"tile_action": "aws_instance:remove:²"}, {"tile_action": "aws_instance:remove:" + "9" * 5000}],
)
def test_crafted_numbers_in_parse_and_save_are_a_400_with_their_reason(url, admin_user, queue, extra):
    client = as_user(admin_user)
    data = {**form(SEED, seed_tile(), tile="aws_instance"), **extra}
    for target in ("parse", "save", "tile"):
        for headers in ({}, HX):
            response = client.post(url[target], data, **headers)
            assert response.status_code == 400, (target, response.status_code)
            assert 'id="bad-request"' in response.content.decode()
    assert queue.versions.count() == 1
    assert client.post(url["v1"] + "restore/", {"base_version": extra.get("base_version", "²")}).status_code == 400


def test_a_maximum_length_of_thousands_of_digits_is_refused_beside_its_input(url, admin_user, queue):
    text = SEED + "branch: '{{branch}}'\n"
    response = as_user(admin_user).post(url["save"], form(text, seed_tile(), tile_post("branch", max_length="9" * 4400)))
    assert response.status_code == 400
    body = response.content.decode()
    box = body[body.index('id="f-branch-max_length"') :]
    assert box.index('data-code="max_length_invalid"') < box.index("</div>")
    assert "9" * 41 not in body[body.index('data-code="max_length_invalid"') :]


@pytest.mark.parametrize("path", ["versions/99999999999999999999/", "versions/99999999999999999999/restore/", "versions/٣/"])
def test_a_version_number_out_of_range_is_not_found(url, admin_user, queue, path):
    client = as_user(admin_user)
    assert client.get(url["config"] + path).status_code == 404
    assert client.post(url["config"] + path, {"base_version": "1"}).status_code in (404, 405)


def test_a_token_or_agent_number_out_of_range_is_not_found(admin_user):
    client = as_user(admin_user)
    assert client.post("/account/tokens/99999999999999999999/revoke/").status_code == 404
    assert client.post("/teams/ml/agents/99999999999999999999/revoke/").status_code == 404


def test_a_form_posting_more_tiles_than_a_config_can_have_is_a_400(url, admin_user, queue):
    data = {**form(SEED, seed_tile()), "tiles": [f"t{i}" for i in range(250)]}
    for target in ("parse", "save"):
        response = as_user(admin_user).post(url[target], data)
        assert response.status_code == 400 and 'id="bad-request"' in response.content.decode()
    assert queue.versions.count() == 1


# --- Django's admin -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/launchq/run/?state__exact=%00",
        "/admin/launchq/run/?q=%00",
        "/admin/launchq/run/?queue__id__exact=99999999999999999999",
        "/admin/launchq/run/?queue__team__id__exact=%00",
        "/admin/launchq/queue/?team__id__exact=99999999999999999999",
        "/admin/launchq/membership/?role__exact=%00",
        "/admin/launchq/configversion/?queue__team__id__exact=99999999999999999999",
        "/admin/auth/user/?q=%00",
        "/admin/launchq/apitoken/?q=%00&user__id__exact=1",
    ],
)
def test_admin_lists_answer_a_filter_no_database_can_hold_with_a_400(django_user_model, queue, path):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    response = as_user(boss).get(path)
    assert response.status_code in (200, 302, 400), response.status_code
    assert as_user(boss).get("/admin/launchq/run/").status_code == 200  # and the next request is fine


@pytest.mark.parametrize(
    "path",
    ["/api/teams/ml/runs/%00", "/api/teams/ml/queues/a%00b/runs", "/teams/ml/queues/q%00/", "/teams/ml/runs/%00/", "/launch/?x=%00", "/api/queues?state=%00"],
)
def test_a_nul_in_the_address_is_a_400_before_any_view_runs(admin_user, queue, path):
    response = as_user(admin_user).get(path)
    assert response.status_code == 400
    if path.startswith("/api/"):
        assert response.json()["errors"][0]["code"] == "bad_request"
    else:
        assert 'id="bad-request"' in response.content.decode()
