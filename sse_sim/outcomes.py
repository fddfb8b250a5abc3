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
    LOST_HISTORY_EXPIRED = 6
    """Delivery ``stream``: published while the client was away, and no longer in the player's
    history when it came back (trimmed by ``history_size`` or ``history_ttl_s``), or older than
    the ``max_replay`` newest entries of the gap."""
    SUPERSEDED = 7
    """Delivery ``latest``: a newer value of the same event type replaced it before the client
    read it. Not a loss of state (the client gets the newer value), so not a loss cause."""
    LOST_CONNECTION_LIMIT = 8
    """The browser's per-origin HTTP/1.1 connection cap: this client's stream never opened."""

    @property
    def label(self) -> str:
        return self.name.lower()


OUTCOME_LABELS: tuple[str, ...] = tuple(o.label for o in Outcome)
#: Outcomes that are not losses: the event reached the client, or a newer value of it did.
NOT_LOST: tuple[str, ...] = (Outcome.DELIVERED.label, Outcome.SUPERSEDED.label)
LOSS_CAUSES: tuple[str, ...] = tuple(o.label for o in Outcome if o.label not in NOT_LOST)

#: Loss causes a bigger buffer fixes: the connection's queue was full.
OVERFLOW_CAUSES: tuple[str, ...] = (Outcome.DROPPED_OVERFLOW.label, Outcome.DISCONNECTED_SLOW.label)

#: Loss causes no buffer size can fix: the connection (or the node's subscriber) was gone.
DISCONNECT_CAUSES: tuple[str, ...] = (
    Outcome.LOST_DISCONNECTED.label,
    Outcome.LOST_IN_BUFFER.label,
    Outcome.LOST_REDIS_OUTPUT_LIMIT.label,
    Outcome.LOST_HISTORY_EXPIRED.label,
    Outcome.LOST_CONNECTION_LIMIT.label,
)

__all__ = ["Outcome", "OUTCOME_LABELS", "NOT_LOST", "LOSS_CAUSES", "OVERFLOW_CAUSES", "DISCONNECT_CAUSES"]
