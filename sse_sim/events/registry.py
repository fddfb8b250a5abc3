"""Which event types exist and what their ``event_data`` looks like; extensible without edits.

The default registry holds the two documented types with typed payloads and the five announced
types with free-form object payloads. Operators add their own types (or give an announced type
a typed payload) with :func:`register_event_type`, or build a private :class:`EventRegistry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from .models import (
    ANNOUNCED_EVENT_TYPES,
    SYSTEM_EVENT_MODELS,
    Envelope,
    GamificationBalanceUpdate,
    JsonObject,
    Notification,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "EventRegistry",
    "EventType",
    "register_event_type",
]

Status = Literal["documented", "announced", "custom"]
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True, slots=True)
class EventType:
    """One registered event type: its name, payload model (None = any JSON object) and origin."""

    name: str
    payload: type[BaseModel] | None
    description: str = ""
    status: Status = "custom"

    @property
    def envelope(self) -> type[BaseModel]:
        """The pydantic envelope model that validates a whole event of this type."""
        return _envelope_for(self.payload)


_ENVELOPES: dict[Any, type[BaseModel]] = {}


def _envelope_for(payload: type[BaseModel] | None) -> type[BaseModel]:
    model = _ENVELOPES.get(payload)
    if model is None:
        model = Envelope[payload] if payload is not None else Envelope[JsonObject]  # type: ignore[valid-type]
        _ENVELOPES[payload] = model
    return model


class EventRegistry:
    """A mapping from event type name to :class:`EventType`, with JSON Schemas for each."""

    def __init__(self, types: list[EventType] | None = None) -> None:
        self._types: dict[str, EventType] = {}
        for item in types or []:
            self._types[item.name] = item

    def register(
        self,
        name: str,
        payload: type[BaseModel] | None = None,
        *,
        description: str = "",
        status: Status = "custom",
        replace: bool = False,
    ) -> EventType:
        """Add an event type; ``payload`` is a pydantic model of its ``event_data`` (None: any object).

        Raises ValueError for a name that is empty, not lowercase ``[a-z0-9_.-]``, a system event
        name, or already registered (unless ``replace=True``).
        """
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
            raise ValueError(f"event type names are non-empty lowercase [a-z0-9_.-], got {name!r}")
        if name in SYSTEM_EVENT_MODELS:
            raise ValueError(f"{name!r} is a system event type, sent by the gateway, not published")
        if name in self._types and not replace:
            raise ValueError(
                f"event type {name!r} is already registered (pass replace=True to replace it)"
            )
        if payload is not None and not (
            isinstance(payload, type) and issubclass(payload, BaseModel)
        ):
            raise TypeError(f"payload must be a pydantic model class or None, got {payload!r}")
        item = EventType(name, payload, description, status)
        self._types[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove an event type (KeyError if it is not registered)."""
        del self._types[name]

    def get(self, name: str) -> EventType | None:
        """The registered type of that name, or None."""
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        """Registered event type names in registration order."""
        return list(self._types)

    def copy(self) -> EventRegistry:
        """An independent registry with the same types, to extend without touching this one."""
        return EventRegistry(list(self._types.values()))

    def json_schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of a whole event of this type, envelope included."""
        item = self._types[name]
        schema = item.envelope.model_json_schema()
        schema["title"] = name
        schema["description"] = item.description or f"An SSE event of type {name}."
        schema["properties"]["event_type"] = {"const": name, "description": "The type of event."}
        return schema


def _default_registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(
        "notification",
        Notification,
        description="A new in-app notification for a player (bonus, promotion, deposit, KYC, ...).",
        status="documented",
    )
    registry.register(
        "gamification_balance_update",
        GamificationBalanceUpdate,
        description="A player's gamification coin balance changed (earned, redeemed, adjusted, expired).",
        status="documented",
    )
    announced = {
        "wallet_balance_update": "Real-time wallet balance changes.",
        "game_result": "Game round results and wins.",
        "tournament_update": "Tournament status and leaderboard changes.",
        "message": "Direct messages from support or system.",
        "promotion_trigger": "Personalized promotion availability.",
    }
    for name in ANNOUNCED_EVENT_TYPES:
        registry.register(
            name,
            None,
            description=announced[name] + " (announced; payload not yet specified)",
            status="announced",
        )
    return registry


#: The registry validation uses unless given another one.
DEFAULT_REGISTRY = _default_registry()


def register_event_type(
    name: str,
    payload: type[BaseModel] | None = None,
    *,
    description: str = "",
    replace: bool = False,
) -> EventType:
    """Add an operator's event type to the default registry (see :meth:`EventRegistry.register`)."""
    return DEFAULT_REGISTRY.register(name, payload, description=description, replace=replace)
