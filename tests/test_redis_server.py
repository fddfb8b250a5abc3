"""The throwaway redis-server: found, started on a free loopback port, configured, stopped by PID."""

from __future__ import annotations

import os
import socket
import sys

import pytest
import redis

from sse_sim.errors import SseSimError
from sse_sim.real.redis_server import RedisServer, find_redis_server

pytestmark = pytest.mark.redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _listening(pid: int) -> set[tuple[str, int]]:
    """``(address, port)`` of every TCP socket process ``pid`` listens on, read from /proc.

    A socket belongs to the process when one of its file descriptors links to the socket's inode;
    /proc/net/tcp{,6} hold addresses in hex, each 32-bit word in the host's byte order.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/net/{table}") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        for row in rows:
            local, state, inode = row[1], row[3], row[9]
            if state != "0A" or inode not in inodes:  # 0A: TCP_LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            if sys.byteorder == "little":
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def _assert_loopback_only(server: RedisServer) -> None:
    """The server answers on 127.0.0.1 and nowhere else, as ``bind 127.0.0.1`` promises."""
    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        assert client.ping()
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
    finally:
        client.close()
    assert _listening(server.pid) == {("127.0.0.1", server.port)}
    # Linux routes all of 127/8 to the loopback interface: a server bound to every address
    # (0.0.0.0, "*") would accept on 127.0.0.2 too. ::1 is where "bind * -::*" would listen.
    for host in ("127.0.0.2", "::1"):
        with pytest.raises(OSError), socket.create_connection((host, server.port), timeout=1):
            pass


def test_fixture_server_answers(redis_server, redis_url) -> None:  # type: ignore[no-untyped-def]
    assert redis_url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()
    _assert_loopback_only(redis_server)


def test_start_config_stop(redis_server) -> None:  # type: ignore[no-untyped-def]
    with RedisServer(config={"client-output-buffer-limit": "pubsub 1mb 256kb 2"}) as server:
        assert server.running and _alive(server.pid)
        assert server.port != redis_server.port
        pid = server.pid
        client = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            limit = client.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
        finally:
            client.close()
        assert "pubsub 1048576 262144 2" in limit
        _assert_loopback_only(server)
    assert not server.running
    assert not _alive(pid)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    server.stop()  # twice is harmless


def test_bad_config_is_a_clear_error(redis_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SseSimError, match="did not start"):
        RedisServer(config={"no-such-directive": "1"})
    with pytest.raises(SseSimError, match="bad redis-server config"):
        RedisServer(config={"maxmemory": "1mb\nport 1"})


def test_binary_override_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_SIM_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(SseSimError, match="not an executable"):
        find_redis_server()


def test_no_binary_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSE_SIM_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SseSimError, match="no redis-server found"):
        find_redis_server()
