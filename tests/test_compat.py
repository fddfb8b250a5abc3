"""The uvicorn and redis-py internals sse_sim/real/gateway/compat.py relies on are still there.

Each check names the library and its installed version, so an upgrade that moves an internal
fails here, loudly, instead of slowing or breaking the gateway quietly.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio
import uvicorn
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection as RedisConnection
from sse_helpers import RawSSE, event, wait_for
from uvicorn.protocols.http import httptools_impl

from sse_sim.real.gateway import ConnectionInfo, compat, start_gateway

UVICORN = f"uvicorn {uvicorn.__version__}"
REDIS = f"redis-py {redis.__version__}"


def _params(fn: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _assigns(fn: Any, attribute: str) -> bool:
    source = inspect.getsource(fn)
    return f"self.{attribute} =" in source or f"self.{attribute}:" in source


# ---------------------------------------------------------------------- uvicorn, by signature


def test_uvicorn_httptools_protocol_is_as_compat_subclasses_it() -> None:
    cls = getattr(httptools_impl, "HttpToolsProtocol", None)
    assert cls is not None, (
        f"{UVICORN}: uvicorn.protocols.http.httptools_impl.HttpToolsProtocol is gone"
    )
    assert list(_params(cls.connection_made)) == ["self", "transport"], (
        f"{UVICORN}: HttpToolsProtocol.connection_made(transport) changed: "
        f"{inspect.signature(cls.connection_made)}"
    )
    assert list(_params(cls.on_message_begin)) == ["self"], (
        f"{UVICORN}: HttpToolsProtocol.on_message_begin() changed"
    )
    assert _assigns(cls.connection_made, "transport"), (
        f"{UVICORN}: HttpToolsProtocol.connection_made no longer sets self.transport"
    )
    assert _assigns(cls.on_message_begin, "scope"), (
        f"{UVICORN}: HttpToolsProtocol.on_message_begin no longer builds self.scope"
    )
    assert _assigns(cls.__init__, "cycle"), f"{UVICORN}: HttpToolsProtocol has no self.cycle"


def test_uvicorn_cycle_records_chunked_encoding() -> None:
    cycle = getattr(httptools_impl, "RequestResponseCycle", None)
    assert cycle is not None, f"{UVICORN}: httptools_impl.RequestResponseCycle is gone"
    assert _assigns(cycle.__init__, "chunked_encoding"), (
        f"{UVICORN}: RequestResponseCycle no longer has chunked_encoding"
    )


def test_uvicorn_server_shutdown_and_lifecycle_flags() -> None:
    shutdown = getattr(uvicorn.Server, "shutdown", None)
    assert shutdown is not None and inspect.iscoroutinefunction(shutdown), (
        f"{UVICORN}: Server.shutdown is no longer a coroutine method"
    )
    assert "sockets" in _params(shutdown), f"{UVICORN}: Server.shutdown(sockets) changed"
    server = uvicorn.Server(uvicorn.Config(_app))
    for flag in ("started", "should_exit", "force_exit"):
        assert isinstance(getattr(server, flag, None), bool), f"{UVICORN}: Server.{flag} is gone"


# ---------------------------------------------------------------------- redis-py, by signature


def test_redis_connection_reads_push_messages_directly() -> None:
    params = _params(RedisConnection.read_response)
    assert "push_request" in params and "timeout" in params, (
        f"{REDIS}: redis.asyncio Connection.read_response(timeout=, push_request=) changed: "
        f"{inspect.signature(RedisConnection.read_response)}"
    )
    assert isinstance(inspect.getattr_static(RedisConnection, "is_connected"), property), (
        f"{REDIS}: redis.asyncio Connection.is_connected is no longer a property"
    )


def test_redis_connection_has_connect_callbacks() -> None:
    register = getattr(RedisConnection, "register_connect_callback", None)
    assert register is not None, f"{REDIS}: Connection.register_connect_callback is gone"
    assert list(_params(register)) == ["self", "callback"], (
        f"{REDIS}: register_connect_callback(callback) changed"
    )


def test_redis_pubsub_has_what_the_reader_uses() -> None:
    assert "block" in _params(PubSub.parse_response), f"{REDIS}: PubSub.parse_response(block=)"
    assert "ignore_subscribe_messages" in _params(PubSub.handle_message), (
        f"{REDIS}: PubSub.handle_message(response, ignore_subscribe_messages=) changed"
    )
    pubsub = redis.asyncio.Redis().pubsub()
    assert hasattr(pubsub, "connection"), f"{REDIS}: PubSub.connection is gone"
    assert compat.direct_connection(pubsub) is None  # not connected yet


# ---------------------------------------------------------------------- behaviour


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A streaming response written partly through ASGI and partly straight to the transport."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first|", "more_body": True})
    transport, protocol = compat.connection_of(scope)
    chunked = compat.is_chunked(protocol)
    if transport is not None and chunked:
        transport.write(compat.chunk(b"direct|"))
    await send({"type": "http.response.body", "body": b"chunked" if chunked else b"not chunked"})


def _dechunk(raw: bytes) -> bytes:
    body, rest = b"", raw
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body
        body, rest = body + rest[:size], rest[size + 2 :]


def test_uvicorn_protocol_chunking_and_shutdown_hook_work() -> None:
    made: list[Any] = []
    hooked = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(
        _app,
        http=compat.http_protocol_class(made.append),
        lifespan="off",
        log_level="warning",
        ws="none",
    )
    server = compat.server_with_shutdown_hook(config, hooked.set)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, 10), f"{UVICORN}: the server did not start"
        with socket.create_connection(sock.getsockname(), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := client.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower(), f"{UVICORN}: not chunked: {head!r}"
        assert _dechunk(body) == b"first|direct|chunked", (
            f"{UVICORN}: a chunk written to the transport did not land in the response "
            f"(cycle.chunked_encoding or the scope's transport changed): {body!r}"
        )
        assert len(made) == 1, f"{UVICORN}: connection_made was not called through the subclass"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert hooked.is_set(), f"{UVICORN}: Server.shutdown was not called on exit"


@pytest.mark.redis
def test_redis_direct_read_and_reconnect_callback_work(redis_url: str) -> None:
    class Seen:
        def __init__(self) -> None:
            self.reconnects = 0

        async def reconnected(self, connection: Any) -> None:
            self.reconnects += 1

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        publisher = redis.asyncio.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        seen = Seen()
        try:
            await pubsub.connect()
            compat.on_reconnect(pubsub, seen.reconnected)
            await pubsub.subscribe(b"SSE::1::1")
            connection = compat.direct_connection(pubsub)
            assert connection is not None, f"{REDIS}: PubSub.connection is not redis-py's"
            pending = compat.read_push(connection)
            assert pending is not None, f"{REDIS}: a connected Connection says it is not"
            confirmation = await asyncio.wait_for(pending, 5)
            assert confirmation[0] == b"subscribe", f"{REDIS}: {confirmation!r}"
            await pubsub.handle_message(confirmation, ignore_subscribe_messages=False)
            await publisher.publish(b"SSE::1::1", b"hello")
            message = await asyncio.wait_for(compat.read_push(connection), 5)  # type: ignore[arg-type]
            assert list(message) == [b"message", b"SSE::1::1", b"hello"], f"{REDIS}: {message!r}"
            await publisher.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            pending = compat.read_push(connection)
            if pending is not None:
                with pytest.raises(Exception):  # noqa: B017 - whatever redis-py raises for a reset
                    await asyncio.wait_for(pending, 5)
            # The documented path reconnects, resubscribes and fires the callback.
            again = await asyncio.wait_for(pubsub.parse_response(block=True), 10)
            assert again is not None and again[0] == b"subscribe", f"{REDIS}: {again!r}"
            assert seen.reconnects == 1, f"{REDIS}: register_connect_callback did not fire"
        finally:
            await pubsub.aclose()
            await client.aclose()
            await publisher.aclose()

    asyncio.run(scenario())


def test_a_started_gateway_streams_through_the_seams() -> None:
    infos: list[ConnectionInfo] = []
    with start_gateway(secret=b"c" * 32, on_connection=infos.append) as gw:
        with RawSSE(
            gw.port, "/gateway/sse/1001/stream", headers={"x-auth-token": gw.token(5)}
        ) as c:
            assert c.connected()
            assert len(infos) == 1
            info = infos[0]
            assert (info.connection_id, info.brand_id, info.player_id) == (1, 1001, 5)
            assert info.channel == "SSE::1001::5"
            assert info.peer is not None and info.peer[1] == c.sock.getsockname()[1]
            assert abs(info.opened_at - time.time()) < 10
            pub = gw.publisher()
            try:
                pub.publish("SSE::1001::5", event(1, player=5))
            finally:
                pub.close()
            assert c.read_until(lambda c: len(c.app_events()) == 1)
            assert c.app_events()[0]["event_data"]["seq"] == 1
