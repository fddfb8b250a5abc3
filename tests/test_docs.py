"""Docs match the code: the README's column tables, and every returned frame matches its table."""

from __future__ import annotations

import sys

from conftest import ROOT

from sse_sim import simulate
from sse_sim.tables import check_frame

sys.path.insert(0, str(ROOT / "scripts"))
from update_readme_columns import README, generated, section  # noqa: E402


def test_readme_columns_section_is_generated_from_the_code():
    assert section(README.read_text()) == generated(), "run: .venv/bin/python scripts/update_readme_columns.py"


def test_frames_match_their_documented_columns(scenarios_dir):
    r = simulate(scenarios_dir / "slow_mobile.yaml", seed=0)
    check_frame(r.records, "records")
    check_frame(r.throughput(5.0), "throughput")
    s = r.summary()
    from sse_sim.records import SUMMARY

    assert list(s.index) == [c.name for c in SUMMARY]
    from sse_sim import replicate

    _, ci = replicate(scenarios_dir / "mm1k.yaml", seeds=2)
    check_frame(ci, "replications_ci")


def test_throughput_counts_add_up(scenarios_dir):
    r = simulate(scenarios_dir / "deploy_storm.yaml", seed=0)
    tp = r.throughput(10.0)
    cause_cols = [c for c in tp.columns if c.endswith("_n") and c not in ("published_n", "received_n")]
    assert (tp[cause_cols].sum(axis=1) == tp["published_n"]).all()
    assert tp["published_n"].sum() == len(r.records)
    # the node drop at t = 300 s shows up as lost_disconnected in the 300-310 s bin only
    lost = tp.set_index("bin_start_at")["lost_disconnected_n"]
    assert lost.idxmax() == 300.0 and lost.loc[300.0] > 10 * lost.drop(300.0).max()
