"""The real SSE gateway: ``GET /gateway/sse/{brand_id}/stream`` over uvicorn, fed by one shared Redis subscription.

The rooms, each with one job:

- :mod:`.app`: the ASGI app (routing, tokens, the stream endpoint, metrics and health);
- :mod:`.admission`: who may open which stream, and who may read the metrics;
- :mod:`.browser`: what pages need: CORS, preflights, refusals an EventSource can read;
- :mod:`.fanout`: per-connection bounded queues, overflow policies, writers, event fates;
- :mod:`.replay`: stream and latest delivery: what a (re)subscribing stream is sent first;
- :mod:`.demo`: the ``/gateway/demo`` page that opens a stream in a browser;
- :mod:`.subscriber`: the one shared Redis subscription per gateway process;
- :mod:`.limits`: the HTTP-level limits (head size and deadline, idle, connection caps);
- :mod:`.server`: serving with uvicorn, in the foreground (one or more worker processes) or in a
  background thread;
- :mod:`.backends`: where Redis comes from (fakeredis, a URL, a throwaway redis-server);
- :mod:`.compat`: every reach into uvicorn's and redis-py's private internals.

Public names load their module on first use (PEP 562): ``sse-sim token`` needs only
:func:`secret_from_env`, and the fan-out's import of the scenario model (pydantic, numpy) would
slow its start-up for nothing.
"""

from __future__ import annotations

import typing as _typing

if _typing.TYPE_CHECKING:
    from .admission import STREAM_PATH, TOKEN_COOKIE, TOKEN_HEADER
    from .app import Gateway, create_gateway
    from .backends import (
        DEV_SECRET,
        Backend,
        fakeredis_factory,
        make_backend,
        redis_factory,
        secret_from_env,
    )
    from .fanout import OVERFLOW_POLICIES, ConnectionInfo, EventFate
    from .server import GatewayThread, run_gateway, start_gateway
    from .subscriber import SUBSCRIPTION_MODES

__all__ = [
    "Gateway",
    "GatewayThread",
    "EventFate",
    "ConnectionInfo",
    "create_gateway",
    "run_gateway",
    "start_gateway",
    "redis_factory",
    "fakeredis_factory",
    "make_backend",
    "Backend",
    "secret_from_env",
    "OVERFLOW_POLICIES",
    "SUBSCRIPTION_MODES",
    "STREAM_PATH",
    "TOKEN_HEADER",
    "TOKEN_COOKIE",
    "DEV_SECRET",
]

_MODULE_OF = {
    "STREAM_PATH": "admission",
    "TOKEN_COOKIE": "admission",
    "TOKEN_HEADER": "admission",
    "Gateway": "app",
    "create_gateway": "app",
    "DEV_SECRET": "backends",
    "Backend": "backends",
    "fakeredis_factory": "backends",
    "make_backend": "backends",
    "redis_factory": "backends",
    "secret_from_env": "backends",
    "OVERFLOW_POLICIES": "fanout",
    "ConnectionInfo": "fanout",
    "EventFate": "fanout",
    "GatewayThread": "server",
    "run_gateway": "server",
    "start_gateway": "server",
    "SUBSCRIPTION_MODES": "subscriber",
}


def __getattr__(name: str) -> _typing.Any:
    """Load a public name from the module that defines it, on first use (PEP 562)."""
    where = _MODULE_OF.get(name)
    if where == "admission":
        from . import admission as module
    elif where == "app":
        from . import app as module
    elif where == "backends":
        from . import backends as module
    elif where == "fanout":
        from . import fanout as module
    elif where == "server":
        from . import server as module
    elif where == "subscriber":
        from . import subscriber as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
