"""``sse-sim calibrate``: this host's socket buffering and the gateway's per-event costs, as a scenario fragment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to the sse-sim command line."""

    @app.command("calibrate")
    def calibrate_cmd(
        redis_url: Annotated[
            str | None,
            typer.Option("--redis-url", help="Measure the gateway on this Redis; default: an in-process fakeredis."),
        ] = None,
        events: Annotated[
            int, typer.Option("--events", min=10, max=100_000, help="Events published to time the gateway (then again in one pipeline).")
        ] = 500,
        payload_bytes: Annotated[
            list[int] | None,
            typer.Option("--payload-bytes", min=1, max=1 << 20, help="Payload size to measure socket buffering for (repeatable); default 130, 450, 20000."),
        ] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Also write the scenario fragment to this file.")] = None,
        no_gateway: Annotated[bool, typer.Option("--no-gateway", help="Measure the socket buffers only.")] = False,
        timeout: Annotated[
            float, typer.Option("--timeout", min=0.1, max=600, help="Seconds to wait for any one step (connecting, an event, the burst).")
        ] = 10.0,
    ) -> None:
        """Measure kernel socket buffering and the real gateway's per-event costs here; print them as a scenario fragment."""
        from .calibrate import DEFAULT_PAYLOADS, calibrate

        if out is not None and not out.parent.exists():
            typer.echo(f"sse-sim: --out {out}: folder {out.parent} does not exist", err=True)
            raise typer.Exit(2)
        sizes = tuple(payload_bytes) if payload_bytes else DEFAULT_PAYLOADS
        result = calibrate(sizes, events=events, redis_url=redis_url, gateway=not no_gateway, timeout_s=timeout)
        fragment = result.fragment()
        typer.echo(fragment, nl=False)
        if out is not None:
            try:
                out.write_text(fragment)
            except OSError as exc:
                typer.echo(f"sse-sim: --out {out}: {exc.strerror or exc}", err=True)
                raise typer.Exit(2) from None
            typer.echo(f"wrote {out}")
