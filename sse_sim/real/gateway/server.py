"""Serving a gateway with uvicorn: in the foreground until a signal, or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
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
from .backends import Backend, check_secret_for_host, make_backend, redis_factory

__all__ = ["GatewayThread", "run_gateway", "start_gateway"]


# A stalled client (one that stopped reading) keeps its stream's writer waiting for the socket;
# at shutdown it is cut this long after the streams were ended (at most half the graceful
# timeout), so the shutdown is quick and no task is left for uvicorn to cancel.
_STALLED_GRACE_S = 1.0
_WORKER_START_TIMEOUT_S = 60.0


def _check_http(http: str) -> None:
    if http not in compat.HTTP_IMPLEMENTATIONS:
        raise SseSimError(
            f"http must be one of {', '.join(compat.HTTP_IMPLEMENTATIONS)}, got {http!r}"
        )


def _protocol_class(gateway: Gateway, http: str) -> type:
    """The gateway's uvicorn protocol (see :func:`.compat.http_protocol_class`), shrinking send buffers if asked."""
    _check_http(http)
    send_buffer_bytes = gateway.send_buffer_bytes
    if send_buffer_bytes is None:
        return compat.http_protocol_class(impl=http, limits=gateway.http_limits)

    def shrink_buffers(transport: asyncio.Transport) -> None:
        # Events the kernel and the transport hold are invisible to the gateway's queue;
        # small buffers make the queue the only buffer that matters.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        transport.set_write_buffer_limits(high=send_buffer_bytes)

    return compat.http_protocol_class(shrink_buffers, impl=http, limits=gateway.http_limits)


def _uvicorn_server(
    gateway: Gateway, *, timeout_graceful_shutdown: float, log_level: str, http: str = "httptools"
) -> Any:
    import uvicorn

    limits = gateway.http_limits
    config = uvicorn.Config(
        gateway,
        http=_protocol_class(gateway, http),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        # uvicorn's keep-alive timeout is the idle timeout: armed when a response ends, it
        # closes the connection unless the next request starts in time.
        timeout_keep_alive=limits.idle_timeout_s,  # type: ignore[arg-type]
        # h11's own bound on an unfinished head; the protocol answers 431 before h11 sees more.
        h11_max_incomplete_event_size=limits.max_header_bytes,
        backlog=4096,
        ws="none",
    )
    # Open streams never finish by themselves; end them first so a graceful shutdown takes a
    # moment, and cut the ones stuck on a stalled client soon after.
    return compat.server_with_shutdown_hook(
        config,
        gateway.begin_shutdown,
        abort_after_s=min(_STALLED_GRACE_S, timeout_graceful_shutdown / 2),
    )


def _listen(host: str, port: int, secret: bytes, *, reuse_port: bool = False) -> socket.socket:
    # Every gateway socket is opened here, so this one check keeps the public development
    # secret off every non-loopback address, before anything listens.
    check_secret_for_host(host, secret)
    sock = _bind(host, port, reuse_port=reuse_port)
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Worker processes each listen on the same port; the kernel spreads new connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SseSimError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def run_gateway(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    gateway: Gateway | None = None,
    workers: int = 1,
    redis_url: str | None = None,
    http: str = "httptools",
    timeout_graceful_shutdown: float = 3.0,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve a gateway until Ctrl-C or SIGTERM, then shut down within ``timeout_graceful_shutdown`` s.

    ``options`` go to :func:`create_gateway` when no ``gateway`` is given, with a redis-py client
    factory for ``redis_url`` if they name no ``redis_client_factory``; the HTTP-level limits
    (``max_header_bytes``, ``header_timeout_s``, ``idle_timeout_s``, ``max_connections``,
    ``max_connections_per_ip``) are among them. ``http`` picks uvicorn's parser: ``httptools``
    or ``h11``. A non-loopback ``host`` with the development secret raises
    :class:`SseSimError` before anything listens.

    ``workers`` > 1 serves from that many processes listening on the same port
    (``SO_REUSEPORT``; the kernel spreads connections), each with its own shared subscription
    to ``redis_url`` and its own limits; ``options`` must then be plain values (they are sent
    to the workers) and ``gateway`` None. ``on_ready`` is called once every worker listens;
    Ctrl-C or SIGTERM stops them all.
    """
    if not isinstance(workers, int) or workers < 1:
        raise SseSimError(f"workers must be a positive integer, got {workers!r}")
    if workers > 1:
        if gateway is not None:
            raise SseSimError("workers > 1 builds a gateway per process: give options, not a gateway")
        _serve_workers(
            host,
            port,
            workers=workers,
            redis_url=redis_url,
            http=http,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
            log_level=log_level,
            on_ready=on_ready,
            options=options,
        )
        return
    if gateway is None:
        gateway = create_gateway(**_with_redis(options, redis_url))
    _serve(
        gateway,
        _listen(host, port, gateway.secret),
        host,
        http=http,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        log_level=log_level,
        on_ready=on_ready,
    )


def _with_redis(options: dict[str, Any], redis_url: str | None) -> dict[str, Any]:
    if redis_url is None or "redis_client_factory" in options:
        return options
    return {**options, "redis_client_factory": redis_factory(redis_url)}


def _serve(
    gateway: Gateway,
    sock: socket.socket,
    host: str,
    *,
    http: str,
    timeout_graceful_shutdown: float,
    log_level: str,
    on_ready: Callable[[str], None] | None,
) -> None:
    """Serve ``gateway`` on the listening ``sock`` in this thread until a signal (or ``should_exit``)."""
    try:
        server = _uvicorn_server(
            gateway,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
            log_level=log_level,
            http=http,
        )
    except BaseException:
        sock.close()
        raise
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


# ---------------------------------------------------------------------- worker processes


def _serve_workers(
    host: str,
    port: int,
    *,
    workers: int,
    redis_url: str | None,
    http: str,
    timeout_graceful_shutdown: float,
    log_level: str,
    on_ready: Callable[[str], None] | None,
    options: dict[str, Any],
) -> None:
    """Start ``workers`` gateway processes on one port, wait until one ends, then stop them all."""
    import multiprocessing
    import multiprocessing.connection
    import pickle

    if redis_url is None:
        raise SseSimError(
            "workers > 1 needs a Redis URL (--backend redis): every worker process subscribes"
            " to it, and an in-process fakeredis cannot be shared between processes"
        )
    if "redis_client_factory" in options:
        raise SseSimError("workers > 1 makes a Redis client per process: give redis_url only")
    try:
        pickle.dumps(options)
    except Exception as exc:
        raise SseSimError(f"workers > 1 sends the options to each process: {exc}") from None
    # Every setting checked here, before any process starts (nothing connects yet).
    probe = create_gateway(**_with_redis(options, redis_url))
    check_secret_for_host(host, probe.secret)
    _check_http(http)
    # Port 0: hold a port (bound, never listening, so no connection waits on it) for the workers.
    reserved = _bind(host, port, reuse_port=True) if port == 0 else None
    if reserved is not None:
        port = int(reserved.getsockname()[1])
    # Fresh interpreters, not forks: the parent may hold threads and a loop of its own.
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    stopping = False

    def stop_all(signum: int = 0, frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop_all)
    try:
        pipes = []
        for i in range(workers):
            receiver, sender = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(host, port, redis_url, http, timeout_graceful_shutdown, log_level, options, sender),
                name=f"sse-sim-gateway-worker-{i}",
            )
            proc.start()
            sender.close()
            procs.append(proc)
            pipes.append(receiver)
        failure = _wait_ready(procs, pipes)
        if reserved is not None:
            reserved.close()
        if failure is not None and not stopping:  # a signal while starting is no failure
            raise SseSimError(failure)
        if on_ready is not None and not stopping:
            on_ready(f"http://{host}:{port}")
        while not stopping and all(proc.is_alive() for proc in procs):
            multiprocessing.connection.wait([proc.sentinel for proc in procs])
        lost = [proc for proc in procs if not proc.is_alive()] if not stopping else []
        if lost:
            raise SseSimError(
                f"gateway worker {lost[0].pid} exited with code {lost[0].exitcode}; stopped the others"
            )
    finally:
        stop_all()
        for proc in procs:
            proc.join(timeout_graceful_shutdown + 10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if reserved is not None:
            reserved.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_ready(procs: list[Any], pipes: list[Any]) -> str | None:
    """Wait for every worker to report it listens; the first failure's message, else None."""
    import multiprocessing.connection

    deadline = time.monotonic() + _WORKER_START_TIMEOUT_S
    for proc, pipe in zip(procs, pipes, strict=True):
        while not pipe.poll():
            left = deadline - time.monotonic()
            if left <= 0:
                return f"gateway worker {proc.pid} did not start in {_WORKER_START_TIMEOUT_S:g} s"
            multiprocessing.connection.wait([pipe, proc.sentinel], left)
            if not pipe.poll() and not proc.is_alive():
                return f"gateway worker {proc.pid} exited with code {proc.exitcode} while starting"
        try:
            kind, detail = pipe.recv()
        except EOFError:
            return f"gateway worker {proc.pid} exited while starting"
        finally:
            pipe.close()
        if kind != "ready":
            return f"gateway worker {proc.pid}: {detail}"
    return None


def _worker_main(
    host: str,
    port: int,
    redis_url: str,
    http: str,
    timeout_graceful_shutdown: float,
    log_level: str,
    options: dict[str, Any],
    pipe: Any,
) -> None:
    """One worker process: its own gateway and shared subscription, on the common port."""
    try:
        gateway = create_gateway(**_with_redis(options, redis_url))
        sock = _listen(host, port, gateway.secret, reuse_port=True)
    except BaseException as exc:
        pipe.send(("error", str(exc)))
        pipe.close()
        raise SystemExit(1) from None

    def ready(url: str) -> None:
        pipe.send(("ready", os.getpid()))
        pipe.close()

    _serve(
        gateway,
        sock,
        host,
        http=http,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        log_level=log_level,
        on_ready=ready,
    )


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
        http: str = "httptools",
    ) -> None:
        self.gateway = gateway
        self._backend = backend
        self.fake_server = backend.fake_server
        self.redis_url = backend.redis_url
        self.redis_server = backend.redis_server
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self._sock = _listen(host, port, gateway.secret)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        try:
            self._server = _uvicorn_server(
                gateway,
                timeout_graceful_shutdown=timeout_graceful_shutdown,
                log_level=log_level,
                http=http,
            )
        except BaseException:
            self._sock.close()
            raise
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
    http: str = "httptools",
    **options: Any,
) -> GatewayThread:
    """Start a gateway in a background thread; use as a context manager or call ``.stop()``.

    ``backend`` is ``fakeredis`` (a shared ``FakeServer``, given or new) or ``redis`` (``redis_url``,
    or a throwaway redis-server started here with ``redis_config`` and stopped by ``.stop()``).
    ``options`` go to :func:`create_gateway` (the HTTP-level limits among them: see
    :func:`run_gateway`). ``secret`` defaults to a random one; ``http`` picks uvicorn's parser.
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
            http=http,
        )
    except BaseException:
        if backend_obj.redis_server is not None:
            backend_obj.redis_server.stop()
        raise
