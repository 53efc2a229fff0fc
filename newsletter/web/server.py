"""Running the web app under uvicorn, on a socket bound before the server starts: port 0 lets
the OS pick a free one (tests and tools never race for a fixed port), and a port already in use
is a one-line error before anything says it is serving.

uvicorn's access log would write every link's token (``/unsubscribe/TOKEN``) to the log: both
ways of serving here configure its logger with ``RedactTokens``, so it writes ``/unsubscribe/…``.
"""

from __future__ import annotations

import copy
import logging
import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import uvicorn
from starlette.types import ASGIApp

from newsletter.errors import NewsletterError


# Path segments that are credentials (the token of a confirm, unsubscribe, preferences or rating link),
# and the preview token when given in the query.
_TOKEN_PATH = re.compile(r"^(/(?:confirm|unsubscribe|preferences|rate)/)[^/?#]+")
_TOKEN_QUERY = re.compile(r"([?&]token=)[^&#]*")
REDACTED = "…"


def redact_tokens(path: str) -> str:
    """``/unsubscribe/TOKEN?x`` -> ``/unsubscribe/…?x``; ``?token=SECRET`` -> ``?token=…``."""
    return _TOKEN_QUERY.sub(lambda m: m.group(1) + REDACTED, _TOKEN_PATH.sub(lambda m: m.group(1) + REDACTED, path))


class RedactTokens(logging.Filter):
    """For the ``uvicorn.access`` logger: the path in each record (its third argument, as uvicorn
    logs ``client - "METHOD PATH HTTP/x" status``) with tokens redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_tokens(args[2]), *args[3:])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with ``RedactTokens`` on its access logger."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": f"{__name__}.RedactTokens"}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_tokens"]
    return config


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
    """uvicorn on the bound ``sock`` until Ctrl+C; ``options`` go to ``uvicorn.Config`` (the
    access log redacts tokens unless ``log_config`` is given)."""
    options.setdefault("log_config", log_config())
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])  # type: ignore[arg-type]


class BackgroundServer:
    """A real uvicorn server on ``host``, in a daemon thread; ``url`` is where it answers."""

    def __init__(self, app: ASGIApp | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 proxy_headers: bool = False, log_level: str = "warning") -> None:
        # The socket is bound now, so ``url`` is known before the app exists (its config may
        # need it as newsletter.base_url); ``start(app)`` then serves it.
        self.app = app
        self.proxy_headers = proxy_headers
        self.log_level = log_level
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
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="off", server_header=False,
                                proxy_headers=self.proxy_headers, forwarded_allow_ips="127.0.0.1",
                                log_config=log_config())
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
