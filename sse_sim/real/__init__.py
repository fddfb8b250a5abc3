"""Real mode: an SSE gateway over real sockets and a real (or fake) Redis, and what it needs."""

from __future__ import annotations

from .auth import QUERY_TOKEN_MAX_TTL_S, TokenClaims, TokenError, mint_token, verify_token
from .compare import Comparison, compare
from .gateway import (
    DEV_SECRET,
    OVERFLOW_POLICIES,
    STREAM_PATH,
    SUBSCRIPTION_MODES,
    TOKEN_COOKIE,
    TOKEN_HEADER,
    EventFate,
    Gateway,
    GatewayThread,
    create_gateway,
    fakeredis_factory,
    redis_factory,
    run_gateway,
    start_gateway,
)
from .redis_server import RedisServer, find_redis_server, free_port
from .runner import run_real

__all__ = [
    "run_real",
    "compare",
    "Comparison",
    "RedisServer",
    "find_redis_server",
    "free_port",
    "TokenClaims",
    "TokenError",
    "mint_token",
    "verify_token",
    "QUERY_TOKEN_MAX_TTL_S",
    "Gateway",
    "GatewayThread",
    "EventFate",
    "create_gateway",
    "run_gateway",
    "start_gateway",
    "redis_factory",
    "fakeredis_factory",
    "OVERFLOW_POLICIES",
    "SUBSCRIPTION_MODES",
    "STREAM_PATH",
    "TOKEN_HEADER",
    "TOKEN_COOKIE",
    "DEV_SECRET",
]
