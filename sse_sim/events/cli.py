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
from typing import Annotated, Any

import typer

from .codec import JSONDecodeProblem, loads
from .validate import Problem, check_event, locate

__all__ = ["register", "validate_source"]

FORMATS = ("auto", "json", "jsonl")


def _json_problem(exc: JSONDecodeProblem) -> str:
    where = f" (column {exc.column})" if exc.column is not None else ""
    return f"$: {exc.message}{where}"


def _validate_document(text: str | bytes, strict: bool) -> list[tuple[int, str]]:
    try:
        obj = loads(text)
    except JSONDecodeProblem as exc:
        return [(exc.line or 1, _json_problem(exc))]
    items: list[tuple[tuple[str | int, ...], Any]] = (
        [((i,), item) for i, item in enumerate(obj)] if isinstance(obj, list) else [((), obj)]
    )
    if isinstance(obj, list) and not obj:
        return [(1, "$: expected an event or a non-empty array of events, got an empty array")]
    out = []
    source = text if isinstance(text, str) else None
    for prefix, item in items:
        for problem in check_event(item, strict=strict):
            loc = (*prefix, *problem.loc)
            if source is None:
                source = bytes(text).decode("utf-8")  # type: ignore[arg-type]
            where = locate(source, loc)
            out.append((where[0] if where else 1, str(Problem(loc, problem.message))))
    return out


def _validate_lines(raw: bytes, strict: bool) -> tuple[list[tuple[int, str]], int]:
    out: list[tuple[int, str]] = []
    events = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        events += 1
        try:
            obj = loads(line)
        except JSONDecodeProblem as exc:
            out.append((number, _json_problem(exc)))
            continue
        out.extend((number, str(p)) for p in check_event(obj, strict=strict))
    return out, events


def validate_source(
    raw: bytes, *, strict: bool = False, fmt: str = "auto"
) -> tuple[list[tuple[int, str]], int]:
    """The (line, "path: message") problems of a JSON or JSON-lines input, and its event count."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        return [(1, "$: no events (the input is empty)")], 0
    if fmt == "jsonl":
        return _validate_lines(raw, strict)
    if fmt == "auto":
        try:
            obj_text: str | bytes = raw.decode("utf-8")
        except UnicodeDecodeError:
            obj_text = raw
        try:
            obj = loads(obj_text)
        except JSONDecodeProblem as exc:
            # A first value followed by more values is JSON lines; anything else is broken JSON.
            several = raw.strip().count(b"\n") > 0
            if "Extra data" in exc.message or (exc.message == "not UTF-8 text" and several):
                return _validate_lines(raw, strict)
            return [(exc.line or 1, _json_problem(exc))], 0
        count = len(obj) if isinstance(obj, list) else 1
        return _validate_document(obj_text, strict), count
    problems = _validate_document(raw, strict)
    return problems, 1


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
