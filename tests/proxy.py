"""A TCP proxy on 127.0.0.1 that loses answers: the connection drops after the server has answered.

It stands between a client and a live test server and forwards each HTTP
request to the server on a fresh connection. For the first `drops` requests
that contain `marker` (in the request line, headers or body), it waits for the server's whole answer (so the
server has done the work and committed it), then closes the client's
connection without passing the answer on: what a client sees when a proxy, a
load balancer or the network fails at the worst moment.

It records every request it forwarded (head and body) so a test can compare
what a client sent on its first try and on its retries.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024


@dataclass
class Forwarded:
    head: bytes
    body: bytes
    dropped: bool

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


@dataclass
class LosingProxy:
    upstream_port: int
    marker: bytes
    drops: int = 1
    forwarded: list[Forwarded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LosingProxy:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        buffered = b""
        with client:
            while not self._stop.is_set():
                try:
                    head, body, buffered = _read_message(client, buffered)
                except (OSError, ValueError):
                    return
                if head is None:
                    return
                with self._lock:
                    drop = self.marker in head + body and self.drops > 0
                    if drop:
                        self.drops -= 1
                    self.forwarded.append(Forwarded(head, body, drop))
                answer = _exchange(self.upstream_port, head + body)
                if drop:
                    return  # the server answered and committed; the client never hears of it
                client.sendall(answer)
                if b"connection: close" in answer.split(HEAD_END, 1)[0].lower():
                    return


def _exchange(port: int, request: bytes) -> bytes:
    """Send one request to the server on its own connection and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as upstream:
        upstream.sendall(request)
        head, body, _ = _read_message(upstream, b"", until_close=True)
    return (head or b"") + body


def _read_message(sock: socket.socket, buffered: bytes, until_close: bool = False) -> tuple[bytes | None, bytes, bytes]:
    """One HTTP message (head, body) from `sock`, and what was read past its end."""
    while HEAD_END not in buffered:
        if len(buffered) > MAX_HEAD:
            raise ValueError("head too long")
        chunk = sock.recv(65536)
        if not chunk:
            return None, b"", b""
        buffered += chunk
    head, rest = buffered.split(HEAD_END, 1)
    head += HEAD_END
    length = None
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None and until_close:
        while chunk := sock.recv(65536):
            rest += chunk
        return head, rest, b""
    length = length or 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed in the middle of a body")
        rest += chunk
    return head, rest[:length], rest[length:]
