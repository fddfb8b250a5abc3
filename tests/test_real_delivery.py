"""Real mode under stream and latest delivery: client resume and replay marks, the classifier, sim vs real."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sse_sim.compare import compare
from sse_sim.outcomes import Outcome
from sse_sim.real.classify import classify, socket_held
from sse_sim.real.clients import (
    CONNECTION_COLUMNS,
    ClientPlan,
    _ConnectionClosed,
    _Replay,
    _Results,
)
from sse_sim.real.payloads import build_payload
from sse_sim.real.runner import prepare_scenario, run_real
from sse_sim.records import row_layout
from sse_sim.scenario import as_scenario
from sse_sim.simulation import simulate

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"

# ---------------------------------------------------------------------------------- the client


def _frame(event_id: int, entry_id: str | None = None) -> bytes:
    _, text = build_payload(1001, 1, "notification", event_id, 0, 200)
    return (f"id: {entry_id}\n" if entry_id else "").encode() + f"data: {text}\n\n".encode()


def _chunked(*writes: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(w), w) for w in writes) + b"0\r\n\r\n"


CONNECTED = b'data: {"type":"connected","timestamp":"2025-01-01T00:00:00Z"}\n\n'


def _recovery(n: int) -> bytes:
    return b'data: {"type":"recovery","recovered":true,"replayed":%d}\n\n' % n


async def _serve(responses: list[bytes]) -> tuple[list[bytes], asyncio.AbstractServer, int]:
    """A server answering the i-th request with ``responses[i]``, then closing; records the request heads."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(responses[len(heads) - 1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return heads, server, server.sockets[0].getsockname()[1]


def _plan(port: int) -> ClientPlan:
    return ClientPlan(
        host="127.0.0.1", node_ports=[port], brand_path=[1001], tokens=["t"], client_node=np.zeros(1, np.int16),
        session_offsets=np.array([0, 1]), connect_at=np.zeros(1), disconnect_at=np.full(1, np.inf),
        row_off=np.array([0, 10]), player_first_event=np.array([0]), player_n_events=np.array([10]),
        drain_s=np.zeros(10), net_s=np.zeros(10),
    )


def test_client_resumes_with_last_event_id_marks_replays_and_dedupes() -> None:
    async def scenario() -> tuple[list[bytes], _Results, _Replay]:
        heads, server, port = await _serve([
            # connected and the first frames in one write: the first read stops at connected
            _chunked(CONNECTED + _frame(0, "1-0"), _frame(1, "2-0"), _frame(2)),
            # replayed: event 1 again (a cached value already read), 3 and 4; then 5 live
            _chunked(CONNECTED + _recovery(3) + _frame(1, "2-0"), _frame(3, "4-0") + _frame(4, "5-0"), _frame(5, "6-0")),
        ])
        results = _Results()
        replay = _Replay(_plan(port), results)
        async with server:
            stream, index = await replay.open(0, 0)
            await replay.read(0, stream, index, until_connected=True)
            for _ in range(2):
                with pytest.raises(_ConnectionClosed):
                    await replay.read(0, stream, index)
                replay.close(stream, index, by_server=True)
                if len(heads) == 1:
                    stream, index = await replay.open(0, 0)
        await asyncio.sleep(0.05)  # the receipts' emulated network delay (0 here)
        return heads, results, replay

    heads, results, replay = asyncio.run(scenario())
    assert b"last-event-id" not in heads[0].lower()  # nothing read yet: no Last-Event-ID, as EventSource
    assert b"Last-Event-ID: 2-0\r\n" in heads[1]  # event 2 carried no id: 2-0 stays in force
    receipts = np.asarray(results.receipts)
    assert receipts[:, 1].tolist() == [0, 1, 2, 3, 4, 5]  # event 1 kept once
    assert receipts[:, 6].tolist() == [0, 0, 0, 1, 1, 0]  # 3 and 4 were among the 3 replayed frames
    conns = np.asarray(results.connections)
    col = {c: i for i, c in enumerate(CONNECTION_COLUMNS)}
    assert conns[:, col["last_event"]].tolist() == [-1, 1]
    assert conns[:, col["replay_n"]].tolist() == [-1, 3]
    assert not np.isnan(conns[:, col["connected"]]).any()
    assert replay.last_id[0] == "6-0" and replay.last_event[0] == 5
    assert results.errors == []


# ---------------------------------------------------------------------------------- the classifier


def _raw_from_sim(res) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """What clients and gateway would report if the real run went exactly as the simulator says.

    Connection k is workload session k (subscribed at ``subscribed_at``, the ``connected``
    instant); it resumes after the last stream event the client read before it; rows the gateway
    had and lost get their fate on the connection the simulator put them on.
    """
    w, df = res.workload, res.records
    row_off, event_id, client_id = row_layout(w.player_offsets, w.clients_per_player)
    outcome = df["outcome"].cat.codes.to_numpy()
    stream = np.array([res.scenario.delivery.mode_of(t) == "stream" for t in w.event_types])[w.event_type_code]
    conns = []
    for c in range(w.n_clients):
        rows = np.arange(row_off[c], row_off[c + 1])
        for s in range(w.session_offsets[c], w.session_offsets[c + 1]):
            sub = w.subscribed_at[s]
            read = rows[(outcome[rows] == Outcome.DELIVERED) & stream[event_id[rows]] & (df["left_at"].to_numpy()[rows] < sub)]
            last = int(event_id[read[-1]]) if read.size else -1
            conns.append([c, s, s, w.connect_at[s], sub, w.disconnect_at[s] if math.isfinite(w.disconnect_at[s]) else np.nan, 0, last, -1])
    conns_arr = np.asarray(conns, np.float64)
    delivered = np.flatnonzero(outcome == Outcome.DELIVERED)
    receipts = np.column_stack([
        client_id[delivered], event_id[delivered], df["session_id"].to_numpy()[delivered],
        df["left_at"].to_numpy()[delivered], df["left_at"].to_numpy()[delivered],
        df["received_at"].to_numpy()[delivered], df["replayed"].to_numpy()[delivered],
    ]).astype(np.float64)
    fates = {Outcome.LOST_IN_BUFFER: "lost_in_buffer", Outcome.DROPPED_OVERFLOW: "dropped_overflow"}
    log = []
    for r in np.flatnonzero(np.isin(outcome, list(fates)) & (df["session_id"].to_numpy() >= 0)):
        e = int(event_id[r])
        _, text = build_payload(1001, 1, w.event_types[w.event_type_code[e]], e, w.seed, 100)
        log.append(SimpleNamespace(connection_id=int(df["session_id"].iloc[r]), raw_message=text, gateway_at=0.0,
                                   fate=fates[Outcome(outcome[r])], left_at=None))
    raw = {
        "t0": 0.0, "published_wall": w.published_at, "receipts": receipts, "connections": conns_arr,
        "event_logs": [log] + [[] for _ in range(w.n_nodes - 1)],
        "peers": [{k: (k, w.connect_at[k]) for k in range(w.n_sessions) if w.client_node[int(conns_arr[k, 0])] == n} for n in range(w.n_nodes)],
        "subscriber_log": [],
    }
    return raw, row_off, event_id, client_id


def _latest_scenario() -> dict:
    """Balance updates under latest and notifications under a small stream history; a 1 s window for half the clients."""
    return {
        "name": "latest_window",
        "duration_s": 3.0,
        "population": {"brand_ids": [1001], "players_per_brand": 8, "clients_per_player": 1},
        "publishers": [
            {"kind": "poisson", "event_type": "gamification_balance_update", "rate_per_player_per_s": 12, "payload_bytes": 130},
            {"kind": "poisson", "event_type": "notification", "rate_per_player_per_s": 4, "payload_bytes": 300},
        ],
        "redis": {"hop_latency": 0.0003, "subscribe_latency": 0.003},
        "clients": {"drain_time": 0.001, "network_latency": 0.005},
        "disconnects": {"windows": [{"start_s": 1.0, "end_s": 2.0, "clients": [0, 1, 2, 3]}]},
        "delivery": {"mode": "stream", "history_size": 2, "event_types": {"gamification_balance_update": "latest"}},
    }


def _storm_slice():  # type: ignore[no-untyped-def]
    sc, _ = prepare_scenario(SCENARIOS / "storm_replay.yaml", start_s=294, duration_s=10, max_players=2000)
    return sc


def _tabs_scenario(**clients: object) -> dict:
    """Eight tabs per browser, a window on two of them, under stream delivery."""
    sc = _latest_scenario()
    sc["population"] = {"brand_ids": [1001], "players_per_brand": 2, "clients_per_player": 8}
    sc["clients"] = {**sc["clients"], **clients}
    sc["disconnects"] = {"windows": [{"start_s": 1.0, "end_s": 2.0, "clients": [0, 9]}]}
    return sc


CASES = [
    ("storm_replay", _storm_slice, {"delivered", "lost_disconnected", "lost_history_expired"}),
    ("latest", _latest_scenario, {"delivered", "lost_history_expired", "superseded"}),
    ("http1_cap", lambda: _tabs_scenario(), {"delivered", "superseded", "lost_connection_limit"}),
    ("tab_leader", lambda: _tabs_scenario(tab_sharing="leader"), {"delivered", "superseded"}),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classifier_gives_the_simulators_outcomes_on_the_simulators_observations(make, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    sc = as_scenario(make())
    res = simulate(sc, 0)
    raw, row_off, event_id, client_id = _raw_from_sim(res)
    out, _, _ = classify(sc, res.workload, raw, row_off, event_id, client_id, 1.0)
    sim = res.records["outcome"].cat.codes.to_numpy()
    assert expected <= set(res.records["outcome"].astype(str)) and res.records["replayed"].any()
    wrong = np.flatnonzero(out.outcome != sim)
    assert wrong.size == 0, res.records.iloc[wrong[:10]]
    assert np.array_equal(out.replayed, res.records["replayed"].to_numpy())


def test_classifier_output_limit_outage_while_the_stream_is_still_open() -> None:
    # Redis closed the node's capped subscriber; the gateway saw it at 0.985 s (after reading
    # what the sockets held), resubscribed at 1.035 s, and ended the client's stream with its
    # loss notice at 0.992 s. The burst published at 0.99 s found the stream still open and the
    # subscription already gone: lost to the output-buffer limit, not in the stream's buffer.
    sc = as_scenario(SCENARIOS / "real_output_limit.yaml").with_overrides({"redis.output_buffer.kernel_buffer_bytes": 2_900_000})
    res = simulate(sc, 0)
    raw, row_off, event_id, client_id = _raw_from_sim(res)
    raw["connections"] = np.array([[0, 0, 0, 0, 0, 0.992, 1, -1, -1], [0, 0, 0, 0.993, 0.994, np.nan, 0, -1, -1]], np.float64)
    raw["subscriber_log"] = [[(0.0, "connected"), (0.985, "lost: Connection closed by server."), (1.035, "reconnected")]]
    out, _, unexplained = classify(sc, res.workload, raw, row_off, event_id, client_id, 1.0)
    records = res.records
    sim = records["outcome"].cat.codes.to_numpy()
    in_moment = (records["published_at"] > 0.985) & (records["published_at"] < 0.992)
    assert in_moment.sum() == 20 and (records.loc[in_moment, "outcome"] == "lost_redis_output_limit").all()
    assert unexplained == 0
    wrong = np.flatnonzero(out.outcome != sim)
    assert wrong.size == 0, records.iloc[wrong[:10]]


def test_socket_held_counts_what_was_written_and_not_yet_read_at_a_full_socket() -> None:
    # One client on port 5000. The gateway writes events 0-9 at 0.1 s, 0.2 s, ... 1.0 s; the
    # client takes event 0 at 0.15 s and drains it until 2.0 s, then takes one every 0.1 s.
    def entry(e: int, fate: str, at: float) -> SimpleNamespace:
        _, text = build_payload(1001, 1, "notification", e, 0, 100)
        return SimpleNamespace(connection_id=1, raw_message=text, gateway_at=at, fate=fate, left_at=at)

    log = [entry(e, "sent", 0.1 * (e + 1)) for e in range(10)]
    # Queue full at 0.5 s and 0.65 s: one episode (no read since 0.15 s), in which the sockets
    # took event 5 at 0.6 s, so they came to hold events 1-5. At 2.05 s, after the read at 2.0 s
    # and before the gateway could write again (TCP had not reopened the window): not a full
    # socket, not counted. At 2.3 s and 2.35 s, after a write at 2.2 s: counted, events 3-9, 13.
    log += [entry(10, "dropped_overflow", 0.5), entry(11, "dropped_overflow", 0.65), entry(12, "dropped_overflow", 2.05)]
    log += [entry(13, "sent", 2.2), entry(14, "dropped_overflow", 2.3), entry(15, "dropped_overflow", 2.35)]
    reads = {0: 0.15, 1: 2.0, 2: 2.1, 3: 2.4}
    receipts = np.array([[0, e, 0, t, t, t, 0, t, t, t] for e, t in reads.items()], np.float64)
    # a second client (port 5001) that never read anything: its socket held all it was sent
    stalled = [entry(e, "sent", 0.1 * (e - 15)) for e in range(16, 19)] + [entry(19, "dropped_overflow", 0.9)]
    log += [SimpleNamespace(**{**vars(x), "connection_id": 2}) for x in stalled]
    raw = {
        "t0": 0.0, "receipts": receipts, "event_logs": [log], "peers": [{1: (5000, 0.0), 2: (5001, 0.0)}],
        "connections": np.array([[0, 0, 5000, 0.0, 0.01, np.nan, 0, -1, -1], [1, 0, 5001, 0.0, 0.01, np.nan, 0, -1, -1]], np.float64),
    }
    sizes = np.full(20, 100)
    sizes[3] = 1000
    held = socket_held(SimpleNamespace(client_node=np.array([0, 0]), payload_bytes=sizes), raw)
    assert held["at_s"] == [0.5, 2.3, 0.9]
    assert held["events"] == [5.0, 8.0, 3.0]
    assert held["bytes"] == [4 * 108 + 1008, 7 * 108 + 1008, 3 * 108]
    assert held["client"] == [0.0, 0.0, 1.0]
    # before the next read: the first episode's sockets went on to take events 6-9 (written by
    # 1.0 s, the read at 2.0 s), as a window that grows after the last overflow does; the
    # second took nothing more before 2.4 s; the stalled client never read again
    assert held["peak_events"] == [9.0, 8.0, 3.0]
    assert held["peak_bytes"] == [8 * 108 + 1008, 7 * 108 + 1008, 3 * 108]


# ---------------------------------------------------------------------------------- sim vs real

BACKENDS = ["fakeredis", pytest.param("redis", marks=pytest.mark.redis)]


def _redis(backend: str, request: pytest.FixtureRequest) -> dict:
    return {"redis_url": request.getfixturevalue("redis_url")} if backend == "redis" else {}


def _rows(result, metric: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    row = result.table.set_index("metric").loc[metric]
    return float(row["sim"]), float(row["real"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_storm_replay_agrees_per_cause(backend: str, request: pytest.FixtureRequest) -> None:
    # node 0 drops at 6 s and its clients come back at 9 s with Last-Event-ID: the gap's first
    # second is past the 2 s history (lost_history_expired), the rest is replayed
    result = compare(SCENARIOS / "storm_replay.yaml", backend=backend, start_s=294, duration_s=10, max_players=2000, **_redis(backend, request))
    assert result.ok, result.format()
    assert result.real.metadata["unexplained_n"] == 0
    for metric in ("loss_rate_lost_history_expired", "replayed_rate", "loss_rate_lost_disconnected"):
        sim, real = _rows(result, metric)
        assert sim > 0 and real > 0, result.format()
    assert (result.real.records["outcome"] == "delivered").mean() > 0.9
    assert result.real.metadata["recoveries_n"] > 0


def _conflation_scenario() -> dict:
    """Balance updates at 100/s under latest to clients reading 50/s: a newer value replaces the queued one.

    20 kB payloads, so that the kernel's socket buffers hold 2 of them (as in
    ``real_burst_exact.yaml``) and the gateway's queue, not the kernel, decides what is replaced.
    """
    return {
        "name": "conflation",
        "duration_s": 2.0,
        "population": {"brand_ids": [1001], "players_per_brand": 4, "clients_per_player": 1},
        "publishers": [{"kind": "poisson", "event_type": "gamification_balance_update", "rate_per_player_per_s": 100, "payload_bytes": 20000}],
        "redis": {"hop_latency": 0.0003, "subscribe_latency": 0.003},
        "clients": {"drain_time": 0.02, "network_latency": 0.005, "socket_buffer_events": 2},
        "delivery": {"mode": "latest"},
    }


@pytest.mark.parametrize(
    ("make", "present"),
    [
        (_latest_scenario, ("superseded_rate", "replayed_rate", "loss_rate_lost_history_expired")),
        (_conflation_scenario, ("superseded_rate",)),
    ],
    ids=["reconnect", "conflation"],
)
def test_latest_delivery_agrees_per_cause(make, present: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = compare(make(), backend="fakeredis")
    assert result.ok, result.format()
    assert result.real.metadata["unexplained_n"] == 0
    for metric in present:
        sim, real = _rows(result, metric)
        assert sim > 0 and real > 0, result.format()
    # superseded is not a loss: the loss rate counts the loss causes only
    causes = result.table[result.table["metric"].str.startswith("loss_rate_")]
    assert _rows(result, "loss_rate")[0] == pytest.approx(causes["sim"].sum())
    if make is _latest_scenario:
        # away from the window's edges the run goes as the simulator says, row by row
        same = result.sim.records["outcome"].to_numpy() == result.real.records["outcome"].to_numpy()
        assert same.mean() > 0.97, result.real.records[~same]


@pytest.mark.parametrize("clients", [{}, {"tab_sharing": "leader"}], ids=["http1_cap", "tab_leader"])
def test_browser_tabs_open_what_a_browser_opens(clients: dict) -> None:
    sc = _tabs_scenario(**clients)
    sc["disconnects"] = {}
    sc["duration_s"] = 1.0
    del sc["delivery"]  # the tabs' part alone
    real = run_real(sc, 0)
    df = real.records
    tab = df["client_id"] % 8
    if clients:
        assert real.metadata["connections_n"] == 2  # one per browser: the leader tab's
        for col in ("outcome", "received_at"):
            by_tab = df.pivot_table(index="event_id", columns=tab, values=col, aggfunc="first", observed=True)
            assert (by_tab.nunique(axis=1, dropna=False) == 1).all()
    else:
        assert real.metadata["connections_n"] == 12  # six per browser over HTTP/1.1
        assert (df.loc[tab >= 6, "outcome"] == "lost_connection_limit").all()
    assert (df.loc[tab < 6, "outcome"] == "delivered").all()
