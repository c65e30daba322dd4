"""A loopback HTTP/1.1 proxy in front of the real dedupd that injects faults.

It reads each request, decides by the request's number (counted from 0
across all connections) what to do with it, and otherwise relays it to the
service and the answer back:

- ``"drop"``: forward the request, read the service's whole answer, then
  close the client's connection without relaying it (a lost answer: the
  service decided, the client never heard);
- ``"stall"``: forward the request, read the answer, then keep the
  client's connection open and silent until the client closes it (a
  timeout: the service decided, the client gave up waiting);
- ``"503"``: answer 503 with a problem document and ``Retry-After: 1``
  without forwarding (the service never sees it);
- ``None``: relay.

Every socket has a timeout and the accept loop checks a stop flag, so the
proxy always stops by itself once ``close()`` is called.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

SOCKET_TIMEOUT_SECS = 40.0
STALL_SECS = 20.0
MAX_MESSAGE_BYTES = 1 << 20


@dataclass
class Seen:
    """What the proxy did with one request."""

    method: str
    target: str
    body: bytes
    fault: Optional[str]
    status: Optional[int] = None
    answer: bytes = b""


def _read_message(sock: socket.socket, buffered: bytes) -> Tuple[Optional[bytes], bytes, bytes]:
    """One HTTP/1.1 message (head, body) from ``sock``; (None, b"", b"") at a clean EOF."""
    data = buffered
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError("head too large")
        chunk = sock.recv(65536)
        if not chunk:
            if data:
                raise ConnectionError("connection closed inside a message head")
            return None, b"", b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked bodies are not supported by this test proxy")
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a message body")
        rest += chunk
    return head, rest[:length], rest[length:]


def _fake_503() -> bytes:
    body = json.dumps(
        {
            "type": "urn:dedupd:problem:unavailable",
            "title": "Outcome not decided",
            "status": 503,
            "detail": "injected by the test proxy",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/problem+json\r\n"
        "retry-after: 1\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class FaultProxy:
    def __init__(self, upstream: Tuple[str, int], fault_for: Callable[[int, str, str], Optional[str]]) -> None:
        self._upstream = upstream
        self._fault_for = fault_for
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: List[threading.Thread] = []
        self.seen: List[Seen] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._accepting = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._accepting.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._accepting.join(timeout=5)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=SOCKET_TIMEOUT_SECS + 5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(SOCKET_TIMEOUT_SECS)
        upstream: Optional[socket.socket] = None
        from_client = b""
        from_upstream = b""
        try:
            while not self._stopping.is_set():
                head, body, from_client = _read_message(client, from_client)
                if head is None:
                    return
                method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
                with self._lock:
                    number = len(self.seen)
                    fault = self._fault_for(number, method, target)
                    seen = Seen(method=method, target=target, body=body, fault=fault)
                    self.seen.append(seen)
                if fault == "503":
                    seen.status = 503
                    client.sendall(_fake_503())
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self._upstream, timeout=SOCKET_TIMEOUT_SECS)
                upstream.sendall(head + b"\r\n\r\n" + body)
                answer_head, answer_body, from_upstream = _read_message(upstream, from_upstream)
                if answer_head is None:
                    return
                seen.status = int(answer_head.split(b" ", 2)[1])
                seen.answer = answer_body
                if fault == "drop":
                    # The service answered; the client never hears it.
                    client.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "stall":
                    # The service answered; the client hears nothing until
                    # it gives up (its read timeout) or STALL_SECS pass.
                    client.settimeout(STALL_SECS)
                    try:
                        while client.recv(65536):
                            pass
                    except socket.timeout:
                        pass
                    return
                client.sendall(answer_head + b"\r\n\r\n" + answer_body)
        except (OSError, ValueError):
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()


def upstream_of(url: str) -> Tuple[str, int]:
    """(host, port) of an http:// base URL."""
    rest = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)
