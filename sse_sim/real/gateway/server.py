"""Serving a gateway with uvicorn: in the foreground until a signal, or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import secrets as _secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ...errors import SseSimError
from . import compat
from .app import Gateway, create_gateway
from .backends import Backend, make_backend

__all__ = ["GatewayThread", "run_gateway", "start_gateway"]


def _protocol_class(send_buffer_bytes: int | None) -> type:
    """uvicorn's httptools protocol for the gateway, shrinking send buffers if asked."""
    if send_buffer_bytes is None:
        return compat.http_protocol_class()

    def shrink_buffers(transport: asyncio.Transport) -> None:
        # Events the kernel and the transport hold are invisible to the gateway's queue;
        # small buffers make the queue the only buffer that matters.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        transport.set_write_buffer_limits(high=send_buffer_bytes)

    return compat.http_protocol_class(shrink_buffers)


def _uvicorn_server(gateway: Gateway, *, timeout_graceful_shutdown: float, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(
        gateway,
        http=_protocol_class(gateway.send_buffer_bytes),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        backlog=4096,
        ws="none",
    )
    # Open streams never finish by themselves; end them first so a graceful shutdown takes a
    # moment, and only writers stuck on a stalled client wait for the timeout.
    return compat.server_with_shutdown_hook(config, gateway.begin_shutdown)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SseSimError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run_gateway(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    gateway: Gateway | None = None,
    timeout_graceful_shutdown: float = 3.0,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve a gateway until Ctrl-C or SIGTERM, then shut down within ``timeout_graceful_shutdown`` s.

    ``options`` go to :func:`create_gateway` when no ``gateway`` is given.
    """
    if gateway is None:
        gateway = create_gateway(**options)
    sock = _listen(host, port)
    server = _uvicorn_server(
        gateway, timeout_graceful_shutdown=timeout_graceful_shutdown, log_level=log_level
    )
    if on_ready is not None:
        on_ready(f"http://{host}:{sock.getsockname()[1]}")
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default
    # handlers that kills the process (SIGTERM) or raises KeyboardInterrupt (SIGINT) before the
    # caller can clean up (a throwaway redis-server, for one). Quiet handlers make it return.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class GatewayThread:
    """A gateway served by uvicorn on 127.0.0.1 in a background thread with its own event loop.

    Start it with :func:`start_gateway`. ``.url`` is the base URL, ``.gateway`` the app,
    ``.fake_server`` the shared ``fakeredis.FakeServer`` (fakeredis backend) and ``.redis_url``
    the Redis URL (redis backend). :meth:`stop` shuts down gracefully and stops a throwaway
    redis-server if this object started one.
    """

    def __init__(
        self,
        gateway: Gateway,
        backend: Backend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_graceful_shutdown: float = 3.0,
        log_level: str = "warning",
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.gateway = gateway
        self._backend = backend
        self.fake_server = backend.fake_server
        self.redis_url = backend.redis_url
        self.redis_server = backend.redis_server
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self._sock = _listen(host, port)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self._server = _uvicorn_server(
            gateway, timeout_graceful_shutdown=timeout_graceful_shutdown, log_level=log_level
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"sse_sim-gateway-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SseSimError(f"the gateway did not start: {self._error or 'timeout'}")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by the starting thread
            self._error = exc

    @property
    def secret(self) -> bytes:
        return self.gateway.secret

    def token(self, player_id: int, brand_id: int = 1001, ttl_s: float = 3600) -> str:
        """A token for this gateway's secret."""
        from ..auth import mint_token

        return mint_token(self.gateway.secret, brand_id, player_id, ttl_s)

    def publisher(self) -> Any:
        """A synchronous redis-py (or fakeredis) client on the gateway's backend, for publishing."""
        if self.fake_server is not None:
            import fakeredis

            return fakeredis.FakeRedis(server=self.fake_server)
        import redis

        assert self.redis_url is not None
        return redis.Redis.from_url(self.redis_url)

    def call(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn`` in the gateway's event loop and return its result (for inspection)."""
        loop = self.gateway.loop
        if loop is None:
            raise SseSimError("the gateway has not started")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> float:
        """Shut down gracefully (at most about ``timeout_graceful_shutdown`` s); returns seconds taken."""
        start = time.monotonic()
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(self.timeout_graceful_shutdown + 10)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.redis_server is not None:
            self.redis_server.stop()
        return time.monotonic() - start

    def __enter__(self) -> GatewayThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_gateway(
    *,
    backend: str = "fakeredis",
    redis_url: str | None = None,
    fake_server: Any = None,
    redis_config: dict[str, str] | None = None,
    secret: bytes | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_graceful_shutdown: float = 3.0,
    log_level: str = "warning",
    **options: Any,
) -> GatewayThread:
    """Start a gateway in a background thread; use as a context manager or call ``.stop()``.

    ``backend`` is ``fakeredis`` (a shared ``FakeServer``, given or new) or ``redis`` (``redis_url``,
    or a throwaway redis-server started here with ``redis_config`` and stopped by ``.stop()``).
    ``options`` go to :func:`create_gateway`. ``secret`` defaults to a random one.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SseSimError("start_gateway listens on loopback only")
    backend_obj = make_backend(
        backend, redis_url=redis_url, fake_server=fake_server, redis_config=redis_config
    )
    try:
        gateway = create_gateway(
            redis_client_factory=backend_obj.factory,
            secret=secret if secret is not None else _secrets.token_bytes(32),
            **options,
        )
        return GatewayThread(
            gateway,
            backend_obj,
            host=host,
            port=port,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
            log_level=log_level,
        )
    except BaseException:
        if backend_obj.redis_server is not None:
            backend_obj.redis_server.stop()
        raise
