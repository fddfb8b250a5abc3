"""Redis channel names of the documented system: ``SSE::{brand_id}::{player_id}``.

Ids are checked strictly: a brand or player id that reached a channel name as ``*``, ``?``,
``[1-9]`` or ``1001::*`` would turn a subscription into a pattern that reads other players'
channels, so only positive integers in 1..2**63-1 are accepted, and names are parsed back only
in their canonical form (ASCII digits, no sign, no leading zeros).
"""

from __future__ import annotations

import operator
import re

from ..errors import SseSimError

__all__ = [
    "CHANNEL_PATTERN",
    "CHANNEL_PREFIX",
    "ID_MAX",
    "ID_MIN",
    "ID_REGEX",
    "InvalidChannelError",
    "channel_name",
    "check_id",
    "parse_channel",
    "parse_id",
]

CHANNEL_PREFIX = "SSE::"
#: The pattern one shared gateway subscription uses to receive every player's channel.
CHANNEL_PATTERN = "SSE::*"
ID_MIN = 1
#: Largest id: a Go ``int64``, the type brand and player ids have in the publishing services.
ID_MAX = 2**63 - 1
#: An id as text, a regex fragment for larger patterns: ASCII digits, no sign, no leading zero,
#: at most 19 digits. Nineteen digits can still exceed :data:`ID_MAX`, so compare the number too.
ID_REGEX = r"[1-9][0-9]{0,18}"

_ID_RE = re.compile(ID_REGEX)
_CHANNEL_RE = re.compile(rf"SSE::({ID_REGEX})::({ID_REGEX})")


class InvalidChannelError(SseSimError, ValueError):
    """A brand id, player id or channel name is not one the documented system can produce."""


def check_id(value: object, what: str = "id") -> int:
    """Return ``value`` as an int if it is a valid brand or player id, else raise InvalidChannelError.

    >>> check_id(1001, "brand_id")
    1001
    >>> check_id("*", "player_id")
    Traceback (most recent call last):
    ...
    sse_sim.events.channel.InvalidChannelError: player_id must be an integer in 1..9223372036854775807, got str '*'
    """
    # bool is an int subclass, and a string is never coerced: "1001::*" must not become a channel.
    if isinstance(value, bool) or isinstance(value, str | bytes):
        raise InvalidChannelError(
            f"{what} must be an integer in {ID_MIN}..{ID_MAX}, got {_describe(value)}"
        )
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidChannelError(
            f"{what} must be an integer in {ID_MIN}..{ID_MAX}, got {_describe(value)}"
        ) from None
    if not ID_MIN <= number <= ID_MAX:
        raise InvalidChannelError(f"{what} must be an integer in {ID_MIN}..{ID_MAX}, got {number}")
    return number


def parse_id(text: str, what: str = "id") -> int:
    """The id a piece of text (a URL path segment, say) spells in canonical form, else InvalidChannelError.

    >>> parse_id("1001", "brand_id")
    1001
    >>> parse_id("01001", "brand_id")
    Traceback (most recent call last):
    ...
    sse_sim.events.channel.InvalidChannelError: brand_id must be a positive integer
    """
    if _ID_RE.fullmatch(text) is None:
        raise InvalidChannelError(f"{what} must be a positive integer")
    return check_id(int(text), what)


def channel_name(brand_id: int, player_id: int) -> str:
    """The Redis channel a player's events are published to.

    >>> channel_name(1001, 12345)
    'SSE::1001::12345'
    """
    return f"{CHANNEL_PREFIX}{check_id(brand_id, 'brand_id')}::{check_id(player_id, 'player_id')}"


def parse_channel(name: str | bytes) -> tuple[int, int]:
    """The (brand_id, player_id) of a channel name; raises InvalidChannelError for anything else.

    >>> parse_channel("SSE::1001::12345")
    (1001, 12345)
    """
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidChannelError(f"not an SSE channel name: {name!r}") from None
    if not isinstance(name, str):
        raise InvalidChannelError(f"a channel name must be a string, got {_describe(name)}")
    match = _CHANNEL_RE.fullmatch(name)
    if match is None:
        raise InvalidChannelError(
            f"not an SSE channel name: {name[:100]!r} (expected SSE::{{brand_id}}::{{player_id}} "
            f"with ids in {ID_MIN}..{ID_MAX}, digits only)"
        )
    brand_id, player_id = int(match.group(1)), int(match.group(2))
    if brand_id > ID_MAX or player_id > ID_MAX:
        raise InvalidChannelError(
            f"not an SSE channel name: {name!r} (ids must be at most {ID_MAX})"
        )
    return brand_id, player_id


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
