"""Real mode: an SSE gateway over real sockets and a real (or fake) Redis, and what it needs.

Names are loaded from their module on first use (PEP 562), so that ``sse-sim token`` and the
gateway's command line do not load numpy and pandas through the runner.
"""

from __future__ import annotations

import typing as _typing

if _typing.TYPE_CHECKING:
    from .auth import QUERY_TOKEN_MAX_TTL_S, TokenClaims, TokenError, mint_token, verify_token
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

_AUTH = ("TokenClaims", "TokenError", "mint_token", "verify_token", "QUERY_TOKEN_MAX_TTL_S")
_REDIS_SERVER = ("RedisServer", "find_redis_server", "free_port")


def __getattr__(name: str) -> _typing.Any:
    """Load a public name from the module that defines it, on first use (PEP 562)."""
    if name == "run_real":
        from . import runner as module
    elif name in _AUTH:
        from . import auth as module
    elif name in _REDIS_SERVER:
        from . import redis_server as module
    elif name in __all__:
        from . import gateway as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
