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

import h11
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


def test_uvicorn_protocols_have_what_the_hardening_overrides() -> None:
    from uvicorn.protocols.http import h11_impl

    for module, name, callbacks in (
        (httptools_impl, "HttpToolsProtocol", ("on_headers_complete", "on_message_complete")),
        (h11_impl, "H11Protocol", ()),
    ):
        cls = getattr(module, name)
        for method, params in (
            ("connection_made", ["self", "transport"]),
            ("connection_lost", ["self", "exc"]),
            ("data_received", ["self", "data"]),
            ("_unset_keepalive_if_required", ["self"]),
            *((callback, ["self"]) for callback in callbacks),
        ):
            assert list(_params(getattr(cls, method))) == params, (
                f"{UVICORN}: {name}.{method} changed: {inspect.signature(getattr(cls, method))}"
            )
        assert _assigns(cls.connection_made, "flow"), f"{UVICORN}: {name} has no self.flow"
        assert callable(getattr(httptools_impl.FlowControl, "resume_reading", None)), (
            f"{UVICORN}: FlowControl.resume_reading is gone"
        )
        cycle = module.RequestResponseCycle
        for attribute in ("keep_alive", "response_complete", "response_started", "scope"):
            assert _assigns(cycle.__init__, attribute), (
                f"{UVICORN}: {name}'s RequestResponseCycle has no {attribute}"
            )
    assert list(_params(httptools_impl.HttpToolsProtocol.on_body)) == ["self", "body"]
    assert _assigns(httptools_impl.RequestResponseCycle.__init__, "expected_content_length"), (
        f"{UVICORN}: httptools RequestResponseCycle no longer counts expected_content_length"
    )
    # the HTTP/1.0 path replaces cycle.send on the instance: run_asgi must look it up there
    assert "self.send" in inspect.getsource(httptools_impl.RequestResponseCycle.run_asgi), (
        f"{UVICORN}: RequestResponseCycle.run_asgi no longer passes self.send to the app"
    )
    assert _assigns(h11_impl.H11Protocol.__init__, "conn"), f"{UVICORN}: H11Protocol has no self.conn"
    for prop in ("their_state", "trailing_data"):
        assert isinstance(inspect.getattr_static(h11.Connection, prop), property), (
            f"h11 {h11.__version__}: Connection.{prop} is no longer a property"
        )
    config = uvicorn.Config(_app, timeout_keep_alive=2, h11_max_incomplete_event_size=4096)
    assert (config.timeout_keep_alive, config.h11_max_incomplete_event_size) == (2, 4096), (
        f"{UVICORN}: Config(timeout_keep_alive=, h11_max_incomplete_event_size=) changed"
    )
    server = uvicorn.Server(config)
    assert isinstance(server.server_state.connections, set), (
        f"{UVICORN}: Server.server_state.connections is no longer a set"
    )


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


@pytest.mark.parametrize("impl", compat.HTTP_IMPLEMENTATIONS)
def test_uvicorn_hardened_protocols_work(impl: str) -> None:
    """The head cap, HTTP/1.0 framing, pipelining and the shutdown cut, on a plain endless app."""
    from sse_sim.real.gateway.limits import HttpLimits

    left: list[str] = []

    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # like a stream: it ends only when the client leaves
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: hi\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        left.append(scope["http_version"])

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    limits = HttpLimits(max_header_bytes=4096, header_timeout_s=60)
    config = uvicorn.Config(
        endless,
        http=compat.http_protocol_class(impl=impl, limits=limits),
        lifespan="off",
        log_level="warning",
        ws="none",
        h11_max_incomplete_event_size=4096,
        timeout_graceful_shutdown=120,
    )
    server = compat.server_with_shutdown_hook(config, lambda: None, abort_after_s=0.1)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    where = f"{UVICORN} ({impl})"
    try:
        assert wait_for(lambda: server.started, 10), f"{where}: the server did not start"

        def head_of(request: bytes) -> tuple[socket.socket, bytes]:
            client = socket.create_connection(sock.getsockname(), timeout=10)
            client.sendall(request)
            raw = b""
            while b"data: hi" not in raw:  # or, for a refusal, its end (the server closes)
                chunk = client.recv(65536)
                if not chunk:
                    break
                raw += chunk
            return client, raw

        client, raw = head_of(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        client.close()
        assert raw.startswith(b"HTTP/1.1 431 "), f"{where}: a big head was not refused: {raw[:80]!r}"
        client, raw = head_of(b"GET / HTTP/1.0\r\n\r\n")
        client.close()
        assert b"transfer-encoding" not in raw.lower() and raw.endswith(b"\r\n\r\ndata: hi\n\n"), (
            f"{where}: an HTTP/1.0 response was framed: {raw!r}"
        )
        assert wait_for(lambda: left == ["1.0"]), f"{where}: the HTTP/1.0 client's close was missed"
        client, raw = head_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        client.close()
        assert wait_for(lambda: left == ["1.0", "1.1"]), (
            f"{where}: a client that pipelined and left was never seen leaving: {raw!r}"
        )
        stalled, raw = head_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            server.should_exit = True
            thread.join(30)
            assert not thread.is_alive(), f"{where}: the shutdown did not cut an open response"
        finally:
            stalled.close()
        assert left == ["1.0", "1.1", "1.1"], f"{where}: the cut response's app did not end"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
