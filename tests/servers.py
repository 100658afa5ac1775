"""Real engines on 127.0.0.1 for the runner tests, started and stopped by the tests.

`.ci/engines` installs and builds them into a cache outside the work tree. A
test whose engine is not prepared is skipped with the one command that
prepares it, and the run's summary lists them (see `pytest_terminal_summary`
in conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

NOT_PREPARED = "engine not prepared"


def engines_cache() -> Path:
    """Where `.ci/engines` puts what it builds (the same rule as in that script)."""
    if os.environ.get("LAUNCHQ_ENGINES"):
        return Path(os.environ["LAUNCHQ_ENGINES"])
    if os.geteuid() == 0:
        return Path("/var/cache/launchq-engines")
    return Path.home() / ".cache" / "launchq-engines"


def skip_unprepared(engine: str, missing: str) -> None:
    pytest.skip(f"{NOT_PREPARED}: {engine} ({missing}); prepare it with: .ci/engines {engine}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, *, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `check()` until it returns something true; fail with the server's log when it never does."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up (last error: {last}).\n{tail}")


class Server:
    """A background process with its own log file, stopped (TERM, then KILL) at the end."""

    def __init__(self, argv: list[str], log: Path, **kw):
        self.log = log
        self._log_file = open(log, "wb")
        self.process = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, **kw)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)
        self._log_file.close()


# --- Kubernetes: etcd + kube-apiserver + kube-controller-manager (job and garbage collector) ---------------


@dataclass
class Cluster:
    host: str
    kubeconfig: Path
    token: str
    ca: Path
    dir: Path

    def api(self, path: str, *, method: str = "GET", body: dict | None = None, content_type: str = "application/json"):
        """A raw call to the API server as the admin: for the test to play the scheduler and the kubelet."""
        request = urllib.request.Request(
            self.host + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type, "Accept": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            raw = response.read()
        return json.loads(raw or b"{}") if response.headers.get_content_type() == "application/json" else raw.decode()


@contextmanager
def kubernetes_cluster(workdir: Path):
    cache = engines_cache()
    apiserver, controller = cache / "bin" / "kube-apiserver", cache / "bin" / "kube-controller-manager"
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    for path in (apiserver, controller, Path(etcd)):
        if not os.access(path, os.X_OK):
            skip_unprepared("kubernetes", f"{path} is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    try:
        client_port, peer_port = free_port(), free_port()
        servers.append(Server([
            etcd, "--name", "launchq-test", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client_port}", "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"launchq-test=http://127.0.0.1:{peer_port}", "--log-level", "warn",
        ], workdir / "etcd.log"))
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{client_port}/health", timeout=2).status == 200,
                 timeout=60, what="etcd", process=servers[-1].process, log=servers[-1].log)

        token = "launchq-test-admin-token"
        (workdir / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
        subprocess.run(["openssl", "genrsa", "-out", str(workdir / "sa.key"), "2048"], check=True, capture_output=True)
        port = free_port()
        certs = workdir / "certs"
        servers.append(Server([
            str(apiserver), "--etcd-servers", f"http://127.0.0.1:{client_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(port), "--insecure-port", "0",
            "--cert-dir", str(certs), "--token-auth-file", str(workdir / "tokens.csv"), "--authorization-mode", "RBAC",
            "--service-account-key-file", str(workdir / "sa.key"), "--service-account-signing-key-file", str(workdir / "sa.key"),
            "--service-account-issuer", "https://kubernetes.default.svc", "--disable-admission-plugins", "ServiceAccount",
            "--service-cluster-ip-range", "10.250.0.0/24", "--enable-priority-and-fairness=false",
            "--kubelet-preferred-address-types", "InternalIP", "--endpoint-reconciler-type", "none", "--v", "1",
        ], workdir / "kube-apiserver.log"))
        host = f"https://127.0.0.1:{port}"
        ca = certs / "apiserver.crt"
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "launchq-test",
            "clusters": [{"name": "launchq-test", "cluster": {"server": host, "certificate-authority": str(ca)}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "launchq-test", "context": {"cluster": "launchq-test", "user": "admin"}}],
        }))
        cluster = Cluster(host, kubeconfig, token, ca, workdir)
        wait_for(lambda: ca.exists() and cluster.api("/readyz") == "ok", timeout=120, what="kube-apiserver",
                 process=servers[-1].process, log=servers[-1].log)
        servers.append(Server([
            str(controller), "--kubeconfig", str(kubeconfig), "--controllers", "job,garbagecollector",
            "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0", "--port", "0",
            "--use-service-account-credentials=false", "--v", "1",
        ], workdir / "kube-controller-manager.log"))
        yield cluster
    finally:
        for server in reversed(servers):
            server.stop()


# --- SageMaker: moto in server mode ------------------------------------------------------------------------


@contextmanager
def moto_server(workdir: Path):
    """moto's server on 127.0.0.1, and the environment that points boto3 at it (fake keys, one region)."""
    import importlib.util
    import sys

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        skip_unprepared("sagemaker", "moto[server] is not installed: it is in requirements-test.txt")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = Server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: urllib.request.urlopen(f"{url}/moto-api/", timeout=2).status == 200, timeout=60, what="moto server",
                 process=server.process, log=server.log)
        yield {
            "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONFIG_FILE": str(workdir / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "none"),
        }
    finally:
        server.stop()


# --- Containers: Debian's dockerd (no systemd, no bridge, no iptables) and docker-registry -------------------

BUSYBOX = "launchq-test/busybox:1"
DEBIAN = "launchq-test/debian-python:bookworm"


@dataclass
class Docker:
    host: str
    env: dict
    docker: str

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def import_image(self, tarball: Path, tag: str, *changes: str) -> str:
        argv = ["import"]
        for change in changes:
            argv += ["--change", change]
        self.cli(*argv, str(tarball), tag, timeout=600)
        return tag


@contextmanager
def docker_engine(workdir: Path):
    """A dockerd of the test's own, on a socket in `workdir`, with the FROM-scratch busybox image loaded."""
    import tempfile

    images = engines_cache() / "images"
    dockerd, docker = shutil.which("dockerd"), shutil.which("docker")
    if not dockerd or not docker or not (images / "busybox.tar").exists():
        skip_unprepared("containers", "dockerd or the busybox image is missing")
    if os.geteuid() != 0:
        skip_unprepared("containers", "dockerd needs root")
    workdir.mkdir(parents=True, exist_ok=True)
    exec_root = Path(tempfile.mkdtemp(prefix="lq-dx-", dir="/tmp"))  # containerd's socket path must stay short
    socket_path = exec_root / "docker.sock"
    server = Server([
        dockerd, "--host", f"unix://{socket_path}", "--data-root", str(workdir / "root"), "--exec-root", str(exec_root / "x"),
        "--pidfile", str(exec_root / "docker.pid"), "--bridge=none", "--iptables=false", "--ip6tables=false",
    ], workdir / "dockerd.log")
    try:
        env = dict(os.environ, DOCKER_HOST=f"unix://{socket_path}")
        env.pop("DOCKER_CONTEXT", None)
        engine = Docker(f"unix://{socket_path}", env, docker)
        wait_for(lambda: engine.cli("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0,
                 timeout=90, what="dockerd", process=server.process, log=server.log)
        engine.import_image(images / "busybox.tar", BUSYBOX, "ENV PATH=/bin", 'CMD ["sh"]')
        yield engine
    finally:
        server.stop()
        shutil.rmtree(exec_root, ignore_errors=True)


def debian_image(engine: Docker) -> str:
    tarball = engines_cache() / "images" / "debian-python.tar.gz"
    if not tarball.exists():
        skip_unprepared("containers", f"{tarball} is missing")
    return engine.import_image(tarball, DEBIAN, "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["bash"]')


@contextmanager
def docker_registry(workdir: Path):
    """Debian's docker-registry (distribution) on 127.0.0.1; dockerd pushes to a 127.0.0.0/8 registry over plain HTTP."""
    registry = shutil.which("docker-registry")
    if not registry:
        skip_unprepared("containers", "docker-registry is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: " + str(workdir / "data")
        + f"\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    server = Server([registry, "serve", str(workdir / "config.yml")], workdir / "registry.log")
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).status == 200, timeout=60,
                 what="docker-registry", process=server.process, log=server.log)
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
