"""The CLI as a person runs it: a separate process that knows only a URL and a token.

Each test copies launchq/cli.py (with the package's empty __init__.py) into a
fresh directory and runs `python -m launchq.cli` there, so the CLI provably
needs none of the server's code, against a live test server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from launchq.guardrails import Field, FieldType
from launchq.models import ApiToken, Queue, Run, RunState
from tests.proxy import LosingProxy

PACKAGE = Path(__file__).resolve().parent.parent / "launchq"

CONFIG = """\
resource_args:
  instance: "{{aws_instance}}"
  gpus: {{gpus}}
  extra_args: "{{extra}}"
"""
FIELDS = (
    Field("aws_instance", FieldType.STRING, "The instance type.", allowed=("ml.m4.xlarge", "ml.p3.xlarge")),
    Field("gpus", FieldType.INTEGER, "GPUs per node.", default=1, minimum=1, maximum=4),
    Field("extra", FieldType.STRING, "Extra arguments.", default="none"),
)


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def queue(transactional_db, make_queue, team, admin_user):
    return make_queue(team, "train", CONFIG, "yaml", FIELDS, user=admin_user)


@pytest.fixture
def cli_home(tmp_path) -> Path:
    """A directory holding only the CLI: no Django, no models, no settings."""
    (tmp_path / "launchq").mkdir()
    for name in ("__init__.py", "cli.py"):
        shutil.copy(PACKAGE / name, tmp_path / "launchq" / name)
    return tmp_path


@pytest.fixture
def cli(live_server, cli_home, member_user, queue):
    _, token = ApiToken.issue(member_user, "cli tests")

    def run(*args: str, token: str = token, url: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTHON", "LAUNCHQ"))}
        env.update(LAUNCHQ_URL=url or live_server.url, LAUNCHQ_TOKEN=token)
        return subprocess.run(
            [sys.executable, "-E", "-s", "-m", "launchq.cli", *args],
            cwd=cli_home, env=env, capture_output=True, text=True, timeout=60,
        )

    return run


def test_launch_enqueues_a_run_and_says_so(cli, member_user):
    result = cli("launch", "ml/train", "--project", "proj", "--name", "from the cli",
                 "--set-var", "aws_instance=ml.p3.xlarge", "--set-var", "gpus=3", "--command", "python train.py --lr 0.1",
                 "--priority", "high")

    assert result.returncode == 0, result.stderr
    run = Run.objects.get()
    assert run.name == "from the cli"
    assert run.values == {"aws_instance": "ml.p3.xlarge", "gpus": 3, "extra": "none"}
    assert run.job == {"command": "python train.py --lr 0.1"}
    assert run.launched_by == member_user
    assert run.priority == 1
    assert run.state == RunState.PENDING
    assert f"(run {run.run_id})" in result.stdout and "pending" in result.stdout


def test_a_value_may_contain_equals_signs(cli):
    result = cli("launch", "ml/train", "-s", "aws_instance=ml.m4.xlarge", "-s", "extra=--opt=a=b", "-c", "true")

    assert result.returncode == 0, result.stderr
    assert Run.objects.get().values["extra"] == "--opt=a=b"


def test_a_refused_launch_prints_one_line_per_field_and_enqueues_nothing(cli):
    result = cli("launch", "ml/train", "--set-var", "aws_instance=ml.huge", "--set-var", "gpus=٣", "--set-var", "color=red",
                 "--command", "python train.py")

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "nothing was enqueued" in lines[0]
    fields = sorted(line.split(":")[0] for line in lines[1:])
    assert fields == ["aws_instance", "color", "gpus"]
    assert any(line.startswith("aws_instance: ") and "ml.m4.xlarge, ml.p3.xlarge" in line for line in lines)
    assert not Run.objects.exists()
    assert result.stdout == ""


def test_out_of_range_and_missing_job_are_refused(cli):
    result = cli("launch", "ml/train", "--project", "nope", "-s", "aws_instance=ml.m4.xlarge", "-s", "gpus=9")

    assert result.returncode == 1
    fields = sorted(line.split(":")[0] for line in result.stderr.splitlines()[1:])
    assert fields == ["command", "gpus", "project"]
    assert not Run.objects.exists()


def test_a_set_var_without_equals_is_a_usage_error(cli):
    result = cli("launch", "ml/train", "--set-var", "gpus", "-c", "true")

    assert result.returncode == 2
    assert "name=value" in result.stderr
    assert not Run.objects.exists()


def test_queues_lists_what_i_can_launch_onto(cli, team, admin_user):
    from launchq.configs import create_queue_with_draft

    create_queue_with_draft(team, admin_user, "drafted", "local-process", "n: '{{n}}'\n", "yaml")
    result = cli("queues")

    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("ml/")}
    assert "aws_instance, gpus, extra" in lines["ml/train"] and " v1 " in lines["ml/train"]
    assert "not ready" in lines["ml/drafted"]
    assert "not ready for launches" in cli("fields", "ml/drafted").stdout


def test_fields_shows_guardrails_readably(cli):
    result = cli("fields", "ml/train")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "projects: proj" in out
    assert "one of: ml.m4.xlarge, ml.p3.xlarge" in out
    assert "from 1 to 4" in out
    assert "GPUs per node." in out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert "required" in lines["aws_instance"] and "String" in lines["aws_instance"]
    assert "default 1" in lines["gpus"] and "Integer" in lines["gpus"]


def test_runs_and_run_show_what_was_launched(cli):
    launched = cli("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-c", "python train.py", "--priority", "high", "--json")
    run_id = json.loads(launched.stdout)["run_id"]

    runs = cli("runs", "ml/train")
    shown = cli("run", "ml", run_id)

    assert runs.returncode == 0 and shown.returncode == 0
    assert run_id in runs.stdout and "pending" in runs.stdout and "aws_instance=ml.p3.xlarge" in runs.stdout
    header, row = runs.stdout.splitlines()[:2]
    assert "PRIORITY" in header and row.split()[3] == "high"
    assert "state:" in shown.stdout and "pending" in shown.stdout
    assert 'instance: "ml.p3.xlarge"' in shown.stdout  # the rendered config
    assert "Launched by max via api." in shown.stdout


def test_runs_pages_through_a_long_list(cli, queue, member_user):
    from launchq.runs import launch_run

    for _ in range(3):
        launch_run(queue, member_user, {"aws_instance": "ml.m4.xlarge"}, project="proj", job={"command": "true"})

    page = json.loads(cli("runs", "ml/train", "--limit", "2", "--json").stdout)
    text = cli("runs", "ml/train", "--limit", "2").stdout

    assert page["count"] == 3 and len(page["items"]) == 2 and page["next"]
    assert "next page: --offset 2" in text


def test_cancel_cancels_my_pending_run(cli):
    run_id = json.loads(cli("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-c", "true", "--json").stdout)["run_id"]

    result = cli("cancel", "ml", run_id)
    again = cli("cancel", "ml", run_id)

    assert result.returncode == 0, result.stderr
    assert Run.objects.get().state == RunState.CANCELLED
    assert again.returncode == 1 and "already ended" in again.stderr


def test_unknown_queue_and_run_are_named(cli):
    queue = cli("fields", "ml/nope")
    run = cli("run", "ml", "zzzzzzzz")

    assert queue.returncode == 1 and "no queue ml/nope" in queue.stderr
    assert run.returncode == 1 and "no run zzzzzzzz" in run.stderr


def test_a_bad_token_is_refused_clearly(cli):
    result = cli("queues", token="lq_wrong")

    assert result.returncode == 1
    assert "401" in result.stderr and "token" in result.stderr
    assert result.stdout == ""


def test_a_revoked_token_is_refused(cli, member_user):
    token, plaintext = ApiToken.issue(member_user, "soon revoked")
    assert cli("queues", token=plaintext).returncode == 0
    from django.utils import timezone

    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())

    assert cli("queues", token=plaintext).returncode == 1


def test_no_token_is_a_usage_error(cli):
    result = cli("queues", token="")

    assert result.returncode == 2
    assert "LAUNCHQ_TOKEN" in result.stderr


def test_an_unreachable_server_is_named(cli):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = cli("queues", url=f"http://127.0.0.1:{port}")

    assert result.returncode == 3
    assert f"cannot reach launchq at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_url_that_is_not_launchq_is_named(cli, live_server):
    result = cli("queues", url=f"{live_server.url}/accounts/login")

    assert result.returncode == 3
    assert "Is the URL right?" in result.stderr


def test_json_output_is_the_servers_json(cli):
    result = cli("fields", "ml/train", "--json")

    assert result.returncode == 0
    assert json.loads(result.stdout)["template_variables"]["gpus"] == {
        "type": "integer", "minimum": 1, "maximum": 4, "default": 1, "description": "GPUs per node."
    }


def test_the_cli_imports_without_django(cli_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTHON"))}
    code = "import sys, launchq.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'ninja', 'pydantic', 'yaml')))"

    result = subprocess.run([sys.executable, "-E", "-s", "-c", code], cwd=cli_home, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_runs_from_the_source_tree_too(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "LAUNCHQ"))}
    env["PYTHONPATH"] = str(PACKAGE.parent)

    result = subprocess.run([sys.executable, "-m", "launchq.cli", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0
    for command in ("queues", "fields", "launch", "runs", "run", "cancel"):
        assert command in result.stdout


def test_the_cli_downloaded_from_the_server_runs_on_its_own(live_server, tmp_path, member_user, queue):
    import urllib.request

    with urllib.request.urlopen(live_server.url + "/cli/launchq-cli.py") as answer:
        assert "attachment" in answer.headers["Content-Disposition"]
        (tmp_path / "launchq-cli.py").write_bytes(answer.read())
    _, token = ApiToken.issue(member_user, "downloaded cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PYTHON", "LAUNCHQ"))}
    env.update(LAUNCHQ_URL=live_server.url, LAUNCHQ_TOKEN=token)

    result = subprocess.run([sys.executable, "-E", "-s", "launchq-cli.py", "fields", "ml/train"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "aws_instance" in result.stdout and "ml.p3.xlarge" in result.stdout

    usage = subprocess.run([sys.executable, "-E", "-s", "launchq-cli.py", "--help"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert "usage: python3 launchq-cli.py" in usage.stdout


def test_the_run_pages_terminal_command_launches_the_same_run(cli, client, member_user):
    import html
    import re
    import shlex

    from launchq.runs import launch_run

    first = launch_run(
        Queue.objects.get(name="train"), member_user, {"aws_instance": "ml.p3.xlarge", "gpus": "3", "extra": "--lr 0.1 'quoted'"},
        project="proj", job={"command": "python train.py --epochs 3"}, priority="high",
    )
    client.force_login(member_user)
    page = client.get(f"/teams/ml/runs/{first.run_id}/").content.decode()
    shown = html.unescape(re.search(r'id="from-a-terminal".*?<pre class="code wrap">(.*?)</pre>', page, re.S).group(1))
    words = shlex.split(shown)
    assert words[:2] == ["python3", "launchq-cli.py"]

    result = cli(*words[2:])

    assert result.returncode == 0, result.stderr
    again = Run.objects.exclude(pk=first.pk).get()
    assert (again.values, again.job, again.priority, again.project) == (first.values, first.job, first.priority, first.project)


def test_fields_names_the_default_job_and_launch_uses_it(cli, queue):
    Queue.objects.filter(pk=queue.pk).update(default_job={"command": "python train.py --nightly"})

    shown = cli("fields", "ml/train")
    launched = cli("launch", "ml/train", "-s", "aws_instance=ml.m4.xlarge", "--json")

    assert "default job (used when you give none): command python train.py --nightly" in shown.stdout
    assert launched.returncode == 0, launched.stderr
    assert Run.objects.get().job == {"command": "python train.py --nightly"}


# --- launches whose answer is lost, and what the server sends to a terminal ----


def test_a_launch_whose_answer_was_lost_is_sent_again_and_makes_one_run(cli, live_server):
    """The server commits the launch, then the connection drops before the answer reaches the CLI."""
    with LosingProxy(live_server.thread.port, marker=b"template_variables") as proxy:
        result = cli("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-c", "python train.py", url=proxy.url)

    assert result.returncode == 0, result.stderr
    run = Run.objects.get()
    assert f"Launched {run.name} (run {run.run_id})" in result.stdout
    launches = [f for f in proxy.forwarded if b"template_variables" in f.body]
    assert [f.dropped for f in launches] == [True, False]
    keys = {f.header("Idempotency-Key") for f in launches}
    assert len(keys) == 1 and None not in keys
    assert "trying again with the same idempotency key" in result.stderr


def test_each_invocation_is_a_new_launch(cli):
    for _ in range(2):
        assert cli("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-c", "true").returncode == 0
    assert Run.objects.count() == 2


def test_a_given_idempotency_key_launches_once(cli):
    args = ("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-c", "true", "--idempotency-key", "nightly-2026-12-01")

    first = cli(*args)
    again = cli(*args)
    other = cli(*args, "-s", "gpus=2")

    run = Run.objects.get()
    assert first.returncode == again.returncode == 0
    assert "Already launched" in again.stdout and run.run_id in again.stdout
    assert other.returncode == 1
    assert "nothing was enqueued" in other.stderr and other.stderr.splitlines()[1].startswith("idempotency_key: ")


def test_a_launch_gives_up_after_its_tries_and_says_so(cli):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = cli("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-c", "true", url=f"http://127.0.0.1:{port}")

    assert result.returncode == 3
    assert result.stderr.count("trying again with the same idempotency key") == 3
    assert "(tried 4 times)" in result.stderr and "Traceback" not in result.stderr


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m \x9b6n \u202eevil\r"


def test_text_from_the_server_cannot_drive_the_terminal(cli, queue, member_user):
    """A job's output, a failure reason, a warning or a history message with escape sequences is shown, not obeyed."""
    from launchq.models import RunEvent
    from launchq.runs import launch_run

    run = launch_run(queue, member_user, {"aws_instance": "ml.p3.xlarge"}, project="proj", job={"command": "true"})
    Run.objects.filter(pk=run.pk).update(
        output=f"epoch 1\tloss 0.5\n{HOSTILE}\nepoch 2\r\n", failure_reason=f"died {HOSTILE}", warnings=[f"macro {HOSTILE}"],
        values={"aws_instance": HOSTILE},
    )
    RunEvent.objects.create(run=run, state="pending", message=f"note {HOSTILE}")

    shown, listed, as_json = cli("run", "ml", run.run_id), cli("runs", "ml/train"), cli("run", "ml", run.run_id, "--json")

    for result in (shown, listed, as_json):
        assert result.returncode == 0, result.stderr
        assert not set(result.stdout) & {"\x1b", "\x07", "\x9b", "\u202e", "\r"}, result.stdout
    assert "  epoch 1\tloss 0.5\n" in shown.stdout  # tabs and newlines of the output stay
    assert r"\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m \x9b6n \u202eevil" in shown.stdout
    for text in ("FAILED: died \\x1b", "warning: macro \\x1b", "note \\x1b", "aws_instance=\\x1b"):
        assert text in shown.stdout
    assert "aws_instance=\\x1b]0;owned" in listed.stdout
    assert json.loads(as_json.stdout)["output"] == f"epoch 1\tloss 0.5\n{HOSTILE}\nepoch 2\r\n"  # the JSON is still the server's


def test_refusals_from_the_server_cannot_drive_the_terminal(cli):
    result = cli("launch", "ml/train", "-s", "aws_instance=ml.p3.xlarge", "-s", "\x1b[2Jcolor=red", "-c", "true")

    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\\x1b[2Jcolor" in result.stderr
