"""The simulator's per-connection model written plainly in SimPy: the speed reference and a cross-check.

It consumes the same workload and the same per-row drain and network samples as the engine,
so on the features it covers (Redis hop, sessions and subscription gaps, drop_newest and
drop_oldest, flushing on disconnect) its outcomes must equal the engine's row for row.
Not covered: the node output-buffer stage, reader yielding, socket buffers, the
``disconnect`` policy.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import simpy

from sse_sim.outcomes import Outcome
from sse_sim.records import row_layout
from sse_sim.scenario import Scenario
from sse_sim.workload import Workload, sample_row_times


def simpy_outcomes(scenario: Scenario, w: Workload) -> dict[str, np.ndarray]:
    """Run every client of a workload through a SimPy model; per-row arrays like the engine's."""
    row_off, event_id, client_id = row_layout(w.player_offsets, w.clients_per_player)
    n = event_id.size
    drain, net = sample_row_times(scenario, w, row_off, event_id, client_id)
    drain, net = drain.astype(float), net.astype(float)
    buffer_size = scenario.gateway.buffer_size
    drop_oldest = scenario.gateway.overflow_policy == "drop_oldest"
    outcome = np.full(n, -1, np.int8)
    received = np.full(n, np.nan)
    env = simpy.Environment()

    class Connection:
        def __init__(self, end: float):
            self.queue: deque[int] = deque()
            self.in_flight: int | None = None
            self.wakeup = env.event()
            self.idle = False
            self.last_recv = -np.inf
            self.open = True
            self.writer = env.process(self.write())
            if np.isfinite(end):
                env.process(self.close_at(end))

        def write(self):
            try:
                while True:
                    if self.queue:
                        r = self.queue.popleft()
                        self.in_flight = r
                    else:
                        # idle: the next offer hands its event straight over (the reader yields
                        # after every message, so the writer takes it before the next arrives)
                        self.idle = True
                        self.wakeup = env.event()
                        r = yield self.wakeup
                    yield env.timeout(drain[r])
                    self.in_flight = None
                    outcome[r] = Outcome.DELIVERED
                    self.last_recv = max(self.last_recv, env.now + net[r])
                    received[r] = self.last_recv
            except simpy.Interrupt:
                return

        def offer(self, r: int) -> None:
            if self.idle:
                self.idle = False
                self.in_flight = r
                self.wakeup.succeed(r)
                return
            if len(self.queue) >= buffer_size:
                if not drop_oldest:
                    outcome[r] = Outcome.DROPPED_OVERFLOW
                    return
                outcome[self.queue.popleft()] = Outcome.DROPPED_OVERFLOW
            self.queue.append(r)

        def close_at(self, end: float):
            yield env.timeout(end - env.now)
            self.open = False
            for r in list(self.queue) + ([self.in_flight] if self.in_flight is not None else []):
                outcome[r] = Outcome.LOST_IN_BUFFER
            self.queue.clear()
            self.writer.interrupt()

    def client(c: int):
        s0, s1 = w.session_offsets[c], w.session_offsets[c + 1]
        conns: dict[int, Connection] = {}
        prev = -np.inf
        for r in range(row_off[c], row_off[c + 1]):
            e = event_id[r]
            p = w.published_at[e]
            arr = max(prev, p + w.hop_latency_s[e])
            prev = arr
            s = s0 + int(np.searchsorted(w.disconnect_at[s0:s1], p, side="right"))
            if s >= s1 or w.subscribed_at[s] > p:
                outcome[r] = Outcome.LOST_DISCONNECTED
                continue
            if arr > env.now:
                yield env.timeout(arr - env.now)
            if s not in conns:
                conns[s] = Connection(
                    w.disconnect_at[s] if w.disconnect_at[s] > env.now else env.now
                )
            conn = conns[s]
            if not conn.open:
                outcome[r] = Outcome.LOST_IN_BUFFER
                continue
            conn.offer(r)

    # a connection's close is scheduled when it opens; open one per session lazily as above
    for c in range(w.n_clients):
        env.process(client(c))
    env.run()
    return {
        "event_id": event_id,
        "client_id": client_id,
        "outcome": outcome,
        "received_at": received,
    }


__all__ = ["simpy_outcomes"]
