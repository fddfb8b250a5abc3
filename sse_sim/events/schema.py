"""JSON Schemas of every documented event, so that other services can validate what they see."""

from __future__ import annotations

import copy
from typing import Any

from .models import NOTIFICATION_KINDS, SYSTEM_EVENT_MODELS
from .registry import DEFAULT_REGISTRY, EventRegistry

__all__ = ["event_json_schema", "events_json_schema"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _system_schema(name: str) -> dict[str, Any]:
    schema = SYSTEM_EVENT_MODELS[name].model_json_schema()
    schema["title"] = name
    schema["properties"]["type"] = {"const": name}
    schema["required"] = sorted(set(schema.get("required", [])) | {"type"})
    return schema


def _tighten(schema: dict[str, Any]) -> None:
    """Strict mode in JSON Schema terms: no unknown fields, documented kinds, unread notifications."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        props = node.get("properties")
        if isinstance(props, dict):
            node["additionalProperties"] = False
            if "message_id" in props and "is_read" in props:
                props["event"] = {**props["event"], "enum": list(NOTIFICATION_KINDS)}
                props["is_read"] = {**props["is_read"], "const": False}
            stack.extend(v for k, v in props.items() if k != "event_details")
        stack.extend(node.get("$defs", {}).values())


def event_json_schema(
    name: str, *, strict: bool = False, registry: EventRegistry | None = None
) -> dict[str, Any]:
    """The standalone JSON Schema of one event type (application or system event)."""
    registry = DEFAULT_REGISTRY if registry is None else registry
    if name in SYSTEM_EVENT_MODELS:
        schema = _system_schema(name)
    elif name in registry:
        schema = registry.json_schema(name)
    else:
        known = [*registry.names(), *SYSTEM_EVENT_MODELS]
        raise KeyError(f"unknown event type {name!r} (known: {', '.join(known)})")
    if strict:
        _tighten(schema)
    return {"$schema": DRAFT, **schema}


def events_json_schema(
    *, strict: bool = False, registry: EventRegistry | None = None
) -> dict[str, Any]:
    """One JSON Schema accepting any registered or system event; each event is in ``$defs``.

    Events are under ``$defs/event.<name>``; the models they share (``Notification``, ...)
    are under their class names, where the events' ``$ref``s point.
    """
    registry = DEFAULT_REGISTRY if registry is None else registry
    defs: dict[str, Any] = {}
    names = [*registry.names(), *SYSTEM_EVENT_MODELS]
    for name in names:
        schema = copy.deepcopy(event_json_schema(name, strict=strict, registry=registry))
        schema.pop("$schema", None)
        defs.update(schema.pop("$defs", {}))
        defs[f"event.{name}"] = schema
    refs = [{"$ref": f"#/$defs/event.{name}"} for name in names]
    if not strict:
        # Lenient validation accepts event types nobody registered, in a well-formed envelope.
        other = copy.deepcopy(registry.json_schema(registry.names()[0])) if len(registry) else None
        if other is not None:
            other.pop("$defs", None)
            other["title"] = "other"
            other["description"] = "An event of a type not registered here (accepted when lenient)."
            other["properties"]["event_type"] = {
                "type": "string",
                "minLength": 1,
                "not": {"enum": names},
            }
            other["properties"]["event_data"] = {"type": "object"}
            defs["event.other"] = other
            refs.append({"$ref": "#/$defs/event.other"})
    return {
        "$schema": DRAFT,
        "title": "sse_sim SSE events",
        "description": (
            "An application event in its envelope {brand_id, player_id, event_type, event_data}, "
            "or a system event {type: connected | keepalive | error}, as documented."
            + (" Strict: no unknown fields or event types." if strict else "")
        ),
        "oneOf": refs,
        "$defs": defs,
    }
