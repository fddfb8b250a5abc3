"""Signed gateway tokens: who a stream belongs to (brand, player) and until when.

A token is ``v1.<brand>.<player>.<issued_ms>.<expires_ms>.<signature>`` where the signature is
the URL-safe base64 (no padding) of HMAC-SHA256(secret, everything before it). It is compact,
URL-safe, and readable but not forgeable: the gateway takes the player only from a valid token,
never from the path or the query.

Three ways to present it, because a browser's ``EventSource`` cannot send headers:

- the ``x-auth-token`` header (fetch-based clients, servers, tests): preferred;
- the ``sse_token`` cookie (``HttpOnly; Secure; SameSite=Strict`` in production): works with a
  plain ``EventSource`` on the same site, but a cookie rides along on every request to the host;
- ``?token=`` in the URL: works everywhere, but URLs end up in access logs, proxy logs and
  browser history, so a query token must be short-lived: one whose lifetime (expiry minus
  issue time) exceeds :data:`QUERY_TOKEN_MAX_TTL_S` is refused, and so is one that, by the
  verifier's clock, would stay valid longer than that from now (see :func:`verify_token`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from ..errors import SseSimError
from ..events.channel import ID_MAX, ID_REGEX

__all__ = [
    "TokenClaims",
    "TokenError",
    "mint_token",
    "verify_token",
    "QUERY_TOKEN_MAX_TTL_S",
    "MAX_ID",
    "MIN_SECRET_BYTES",
]

VERSION = "v1"
QUERY_TOKEN_MAX_TTL_S = 60.0
"""Longest lifetime a ``?token=`` may have: URLs leak into logs and history."""
MAX_ID = ID_MAX
"""Largest brand or player id (a signed 64-bit integer, as the Go publishers use)."""
MIN_SECRET_BYTES = 16
CLOCK_SKEW_S = 60.0
"""A token issued up to this far in the future is still accepted (clocks of two hosts differ)."""
MAX_TOKEN_CHARS = 200

_TOKEN_RE = re.compile(
    rf"v1\.({ID_REGEX})\.({ID_REGEX})\.([0-9]{{1,15}})\.([0-9]{{1,15}})\.([A-Za-z0-9_-]{{43}})"
)


class TokenError(SseSimError, ValueError):
    """A token is missing, malformed, forged or expired; ``reason`` says which, for a 401."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token proves: the stream belongs to this brand and player until ``expires_at``."""

    brand_id: int
    player_id: int
    expires_at: float
    """Unix time, seconds."""
    issued_at: float = 0.0
    """Unix time, seconds."""

    @property
    def ttl_s(self) -> float:
        """Lifetime the token was minted with, seconds."""
        return self.expires_at - self.issued_at


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise SseSimError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")


def _check_id(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise SseSimError(f"{name} must be an integer from 1 to {MAX_ID}, got {value!r}")


def _sign(secret: bytes, body: str) -> str:
    digest = hmac.new(bytes(secret), body.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint_token(
    secret: bytes,
    brand_id: int,
    player_id: int,
    ttl_s: float = 3600,
    *,
    now: float | None = None,
) -> str:
    """A token for ``player_id`` of ``brand_id`` that is valid for ``ttl_s`` seconds from ``now``."""
    _check_secret(secret)
    _check_id("brand_id", brand_id)
    _check_id("player_id", player_id)
    if not ttl_s > 0 or ttl_s > 10 * 365 * 86400:
        raise SseSimError(f"ttl_s must be positive and at most ten years, got {ttl_s!r}")
    issued = time.time() if now is None else now
    issued_ms = int(issued * 1000)
    expires_ms = issued_ms + max(1, round(ttl_s * 1000))
    body = f"{VERSION}.{brand_id}.{player_id}.{issued_ms}.{expires_ms}"
    return f"{body}.{_sign(secret, body)}"


def verify_token(
    secret: bytes,
    token: str | None,
    *,
    now: float | None = None,
    max_ttl_s: float | None = None,
) -> TokenClaims:
    """The claims of a valid token; :class:`TokenError` if it is missing, malformed, forged or expired.

    ``max_ttl_s`` (used for query-string tokens) refuses a token minted with a longer lifetime,
    and one whose expiry lies more than ``max_ttl_s`` after ``now``: this host accepts such a
    token for at most ``max_ttl_s`` seconds in all, whatever the minting host's clock said.
    """
    _check_secret(secret)
    if not token:
        raise TokenError("missing", "no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("malformed", "token too long")
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise TokenError("malformed", "malformed token")
    brand_s, player_s, issued_s, expires_s, signature = match.groups()
    body = token[: match.start(5) - 1]
    if not hmac.compare_digest(signature, _sign(secret, body)):
        raise TokenError("bad_signature", "bad token signature")
    brand_id, player_id = int(brand_s), int(player_s)
    if brand_id > MAX_ID or player_id > MAX_ID:
        raise TokenError("malformed", "id out of range")
    issued_at, expires_at = int(issued_s) / 1000, int(expires_s) / 1000
    current = time.time() if now is None else now
    if expires_at <= issued_at:
        raise TokenError("malformed", "token expires before it is issued")
    if current >= expires_at:
        raise TokenError("expired", "token expired")
    if issued_at > current + CLOCK_SKEW_S:
        raise TokenError("not_yet_valid", "token issued in the future")
    if max_ttl_s is not None:
        if expires_at - issued_at > max_ttl_s:
            raise TokenError(
                "ttl_too_long", f"token lifetime exceeds {max_ttl_s:g} s for this transport"
            )
        # The skew allowance above accepts a token dated up to CLOCK_SKEW_S ahead, which
        # would let a capped token live max_ttl_s + CLOCK_SKEW_S here. Measuring what is left
        # of it on this host's clock keeps the whole window within the cap: a token from a
        # clock that runs ahead only becomes usable later. One millisecond is the token's
        # resolution, so that a token checked the instant it is minted is not refused.
        if expires_at - current > max_ttl_s + 0.001:
            raise TokenError(
                "not_yet_valid",
                f"token would stay valid more than {max_ttl_s:g} s from now"
                " (the minting host's clock runs ahead)",
            )
    return TokenClaims(brand_id, player_id, expires_at, issued_at)
