"""Errors sse_sim raises for bad input: each carries a message fit to show a user as is."""

from __future__ import annotations


class SseSimError(Exception):
    """Base class for every error sse_sim reports to a user without a traceback."""


class ScenarioError(SseSimError, ValueError):
    """A scenario file or object is invalid; the message names the file, key path and what is allowed."""

    def __init__(self, message: str, *, problems: list[str] | None = None, source: str | None = None):
        super().__init__(message)
        self.problems = problems or [message]
        self.source = source


class EventValidationError(SseSimError, ValueError):
    """An event payload is invalid; the message names its JSON path and what was expected."""
