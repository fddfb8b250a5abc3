"""Closed-form M/M/1/K results: the reference the simulator and the buffer sizing are checked against.

One connection with Poisson publishing (rate ``lam``), exponential drain (rate ``mu``) and room
for ``K`` events is an M/M/1/K queue. In sse_sim's terms K = buffer_size + 1: ``buffer_size``
events wait in the connection's queue and one more is in flight to the client (plus
``socket_buffer_events`` when kernel socket buffers are modelled). ``rho = lam / mu``.

Pure functions of floats, no numpy arrays needed, no I/O.
"""

from __future__ import annotations

import math


def capacity_k(
    buffer_size: int,
    socket_buffer_events: int = 0,
    *,
    framed_bytes: float | None = None,
    socket_buffer_bytes: int | None = None,
    buffer_bytes: int | None = None,
) -> int:
    """K of one connection: ``buffer_size`` waiting + 1 in flight + what the sockets hold, in events.

    The one place sse_sim turns a gateway buffer into the M/M/1/K capacity. Byte caps
    (``gateway.buffer_bytes``, ``clients.socket_buffer_bytes``) count events of
    ``framed_bytes`` each (a workload's mean framed size), so K is then that of a workload of
    equal events: whole events only. As in the engine, both socket caps apply when both are
    set, and a ``socket_buffer_events`` of 0 leaves the bytes alone to decide.

    >>> capacity_k(50)
    51
    >>> capacity_k(50, socket_buffer_events=34)
    85
    >>> capacity_k(50, 1000, framed_bytes=458, socket_buffer_bytes=13312)
    80
    """
    waiting = int(buffer_size)
    sockets = int(socket_buffer_events)
    if framed_bytes is not None and framed_bytes > 0:
        if buffer_bytes is not None:
            waiting = min(waiting, int(buffer_bytes // framed_bytes))
        if socket_buffer_bytes is not None:
            by_bytes = int(socket_buffer_bytes // framed_bytes)
            sockets = by_bytes if sockets == 0 else min(sockets, by_bytes)
    return waiting + 1 + sockets


def _check(rho: float, K: int) -> None:
    if not (rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a positive finite number, got {rho!r}")
    if int(K) != K or K < 1:
        raise ValueError(f"K must be a whole number of events >= 1, got {K!r}")


def mm1k_blocking(rho: float, K: int) -> float:
    """Share of arrivals an M/M/1/K queue turns away: P_block = (1 - rho) rho^K / (1 - rho^(K+1)).

    At rho = 1 the limit is 1 / (K + 1).

    >>> round(mm1k_blocking(0.9, 51), 8)  # the documented buffer of 50 at 90 % load
    0.00046578
    >>> mm1k_blocking(1.0, 51) == 1 / 52
    True
    >>> round(mm1k_blocking(2.0, 1), 6)  # one slot, arrivals twice as fast as drains
    0.666667
    """
    _check(rho, K)
    if abs(rho - 1.0) < 1e-12:
        return 1.0 / (K + 1)
    # written with rho^-1 above 1 so that large K neither overflows nor loses precision
    if rho > 1.0:
        r = 1.0 / rho
        return (1.0 - r) / (1.0 - r ** (K + 1))
    return (1.0 - rho) * rho**K / (1.0 - rho ** (K + 1))


def mm1k_mean_number(rho: float, K: int) -> float:
    """Mean number of events held (waiting + in flight): L = rho/(1-rho) - (K+1) rho^(K+1)/(1-rho^(K+1)).

    At rho = 1 the limit is K / 2.

    >>> round(mm1k_mean_number(0.9, 51), 4)
    8.782
    >>> mm1k_mean_number(1.0, 50)
    25.0
    """
    _check(rho, K)
    if abs(rho - 1.0) < 1e-12:
        return K / 2.0
    if rho > 1.0:
        # by symmetry: the number of free slots of a queue at rho behaves like a queue at 1/rho
        return K - mm1k_mean_number(1.0 / rho, K)
    return rho / (1.0 - rho) - (K + 1) * rho ** (K + 1) / (1.0 - rho ** (K + 1))


def mm1k_mean_sojourn(lam: float, mu: float, K: int) -> float:
    """Mean time an admitted event spends in the connection (wait + drain): W = L / (lam (1 - P_block)).

    >>> round(mm1k_mean_sojourn(90.0, 100.0, 51), 6)  # seconds
    0.097623
    >>> round(mm1k_mean_sojourn(1.0, 100.0, 1), 6)  # a lone slot: no wait, one drain time
    0.01
    """
    if not (lam > 0 and mu > 0):
        raise ValueError(f"lam and mu must be positive rates, got lam={lam!r}, mu={mu!r}")
    rho = lam / mu
    return mm1k_mean_number(rho, K) / (lam * (1.0 - mm1k_blocking(rho, K)))


def mm1k_smallest_k(rho: float, target: float, *, k_max: int = 1_000_000) -> int | None:
    """Smallest capacity K whose blocking probability is at most ``target``; None if none up to ``k_max``.

    The buffer_size to configure is K - 1. Below rho = 1 blocking falls geometrically with K; at
    or above 1 it never falls below 1 - 1/rho, so a target under that has no answer.

    >>> mm1k_smallest_k(0.9, 0.01)
    23
    >>> mm1k_smallest_k(0.9, 0.0001)  # documented buffer_size 50 (K = 51) is not enough
    66
    >>> mm1k_smallest_k(2.0, 0.1) is None  # half the arrivals must be dropped, whatever the buffer
    True
    """
    _check(rho, 1)
    if not 0 < target < 1:
        raise ValueError(f"target must be a loss fraction between 0 and 1, got {target!r}")
    if mm1k_blocking(rho, 1) <= target:
        return 1
    if rho >= 1.0 and (1.0 - 1.0 / rho) >= target:
        return None
    # blocking decreases in K: bracket by doubling, then bisect
    lo, hi = 1, 2
    while mm1k_blocking(rho, hi) > target:
        lo, hi = hi, hi * 2
        if hi > k_max:
            if mm1k_blocking(rho, k_max) > target:
                return None
            hi = k_max
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mm1k_blocking(rho, mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


__all__ = ["mm1k_blocking", "mm1k_mean_number", "mm1k_mean_sojourn", "mm1k_smallest_k"]
