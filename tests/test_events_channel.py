"""Channel names: strict ids, so no id can turn a channel into a pattern over other players."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_sim.events import channel
from sse_sim.events.channel import (
    CHANNEL_PATTERN,
    ID_MAX,
    InvalidChannelError,
    channel_name,
    parse_channel,
)


def test_documented_name() -> None:
    assert channel_name(1001, 12345) == "SSE::1001::12345"
    assert parse_channel("SSE::1001::12345") == (1001, 12345)
    assert parse_channel(b"SSE::1001::12345") == (1001, 12345)
    assert CHANNEL_PATTERN == "SSE::*"


@pytest.mark.parametrize(
    "bad",
    [
        "*",
        "?",
        "[1-9]",
        "1001::*",
        "-1",
        "1",
        "",
        " 1",
        True,
        False,
        0,
        -1,
        ID_MAX + 1,
        1.0,
        None,
        b"1",
    ],
)
def test_bad_ids_rejected(bad: object) -> None:
    with pytest.raises(InvalidChannelError) as info:
        channel_name(bad, 1)  # type: ignore[arg-type]
    assert "brand_id must be an integer in 1..9223372036854775807" in str(info.value)
    with pytest.raises(ValueError, match="player_id"):
        channel_name(1, bad)  # type: ignore[arg-type]


def test_range_edges_and_index_types() -> None:
    import numpy as np

    assert channel_name(1, ID_MAX) == f"SSE::1::{ID_MAX}"
    assert channel_name(np.int64(7), np.uint32(9)) == "SSE::7::9"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        "SSE::*",
        "SSE::1001::*",
        "SSE::1001::12345::1",
        "SSE::01::1",
        "SSE::1::+2",
        "SSE::1::-2",
        "sse::1::2",
        "SSE::1::2 ",
        "SSE::1:: 2",
        "SSE::1::٣",
        "SSE::0::1",
        f"SSE::1::{ID_MAX + 1}",
        "SSE::1::99999999999999999999",
        "SSE::[1-9]::1",
        b"SSE::\xff::1",
    ],
)
def test_bad_names_rejected(bad: str) -> None:
    with pytest.raises(InvalidChannelError, match="not an SSE channel name"):
        parse_channel(bad)


def test_non_string_name_rejected() -> None:
    with pytest.raises(InvalidChannelError, match="must be a string"):
        parse_channel(12)  # type: ignore[arg-type]


@given(st.integers(1, ID_MAX), st.integers(1, ID_MAX))
def test_round_trip(brand: int, player: int) -> None:
    name = channel_name(brand, player)
    assert parse_channel(name) == (brand, player)
    assert not any(c in name for c in "*?[]\\ ")


def test_doctests() -> None:
    assert doctest.testmod(channel).failed == 0
