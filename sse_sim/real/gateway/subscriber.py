"""The gateway process's one shared Redis subscription, feeding every message to the fan-out.

One PubSub connection per gateway process, as in the documented system: ``channel`` mode
subscribes each channel some stream reads (SUBSCRIBE on the first reader, UNSUBSCRIBE after the
last), ``pattern`` mode holds one ``PSUBSCRIBE SSE::*``. Commands go out in order from one
task, batched when connections storm in. The reader yields to the event loop every
``reader_yield_every`` messages (0 = only when the socket has nothing more), because a reader
that never yields fills a 50-event queue from one burst before the connection's writer ever
runs, dropping events even for a fast client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ...events.channel import CHANNEL_PATTERN
from . import compat

__all__ = ["SUBSCRIPTION_MODES", "SharedSubscriber", "SubscribeFailed", "wait_confirmed"]

logger = logging.getLogger("sse_sim.gateway")

SUBSCRIPTION_MODES = ("channel", "pattern")


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
    exc = confirmed.exception()
    if exc is not None:
        raise SubscribeFailed(str(exc)) from exc


class _Wanted:
    """One channel some streams read: how many, whether SUBSCRIBE went out, and its confirmation."""

    __slots__ = ("refs", "sent", "confirmed")

    def __init__(self, confirmed: asyncio.Future[None]) -> None:
        self.refs = 0
        self.sent = False
        self.confirmed = confirmed


class SharedSubscriber:
    """Keeps the one Redis subscription in step with the channels streams read, and reads it.

    Every message goes to ``deliver(channel, data)``, which must not await. :meth:`start` binds
    it to the running loop; :meth:`subscribe` and :meth:`unsubscribe` are called once per
    stream and return at once.
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], Any],
        deliver: Callable[[bytes, bytes], None],
        mode: str = "channel",
        reader_yield_every: int = 1,
    ) -> None:
        self.client_factory = client_factory
        self.deliver = deliver
        self.mode = mode
        self.reader_yield_every = reader_yield_every
        self.reconnects = 0
        self.errors = 0
        self._log: list[tuple[float, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._pubsub: Any = None
        self._reader_task: asyncio.Task[None] | None = None
        self._command_task: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[tuple[str, bytes]] | None = None
        self._gate: asyncio.Event | None = None
        self._pattern_confirmed: asyncio.Future[None] | None = None
        self._wanted: dict[bytes, _Wanted] = {}
        self._inflight: collections.Counter[bytes] = collections.Counter()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start sending commands in ``loop``, the running loop; call once."""
        self._loop = loop
        self._commands = asyncio.Queue()
        self._gate = asyncio.Event()
        self._gate.set()
        if self.mode == "pattern":
            self._pattern_confirmed = loop.create_future()
        self._command_task = loop.create_task(
            self._command_loop(), name="sse_sim-subscriber-commands"
        )

    # ------------------------------------------------------------------ the interface

    def subscribe(self, key: bytes) -> asyncio.Future[None]:
        """One more stream reads channel ``key``: a future Redis's confirmation resolves.

        The future fails with :class:`SubscribeFailed` when the subscription cannot be made.
        """
        assert self._commands is not None and self._loop is not None
        if self.mode == "pattern":
            if self._pubsub is None:
                self._commands.put_nowait(("ensure", key))
            assert self._pattern_confirmed is not None
            return self._pattern_confirmed
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = self._wanted[key] = _Wanted(self._loop.create_future())
            self._commands.put_nowait(("subscribe", key))
        wanted.refs += 1
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
        if self._commands is not None:
            self._commands.put_nowait(("unsubscribe", key))

    def stall(self, seconds: float) -> None:
        """Stop reading for ``seconds`` (thread-safe): emulates a lagging gateway node."""
        loop = self._loop
        assert loop is not None

        def stall() -> None:
            assert self._gate is not None
            self._gate.clear()
            loop.call_later(seconds, self._gate.set)

        loop.call_soon_threadsafe(stall)

    def log(self) -> list[tuple[float, str]]:
        """``(time.time(), what)`` for each connect, reconnect and error."""
        return list(self._log)

    async def aclose(self) -> None:
        """Stop the tasks and close the Redis connections."""
        task, self._command_task = self._command_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._drop()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # ------------------------------------------------------------------ the connection

    async def _ensure(self) -> Any:
        """Connect the PubSub and start its reader, once; raises if Redis is unreachable."""
        if self._pubsub is not None:
            return self._pubsub
        if self._client is None:
            self._client = self.client_factory()
        pubsub = self._client.pubsub()
        await pubsub.connect()
        # redis-py reconnects and resubscribes silently when Redis drops the connection (for
        # example past client-output-buffer-limit pubsub); the reconnect callback is the only
        # place that sees it. The bound method is kept alive by self.
        compat.on_reconnect(pubsub, self._on_reconnect)
        if self.mode == "pattern":
            await pubsub.psubscribe(CHANNEL_PATTERN)
        self._pubsub = pubsub
        assert self._loop is not None
        self._reader_task = self._loop.create_task(
            self._read_loop(pubsub), name="sse_sim-subscriber-reader"
        )
        self._log.append((time.time(), "connected"))
        return pubsub

    async def _on_reconnect(self, connection: Any) -> None:
        self.reconnects += 1
        # redis-py resubscribes every channel it knows on reconnect: the confirmations that
        # follow prove all of them, whatever was in flight before.
        self._inflight.clear()
        self._log.append((time.time(), "reconnected"))
        logger.warning(
            "the shared Redis subscriber was disconnected and has resubscribed; events in between are lost"
        )

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    # ------------------------------------------------------------------ commands

    async def _command_loop(self) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE in order, batching what queued up (connection storms)."""
        assert self._commands is not None
        commands = self._commands
        while True:
            kind, key = await commands.get()
            batch = [key]
            while not commands.empty():
                next_kind, next_key = commands.get_nowait()
                if next_kind != kind:
                    await self._run_command(kind, batch)
                    kind, batch = next_kind, []
                batch.append(next_key)
            await self._run_command(kind, batch)

    async def _run_command(self, kind: str, keys: list[bytes]) -> None:
        try:
            pubsub = await self._ensure()
            if kind == "subscribe":
                # A channel released while its SUBSCRIBE waited in the queue needs no subscription.
                keys = [k for k in keys if k in self._wanted]
                for key in keys:
                    self._wanted[key].sent = True
                    self._inflight[key] += 1
                if keys:
                    await pubsub.subscribe(*keys)
            elif kind == "unsubscribe":
                keys = [k for k in keys if k not in self._wanted]
                if keys:
                    await pubsub.unsubscribe(*keys)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(kind, keys, exc)
            # Let the next command try a fresh connection.
            await self._drop()

    def _failed(self, kind: str, keys: list[bytes], exc: Exception) -> None:
        """Fail the confirmations a failed command leaves waiting."""
        self.errors += 1
        self._log.append((time.time(), f"error: {exc}"))
        if kind == "subscribe":
            for key in keys:
                wanted = self._wanted.get(key)
                if wanted is not None and not wanted.confirmed.done():
                    wanted.confirmed.set_exception(SubscribeFailed(str(exc)))
        pattern = self._pattern_confirmed
        if self.mode == "pattern" and pattern is not None and not pattern.done():
            pattern.set_exception(SubscribeFailed(str(exc)))
            self._pattern_confirmed = self._loop.create_future() if self._loop else None

    # ------------------------------------------------------------------ reading

    async def _read_loop(self, pubsub: Any) -> None:
        """Take messages off the shared Redis connection and fan them out."""
        parse = pubsub.parse_response
        deliver = self.deliver
        every = self.reader_yield_every
        gate = self._gate
        assert gate is not None
        n = 0
        failures = 0
        # On a real Redis connection read it directly (see compat.read_push) and fall back to
        # parse_response only when it is down or fails: that path reconnects, resubscribes and
        # fires the reconnect callback. fakeredis keeps the documented path.
        connection = compat.direct_connection(pubsub)
        read_push = compat.read_push
        while True:
            try:
                pending = read_push(connection) if connection is not None else None
                if pending is not None:
                    try:
                        response = await pending
                    except (asyncio.CancelledError, KeyboardInterrupt):
                        raise
                    except Exception:
                        response = await parse(block=True)
                else:
                    response = await parse(block=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Retries inside redis-py are exhausted: Redis is down. Keep trying, slowly;
                # the streams stay open and receive again once the subscriber is back.
                failures += 1
                self.errors += 1
                self._log.append((time.time(), f"error: {exc}"))
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            failures = 0
            if response is None:
                continue
            kind = response[0]
            if kind == b"message":
                deliver(response[1], response[2])
            elif kind == b"pmessage":
                deliver(response[2], response[3])
            else:
                await self._control(pubsub, response)
            if every:
                n += 1
                if n >= every:
                    n = 0
                    await asyncio.sleep(0)
            if not gate.is_set():
                await gate.wait()

    async def _control(self, pubsub: Any, response: Any) -> None:
        """Subscription confirmations: resolve the streams waiting for them; keep redis-py's books."""
        await pubsub.handle_message(response, ignore_subscribe_messages=False)
        kind = response[0]
        if kind == b"subscribe":
            key = response[1]
            # Redis confirms in order: only the confirmation of the latest SUBSCRIBE sent for a
            # channel proves the current subscription (an earlier one may precede an UNSUBSCRIBE).
            inflight = self._inflight.get(key, 0)
            if inflight > 1:
                self._inflight[key] = inflight - 1
                return
            self._inflight.pop(key, None)
            wanted = self._wanted.get(key)
            if wanted is not None and wanted.sent and not wanted.confirmed.done():
                wanted.confirmed.set_result(None)
        elif kind == b"psubscribe":
            pattern = self._pattern_confirmed
            if pattern is not None and not pattern.done():
                pattern.set_result(None)
