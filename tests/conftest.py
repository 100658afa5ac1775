"""Fixtures shared by every test: small factories over the real database, and a browser."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# pytest-django's live_server runs beside Playwright's event loop; Django must not refuse that.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session", autouse=True)
def _no_stray_database_sessions(django_db_setup, django_db_blocker):
    """On PostgreSQL, end sessions the live server's threads left open, so the test database can be dropped.

    (A known pytest-django limitation with live_server: pytest-django issue #429.)
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Password hashing made cheap for tests; login still checks the password for real."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(django_user_model):
    def make(username: str = "alice", **kw):
        return django_user_model.objects.create_user(username=username, password=PASSWORD, **kw)

    return make


@pytest.fixture
def make_team(db):
    from launchq.models import Team

    def make(slug: str = "ml", name: str | None = None):
        return Team.objects.create(slug=slug, name=name or slug.upper())

    return make


@pytest.fixture
def join(db):
    from launchq.models import Membership

    def add(user, team, role: str = "member"):
        return Membership.objects.create(user=user, team=team, role=role)

    return add


@pytest.fixture
def make_project(db):
    from launchq.models import Project

    def make(team, name: str = "proj"):
        return Project.objects.create(team=team, name=name)

    return make


@pytest.fixture
def make_queue(db):
    from launchq.configs import create_queue

    def make(team, name: str = "q", text: str = "", fmt: str = "yaml", fields=(), resource: str = "local-process", user=None):
        return create_queue(team, user, name, resource, text, fmt, {f.name: f for f in fields})

    return make


@pytest.fixture
def team(make_team, make_project):
    team = make_team("ml")
    make_project(team, "proj")
    return team


@pytest.fixture
def admin_user(make_user, team, join):
    user = make_user("ada")
    join(user, team, "admin")
    return user


@pytest.fixture
def member_user(make_user, team, join):
    user = make_user("max")
    join(user, team, "member")
    return user


@pytest.fixture
def outsider(make_user, make_team, join):
    user = make_user("oscar")
    join(user, make_team("other"), "admin")
    return user


@pytest.fixture
def wandb_environment(live_server, tmp_path):
    """The environment of a real `wandb` client process, kept to itself.

    `wandb_environment(api_key, name)` gives the process its own home, config,
    cache, data and temp directories under the test's tmp_path, and only the
    live server on 127.0.0.1 to talk to (the machine has no internet: nothing
    waits on it).
    """

    def make(api_key: str, name: str = "home") -> dict[str, str]:
        home = tmp_path / name
        dirs = {key: home / key for key in ("wandb", "config", "cache", "data", "tmp")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(dirs["tmp"]),  # the client writes debug-cli.<user>.log here
            "LANG": "C.UTF-8",
            "WANDB_BASE_URL": f"http://127.0.0.1:{live_server.thread.port}",
            "WANDB_API_KEY": api_key,
            "WANDB_DIR": str(dirs["wandb"]),
            "WANDB_CONFIG_DIR": str(dirs["config"]),
            "WANDB_CACHE_DIR": str(dirs["cache"]),
            "WANDB_DATA_DIR": str(dirs["data"]),
            "WANDB_SILENT": "true",
            "WANDB_ERROR_REPORTING": "false",
            "WANDB_DISABLE_GIT": "true",
            "WANDB_DISABLE_CODE": "true",
            "WANDB_X_DISABLE_UPDATE_CHECK": "true",
            "WANDB_X_DISABLE_STATS": "true",
            "WANDB_X_DISABLE_MACHINE_INFO": "true",
            "WANDB_HTTP_TIMEOUT": "30",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONNOUSERSITE": "1",
            "PYTHONUNBUFFERED": "1",
        }

    return make


@pytest.fixture
def browser():
    """Real Chromium, driven by Playwright; skipped nowhere: a missing browser is a failure."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "The browser tests need Debian's chromium at /usr/bin/chromium (make test installs it)."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    """A real Kubernetes API server with etcd and the Job controller, once per test session (see tests/servers.py)."""
    from tests.servers import kubernetes_cluster

    with kubernetes_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def log_in(page, live_server, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/launch/")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """Say which engine tests did not run because their engine is not prepared, and the one command that prepares it.

    (A wrapper, so it comes after pytest's own short summary and stays in sight.)
    """
    from tests.servers import NOT_PREPARED

    yield
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if NOT_PREPARED in reason:
            engine = reason.split(f"{NOT_PREPARED}: ", 1)[1].split(" ", 1)[0]
            missing[engine] = missing.get(engine, 0) + 1
    if missing:
        terminalreporter.section("engines not prepared", yellow=True)
        for engine, count in sorted(missing.items()):
            terminalreporter.line(f"{count} {engine} test(s) did not run: their engine is not prepared here.")
        terminalreporter.line("Prepare them all with: .ci/engines   (as root; builds into a cache outside the work tree, once)")
