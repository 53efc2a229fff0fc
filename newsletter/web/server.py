"""Running the web app under uvicorn, on a socket bound before the server starts: port 0 lets
the OS pick a free one (tests and tools never race for a fixed port), and a port already in use
is a one-line error before anything says it is serving."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from starlette.types import ASGIApp

from newsletter.errors import NewsletterError


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or a ``NewsletterError`` saying why not."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise NewsletterError(f"cannot listen there: {exc.strerror or exc}", where=f"{host}:{port}") from None
    return sock


def serve_in_foreground(app: ASGIApp, sock: socket.socket, **options: object) -> None:
    """uvicorn on the bound ``sock`` until Ctrl+C; ``options`` go to ``uvicorn.Config``."""
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])  # type: ignore[arg-type]


class BackgroundServer:
    """A real uvicorn server on ``host``, in a daemon thread; ``url`` is where it answers."""

    def __init__(self, app: ASGIApp | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 proxy_headers: bool = False) -> None:
        # The socket is bound now, so ``url`` is known before the app exists (its config may
        # need it as newsletter.base_url); ``start(app)`` then serves it.
        self.app = app
        self.proxy_headers = proxy_headers
        self._socket = bind_socket(host, port)
        self.host = host
        self.port = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, app: ASGIApp | None = None, timeout_s: float = 10.0) -> "BackgroundServer":
        self.app = app or self.app
        if self.app is None:
            raise ValueError("no app to serve")
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", server_header=False,
                                proxy_headers=self.proxy_headers, forwarded_allow_ips="127.0.0.1")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"uvicorn:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._socket.close()


@contextmanager
def serve_in_background(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[BackgroundServer]:
    """``with serve_in_background(app) as server: httpx.get(server.url)``"""
    server = BackgroundServer(app, host, port).start()
    try:
        yield server
    finally:
        server.stop()
