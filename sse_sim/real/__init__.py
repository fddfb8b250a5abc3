"""Real mode: an SSE gateway over real sockets and a real (or fake) Redis, and what it needs."""

from __future__ import annotations

from .redis_server import RedisServer, find_redis_server, free_port

__all__ = [
    "RedisServer",
    "find_redis_server",
    "free_port",
]
