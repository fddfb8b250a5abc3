"""Validating a file of SSE events: JSON (one event or an array) or JSON lines, with line numbers.

Any input, however broken (binary, truncated, huge, deeply nested), gets one problem line per
problem, never an exception.
"""

from __future__ import annotations

from typing import Any

from .codec import JSONDecodeProblem, loads
from .validate import Locator, Problem, check_event

__all__ = ["validate_source", "FORMATS"]

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
    # One locator for the whole text: it keeps what it scanned, so a problem in each of N items
    # costs one pass over the array, not N passes from its start.
    locator = Locator(text) if isinstance(text, str) else None
    for prefix, item in items:
        for problem in check_event(item, strict=strict):
            loc = (*prefix, *problem.loc)
            if locator is None:
                locator = Locator(bytes(text).decode("utf-8"))  # type: ignore[arg-type]
            where = locator.locate(loc)
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
