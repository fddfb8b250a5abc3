"""``sse-sim validate-events``, ``sse-sim publish`` and ``sse-sim schema events``: check, publish, print schemas.

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

    @app.command("publish")
    def publish_cmd(
        redis_url: Annotated[str, typer.Option("--redis-url", help="Redis to publish to, e.g. redis://127.0.0.1:6379/0.")],
        brand: Annotated[int, typer.Option("--brand", help="Casino brand id.")],
        player: Annotated[int, typer.Option("--player", help="Player id.")],
        event_type: Annotated[str, typer.Option("--type", help="Envelope event_type, e.g. notification.")],
        data: Annotated[str, typer.Option("--data", help="event_data as JSON, e.g. '{\"balance\": 1500}'.")],
        delivery: Annotated[
            str, typer.Option("--delivery", help="pubsub (PUBLISH), stream (XADD + PUBLISH) or latest (SET + PUBLISH).")
        ] = "pubsub",
        history_size: Annotated[int, typer.Option("--history-size", min=1, help="stream: entries kept (MAXLEN ~).")] = 100,
        history_ttl: Annotated[
            float | None, typer.Option("--history-ttl", min=0.001, help="stream: seconds kept (MINID ~); default: no TTL.")
        ] = None,
        strict: Annotated[bool, typer.Option("--strict", help="Validate strictly: documented types and fields only.")] = False,
    ) -> None:
        """Publish one event as the backend services do; exit 1 if the event is invalid or Redis fails."""
        import redis as redis_lib

        from .publisher import DELIVERIES, publish_delivery
        from .validate import InvalidEventError, check_event

        if delivery not in DELIVERIES:
            typer.echo(f"sse-sim: --delivery {delivery!r}: expected one of {', '.join(DELIVERIES)}", err=True)
            raise typer.Exit(2)
        try:
            event_data = json.loads(data)
        except ValueError as exc:
            typer.echo(f"sse-sim: --data is not JSON: {exc}", err=True)
            raise typer.Exit(2) from None
        envelope = {"brand_id": brand, "player_id": player, "event_type": event_type, "event_data": event_data}
        problems = check_event(envelope, strict=strict)
        if problems:
            for problem in problems:
                typer.echo(f"sse-sim: invalid event: {problem}", err=True)
            raise typer.Exit(1)
        try:
            client = redis_lib.Redis.from_url(redis_url, socket_connect_timeout=5)
        except ValueError as exc:
            typer.echo(f"sse-sim: --redis-url {redis_url!r}: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            done = publish_delivery(
                client, brand, player, event_type, event_data,
                delivery=delivery, history_size=history_size, history_ttl_s=history_ttl,
            )
        except InvalidEventError as exc:
            typer.echo(f"sse-sim: invalid event: {exc}", err=True)
            raise typer.Exit(1) from None
        except redis_lib.RedisError as exc:
            typer.echo(f"sse-sim: Redis at {redis_url}: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            client.close()
        entry = f", stream entry {done.entry_id}" if done.entry_id else ""
        typer.echo(f"published to SSE::{brand}::{player} ({delivery}{entry}): {done.receivers} subscriber(s) received it")

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
