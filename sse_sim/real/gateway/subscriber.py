"""The gateway process's one shared Redis subscription, feeding every message to the fan-out.

One PubSub connection per gateway process, as in the documented system: ``channel`` mode
subscribes each channel some stream reads (SUBSCRIBE on the first reader, UNSUBSCRIBE after the
last), ``pattern`` mode holds one ``PSUBSCRIBE SSE::*``. Commands go out in order from one
task, batched when connections storm in. The reader yields to the event loop every
``reader_yield_every`` messages (0 = only when the socket has nothing more), because a reader
that never yields fills a 50-event queue from one burst before the connection's writer ever
runs, dropping events even for a fast client.

Faults. The subscription lives in *sessions*: one client, one PubSub connection, one reader.
Any failure ends the session (Redis stopped, ``CLIENT KILL``, the pubsub output-buffer limit, a
failed SUBSCRIBE, or redis-py reconnecting behind our back), and a fresh one is made with
bounded backoff until Redis answers again. The channels the streams read (``_wanted``) are the
truth: each new session subscribes all of them, and while it is up every change is brought to
Redis, so subscribes and unsubscribes made while Redis is away are never lost. Losing a session
that was live (connected and read) is an *outage*: ``on_lost`` is told which channels had a
confirmed subscription (their events in between are gone), and the outage lasts until a new
session has resubscribed every wanted channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...events.channel import CHANNEL_PATTERN
from . import compat

__all__ = [
    "SUBSCRIPTION_MODES",
    "Outage",
    "SharedSubscriber",
    "SubscribeFailed",
    "wait_confirmed",
]

logger = logging.getLogger("sse_sim.gateway")

SUBSCRIPTION_MODES = ("channel", "pattern")

# Channels per SUBSCRIBE/UNSUBSCRIBE command: a resubscribe after an outage sends every channel
# the node serves, and one command of 100,000 arguments would hold Redis's event loop.
_BATCH = 1024

# Outages kept in detail for metrics (the counters cover them all).
_OUTAGES_KEPT = 100

# SO_RCVBUF of a rate-capped subscriber's connection (see SharedSubscriber.reader_rate_per_s).
_CAPPED_RCVBUF = 65536


class SubscribeFailed(Exception):
    """Subscribing to a channel failed (Redis unreachable, refused, or no confirmation in time)."""


async def wait_confirmed(
    confirmed: asyncio.Future[None], watcher: asyncio.Future[None], timeout_s: float
) -> None:
    """Return once Redis confirmed a subscription or ``watcher`` (the client leaving) finished.

    Raises :class:`SubscribeFailed` if the subscription failed or no answer came in time.
    """
    if not confirmed.done():
        done, _ = await asyncio.wait(
            {confirmed, watcher}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            raise SubscribeFailed(f"no confirmation within {timeout_s:g} s")
        if confirmed not in done:
            return  # the client left first
    if confirmed.cancelled():
        raise SubscribeFailed("the subscription was withdrawn")
    exc = confirmed.exception()
    if exc is not None:
        raise SubscribeFailed(str(exc)) from exc


@dataclass
class Outage:
    """One loss of the shared subscription: when, why, how many streams were told, when it was back.

    Events published while the subscription was away never reached the gateway, so it cannot
    count them; the streams it told and the outage's length are what it knows.
    """

    started_at: float
    """``time.time()`` when the loss was seen."""
    cause: str
    streams_told: int = 0
    """Open streams that had a live subscription and were sent the loss notice."""
    ended_at: float | None = None
    """``time.time()`` when a new connection had resubscribed every wanted channel (None: still out)."""

    @property
    def duration_s(self) -> float | None:
        """Seconds from the loss to the resubscribe (None while it lasts)."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    def as_dict(self) -> dict[str, Any]:
        """The outage as JSON-ready values."""
        return {
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "cause": self.cause,
            "streams_told": self.streams_told,
        }


class _Wanted:
    """One channel some streams read: how many, and the confirmation of its current subscription."""

    __slots__ = ("refs", "confirmed")

    def __init__(self, confirmed: asyncio.Future[None]) -> None:
        self.refs = 0
        self.confirmed = confirmed


class _Session:
    """One connection of the shared subscription: its client, PubSub, reader, and what it asked for."""

    def __init__(self, owner: SharedSubscriber) -> None:
        self.owner = owner
        self.client: Any = None
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        # channels SUBSCRIBE went out for on this connection, with no UNSUBSCRIBE since
        self.subscribed: set[bytes] = set()
        # of those, the ones Redis confirmed
        self.confirmed_keys: set[bytes] = set()
        self.inflight: collections.Counter[bytes] = collections.Counter()
        self.live = False  # connected and read: confirmations may come, so a loss concerns streams
        self.up = False  # live and resubscribed every wanted channel: an outage is over
        self.cause: BaseException | str | None = None

    @property
    def lost(self) -> bool:
        return self.cause is not None

    async def reconnected(self, connection: Any) -> None:
        """redis-py's connect callback: it reconnected this connection by itself."""
        # It resubscribes what it remembers, but whatever was published in between is gone and
        # nobody would hear of it: treat it as the loss it is.
        self.owner._fail(self, "redis-py reconnected the subscription connection")


def _single_attempt_retry() -> Any:
    """A redis-py retry policy of one attempt: the subscriber retries itself, with its own backoff."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Retry(NoBackoff(), 0)


class SharedSubscriber:
    """Keeps the one Redis subscription in step with the channels streams read, and reads it.

    Every message goes to ``deliver(channel, data)``, which must not await. :meth:`start` binds
    it to the running loop; :meth:`subscribe` and :meth:`unsubscribe` are called once per
    stream and return at once. ``on_lost(keys)`` is called (in the loop, must not await) when a
    live subscription is lost, with the channels whose subscription had been confirmed (None in
    ``pattern`` mode: every channel); it returns how many streams it told. Reconnect attempts
    wait ``retry_min_s``, doubling up to ``retry_max_s``, between them. ``reader_rate_per_s``
    caps how many messages a second the reader takes (None: as fast as it can), so that a
    replay can make the backlog in Redis that the simulator's ``redis.output_buffer`` models.
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], Any],
        deliver: Callable[[bytes, bytes], None],
        mode: str = "channel",
        reader_yield_every: int = 1,
        on_lost: Callable[[list[bytes] | None], int] | None = None,
        retry_min_s: float = 0.05,
        retry_max_s: float = 1.0,
        connect_timeout_s: float = 5.0,
        reader_rate_per_s: float | None = None,
    ) -> None:
        self.client_factory = client_factory
        self.reader_rate_per_s = reader_rate_per_s
        self.deliver = deliver
        self.mode = mode
        self.reader_yield_every = reader_yield_every
        self.on_lost = on_lost
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnects = 0
        self.errors = 0
        self.outages_total = 0
        self.outage_s_closed = 0.0
        self.streams_told_total = 0
        self.outages: collections.deque[Outage] = collections.deque(maxlen=_OUTAGES_KEPT)
        self._outage: Outage | None = None
        self._log: list[tuple[float, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._kick: asyncio.Event | None = None
        self._demand: asyncio.Event | None = None
        self._gate: asyncio.Event | None = None
        self._pattern_confirmed: asyncio.Future[None] | None = None
        self._wanted: dict[bytes, _Wanted] = {}
        self._changed: set[bytes] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start keeping the subscription in ``loop``, the running loop; call once."""
        self._loop = loop
        self._kick = asyncio.Event()
        self._demand = asyncio.Event()
        self._gate = asyncio.Event()
        self._gate.set()
        self._pattern_confirmed = loop.create_future()
        self._task = loop.create_task(self._supervise(), name="sse_sim-subscriber")

    # ------------------------------------------------------------------ the interface

    def subscribe(self, key: bytes) -> asyncio.Future[None]:
        """One more stream reads channel ``key``: a future Redis's confirmation resolves.

        While Redis is away the future waits for the subscription a new connection makes; the
        caller bounds the wait (see :func:`wait_confirmed`).
        """
        assert self._loop is not None and self._kick is not None and self._demand is not None
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = self._wanted[key] = _Wanted(self._loop.create_future())
            session = self._session
            if session is not None and key in session.confirmed_keys and not session.lost:
                # Released and wanted again before its UNSUBSCRIBE went out: the subscription
                # never stopped, and no new confirmation will come for it.
                wanted.confirmed.set_result(None)
            self._changed.add(key)
            self._kick.set()
            self._demand.set()
        wanted.refs += 1
        if self.mode == "pattern":
            assert self._pattern_confirmed is not None
            return self._pattern_confirmed
        return wanted.confirmed

    def unsubscribe(self, key: bytes) -> None:
        """One stream fewer reads channel ``key``; after the last, Redis is told to stop sending it."""
        wanted = self._wanted.get(key)
        if wanted is None:
            return
        wanted.refs -= 1
        if wanted.refs > 0:
            return
        del self._wanted[key]
        if not wanted.confirmed.done():
            wanted.confirmed.cancel()
        self._changed.add(key)
        if self._kick is not None:
            self._kick.set()

    def stall(self, seconds: float) -> None:
        """Stop reading for ``seconds`` (thread-safe): emulates a lagging gateway node."""
        loop = self._loop
        assert loop is not None

        def stall() -> None:
            assert self._gate is not None
            self._gate.clear()
            loop.call_later(seconds, self._gate.set)

        loop.call_soon_threadsafe(stall)

    @property
    def up(self) -> bool:
        """Whether a connection is up and has asked Redis for every wanted channel."""
        session = self._session
        return session is not None and session.up and not session.lost

    def log(self) -> list[tuple[float, str]]:
        """``(time.time(), what)`` for each connect, loss (``lost: ...``), reconnect and error."""
        return list(self._log)

    def outage_metrics(self) -> dict[str, Any]:
        """Counters of subscription losses, as the gateway's metrics serve them (any thread)."""
        current = self._outage
        ongoing = time.time() - current.started_at if current is not None else 0.0
        return {
            "subscriber_up": self.up,
            "subscriber_outages": self.outages_total,
            "outage_s_total": self.outage_s_closed + ongoing,
            "outage_ongoing_s": ongoing,
            "streams_told_of_loss": self.streams_told_total,
            "outages": [o.as_dict() for o in list(self.outages)],
        }

    async def aclose(self) -> None:
        """Stop the tasks and close the Redis connections."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        session, self._session = self._session, None
        if session is not None:
            await self._close_session(session)

    # ------------------------------------------------------------------ sessions

    async def _supervise(self) -> None:
        """Keep a session up: connect, resubscribe, follow changes; after a loss, tell and retry."""
        assert self._kick is not None and self._demand is not None
        # The first connection waits for the first stream, as SUBSCRIBE does in the documented system.
        await self._demand.wait()
        failures = 0
        while True:
            session = self._session = _Session(self)
            try:
                await self._connect(session)
                self._changed.clear()
                await self._reconcile(session, None)
                if session.lost:
                    raise ConnectionError(str(session.cause))
                self._came_up(session)
                failures = 0
                while True:
                    await self._kick.wait()
                    self._kick.clear()
                    if session.lost:
                        break
                    changed, self._changed = self._changed, set()
                    await self._reconcile(session, changed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if session.cause is None:
                    session.cause = exc
            if session.live:
                self._went_down(session)
            else:
                self.errors += 1
                self._log.append((time.time(), f"error: {session.cause}"))
            self._session = None
            await self._close_session(session)
            failures += 1
            await asyncio.sleep(min(self.retry_max_s, self.retry_min_s * 2 ** (failures - 1)))

    async def _connect(self, session: _Session) -> None:
        """Open the session's client and PubSub, PSUBSCRIBE in pattern mode, start its reader."""
        client = session.client = self.client_factory()
        if hasattr(client, "set_retry"):
            # redis-py would retry a refused connect ten times with growing sleeps (seconds
            # while Redis is back already) and reconnect silently inside commands.
            client.set_retry(_single_attempt_retry())
        pubsub = session.pubsub = client.pubsub()
        async with asyncio.timeout(self.connect_timeout_s):
            await pubsub.connect()
            # The bound method lives as long as the session (redis-py keeps a weak reference).
            compat.on_reconnect(pubsub, session.reconnected)
            if self.reader_rate_per_s:
                # A capped reader leaves a backlog in the socket: a fixed buffer keeps the
                # kernel from growing it while data flows, so what the sockets hold (outside
                # Redis's output-buffer limit) is the same in a run as when measured.
                compat.lock_receive_buffer(pubsub, _CAPPED_RCVBUF)
            if self.mode == "pattern":
                await pubsub.psubscribe(CHANNEL_PATTERN)
        assert self._loop is not None
        session.reader = self._loop.create_task(
            self._read_loop(session), name="sse_sim-subscriber-reader"
        )
        session.live = True

    async def _reconcile(self, session: _Session, keys: set[bytes] | None) -> None:
        """Bring the session's subscriptions in step with the wanted channels (``keys`` only, or all)."""
        if self.mode == "pattern":
            return
        wanted = self._wanted
        subscribed = session.subscribed
        if keys is None:
            add = list(wanted)
            drop: list[bytes] = []
        else:
            add = [k for k in keys if k in wanted and k not in subscribed]
            drop = [k for k in keys if k not in wanted and k in subscribed]
        pubsub = session.pubsub
        for i in range(0, len(drop), _BATCH):
            batch = drop[i : i + _BATCH]
            subscribed.difference_update(batch)
            session.confirmed_keys.difference_update(batch)
            await pubsub.unsubscribe(*batch)
        for i in range(0, len(add), _BATCH):
            # A channel released while an earlier batch was on its way needs no subscription.
            batch = [k for k in add[i : i + _BATCH] if k in wanted and k not in subscribed]
            if not batch:
                continue
            subscribed.update(batch)
            for key in batch:
                session.inflight[key] += 1
            await pubsub.subscribe(*batch)

    def _fail(self, session: _Session, cause: BaseException | str) -> None:
        """Mark ``session`` lost (first cause wins) and wake the supervisor."""
        if session.cause is None:
            session.cause = cause
        if session is self._session and self._kick is not None:
            self._kick.set()

    def _came_up(self, session: _Session) -> None:
        """The session has resubscribed every wanted channel: end the outage, if one is on."""
        session.up = True
        now = time.time()
        outage, self._outage = self._outage, None
        if outage is None:
            self._log.append((now, "connected"))
            return
        outage.ended_at = now
        self.outage_s_closed += now - outage.started_at
        self.reconnects += 1
        self._log.append((now, "reconnected"))
        logger.warning(
            "the shared Redis subscription is back after %.2f s; %d stream(s) were told events may be lost",
            now - outage.started_at,
            outage.streams_told,
        )

    def _went_down(self, session: _Session) -> None:
        """Start an outage (or extend the one a new session had not ended): invalidate the live confirmations and tell their streams."""
        assert self._loop is not None
        now = time.time()
        cause = str(session.cause)
        self.errors += 1
        affected: list[bytes] | None
        if self.mode == "pattern":
            pattern = self._pattern_confirmed
            affected = None if pattern is not None and pattern.done() else []
            if pattern is None or pattern.done():
                self._pattern_confirmed = self._loop.create_future()
        else:
            affected = []
            for key, wanted in self._wanted.items():
                if wanted.confirmed.done():
                    affected.append(key)
                    # Streams that join from now on wait for the next connection's confirmation.
                    wanted.confirmed = self._loop.create_future()
        told = 0
        if self.on_lost is not None:
            try:
                told = self.on_lost(affected)
            except Exception:
                # The outage is still counted and the subscription still comes back.
                logger.exception("telling the streams of a lost subscription failed")
        self.streams_told_total += told
        self._log.append((now, f"lost: {cause}"))
        if self._outage is not None:
            # Lost again while resubscribing: the same outage goes on.
            self._outage.streams_told += told
            return
        self._outage = Outage(now, cause, told)
        self.outages.append(self._outage)
        self.outages_total += 1
        logger.warning(
            "the shared Redis subscription was lost (%s); told %d stream(s) events may be lost",
            cause,
            told,
        )

    async def _close_session(self, session: _Session) -> None:
        """Stop the session's reader and close its PubSub and client, whatever state they are in."""
        task, session.reader = session.reader, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        pubsub, session.pubsub = session.pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        client, session.client = session.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # ------------------------------------------------------------------ reading

    async def _read_loop(self, session: _Session) -> None:
        """Take messages off the session's Redis connection and fan them out, until it fails."""
        pubsub = session.pubsub
        parse = pubsub.parse_response
        deliver = self.deliver
        every = self.reader_yield_every
        gate = self._gate
        assert gate is not None
        n = 0
        # On a real Redis connection read it directly (see compat.read_push); fakeredis keeps the
        # documented path. Either way a failure ends the session: redis-py's own reconnect would
        # resubscribe only what it remembers and hide the loss.
        connection = compat.direct_connection(pubsub)
        read_push = compat.read_push
        # A rate cap: each message keeps the reader busy 1/rate s from when it was taken (or
        # from when the previous one was done, if it was waiting). Sleeps are taken only once
        # a millisecond is owed, on an absolute schedule, so their overshoot does not slow the
        # mean rate.
        interval = 1.0 / self.reader_rate_per_s if self.reader_rate_per_s else 0.0
        busy_until = 0.0
        clock = time.monotonic
        try:
            while True:
                if connection is not None:
                    pending = read_push(connection)
                    if pending is None:
                        raise ConnectionError("the subscription connection is closed")
                    response = await pending
                else:
                    response = await parse(block=True)
                if response is None:
                    continue
                kind = response[0]
                if kind == b"message":
                    deliver(response[1], response[2])
                elif kind == b"pmessage":
                    deliver(response[2], response[3])
                else:
                    await self._control(session, response)
                    continue
                if interval:
                    now = clock()
                    busy_until = max(busy_until, now - interval) + interval
                    if busy_until - now > 0.001:
                        await asyncio.sleep(busy_until - now)
                if every:
                    n += 1
                    if n >= every:
                        n = 0
                        await asyncio.sleep(0)
                if not gate.is_set():
                    await gate.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(session, exc)

    async def _control(self, session: _Session, response: Any) -> None:
        """Subscription confirmations: resolve the streams waiting for them; keep redis-py's books."""
        await session.pubsub.handle_message(response, ignore_subscribe_messages=False)
        kind = response[0]
        if kind == b"subscribe":
            key = response[1]
            # Redis confirms in order: only the confirmation of the latest SUBSCRIBE sent for a
            # channel proves the current subscription (an earlier one may precede an UNSUBSCRIBE).
            inflight = session.inflight.get(key, 0)
            if inflight > 1:
                session.inflight[key] = inflight - 1
                return
            session.inflight.pop(key, None)
            if key not in session.subscribed:
                return  # an UNSUBSCRIBE went out after it
            session.confirmed_keys.add(key)
            wanted = self._wanted.get(key)
            if wanted is not None and not wanted.confirmed.done():
                wanted.confirmed.set_result(None)
        elif kind == b"psubscribe":
            pattern = self._pattern_confirmed
            if pattern is not None and not pattern.done():
                pattern.set_result(None)
