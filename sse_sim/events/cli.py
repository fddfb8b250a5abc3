"""``sse-sim validate-events`` and ``sse-sim schema events``: check event files, print schemas.

``validate-events`` reads JSON (one event, or an array of events) or JSON lines, from a file or
stdin (``-``). It prints one ``FILE:LINE: $.json.path: message`` line per problem and exits 1
if there is any, 0 if all events are valid, 2 if the file cannot be read. Any input, however
broken (binary, truncated, huge, deeply nested), gets those lines, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def _read(file: str) -> tuple[str, bytes]:
    if file == "-":
        return "<stdin>", sys.stdin.buffer.read()
    path = Path(file)
    try:
        return file, path.read_bytes()
    except OSError as exc:
        typer.echo(f"sse-sim: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer, schema_app: typer.Typer) -> None:
    """Add ``validate-events`` to ``app`` and ``events`` to ``schema_app``."""

    @app.command("validate-events")
    def validate_events(
        file: Annotated[
            str,
            typer.Argument(
                help="JSON or JSON-lines file of events; - reads stdin.", show_default=False
            ),
        ],
        strict: Annotated[
            bool,
            typer.Option(
                "--strict/--lenient",
                help="Strict: documented types and fields only; lenient accepts unknown ones.",
            ),
        ] = False,
        fmt: Annotated[
            str, typer.Option("--format", help="auto (JSON, else JSON lines), json or jsonl.")
        ] = "auto",
    ) -> None:
        """Validate SSE events; one FILE:LINE: $.path: message line per problem, exit 1 if any."""
        from .files import FORMATS, validate_source

        if fmt not in FORMATS:
            typer.echo(f"sse-sim: --format {fmt!r}: expected one of {', '.join(FORMATS)}", err=True)
            raise typer.Exit(2)
        name, raw = _read(file)
        problems, events = validate_source(raw, strict=strict, fmt=fmt)
        mode = "strict" if strict else "lenient"
        if problems:
            for line, message in problems:
                typer.echo(f"{name}:{line}: {message}")
            bad = len({line for line, _ in problems})
            typer.echo(
                f"{name}: {len(problems)} problem(s) on {bad} line(s), {events} event(s) read ({mode})",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{name}: {events} event(s), all valid ({mode})")

    @schema_app.command("events")
    def schema_events(
        event: Annotated[
            str | None,
            typer.Option("--event", help="Print only this event type's schema, e.g. notification."),
        ] = None,
        strict: Annotated[
            bool, typer.Option("--strict", help="The strict schema: no unknown fields or types.")
        ] = False,
    ) -> None:
        """The JSON Schema of SSE events (all of them, or one with --event)."""
        from .schema import event_json_schema, events_json_schema

        if event is None:
            schema = events_json_schema(strict=strict)
        else:
            try:
                schema = event_json_schema(event, strict=strict)
            except KeyError as exc:
                typer.echo(f"sse-sim: {exc.args[0]}", err=True)
                raise typer.Exit(2) from None
        typer.echo(json.dumps(schema, indent=2))
