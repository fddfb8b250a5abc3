"""Data files a scenario names (trace CSVs, empirical samples), read and checked when it is loaded.

Reading them at load time means a bad file fails ``sse-sim validate`` and ``load_scenario``,
not a simulation minutes later, and that building a workload or sampling does no I/O. Every
problem names the file and the line of the first bad row (1-based, the header is line 1),
says what is allowed, and counts the other bad rows of the same kind.

Cells are trimmed, so ``0.5, 3, notification`` reads as written; blank lines are skipped.
pandas parses the file (fast); only when something is wrong is the file walked again with the
:mod:`csv` module, to find the line of the bad row and its text exactly as written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DataFileError", "TraceRows", "TRACE_COLUMNS", "read_trace", "read_samples"]

TRACE_COLUMNS: tuple[str, ...] = ("published_at", "player", "event_type", "payload_bytes")


class DataFileError(ValueError):
    """A data file is missing or has a bad row; the message names the file and the line."""

    def __init__(self, path: Path, problem: str, line: int | None = None, *, missing: bool = False):
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.missing = missing


@dataclass(frozen=True, eq=False)
class TraceRows:
    """The rows of a trace file in file order, checked: what a trace publisher replays.

    ``event_type_code`` indexes ``event_types`` (names in order of first appearance); -1 means
    the cell was empty or the column absent, so the publisher's own ``event_type`` applies.
    ``payload_bytes`` 0 likewise means "draw from the publisher's ``payload_bytes``".
    """

    path: Path
    published_at: np.ndarray  # float64, seconds from start
    player: np.ndarray  # int32, index into the population
    event_type_code: np.ndarray  # int16
    event_types: tuple[str, ...]
    payload_bytes: np.ndarray  # int64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TraceRows):
            return NotImplemented
        return self.event_types == other.event_types and all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("published_at", "player", "event_type_code", "payload_bytes")
        )

    __hash__ = None  # type: ignore[assignment]


def read_trace(path: Path, n_players: int, event_types: Sequence[str]) -> TraceRows:
    """Read and check a trace CSV: ``published_at`` required; ``player``, ``event_type``, ``payload_bytes`` optional.

    ``event_types`` are the names an ``event_type`` cell may hold; a name outside them is taken
    for a typo rather than for a new event type.
    """
    header = _header(path)
    if header is None:
        raise DataFileError(path, f"the file is empty; expected a header line naming the columns ({_allowed()})", 1)
    if "published_at" not in header:
        raise DataFileError(
            path,
            f"no published_at column (seconds from start, required); the header has {', '.join(header)} "
            f"(allowed columns: {_allowed()})",
            1,
        )
    for i, name in enumerate(header):
        if name not in TRACE_COLUMNS:
            shown = repr(name) if name else f"{i + 1} (no name)"
            raise DataFileError(path, f"unknown column {shown} (allowed: {_allowed()})", 1)
        if name in header[:i]:
            raise DataFileError(path, f"column {name!r} appears twice", 1)
    frame = _frame(path, header)
    n = len(frame)
    check = _Checker(path, header, has_header=True)

    t = _numbers(frame["published_at"])
    check(~(np.isfinite(t) & (t >= 0)), "published_at", "a number of seconds >= 0")

    player = np.zeros(n, np.int32)
    if "player" in frame:
        p = _numbers(frame["player"])
        span = "0" if n_players == 1 else f"0..{n_players - 1}"
        bad = ~np.isfinite(p) | (p < 0) | (p >= n_players) | (p % 1 != 0)
        check(bad, "player", f"a player index {span} (the population has {n_players} player{'s' if n_players > 1 else ''})")
        player = p.astype(np.int32)

    names: tuple[str, ...] = ()
    codes = np.full(n, -1, np.int16)
    if "event_type" in frame:
        raw_codes, uniques = pd.factorize(frame["event_type"].to_numpy(object), use_na_sentinel=True)
        # trimming may merge two spellings; the first seen keeps its place, as pd.unique would
        merged: dict[str, int] = {}
        remap = np.full(len(uniques) + 1, -1, np.int64)
        for k, value in enumerate(uniques):
            name = str(value).strip()
            if name:
                remap[k] = merged.setdefault(name, len(merged))
        names = tuple(merged)
        codes = remap[raw_codes].astype(np.int16)
        unknown = np.array([name not in event_types for name in names] + [False])
        allowed = f"one of {', '.join(event_types)}, or empty for the publisher's event_type"
        check(unknown[codes], "event_type", allowed)

    sizes = np.zeros(n, np.int64)
    if "payload_bytes" in frame:
        b = _numbers(frame["payload_bytes"])
        given = _given(frame["payload_bytes"])
        bad = given & ~(np.isfinite(b) & (b >= 1) & (b % 1 == 0))
        allowed = "a whole number of bytes >= 1, or empty to draw from the publisher's payload_bytes"
        check(bad, "payload_bytes", allowed)
        sizes[given] = b[given].astype(np.int64)
    return TraceRows(path, t, player, codes, names, sizes)


def read_samples(path: Path, column: str | None) -> np.ndarray:
    """The values of one column of a CSV file, or of a one-column text file of numbers, checked >= 0.

    With ``column`` the first line is a header that must name it. Without it the first column
    is read, and the first line is a header unless it holds a number.
    """
    header = _header(path)
    if header is None:
        raise DataFileError(path, "the file is empty; expected numbers, one per line", 1)
    has_header = column is not None or not np.isfinite(_numbers(pd.Series(header[:1], dtype=object)))[0]
    if not has_header:
        header = [f"column {i + 1}" for i in range(len(header))]
    name = header[0] if column is None else column
    if name not in header:
        raise DataFileError(path, f"column {name!r} not in the header (columns: {', '.join(header)})", 1)
    frame = _frame(path, header, has_header)
    if frame.empty:
        raise DataFileError(path, f"column {name!r} has no values; expected at least one number >= 0")
    x = _numbers(frame[name])
    _Checker(path, header, has_header)(~(np.isfinite(x) & (x >= 0)), name, "a number >= 0")
    return x


# ------------------------------------------------------------------------------------ helpers


def _allowed() -> str:
    return ", ".join(TRACE_COLUMNS)


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """The non-blank records of a CSV file, trimmed, each with the line it starts on."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        last = 0
        for cells in reader:
            start, last = last + 1, reader.line_num
            # the lines pandas skips as blank: empty, or whitespace only
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            yield start, [c.strip() for c in cells]


def _walk(path: Path) -> Iterator[tuple[int, list[str]]]:
    """:func:`_records`, with every way reading can fail turned into a DataFileError."""
    records = _records(path)
    while True:
        try:
            item = next(records)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise DataFileError(path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        except csv.Error as exc:
            raise DataFileError(path, f"not valid CSV: {exc}") from None
        except OSError as exc:
            raise DataFileError(path, f"cannot read: {exc.strerror or exc}") from None
        yield item


def _header(path: Path) -> list[str] | None:
    if not path.exists():
        raise DataFileError(path, "file not found", missing=True)
    if not path.is_file():
        raise DataFileError(path, "not a file")
    first = next(_walk(path), None)
    return None if first is None else first[1]


def _frame(path: Path, header: list[str], has_header: bool = True) -> pd.DataFrame:
    """The data rows as a DataFrame with ``header`` as column names; NaN marks an empty cell."""
    try:
        frame = pd.read_csv(
            path,
            header=0 if has_header else None,
            skipinitialspace=True,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        _check_widths(path, header, has_header)
        raise DataFileError(path, f"not valid CSV: {exc}") from None
    if frame.shape[1] != len(header):
        _check_widths(path, header, has_header)
        raise DataFileError(path, f"expected {len(header)} columns, pandas read {frame.shape[1]}")
    frame.columns = header
    if frame.isna().to_numpy().any():
        # pandas fills a short row with NaN, as if its last cells were empty: tell them apart
        _check_widths(path, header, has_header)
    return frame


def _check_widths(path: Path, header: list[str], has_header: bool) -> None:
    """Raise for the first row whose number of fields differs from the header's."""
    records = _walk(path)
    if has_header:
        next(records, None)
    width = len(header)
    for line, cells in records:
        if len(cells) != width:
            names = f" ({', '.join(header)})" if has_header else ""
            raise DataFileError(
                path, f"expected {width} field{'' if width == 1 else 's'}{names}, got {len(cells)}", line
            )


def _numbers(column: pd.Series) -> np.ndarray:
    """A column as float64; NaN where a cell is empty or not a number."""
    if column.dtype.kind in "fiu":
        return column.to_numpy(np.float64)
    text = column.astype(object).where(column.notna(), None)
    return pd.to_numeric(text, errors="coerce").to_numpy(np.float64, na_value=np.nan)


def _given(column: pd.Series) -> np.ndarray:
    """True where a cell is not empty."""
    if column.dtype.kind in "fiu":
        return column.notna().to_numpy()
    return column.notna().to_numpy() & (column.astype(object).map(lambda v: str(v).strip() != "").to_numpy(bool))


class _Checker:
    """Raises DataFileError for the first row a mask marks bad, quoting its line and text as written."""

    def __init__(self, path: Path, header: list[str], has_header: bool):
        self.path, self.header, self.has_header = path, header, has_header

    def __call__(self, bad: np.ndarray, column: str, allowed: str) -> None:
        where = np.flatnonzero(bad)
        if where.size == 0:
            return
        line, cells = self._row(int(where[0]))
        cell = cells[self.header.index(column)]
        got = "an empty cell" if cell == "" else repr(cell)
        more = f" ({where.size - 1} more bad row{'' if where.size == 2 else 's'} below)" if where.size > 1 else ""
        raise DataFileError(self.path, f"{column}: expected {allowed}, got {got}{more}", line)

    def _row(self, index: int) -> tuple[int, list[Any]]:
        records = _walk(self.path)
        if self.has_header:
            next(records, None)
        for k, (line, cells) in enumerate(records):
            if k == index:
                return line, cells
        raise AssertionError("pandas and the csv module disagree on the rows")  # pragma: no cover
