"""Gateway tokens: minted, verified, and refused when missing, malformed, forged, expired or too long-lived."""

from __future__ import annotations

import base64

import pytest

from sse_sim.errors import SseSimError
from sse_sim.real.auth import (
    CLOCK_SKEW_S,
    MAX_ID,
    QUERY_TOKEN_MAX_TTL_S,
    TokenClaims,
    TokenError,
    mint_token,
    verify_token,
)

SECRET = b"k" * 32
NOW = 1_760_000_000.0


def test_roundtrip() -> None:
    token = mint_token(SECRET, 1001, 12345, 60, now=NOW)
    assert token.startswith("v1.1001.12345.")
    claims = verify_token(SECRET, token, now=NOW + 1)
    assert claims == TokenClaims(1001, 12345, NOW + 60, NOW)
    assert claims.ttl_s == pytest.approx(60)
    # URL-safe: nothing a query string would need to escape.
    assert all(c.isalnum() or c in "._-" for c in token)
    assert len(token) < 100


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        ("v1.1001.12345.1.2", "malformed"),
        ("v2" + "x" * 60, "malformed"),
        ("v1.0.12345.1760000000000.1760000060000." + "A" * 43, "malformed"),
        ("v1.-1.12345.1760000000000.1760000060000." + "A" * 43, "malformed"),
        ("v1.1001.12345.1760000000000.1760000060000." + "A" * 43, "bad_signature"),
        ("x" * 500, "malformed"),
    ],
)
def test_refusals(token: str | None, reason: str) -> None:
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, token, now=NOW)
    assert info.value.reason == reason
    assert isinstance(info.value, SseSimError)


def test_expired() -> None:
    token = mint_token(SECRET, 1, 2, 10, now=NOW)
    verify_token(SECRET, token, now=NOW + 9.9)
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, token, now=NOW + 10)
    assert info.value.reason == "expired"


def test_forged_with_another_secret() -> None:
    token = mint_token(b"z" * 32, 1001, 12345, now=NOW)
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, token, now=NOW)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("field", [1, 2, 3, 4])
def test_tampered_claims_break_the_signature(field: int) -> None:
    parts = mint_token(SECRET, 1001, 12345, 60, now=NOW).split(".")
    parts[field] = str(int(parts[field]) + 1)
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, ".".join(parts), now=NOW)
    assert info.value.reason == "bad_signature"


def test_tampered_signature() -> None:
    token = mint_token(SECRET, 1001, 12345, 60, now=NOW)
    raw = bytearray(base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "="))
    raw[0] ^= 1
    forged = (
        token.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    )
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, forged, now=NOW)


def test_query_tokens_must_be_short_lived() -> None:
    short = mint_token(SECRET, 1, 2, QUERY_TOKEN_MAX_TTL_S, now=NOW)
    long = mint_token(SECRET, 1, 2, QUERY_TOKEN_MAX_TTL_S + 1, now=NOW)
    verify_token(SECRET, short, now=NOW, max_ttl_s=QUERY_TOKEN_MAX_TTL_S)
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, long, now=NOW, max_ttl_s=QUERY_TOKEN_MAX_TTL_S)
    assert info.value.reason == "ttl_too_long"


def test_query_token_dated_ahead_cannot_outlive_the_cap() -> None:
    # Minted on a clock 60 s ahead (the skew allowance): accepted only once at most the cap
    # is left of it on the verifier's clock, so it is never valid for more than the cap here.
    token = mint_token(SECRET, 1, 2, QUERY_TOKEN_MAX_TTL_S, now=NOW + CLOCK_SKEW_S)
    for now in (NOW, NOW + CLOCK_SKEW_S - 0.01):
        with pytest.raises(TokenError) as info:
            verify_token(SECRET, token, now=now, max_ttl_s=QUERY_TOKEN_MAX_TTL_S)
        assert info.value.reason == "not_yet_valid"
    for now in (NOW + CLOCK_SKEW_S, NOW + CLOCK_SKEW_S + QUERY_TOKEN_MAX_TTL_S - 0.01):
        verify_token(SECRET, token, now=now, max_ttl_s=QUERY_TOKEN_MAX_TTL_S)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token, now=NOW + CLOCK_SKEW_S + QUERY_TOKEN_MAX_TTL_S)
    # Without the cap (header and cookie tokens) the skew allowance still holds.
    verify_token(SECRET, token, now=NOW)


def test_future_token_refused() -> None:
    token = mint_token(SECRET, 1, 2, 60, now=NOW + 3600)
    with pytest.raises(TokenError) as info:
        verify_token(SECRET, token, now=NOW)
    assert info.value.reason == "not_yet_valid"


@pytest.mark.parametrize(
    ("brand", "player", "ttl"),
    [
        (0, 1, 60),
        (1, 0, 60),
        (-5, 1, 60),
        (MAX_ID + 1, 1, 60),
        (True, 1, 60),
        (1, 1, 0),
        (1, 1, -3),
    ],
)
def test_mint_rejects_bad_input(brand: int, player: int, ttl: float) -> None:
    with pytest.raises(SseSimError):
        mint_token(SECRET, brand, player, ttl, now=NOW)


def test_short_secret_rejected() -> None:
    with pytest.raises(SseSimError, match="secret"):
        mint_token(b"short", 1, 2)
    with pytest.raises(SseSimError, match="secret"):
        verify_token(b"short", "v1.x")


def test_largest_ids_roundtrip() -> None:
    token = mint_token(SECRET, MAX_ID, MAX_ID, now=NOW)
    assert verify_token(SECRET, token, now=NOW).player_id == MAX_ID
