"""The ``sse-sim gateway`` and ``sse-sim token`` commands: serve the real SSE gateway, mint tokens for it."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import SseSimError

SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--secret",
        envvar="SSE_SIM_SECRET",
        help="Token signing secret (at least 16 bytes); default: the built-in development secret.",
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
    ) -> None:
        """Serve GET /gateway/sse/{brand_id}/stream, /gateway/metrics and /healthz until Ctrl-C or SIGTERM."""
        from .gateway import DEV_SECRET, create_gateway, make_backend, run_gateway, secret_from_env

        key = secret_from_env(secret)
        if not keepalive_interval > 0:
            raise SseSimError("--keepalive-interval must be positive")
        backend_obj = make_backend(backend, redis_url=redis_url)
        try:
            app_ = create_gateway(
                redis_client_factory=backend_obj.factory,
                secret=key,
                buffer_size=buffer_size,
                overflow_policy=overflow_policy,
                keepalive_interval_s=keepalive_interval,
                reader_yield_every=reader_yield_every,
                subscription_mode=subscription,
            )
            where = backend_obj.redis_url or "in-process fakeredis"
            if backend_obj.redis_server is not None:
                where += f" (throwaway redis-server, pid {backend_obj.redis_server.pid})"

            def ready(url: str) -> None:
                typer.echo(f"sse-sim gateway on {url}  backend: {where}")
                typer.echo(
                    f"  stream:  {url}/gateway/sse/{{brand_id}}/stream   metrics: {url}/gateway/metrics"
                )
                if key == DEV_SECRET:
                    typer.echo(
                        "  tokens:  signed with the development secret (set --secret or $SSE_SIM_SECRET)"
                    )

            run_gateway(
                host, port, gateway=app_, timeout_graceful_shutdown=graceful_timeout, on_ready=ready
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
            float, typer.Option("--ttl", help="Lifetime in seconds (at most 60 for a ?token= URL).")
        ] = 3600.0,
        secret: SecretOpt = None,
    ) -> None:
        """Print a signed x-auth-token for a player of a brand (for tests and demos)."""
        from .auth import mint_token
        from .gateway import secret_from_env

        typer.echo(mint_token(secret_from_env(secret), brand, player, ttl))
