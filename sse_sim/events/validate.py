"""Validation of SSE event JSON: every problem named by its JSON path, with what was expected.

Two modes. **Lenient** (the default) accepts what the documented gateway would forward and a
client could use: unknown event types, unknown fields, decimals sent as numeric strings.
**Strict** holds events to the documentation exactly: registered event types only, no unknown
fields, documented notification kinds, ``is_read`` false, decimals as JSON numbers.

>>> [str(p) for p in check_event({"brand_id": 1001, "player_id": -1, "event_type": "x", "event_data": {}})]
['$.player_id: expected an integer in 1..9223372036854775807, got integer -1']
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import EventValidationError
from ..validation_errors import describe_errors, format_path
from .codec import JSONDecodeProblem, loads
from .models import SYSTEM_EVENT_MODELS, Envelope, SystemEvent, describe_json
from .registry import DEFAULT_REGISTRY, EventRegistry

__all__ = [
    "InvalidEventError",
    "Locator",
    "Problem",
    "check_event",
    "check_json",
    "format_path",
    "locate",
    "parse_event",
    "validate_event",
]

Loc = tuple[str | int, ...]
_ENVELOPE_FIELDS = frozenset(Envelope.model_fields)
_STRICT = {"strict": True}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an event: where (``loc``, a key/index path) and what was expected."""

    loc: Loc
    message: str

    @property
    def path(self) -> str:
        """The location as a JSON path, e.g. ``$.event_data.message_id``."""
        return format_path(self.loc)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidEventError(EventValidationError):
    """An event failed validation; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        text = "; ".join(str(p) for p in problems[:5])
        if len(problems) > 5:
            text += f"; and {len(problems) - 5} more"
        super().__init__(f"invalid event: {text}")


def _from_pydantic(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    return [Problem(p.loc, p.message) for p in describe_errors(exc, model)]


def _extra_fields(obj: dict[str, Any], allowed: Any, prefix: Loc, what: str) -> list[Problem]:
    return [
        Problem((*prefix, key), f"unexpected field (strict: not in the documented {what})")
        for key in obj
        if key not in allowed
    ]


# "connected, keepalive, error or recovery", for the message naming the system event types
_SYSTEM_NAMES = ", ".join(list(SYSTEM_EVENT_MODELS)[:-1]) + " or " + list(SYSTEM_EVENT_MODELS)[-1]


def _validate(
    obj: Any, strict: bool, registry: EventRegistry | None
) -> tuple[BaseModel | None, list[Problem]]:
    registry = DEFAULT_REGISTRY if registry is None else registry
    if not isinstance(obj, dict):
        return None, [
            Problem(
                (),
                f"expected a JSON object (an event envelope or a system event), got {describe_json(obj)}",
            )
        ]
    context = _STRICT if strict else None
    if "event_type" not in obj and "type" in obj:
        kind = obj["type"]
        system = SYSTEM_EVENT_MODELS.get(kind) if isinstance(kind, str) else None
        if system is None:
            return None, [
                Problem(
                    ("type",),
                    f"expected a system event type ({_SYSTEM_NAMES}), got {describe_json(kind)}",
                )
            ]
        problems = _extra_fields(obj, system.model_fields, (), f"{kind} event") if strict else []
        try:
            model = system.model_validate(obj, context=context)
        except ValidationError as exc:
            return None, _from_pydantic(exc, system) + problems
        return (None if problems else model), problems

    event_type = obj.get("event_type")
    registered = registry.get(event_type) if isinstance(event_type, str) else None
    problems = []
    if strict:
        problems.extend(_extra_fields(obj, _ENVELOPE_FIELDS, (), "envelope"))
        if registered is None and isinstance(event_type, str) and event_type:
            problems.append(
                Problem(
                    ("event_type",),
                    f"unknown event type {event_type!r} (strict: registered types are {', '.join(registry.names())})",
                )
            )
        data = obj.get("event_data")
        if registered is not None and registered.payload is not None and isinstance(data, dict):
            problems.extend(
                _extra_fields(
                    data,
                    registered.payload.model_fields,
                    ("event_data",),
                    f"{event_type} event_data",
                )
            )
    model_cls = registered.envelope if registered is not None else _ANY_ENVELOPE
    try:
        model = model_cls.model_validate(obj, context=context)
    except ValidationError as exc:
        return None, _from_pydantic(exc, model_cls) + problems
    return (None if problems else model), problems


_ANY_ENVELOPE = EventRegistry().register("any", None).envelope


def check_event(
    obj: Any, *, strict: bool = False, registry: EventRegistry | None = None
) -> list[Problem]:
    """Every problem of one parsed JSON event (envelope or system event); empty when it is valid."""
    return _validate(obj, strict, registry)[1]


def validate_event(
    obj: Any, *, strict: bool = False, registry: EventRegistry | None = None
) -> BaseModel:
    """The typed model of one parsed JSON event; raises InvalidEventError listing every problem.

    Returns an :class:`~sse_sim.events.models.Envelope` (``event_data`` typed when the event type
    is registered with a payload model) or a :class:`~sse_sim.events.models.SystemEvent`.
    """
    model, problems = _validate(obj, strict, registry)
    if problems or model is None:
        raise InvalidEventError(problems)
    return model


def check_json(
    text: str | bytes, *, strict: bool = False, registry: EventRegistry | None = None
) -> list[Problem]:
    """Every problem of one JSON text holding one event, invalid JSON included (at ``$``)."""
    try:
        obj = loads(text)
    except JSONDecodeProblem as exc:
        return [Problem((), str(exc))]
    return _validate(obj, strict, registry)[1]


def parse_event(
    text: str | bytes, *, strict: bool = False, registry: EventRegistry | None = None
) -> Envelope[Any] | SystemEvent:
    """Parse and validate one event from JSON text (e.g. an SSE ``data``); decimals stay exact.

    Raises InvalidEventError (an EventValidationError) for invalid JSON or an invalid event.
    """
    try:
        obj = loads(text)
    except JSONDecodeProblem as exc:
        raise InvalidEventError([Problem((), str(exc))]) from None
    return validate_event(obj, strict=strict, registry=registry)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- locate in text

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def locate(text: str, loc: Sequence[str | int]) -> tuple[int, int] | None:
    """(line, column), 1-based, of the value at ``loc`` in a JSON text, or of its deepest parent.

    Used to point at the line of a problem inside a pretty-printed file. Returns None if the text
    is not valid JSON at the start. For many lookups in one text use :class:`Locator`.
    """
    return Locator(text).locate(loc)


class Locator:
    """Repeated :func:`locate` lookups in one JSON text, each container scanned at most once.

    A file of N events with a problem in each asks N lookups; scanning the array from its start
    and counting newlines from the text's start for each one made that quadratic (10,000 items:
    two minutes). Here what a scan found is kept -- an object's key positions, an array's item
    positions so far -- and lines are found by bisection in the newline offsets, so all the
    lookups of one text together cost about one parse of it.
    """

    def __init__(self, text: str):
        self.text = text
        self._root: int | None = None
        self._objects: dict[int, dict[str, int]] = {}  # object position -> value position by key
        self._arrays: dict[int, _ArrayScan] = {}
        self._newlines: list[int] | None = None

    def locate(self, loc: Sequence[str | int]) -> tuple[int, int] | None:
        """(line, column), 1-based, of the value at ``loc`` or of its deepest parent; None if not JSON."""
        try:
            pos = self._position(loc)
        except (ValueError, IndexError, RecursionError):
            return None
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        before = bisect.bisect_left(self._newlines, pos)  # newlines before pos
        line_start = self._newlines[before - 1] + 1 if before else 0
        return before + 1, pos - line_start + 1

    def _position(self, loc: Sequence[str | int]) -> int:
        text = self.text
        if self._root is None:
            pos = _skip(text, 0)
            if text[pos : pos + 1] == "\ufeff":
                pos = _skip(text, pos + 1)
            self._root = pos
        pos = self._root
        for key in loc:
            found = None
            if isinstance(key, str) and text[pos] == "{":
                keys = self._objects.get(pos)
                if keys is None:
                    keys = self._objects[pos] = _scan_object(text, pos)
                found = keys.get(key)
            elif isinstance(key, int) and text[pos] == "[":
                array = self._arrays.get(pos)
                if array is None:
                    array = self._arrays[pos] = _ArrayScan(text, pos)
                found = array.item(key)
            if found is None:
                return pos
            pos = found
        return pos


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]


def _scan_object(text: str, pos: int) -> dict[str, int]:
    """The value position of each key of the object that opens at ``pos``."""
    keys: dict[str, int] = {}
    cur = _skip(text, pos + 1)
    while text[cur] != "}":
        name, cur = json.decoder.scanstring(text, cur + 1)  # type: ignore[attr-defined]
        cur = _skip(text, cur)
        cur = _skip(text, cur + 1)  # the colon
        keys[name] = cur  # with duplicate keys the last one counts, as when parsing
        _, cur = _DECODER.raw_decode(text, cur)
        cur = _skip(text, cur)
        if text[cur] == ",":
            cur = _skip(text, cur + 1)
    return keys


class _ArrayScan:
    """The item positions of the array that opens at ``pos``, scanned only as far as asked.

    Stopping at the item asked for (not at the array's end) keeps :func:`locate` answering for
    a text that is broken further on, as it always did.
    """

    def __init__(self, text: str, pos: int):
        self.text = text
        self.items: list[int] = []  # start of each item found so far
        self.stepped = 0  # how many of them were decoded, i.e. stepped over
        self.cur = _skip(text, pos + 1)  # just past the last item stepped over
        self.done = False

    def item(self, index: int) -> int | None:
        """The position of item ``index``, or None if the array has no such item."""
        text, items = self.text, self.items
        while not self.done and not 0 <= index < len(items):
            if len(items) > self.stepped:
                _, cur = _DECODER.raw_decode(text, items[-1])
                cur = _skip(text, cur)
                if text[cur] == ",":
                    cur = _skip(text, cur + 1)
                self.cur = cur
                self.stepped += 1
            if text[self.cur] == "]":
                self.done = True
            else:
                items.append(self.cur)
        return items[index] if 0 <= index < len(items) else None
