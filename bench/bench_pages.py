"""The Config tab's requests through the whole Django stack, against a bare Django view on the same stack.

Runs in one process with Django's test client on a throwaway SQLite database (var/bench/), so the ratio
shows what launchq's own work costs per request: access checks, queries, parsing, templates.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LAUNCHQ_VAR_DIR"] = str(ROOT / "var" / "bench")
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "launchq.settings")

import django  # noqa: E402
from django.http import HttpResponse  # noqa: E402


def bare(request):
    return HttpResponse("ok")


urlpatterns: list = []  # filled once Django is set up


def timed(call, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = call()
        samples.append(time.perf_counter() - started)
        assert response.status_code < 400, response.status_code
    return statistics.median(samples)


def main() -> None:
    from django.conf import settings

    settings.ROOT_URLCONF = __name__
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["*"]
    django.setup()
    from django.urls import path

    import launchq.urls

    urlpatterns.extend([path("bench-bare/", bare), *launchq.urls.urlpatterns])
    from django.core.management import call_command
    from django.test import Client

    from launchq.models import Queue

    call_command("migrate", verbosity=0)
    os.environ["LAUNCHQ_DEMO_PASSWORD"] = "bench-password"
    call_command("demo", stdout=open(os.devnull, "w"))
    queue = Queue.objects.get(team__slug="demo", name="sagemaker-queue")
    client = Client()
    client.login(username="admin", password="bench-password")
    config_url = f"/teams/demo/queues/{queue.name}/config/"
    text = queue.current_version.text
    parse_data = {"text": text, "format": "yaml", "base_version": str(queue.current_version.number), "tiles": "aws_instance",
                  "f.aws_instance.type": "string", "f.aws_instance.allowed": ["ml.m4.xlarge", "ml.p3.xlarge"]}

    rounds = 200
    baseline = timed(lambda: client.get("/bench-bare/"), rounds)
    cases = {
        "GET Launch page": lambda: client.get("/launch/"),
        "GET Config tab": lambda: client.get(config_url),
        "POST Parse configuration (htmx)": lambda: client.post(config_url + "parse/", parse_data, HTTP_HX_REQUEST="true"),
    }
    print(f"{'bare Django view (baseline)':<34} {baseline * 1e3:7.2f} ms")
    for label, call in cases.items():
        figure = timed(call, rounds)
        print(f"{label:<34} {figure * 1e3:7.2f} ms  ({figure / baseline:5.1f}x the bare view)")


if __name__ == "__main__":
    main()
