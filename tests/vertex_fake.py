"""A small Vertex AI JobService on 127.0.0.1 for the vertex runner's tests (no emulator exists).

It serves the REST paths the `aiplatform_v1` client uses for CustomJobs
(create, get, list with a label filter, cancel), parses each request body with
the real `aiplatform_v1` types (an unknown field is a 400, as on Google's
servers), checks what Vertex AI requires of a CustomJob, and answers in the
same types' JSON with Google's error shape. The test moves a job's state.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from google.cloud.aiplatform_v1.types import CustomJob, JobState, ListCustomJobsResponse
from google.protobuf import timestamp_pb2
from google.protobuf.json_format import ParseError
from google.rpc import status_pb2

JOBS = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/customJobs$")
JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/customJobs/[^/:]+)(:cancel)?$")
LABEL_FILTER = re.compile(r'^labels\.([a-z0-9_-]+)\s*=\s*"([^"]*)"$')


class VertexFake:
    def __init__(self):
        self.jobs: dict[str, CustomJob] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def set_state(self, name: str, state: str, *, code: int = 0, message: str = "") -> None:
        """What Vertex AI does as the job goes on."""
        with self.lock:
            job = self.jobs[name]
            job.state = JobState[state]
            if message:
                job.error = status_pb2.Status(code=code, message=message)

    # --- the API ---------------------------------------------------------------------

    def create(self, parent: str, body: bytes):
        try:
            job = CustomJob.from_json(body or b"{}", ignore_unknown_fields=False)
        except (ParseError, ValueError) as error:
            return 400, _error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {error}")
        problem = _check(job)
        if problem:
            return 400, _error(400, "INVALID_ARGUMENT", problem)
        job.name = f"{parent}/customJobs/{uuid.uuid4().int % 10**19}"
        job.state = JobState.JOB_STATE_PENDING
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        job.create_time = now
        with self.lock:
            self.jobs[job.name] = job
        return 200, CustomJob.to_json(job)

    def get(self, name: str):
        with self.lock:
            job = self.jobs.get(name)
        if job is None:
            return 404, _error(404, "NOT_FOUND", f'The CustomJob "{name}" does not exist.')
        return 200, CustomJob.to_json(job)

    def list(self, parent: str, query: dict):
        wanted = None
        text = (query.get("filter") or [""])[0].strip()
        if text:
            match = LABEL_FILTER.match(text)
            if not match:
                return 400, _error(400, "INVALID_ARGUMENT", f"Unsupported filter: {text}")
            wanted = match.groups()
        with self.lock:
            jobs = [j for n, j in self.jobs.items() if n.startswith(parent + "/")
                    and (wanted is None or j.labels.get(wanted[0]) == wanted[1])]
        return 200, ListCustomJobsResponse.to_json(ListCustomJobsResponse(custom_jobs=jobs))

    def cancel(self, name: str):
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return 404, _error(404, "NOT_FOUND", f'The CustomJob "{name}" does not exist.')
            if job.state in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED):
                return 400, _error(400, "FAILED_PRECONDITION", f"Cannot cancel CustomJob {name} in state {job.state.name}.")
            job.state = JobState.JOB_STATE_CANCELLING
        return 200, "{}"


def _check(job: CustomJob) -> str:
    """What Vertex AI refuses in a CustomJob before it runs anything."""
    if not job.display_name:
        return "display_name must be set."
    if not job.job_spec.worker_pool_specs:
        return "job_spec.worker_pool_specs must be set."
    for index, pool in enumerate(job.job_spec.worker_pool_specs):
        if not pool.machine_spec.machine_type:
            return f"job_spec.worker_pool_specs[{index}].machine_spec.machine_type must be set."
        if not pool.container_spec.image_uri and "python_package_spec" not in pool:
            return f"job_spec.worker_pool_specs[{index}].container_spec.image_uri must be set."
        if index == 0 and pool.replica_count != 1:
            return "job_spec.worker_pool_specs[0].replica_count must be 1 (the chief)."
    return ""


def _error(code: int, status: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message, "status": status}})


def _handler(fake: VertexFake):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, result):
            status, text = result
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            fake.requests.append(("GET", url.path))
            if match := JOBS.match(url.path):
                return self._answer(fake.list(match.group(1), parse_qs(url.query)))
            if (match := JOB.match(url.path)) and not match.group(2):
                return self._answer(fake.get(match.group(1)))
            return self._answer((404, _error(404, "NOT_FOUND", f"No such path {url.path}")))

        def do_POST(self):
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake.requests.append(("POST", url.path))
            if match := JOBS.match(url.path):
                return self._answer(fake.create(match.group(1), body))
            if (match := JOB.match(url.path)) and match.group(2):
                return self._answer(fake.cancel(match.group(1)))
            return self._answer((404, _error(404, "NOT_FOUND", f"No such path {url.path}")))

    return Handler
