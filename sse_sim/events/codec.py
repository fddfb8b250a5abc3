"""Compact JSON as the publishing services write it, with decimals kept exact both ways.

``dumps`` writes ``{"a":1}`` (no spaces, UTF-8 kept as is) and writes a ``Decimal`` as the
JSON number it is (``250.00`` stays ``250.00``), never through a float. ``loads`` reads every
non-integer number as a ``Decimal`` and rejects ``NaN`` and ``Infinity``, which are not JSON.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from typing import Any

__all__ = ["JSONDecodeProblem", "dumps", "loads"]


class JSONDecodeProblem(ValueError):
    """Text that is not JSON; ``line`` and ``column`` are 1-based (None if unknown)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(message + where)
        self.message = message
        self.line = line
        self.column = column


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def loads(text: str | bytes) -> Any:
    """Parse JSON text, numbers with a fraction or exponent as ``Decimal``; raise JSONDecodeProblem.

    >>> loads('{"balance": 0.1, "n": 3}')
    {'balance': Decimal('0.1'), 'n': 3}
    """
    if isinstance(text, bytes | bytearray):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise JSONDecodeProblem("not UTF-8 text", line, column) from None
    if not isinstance(text, str):
        raise TypeError(f"JSON text must be str or bytes, got {type(text).__name__}")
    if text[:1] == "\ufeff":
        text = text[1:]
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JSONDecodeProblem(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise JSONDecodeProblem("invalid JSON: nested too deeply to parse") from None
    except ValueError as exc:  # NaN / Infinity, or an integer too long to convert
        raise JSONDecodeProblem(f"invalid JSON: {exc}") from None


def dumps(obj: Any) -> str:
    """Compact JSON; ``Decimal`` values are written exactly as JSON numbers.

    >>> from decimal import Decimal
    >>> dumps({"balance": Decimal("1500.10"), "ok": True, "name": "é"})
    '{"balance":1500.10,"ok":true,"name":"é"}'
    """
    decimals: list[str] = []
    token = ""

    def default(value: Any) -> Any:
        nonlocal token
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"{value} is not a JSON number")
            if not token:
                token = "\0sse-sim-decimal-" + secrets.token_hex(8) + "-"
            # Fixed-point, as Go's shopspring/decimal writes it; exponent form only where
            # fixed-point would be absurdly long (the value is exact either way).
            exponent = value.as_tuple().exponent
            fixed = isinstance(exponent, int) and -100 <= exponent <= 100
            decimals.append(format(value, "f") if fixed else str(value))
            return f"{token}{len(decimals) - 1}"
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="python")
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    encoder = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
    )
    text = encoder.encode(obj)
    if decimals:
        # The placeholders were written as JSON strings; the random token makes a collision
        # with real data practically impossible, and the count check makes it detectable.
        marker = json.dumps(token, ensure_ascii=False)[:-1]
        pieces = text.split(marker)
        if len(pieces) != len(decimals) + 1:
            raise ValueError("could not place decimal values in the JSON output")
        out = [pieces[0]]
        for piece in pieces[1:]:
            index, _, rest = piece.partition('"')
            out.append(decimals[int(index)])
            out.append(rest)
        text = "".join(out)
    return text
