"""The test plays the scheduler and the kubelet of a real API server: bind a Pod, move its status."""

from __future__ import annotations

import time

from tests.servers import Cluster

MERGE = "application/merge-patch+json"


def pods_of(cluster: Cluster, namespace: str, job: str) -> list[dict]:
    return cluster.api(f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3D{job}")["items"]


def wait_for_pod(cluster: Cluster, namespace: str, job: str, *, count: int = 1, timeout: float = 60) -> dict:
    """The newest Pod the real Job controller made for `job`, once it has made `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = pods_of(cluster, namespace, job)
        if len(pods) >= count:
            return max(pods, key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"])
        time.sleep(0.2)
    raise AssertionError(f"the Job controller made no Pod for {job} within {timeout} s")


def bind(cluster: Cluster, namespace: str, pod: str, node: str = "node-1") -> None:
    """What the scheduler does: bind the Pod to a node."""
    cluster.api(f"/api/v1/namespaces/{namespace}/pods/{pod}/binding", method="POST", body={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    })


def set_status(cluster: Cluster, namespace: str, pod: str, status: dict) -> None:
    """What the kubelet does: report the Pod's status."""
    cluster.api(f"/api/v1/namespaces/{namespace}/pods/{pod}/status", method="PATCH", body={"status": status}, content_type=MERGE)


def running(container: str = "job") -> dict:
    return {"phase": "Running", "containerStatuses": [{
        "name": container, "image": "x", "imageID": "", "ready": True, "restartCount": 0,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
    }]}


def terminated(phase: str, exit_code: int, reason: str, message: str = "", container: str = "job") -> dict:
    return {"phase": phase, "containerStatuses": [{
        "name": container, "image": "x", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message,
                                 "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}},
    }]}


def waiting(reason: str, message: str, container: str = "job") -> dict:
    return {"phase": "Pending", "containerStatuses": [{
        "name": container, "image": "x", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}},
    }]}


def unschedulable(message: str) -> dict:
    return {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]}


class Kubelet:
    """Just enough of a kubelet to serve Pod logs to the real API server, which proxies `pods/log` to it.

    It registers a Node whose InternalIP is 127.0.0.1 and whose kubelet port is this server's; the API server
    does not check a kubelet's certificate when it was given no kubelet CA, as here.
    """

    def __init__(self, cluster: Cluster, workdir, node: str = "node-1"):
        import http.server
        import ssl
        import subprocess
        import threading

        self.logs: dict[tuple[str, str, str], str] = {}
        self.requests: list[str] = []
        key, cert = workdir / "kubelet.key", workdir / "kubelet.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                kubelet.requests.append(self.path)
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                text = kubelet.logs.get(tuple(parts[1:4])) if parts[0] == "containerLogs" and len(parts) == 4 else None
                data = (text or "").encode()
                self.send_response(200 if text is not None else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        cluster.api("/api/v1/nodes", method="POST", body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        cluster.api(f"/api/v1/nodes/{node}/status", method="PATCH", content_type=MERGE, body={"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
