"""A real explorer (uvicorn on a free loopback port, in a thread) and JSON over HTTP to it."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


class Served:
    """A running explorer: its base URL and JSON helpers (errors come back as ``(status, body)``)."""

    def __init__(self, url: str, server: object, thread: threading.Thread) -> None:
        self.url, self.server, self.thread = url, server, thread

    def get(self, path: str) -> tuple[int, dict | bytes, str]:
        return self.request(path)

    def post(self, path: str, body: object) -> tuple[int, dict | bytes, str]:
        return self.request(path, json.dumps(body).encode())

    def request(self, path: str, data: bytes | None = None) -> tuple[int, dict | bytes, str]:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, kind, raw = response.status, response.headers["content-type"], response.read()
        except urllib.error.HTTPError as error:
            status, kind, raw = error.code, error.headers["content-type"], error.read()
        return status, json.loads(raw) if kind.startswith("application/json") else raw, kind


def serve(location: str | Path) -> Served:
    """Start the explorer of ``location`` in a thread and wait until it answers."""
    import uvicorn

    from geolink_store.app.server import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(str(location)), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the explorer did not start"
        time.sleep(0.05)
    return Served(f"http://127.0.0.1:{port}", server, thread)


def stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(timeout=10)
