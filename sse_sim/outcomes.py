"""The fate of one (event, client) delivery attempt: one ``outcome`` per records row.

Codes are small integers inside the engine and a pandas categorical in the records; the
order below is the categorical's order and never changes, so codes stay comparable.
"""

from __future__ import annotations

from enum import IntEnum


class Outcome(IntEnum):
    """Why an event did or did not reach a client."""

    DELIVERED = 0
    """The client read it; ``latency_s`` is set."""
    LOST_DISCONNECTED = 1
    """No active subscription when it was published: the client was offline, reconnecting, or
    inside the gap between its HTTP connect and its Redis subscription becoming active."""
    DROPPED_OVERFLOW = 2
    """The connection's buffer was full (``drop_newest``: this event; ``drop_oldest``: evicted
    to make room for a newer one)."""
    LOST_IN_BUFFER = 3
    """Queued, in flight, or on its way to the gateway when the connection dropped."""
    DISCONNECTED_SLOW = 4
    """Policy ``disconnect``: the gateway closed the slow connection; this event triggered the
    close or was queued on it."""
    LOST_REDIS_OUTPUT_LIMIT = 5
    """Redis closed the gateway node's subscriber for passing its output-buffer limit; this event
    was in that backlog or was published before the node had resubscribed."""

    @property
    def label(self) -> str:
        return self.name.lower()


OUTCOME_LABELS: tuple[str, ...] = tuple(o.label for o in Outcome)
LOSS_CAUSES: tuple[str, ...] = tuple(o.label for o in Outcome if o is not Outcome.DELIVERED)

#: Loss causes a bigger buffer fixes: the connection's queue was full.
OVERFLOW_CAUSES: tuple[str, ...] = (Outcome.DROPPED_OVERFLOW.label, Outcome.DISCONNECTED_SLOW.label)

#: Loss causes no buffer size can fix: the connection (or the node's subscriber) was gone.
DISCONNECT_CAUSES: tuple[str, ...] = (
    Outcome.LOST_DISCONNECTED.label,
    Outcome.LOST_IN_BUFFER.label,
    Outcome.LOST_REDIS_OUTPUT_LIMIT.label,
)

__all__ = ["Outcome", "OUTCOME_LABELS", "LOSS_CAUSES", "OVERFLOW_CAUSES", "DISCONNECT_CAUSES"]
