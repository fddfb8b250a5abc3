"""Bad scenarios get one clear message naming the file, the key path and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sse_sim import ScenarioError, load_scenario

VALID = """
duration_s: 10
publishers:
  - kind: poisson
    rate_per_player_per_s: 1
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    return str(info.value)


def test_valid_minimal(tmp_path):
    sc = load_scenario(write(tmp_path, VALID))
    assert sc.gateway.buffer_size == 50 and sc.gateway.overflow_policy == "drop_newest"
    assert sc.gateway.keepalive_interval_s == 15 and sc.disconnects.retry_delay_s is None  # the browser default: 3 s


def test_unknown_key_is_an_error_naming_path_and_allowed_keys(tmp_path):
    msg = error_of(tmp_path, VALID + "gateway:\n  bufer_size: 10\n")
    assert str(tmp_path / "s.yaml") in msg
    assert "gateway.bufer_size: unknown key" in msg
    assert "buffer_size" in msg and "overflow_policy" in msg


def test_typo_in_a_list_item_names_its_index(tmp_path):
    msg = error_of(tmp_path, VALID.replace("rate_per_player_per_s", "rate_per_s"))
    assert "publishers[0].rate_per_s: unknown key" in msg
    assert "publishers[0].rate_per_player_per_s: required field is missing" in msg


def test_bad_enum_lists_what_is_allowed(tmp_path):
    msg = error_of(tmp_path, VALID + "gateway:\n  overflow_policy: drop_random\n")
    assert "gateway.overflow_policy" in msg
    for allowed in ("drop_newest", "drop_oldest", "disconnect"):
        assert allowed in msg


def test_bad_publisher_kind(tmp_path):
    msg = error_of(tmp_path, VALID.replace("poisson", "poison"))
    assert msg == f"{tmp_path / 's.yaml'}: publishers[0].kind: expected one of 'poisson', 'burst', 'trace', got string 'poison'"
    msg = error_of(tmp_path, VALID.replace("kind: poisson", "event_type: x"))
    assert "publishers[0].kind: required field is missing (expected one of 'poisson', 'burst', 'trace')" in msg


def test_messages_say_what_was_there_and_what_is_allowed(tmp_path):
    msg = error_of(
        tmp_path,
        VALID + "gateway: {overflow_policy: drop_random, buffer_size: 0}\n"
        "clients: {drain_time: {kind: exponential, mean: 1, median: 2}}\n"
        "disconnects: {windows: [{start_s: 0, end_s: 1, clients: some}], mass_drops: [{at_s: 1, node: x}]}\n",
    )
    assert msg.splitlines()[1:] == [
        "  gateway.buffer_size: expected a number of at least 1, got integer 0",
        "  gateway.overflow_policy: expected 'drop_newest', 'drop_oldest' or 'disconnect', got string 'drop_random'",
        "  clients.drain_time.median: unknown key (allowed: kind, mean)",
        "  disconnects.windows[0].clients: expected 'all' or a valid list, got string 'some'",
        "  disconnects.mass_drops[0].node: expected a valid integer or 'all', got string 'x'",
    ]


def test_bad_distribution(tmp_path):
    msg = error_of(tmp_path, VALID + "clients:\n  drain_time: {kind: lognormal, median: 0.1, p99: 0.05}\n")
    assert "clients.drain_time: p99 (0.05) must be greater than median (0.1)" in msg


def test_all_problems_reported_at_once(tmp_path):
    msg = error_of(tmp_path, "duration_s: -1\npublishers: []\ngatway: {}\n")
    assert "duration_s" in msg and "publishers" in msg and "gatway: unknown key" in msg


def test_cross_field_checks(tmp_path):
    msg = error_of(tmp_path, VALID + "disconnects:\n  mass_drops:\n    - at_s: 1\n      node: 3\n")
    assert msg == (
        f"{tmp_path / 's.yaml'}: disconnects.mass_drops[0].node is 3, but gateway.nodes is 1 (allowed: 0..0 or 'all')"
    )


def test_not_yaml_and_not_a_mapping(tmp_path):
    assert "not valid YAML at line 2" in error_of(tmp_path, "duration_s: 1\n  - : [\n")
    assert "must be a mapping" in error_of(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml")


def test_trace_and_empirical_files(tmp_path):
    (tmp_path / "trace.csv").write_text("published_at,player\n0.5,0\n0.1,0\n2.0,1\n")
    (tmp_path / "drain.csv").write_text("drain_s\n0.01\n0.02\n")
    sc = load_scenario(
        write(
            tmp_path,
            "duration_s: 10\npopulation: {players_per_brand: 2}\n"
            "publishers: [{kind: trace, file: trace.csv}]\n"
            "clients: {drain_time: {kind: empirical, file: drain.csv}}\n",
        )
    )
    from sse_sim import simulate

    rec = simulate(sc, seed=0).records
    assert sorted(rec["published_at"].tolist()) == [0.1, 0.5, 2.0]
    (tmp_path / "bad.csv").write_text("published_at\nabc\n")
    msg = error_of(tmp_path, "duration_s: 10\npublishers: [{kind: trace, file: nope.csv}]\n")
    assert "publishers[0].file: trace file not found" in msg and "nope.csv" in msg
    msg = error_of(tmp_path, "duration_s: 10\npublishers: [{kind: poisson, rate_per_player_per_s: 1}]\n"
                   "clients: {drain_time: {kind: empirical, file: drain.csv, column: nope}}\n")
    assert "column 'nope' not in" in msg and "drain_s" in msg
    # a bad row fails when the scenario is loaded, not when it is simulated
    msg = error_of(tmp_path, "duration_s: 10\npublishers: [{kind: trace, file: bad.csv}]\n")
    assert msg == (
        f"{tmp_path / 's.yaml'}: publishers[0].file: trace {tmp_path / 'bad.csv'}, line 2: "
        "published_at: expected a number of seconds >= 0, got 'abc'"
    )


def test_cli_reports_without_traceback(tmp_path):
    bad = write(tmp_path, VALID + "gateway:\n  bufer_size: 10\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "gateway.bufer_size: unknown key" in proc.stderr
