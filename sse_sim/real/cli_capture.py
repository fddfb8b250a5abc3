"""``sse-sim capture``: record live SSE traffic from a Redis into a Parquet trace."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``capture`` to the sse-sim command line."""

    @app.command("capture")
    def capture_cmd(
        redis_url: Annotated[str, typer.Option("--redis-url", help="The Redis the backend services publish to.")],
        out: Annotated[Path, typer.Option("--out", help="The trace to write (.parquet).")],
        pattern: Annotated[str, typer.Option("--pattern", help="Channels to capture (PSUBSCRIBE pattern).")] = "SSE::*",
        duration: Annotated[
            float | None, typer.Option("--duration", min=0.001, help="Seconds to capture; default: until Ctrl-C.")
        ] = None,
        hash_players: Annotated[
            bool, typer.Option("--hash-players", help="Replace player ids with a keyed hash (the key is not stored).")
        ] = False,
    ) -> None:
        """Record every event published on the SSE channels, with its size and arrival time, until --duration or Ctrl-C."""
        from .capture import CaptureError, capture

        if out.suffix != ".parquet":
            typer.echo(f"sse-sim: --out {out}: the trace is written as Parquet; name it *.parquet", err=True)
            raise typer.Exit(2)
        if not out.parent.exists():
            typer.echo(f"sse-sim: --out {out}: folder {out.parent} does not exist", err=True)
            raise typer.Exit(2)

        def progress(events: int, elapsed_s: float) -> None:
            rate = events / elapsed_s if elapsed_s > 0 else 0.0
            print(f"\rcaptured {events:,} events in {elapsed_s:,.0f} s ({rate:,.1f}/s)", end="", file=sys.stderr, flush=True)

        try:
            summary = capture(redis_url, out, pattern=pattern, duration_s=duration, hash_players=hash_players, progress=progress)
        except CaptureError as exc:
            print(file=sys.stderr)
            typer.echo(f"sse-sim: capture: {exc}", err=True)
            raise typer.Exit(1) from None
        print(file=sys.stderr)
        how = {"duration": "after --duration", "interrupt": "on Ctrl-C", "redis": "when Redis dropped"}[summary.stopped_by]
        skipped = f", {summary.skipped} message(s) that were not SSE events skipped" if summary.skipped else ""
        typer.echo(f"wrote {summary.path}: {summary.events:,} events in {summary.duration_s:,.1f} s, stopped {how}{skipped}")
