"""Where the gateway's Redis comes from: fakeredis in-process, a Redis URL, or a throwaway redis-server."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import SseSimError

__all__ = [
    "DEV_SECRET",
    "Backend",
    "RedisClientFactory",
    "check_secret_for_host",
    "fakeredis_factory",
    "is_loopback",
    "make_backend",
    "redis_factory",
    "secret_from_env",
]

RedisClientFactory = Callable[[], Any]

DEV_SECRET = b"sse-sim-development-secret-not-for-production"
"""Secret used when none is given, so ``sse-sim token`` and ``sse-sim gateway`` agree out of the box.

It is public (it is in this file), so a gateway signing with it serves loopback only: see
:func:`check_secret_for_host`.
"""


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine only: 127.0.0.0/8, ::1 or ``localhost``.

    Other names are not resolved: what a name resolves to can change after the check.
    """
    if not host:
        return False  # "" binds every interface
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_secret_for_host(host: str, secret: bytes) -> None:
    """Refuse (:class:`SseSimError`) to serve a non-loopback ``host`` with the development secret.

    Anyone can mint a token with the public development secret (``sse-sim token`` does), so a
    gateway that signs with it and listens beyond this machine would let anyone read any
    player's stream. Call it before binding, so that nothing ever listens.
    """
    if bytes(secret) == DEV_SECRET and not is_loopback(host):
        raise SseSimError(
            f"refusing to listen on {host or 'every interface'!r} with the built-in development"
            " secret, which anyone can use to mint tokens: give a secret of at least 16 bytes"
            " with --secret or $SSE_SIM_SECRET, or listen on 127.0.0.1"
        )


def redis_factory(url: str, **kwargs: Any) -> RedisClientFactory:
    """A factory of redis-py asyncio clients for ``url`` (bytes responses, as the gateway expects)."""
    import redis.asyncio as aredis

    def make() -> Any:
        return aredis.Redis.from_url(url, **kwargs)

    return make


def fakeredis_factory(server: Any) -> RedisClientFactory:
    """A factory of fakeredis asyncio clients on ``server`` (a ``fakeredis.FakeServer``)."""
    import fakeredis

    def make() -> Any:
        return fakeredis.FakeAsyncRedis(server=server)

    return make


@dataclass
class Backend:
    """A gateway's Redis: the client factory, and what a publisher needs to reach the same Redis.

    ``fake_server`` is the ``fakeredis.FakeServer`` (fakeredis backend), ``redis_url`` the URL
    (redis backend) and ``redis_server`` the throwaway redis-server :func:`make_backend` started,
    which its owner must ``stop()``.
    """

    factory: RedisClientFactory
    fake_server: Any = None
    redis_url: str | None = None
    redis_server: Any = None


def make_backend(
    backend: str = "fakeredis",
    *,
    redis_url: str | None = None,
    fake_server: Any = None,
    redis_config: dict[str, str] | None = None,
) -> Backend:
    """Set up a gateway's Redis by name: ``fakeredis`` or ``redis``.

    ``fakeredis`` uses ``fake_server`` (a ``fakeredis.FakeServer``) or a new one. ``redis`` uses
    ``redis_url``, or starts a throwaway redis-server with ``redis_config``; stop it through
    ``Backend.redis_server`` when done.
    """
    if backend == "fakeredis":
        if redis_url is not None:
            raise SseSimError("--redis-url needs --backend redis")
        import fakeredis

        server = fake_server if fake_server is not None else fakeredis.FakeServer()
        return Backend(fakeredis_factory(server), fake_server=server)
    if backend == "redis":
        if redis_url is not None:
            if not redis_url.startswith(("redis://", "rediss://", "unix://")):
                raise SseSimError(
                    f"--redis-url must start with redis://, rediss:// or unix://, got {redis_url!r}"
                )
            return Backend(redis_factory(redis_url), redis_url=redis_url)
        from ..redis_server import RedisServer

        server = RedisServer(config=redis_config)
        return Backend(redis_factory(server.url), redis_url=server.url, redis_server=server)
    raise SseSimError(f"unknown backend {backend!r} (allowed: fakeredis, redis)")


def secret_from_env(value: str | None = None) -> bytes:
    """The token secret: ``value``, else ``$SSE_SIM_SECRET``, else the development secret."""
    text = value if value is not None else os.environ.get("SSE_SIM_SECRET")
    if text is None:
        return DEV_SECRET
    secret = text.encode()
    if len(secret) < 16:
        raise SseSimError(
            "the token secret (--secret or $SSE_SIM_SECRET) must be at least 16 bytes"
        )
    return secret
