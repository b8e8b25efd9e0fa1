"""The API under a real uvicorn server in a background thread, on a free local port.

For the demo (its people act over real HTTP) and for tests that need real sockets
(concurrent clients, schemathesis). The socket is bound here and handed to uvicorn, so no
other process can take the port between choosing it and listening on it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI


@contextmanager
def served(app: FastAPI, startup_timeout: float = 30) -> Iterator[str]:
    """Yield the base URL once ``/ready`` answers 200; stop the server on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="api"
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not start within {startup_timeout:.0f} s")
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=5) as probe:
            while probe.get("/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the API was not ready within {startup_timeout:.0f} s")
                time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(15)
        sock.close()
