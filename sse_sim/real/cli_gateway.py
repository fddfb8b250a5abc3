"""The ``sse-sim gateway`` and ``sse-sim token`` commands: serve the real SSE gateway, mint tokens for it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import SseSimError

SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--secret",
        envvar="SSE_SIM_SECRET",
        help="Token signing secret (at least 16 bytes); default: the built-in development secret (loopback only).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``gateway`` and ``token`` to the sse-sim command line."""

    @app.command()
    def gateway(
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", help="TCP port (0 = any free port).", min=0, max=65535)
        ] = 8080,
        backend: Annotated[
            str, typer.Option("--backend", help="fakeredis (in-process) or redis.")
        ] = "fakeredis",
        redis_url: Annotated[
            str | None,
            typer.Option(
                "--redis-url",
                help="Redis to subscribe to; with --backend redis and no URL a throwaway redis-server is started.",
            ),
        ] = None,
        buffer_size: Annotated[
            int,
            typer.Option(
                "--buffer-size", help="Events waiting per connection (K = buffer_size + 1).", min=1
            ),
        ] = 50,
        overflow_policy: Annotated[
            str, typer.Option("--overflow-policy", help="drop_newest, drop_oldest or disconnect.")
        ] = "drop_newest",
        max_queue_bytes: Annotated[
            int,
            typer.Option(
                "--max-queue-bytes",
                help="Bytes of events waiting per connection; past it the overflow policy applies (0 = no byte cap).",
                min=0,
            ),
        ] = 1 << 20,
        keepalive_interval: Annotated[
            float, typer.Option("--keepalive-interval", help="Seconds between keepalives.")
        ] = 15.0,
        reader_yield_every: Annotated[
            int,
            typer.Option(
                "--reader-yield-every",
                help="Shared reader yields after this many messages (0 = never while pending).",
                min=0,
            ),
        ] = 1,
        subscription: Annotated[
            str,
            typer.Option(
                "--subscription",
                help="channel (SUBSCRIBE per player) or pattern (one PSUBSCRIBE SSE::*).",
            ),
        ] = "channel",
        graceful_timeout: Annotated[
            float,
            typer.Option(
                "--graceful-timeout", help="Seconds a shutdown waits for stalled streams."
            ),
        ] = 3.0,
        secret: SecretOpt = None,
        cors_origin: Annotated[
            list[str] | None,
            typer.Option(
                "--cors-origin",
                metavar="ORIGIN",
                help="Origin whose pages may read the gateway, as https://casino.example (* = any, no cookies); repeatable.",
                show_default=False,
            ),
        ] = None,
        metrics_token: Annotated[
            str | None,
            typer.Option(
                "--metrics-token",
                envvar="SSE_SIM_METRICS_TOKEN",
                metavar="TOKEN",
                help="Bearer token /gateway/metrics asks for; without it only loopback clients may read the metrics.",
                show_default=False,
            ),
        ] = None,
        max_header_bytes: Annotated[
            int,
            typer.Option(
                "--max-header-bytes",
                help="Bytes a request head may take; beyond: 431 and the connection closes.",
                min=1024,
            ),
        ] = 64 * 1024,
        header_timeout: Annotated[
            float,
            typer.Option(
                "--header-timeout",
                help="Seconds a client has to finish its request head; then 408, or a close if it sent nothing.",
            ),
        ] = 10.0,
        idle_timeout: Annotated[
            float,
            typer.Option(
                "--idle-timeout",
                help="Seconds a kept-alive connection may wait for its next request (streams are never idle).",
            ),
        ] = 5.0,
        max_connections: Annotated[
            int | None,
            typer.Option(
                "--max-connections",
                help="Open connections per process; beyond: 503 + Retry-After. Default: 3/4 of the open-file limit.",
                min=1,
                show_default=False,
            ),
        ] = None,
        max_connections_per_ip: Annotated[
            int,
            typer.Option(
                "--max-connections-per-ip",
                help="Open connections per client address and process (0 = no cap); beyond: 503 + Retry-After.",
                min=0,
            ),
        ] = 1024,
        workers: Annotated[
            int,
            typer.Option(
                "--workers",
                help="Processes sharing the port (SO_REUSEPORT), each with its own subscription; needs --backend redis.",
                min=1,
            ),
        ] = 1,
        delivery: Annotated[
            str,
            typer.Option(
                "--delivery",
                help="How publishers send events: pubsub, stream (replayed after Last-Event-ID) or latest (conflated, cached).",
            ),
        ] = "pubsub",
        history_size: Annotated[
            int,
            typer.Option("--history-size", help="stream: newest entries per player that count as kept.", min=1),
        ] = 100,
        history_ttl: Annotated[
            float | None,
            typer.Option(
                "--history-ttl",
                help="stream: seconds an entry stays replayable (default: no limit).",
                show_default=False,
            ),
        ] = None,
        max_replay: Annotated[
            int,
            typer.Option("--max-replay", help="stream: most entries replayed on one reconnect (the newest).", min=1),
        ] = 300,
        retry_ms: Annotated[
            int | None,
            typer.Option(
                "--retry-ms",
                help="Send retry: MS with connected: the browsers' reconnect delay (default: theirs).",
                min=0,
                show_default=False,
            ),
        ] = None,
        delivery_type: Annotated[
            list[str] | None,
            typer.Option(
                "--delivery-type",
                metavar="TYPE=MODE",
                help="Delivery of one event type, overriding --delivery (repeatable), e.g. gamification_balance_update=latest.",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Serve GET /gateway/sse/{brand_id}/stream, /gateway/metrics and /healthz until Ctrl-C or SIGTERM."""
        from .gateway import DEV_SECRET, create_gateway, make_backend, run_gateway, secret_from_env
        from .gateway.backends import check_secret_for_host, is_loopback

        key = secret_from_env(secret)
        # Before the backend: a refused bind must not first start a throwaway redis-server.
        check_secret_for_host(host, key)
        if not keepalive_interval > 0:
            raise SseSimError("--keepalive-interval must be positive")
        if workers > 1 and backend != "redis":
            raise SseSimError(
                "--workers needs --backend redis: an in-process fakeredis cannot be shared between processes"
            )
        backend_obj = make_backend(backend, redis_url=redis_url)
        try:
            options: dict[str, Any] = dict(
                secret=key,
                buffer_size=buffer_size,
                overflow_policy=overflow_policy,
                max_queue_bytes=max_queue_bytes or None,
                keepalive_interval_s=keepalive_interval,
                reader_yield_every=reader_yield_every,
                subscription_mode=subscription,
                cors_origins=cors_origin or (),
                metrics_token=metrics_token,
                max_header_bytes=max_header_bytes,
                header_timeout_s=header_timeout,
                idle_timeout_s=idle_timeout,
                max_connections=max_connections,
                max_connections_per_ip=max_connections_per_ip,
                delivery=delivery,
                history_size=history_size,
                history_ttl_s=history_ttl,
                max_replay=max_replay,
                retry_ms=retry_ms,
                delivery_types=parse_delivery_types(delivery_type or ()),
            )
            # Built here even with --workers (each worker builds its own): a bad option fails
            # before anything listens.
            app_ = create_gateway(redis_client_factory=backend_obj.factory, **options)
            where = backend_obj.redis_url or "in-process fakeredis"
            if backend_obj.redis_server is not None:
                where += f" (throwaway redis-server, pid {backend_obj.redis_server.pid})"

            def ready(url: str) -> None:
                typer.echo(f"sse-sim gateway on {url}  backend: {where}")
                if workers > 1:
                    typer.echo(f"  workers: {workers} processes share the port")
                typer.echo(
                    f"  stream:  {url}/gateway/sse/{{brand_id}}/stream   metrics: {url}/gateway/metrics"
                )
                typer.echo(
                    f"  demo:    {url}/gateway/demo?brand=1001&player=12345&token=TOKEN"
                    "   (TOKEN: sse-sim token --brand 1001 --player 12345 --query)"
                )
                if delivery != "pubsub" or delivery_type:
                    typer.echo(f"  delivery: {delivery}" + "".join(f", {t}" for t in delivery_type or ()))
                if key == DEV_SECRET:
                    typer.echo(
                        "  tokens:  signed with the public development secret: loopback only"
                        " (set --secret or $SSE_SIM_SECRET to listen beyond this machine)"
                    )
                if metrics_token is None and not is_loopback(host):
                    typer.echo(
                        "  metrics: loopback clients only (set --metrics-token to serve others)"
                    )

            if workers > 1:
                run_gateway(
                    host,
                    port,
                    workers=workers,
                    redis_url=backend_obj.redis_url,
                    timeout_graceful_shutdown=graceful_timeout,
                    on_ready=ready,
                    **options,
                )
            else:
                run_gateway(
                    host,
                    port,
                    gateway=app_,
                    timeout_graceful_shutdown=graceful_timeout,
                    on_ready=ready,
                )
        finally:
            if backend_obj.redis_server is not None:
                backend_obj.redis_server.stop()
                typer.echo("stopped the throwaway redis-server")

    @app.command()
    def token(
        brand: Annotated[int, typer.Option("--brand", help="Brand id.")],
        player: Annotated[int, typer.Option("--player", help="Player id.")],
        ttl: Annotated[
            float | None,
            typer.Option(
                "--ttl",
                help="Lifetime in seconds; default 3600, or 60 with --query (its most).",
                show_default=False,
            ),
        ] = None,
        query: Annotated[
            bool,
            typer.Option(
                "--query", help="A token for a ?token= URL (a browser's EventSource): short-lived."
            ),
        ] = False,
        secret: SecretOpt = None,
    ) -> None:
        """Print a signed token for a player of a brand: x-auth-token, cookie or ?token= (for tests and demos)."""
        typer.echo(mint_cli_token(brand, player, ttl, query, secret))


def parse_delivery_types(items: Any) -> dict[str, str] | None:
    """``--delivery-type TYPE=MODE`` options as a dict (None if none); a malformed one raises."""
    from ..events.publisher import DELIVERIES

    types: dict[str, str] = {}
    for item in items:
        name, eq, mode = item.partition("=")
        if not eq or not name or mode not in DELIVERIES:
            raise SseSimError(
                f"--delivery-type {item!r}: give TYPE=MODE with MODE one of {', '.join(DELIVERIES)}"
            )
        types[name] = mode
    return types or None


def mint_cli_token(
    brand: int, player: int, ttl: float | None, query: bool, secret: str | None
) -> str:
    """The token ``sse-sim token`` prints; a ``--query`` token lives at most the query cap."""
    from .auth import QUERY_TOKEN_MAX_TTL_S, mint_token
    from .gateway import secret_from_env

    if ttl is None:
        ttl = QUERY_TOKEN_MAX_TTL_S if query else 3600.0
    elif query and ttl > QUERY_TOKEN_MAX_TTL_S:
        # Refused rather than clamped: a token that silently lives shorter than asked
        # would fail later, far from the cause.
        raise SseSimError(
            f"--ttl {ttl:g}: a ?token= may live at most {QUERY_TOKEN_MAX_TTL_S:g} s"
            " (URLs land in logs and history); give --ttl up to that, or drop --query"
            " for a header or cookie token"
        )
    return mint_token(secret_from_env(secret), brand, player, ttl)


_TOKEN_VALUE_OPTIONS = ("--brand", "--player", "--ttl", "--secret")


def token_without_typer(argv: list[str]) -> str | None:
    """The token for ``sse-sim token ...`` read straight from ``argv``, or None to leave it to typer.

    typer (0.29 and later) loads pydantic to convert every option it parses, which is most of
    the start-up time of a command that only signs a string. Only plain, complete arguments
    are read here (``--brand 1001``, ``--ttl=30``, ``--query``); help, a mistake or any other
    spelling returns None, and typer then answers (and words the error) as usual.
    """
    import re

    if argv[:1] != ["token"]:
        return None
    values: dict[str, str] = {}
    query = False
    rest = argv[1:]
    while rest:
        name, eq, inline = rest[0].partition("=")
        if name == "--query" and not eq and not query:
            query, rest = True, rest[1:]
        elif name in _TOKEN_VALUE_OPTIONS and name not in values and (eq or len(rest) > 1):
            values[name] = inline if eq else rest[1]
            rest = rest[1:] if eq else rest[2:]
        else:
            return None
    ids = [values.get("--brand", ""), values.get("--player", "")]
    if not all(re.fullmatch(r"[0-9]{1,19}", v) for v in ids):
        return None
    ttl = None
    if "--ttl" in values:
        try:
            ttl = float(values["--ttl"])
        except ValueError:
            return None
    return mint_cli_token(int(ids[0]), int(ids[1]), ttl, query, values.get("--secret"))
