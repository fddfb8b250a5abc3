"""Trace and empirical files: read and checked when the scenario is loaded, never while simulating."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sse_sim import ScenarioError, build_workload, load_scenario
from sse_sim.distributions import Empirical
from sse_sim.scenario import Scenario, scenario_from_dict

DATA = Path(__file__).resolve().parent / "data"
HEAD = "duration_s: 10\npopulation: {players_per_brand: 2}\npublishers:\n  - kind: poisson\n    rate_per_player_per_s: 1\n"


def trace_error(tmp_path: Path, csv_text: str) -> str:
    """The message of loading a scenario whose second publisher replays ``csv_text``."""
    (tmp_path / "t.csv").write_text(csv_text)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(HEAD + "  - kind: trace\n    file: t.csv\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    prefix = f"{scenario}: publishers[1].file: trace {tmp_path / 't.csv'}"
    message = str(info.value)
    assert message.startswith(prefix), message
    assert "\n" not in message
    return message[len(prefix) :]


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (
            "published_at,player\n0.5,0\nabc,1\nx,1\n",
            ", line 3: published_at: expected a number of seconds >= 0, got 'abc' (1 more bad row below)",
        ),
        ("published_at\n1\n-0.5\n", ", line 3: published_at: expected a number of seconds >= 0, got '-0.5'"),
        (
            "published_at,player\n1,0\n\n\n2,5\n",
            ", line 5: player: expected a player index 0..1 (the population has 2 players), got '5'",
        ),
        (
            "published_at,player\n1,0.5\n",
            ", line 2: player: expected a player index 0..1 (the population has 2 players), got '0.5'",
        ),
        (
            "published_at,player\n1,\n",
            ", line 2: player: expected a player index 0..1 (the population has 2 players), got an empty cell",
        ),
        (
            "published_at,event_type\n1,notification\n2,notifcation\n",
            ", line 3: event_type: expected one of notification, gamification_balance_update, "
            "wallet_balance_update, game_result, tournament_update, message, promotion_trigger, "
            "or empty for the publisher's event_type, got 'notifcation'",
        ),
        (
            "published_at,payload_bytes\n1,0\n",
            ", line 2: payload_bytes: expected a whole number of bytes >= 1, or empty to draw from "
            "the publisher's payload_bytes, got '0'",
        ),
        (
            "time,player\n1,0\n",
            ", line 1: no published_at column (seconds from start, required); the header has time, player "
            "(allowed columns: published_at, player, event_type, payload_bytes)",
        ),
        (
            "published_at,playr\n1,0\n",
            ", line 1: unknown column 'playr' (allowed: published_at, player, event_type, payload_bytes)",
        ),
        ("published_at,published_at\n1,2\n", ", line 1: column 'published_at' appears twice"),
        (
            "published_at,player,event_type\n1,0,notification\n2,1\n",
            ", line 3: expected 3 fields (published_at, player, event_type), got 2",
        ),
        ("published_at,player\n1,0\n2,1,3\n", ", line 3: expected 2 fields (published_at, player), got 3"),
        (
            "",
            ", line 1: the file is empty; expected a header line naming the columns "
            "(published_at, player, event_type, payload_bytes)",
        ),
    ],
    ids=[
        "not-a-number", "negative-time", "player-out-of-range", "player-not-whole", "player-empty",
        "unknown-event-type", "zero-bytes", "no-published_at", "unknown-column", "duplicate-column",
        "short-row", "long-row", "empty-file",
    ],
)
def test_a_bad_trace_fails_at_load_naming_file_key_line_and_what_is_allowed(tmp_path, csv_text, expected):
    assert trace_error(tmp_path, csv_text) == expected


def test_line_numbers_count_the_header_blank_lines_and_quoted_newlines(tmp_path):
    text = 'published_at,event_type\n\n1,"notification"\n"2","two\nlines"\n3,bad\n'
    assert trace_error(tmp_path, text).startswith(", line 4: event_type: ")
    assert "got 'two\\nlines' (1 more bad row below)" in trace_error(tmp_path, text)


def test_missing_and_unreadable_trace_files(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(HEAD + "  - kind: trace\n    file: nope.csv\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert str(info.value) == f"{scenario}: publishers[1].file: trace file not found: {tmp_path / 'nope.csv'}"
    (tmp_path / "t.csv").write_bytes(b"\xff\xfepublished_at\n")
    scenario.write_text(HEAD + "  - kind: trace\n    file: t.csv\n")
    with pytest.raises(ScenarioError, match=r"publishers\[1\]\.file: trace .*t\.csv: not UTF-8 text"):
        load_scenario(scenario)


def test_every_bad_file_is_reported_at_once(tmp_path):
    (tmp_path / "t.csv").write_text("published_at\n-1\n")
    (tmp_path / "d.csv").write_text("drain_s\n0.1\nslow\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        HEAD + "  - kind: trace\n    file: t.csv\nclients: {drain_time: {kind: empirical, file: d.csv}}\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert info.value.problems == [
        f"publishers[1].file: trace {tmp_path / 't.csv'}, line 2: published_at: expected a number of seconds "
        ">= 0, got '-1'",
        f"clients.drain_time.file: empirical data {tmp_path / 'd.csv'}, line 3: drain_s: expected a number "
        ">= 0, got 'slow'",
    ]
    assert str(info.value).startswith(f"{scenario}: invalid scenario\n  publishers[1].file: ")


def test_cli_validate_exits_2_with_one_line_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "validate", str(DATA / "bad_trace.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"sse-sim: {DATA / 'bad_trace.yaml'}: publishers[1].file: trace {DATA / 'traces' / 'bad_player.csv'}, "
        "line 5: player: expected a player index 0..1 (the population has 2 players), got '7' "
        "(1 more bad row below)"
    ]


def test_relative_paths_resolve_against_the_scenario_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing to find here
    sc = load_scenario(DATA / "good_trace.yaml")
    rows = sc.publishers[0].rows
    assert rows.path == DATA / "traces" / "good.csv"
    np.testing.assert_array_equal(rows.published_at, [0.5, 0.1, 2.0, 12.0])


def test_workloads_and_sampling_read_no_file(tmp_path):
    (tmp_path / "traces").mkdir()
    for name in ("good_trace.yaml", "traces/good.csv"):
        (tmp_path / name).write_text((DATA / name).read_text())
    (tmp_path / "drain.csv").write_text("0.01\n0.03\n")
    scenario = tmp_path / "good_trace.yaml"
    scenario.write_text(scenario.read_text() + "clients: {drain_time: {kind: empirical, file: drain.csv}}\n")
    sc = load_scenario(scenario)
    for name in ("traces/good.csv", "drain.csv"):
        (tmp_path / name).unlink()
    w = build_workload(sc, seed=1)
    ev = w.events_frame()
    # the row at 12 s is past duration_s; an empty event_type cell is the publisher's own type
    assert ev["published_at"].tolist() == [0.5, 0.1, 2.0]
    assert ev["event_type"].astype(str).tolist() == [
        "notification", "gamification_balance_update", "wallet_balance_update"
    ]
    assert ev["payload_bytes"].tolist() == [123, 900, 123]
    assert w.event_types == ("wallet_balance_update", "notification", "gamification_balance_update")
    assert set(sc.clients.drain_time.sample(np.random.default_rng(0), 50)) == {0.01, 0.03}


def test_round_trip_through_a_dict_reads_the_files_again(tmp_path):
    sc = load_scenario(DATA / "good_trace.yaml")
    again = scenario_from_dict(sc.to_dict(), source=sc.source, base_dir=sc.base_dir)
    assert again.publishers[0].rows == sc.publishers[0].rows
    a, b = build_workload(sc, seed=3), build_workload(again, seed=3)
    np.testing.assert_array_equal(a.published_at, b.published_at)
    np.testing.assert_array_equal(a.payload_bytes, b.payload_bytes)
    shorter = sc.with_overrides({"duration_s": 1.0})
    assert build_workload(shorter, seed=3).published_at.tolist() == [0.5, 0.1]
    with pytest.raises(ScenarioError, match=r"line 3: player: expected a player index 0 \(the population has 1 player\), got '1'"):
        sc.with_overrides({"population.players_per_brand": 1})


def test_a_scenario_never_bound_says_so_instead_of_reading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("published_at\n1\n")
    (tmp_path / "d.csv").write_text("0.1\n")
    raw = Scenario.model_validate(
        {"duration_s": 5, "publishers": [{"kind": "trace", "file": "t.csv"}]}
    )
    with pytest.raises(ScenarioError, match="the trace t.csv was never read"):
        build_workload(raw)
    dist = Empirical(kind="empirical", file=Path("d.csv"))
    with pytest.raises(ScenarioError, match="has no values"):
        dist.sample(np.random.default_rng(0), 3)
    with pytest.raises(ScenarioError, match="has no values"):
        _ = dist.mean
    assert dist.load_values(np.array([0.1, 0.3])).mean == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("text", "column", "values"),
    [
        ("0.01\n0.02\n0.03\n", None, [0.01, 0.02, 0.03]),
        ("drain_s\n0.01\n\n0.02\n", None, [0.01, 0.02]),
        ("a,b\n1,7\n2,8\n", "b", [7, 8]),
    ],
    ids=["no-header", "header", "named-column"],
)
def test_empirical_files(tmp_path, text, column, values):
    (tmp_path / "d.csv").write_text(text)
    spec = {"kind": "empirical", "file": "d.csv", **({"column": column} if column else {})}
    sc = scenario_from_dict(
        {"duration_s": 5, "publishers": [{"kind": "poisson", "rate_per_player_per_s": 1}], "clients": {"drain_time": spec}},
        base_dir=tmp_path,
    )
    np.testing.assert_array_equal(sc.clients.drain_time.values, values)
    assert set(sc.clients.drain_time.sample(np.random.default_rng(0), 100)) == set(values)


def test_empirical_file_problems(tmp_path):
    def error(text: str, column: str | None = None) -> str:
        (tmp_path / "d.csv").write_text(text)
        spec = {"kind": "empirical", "file": "d.csv", **({"column": column} if column else {})}
        with pytest.raises(ScenarioError) as info:
            scenario_from_dict(
                {"duration_s": 5, "publishers": [{"kind": "poisson", "rate_per_player_per_s": 1}],
                 "redis": {"hop_latency": spec}},
                source="s.yaml", base_dir=tmp_path,
            )
        return str(info.value).replace(str(tmp_path / "d.csv"), "d.csv")

    assert error("x\n1\n-2\n") == (
        "s.yaml: redis.hop_latency.file: empirical data d.csv, line 3: x: expected a number >= 0, got '-2'"
    )
    assert error("x\n1\n", column="y") == (
        "s.yaml: redis.hop_latency.file: empirical data d.csv, line 1: column 'y' not in the header (columns: x)"
    )
    assert error("x\n") == (
        "s.yaml: redis.hop_latency.file: empirical data d.csv: column 'x' has no values; "
        "expected at least one number >= 0"
    )
