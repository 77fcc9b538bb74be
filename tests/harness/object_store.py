"""An S3-compatible object store for tests, and a TCP proxy in front of it that counts and cuts.

The store is moto's standalone server (``moto[server]``: a real HTTP S3 API, started in a
thread on a free port). MinIO's server is not installable here (it is packaged neither on PyPI
nor in Debian nor on npm), and moto speaks the same S3 REST protocol over a real socket:
range GETs, presigned URLs, put/get/head, which is all Edgewise uses.

:class:`CountingProxy` forwards TCP connections to the store, counts every byte the store sends
back and the ``Range`` headers of the requests, and can cut the connection once after a given
number of response bytes: an interrupted download, as a flaky link makes it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from simulator.broker import free_port

ACCESS_KEY = "edgewise-test"
SECRET_KEY = "edgewise-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    port: int

    def client(self, endpoint: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(signature_version="s3v4",
                                          s3={"addressing_style": "path"}))


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}", port)
    finally:
        server.stop()


_RANGE = re.compile(rb"\r\nrange:\s*bytes=(\d+)-(\d*)", re.IGNORECASE)


class CountingProxy:
    """TCP proxy to ``upstream_port`` on 127.0.0.1; see the module docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.bytes_served = 0
        self.ranges: list[tuple[int, int | None]] = []
        self.cuts = 0
        self._cut_after: int | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_once_after(self, response_bytes: int) -> None:
        """Close the next connection after it carried this many response bytes."""
        with self._lock:
            self._cut_after = response_bytes

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                cut, self._cut_after = self._cut_after, None
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, cut),
                             daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                for m in _RANGE.finditer(data):
                    with self._lock:
                        self.ranges.append((int(m.group(1)),
                                            int(m.group(2)) if m.group(2) else None))
                upstream.sendall(data)
        _close(upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket,
                   cut: int | None) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if cut is not None and sent + len(data) >= cut:
                    data = data[:max(cut - sent, 0)]
                    client.sendall(data)
                    with self._lock:
                        self.bytes_served += len(data)
                        self.cuts += 1
                    break
                client.sendall(data)
                sent += len(data)
                with self._lock:
                    self.bytes_served += len(data)
        _close(client)
        _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
