"""The sse-sim command line: run, check (the CI gate), validate, replicate, schema, columns."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from sse_sim.tables import check_frame


def sse_sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", *args], capture_output=True, text=True, env=None, timeout=600
    )


def test_run_writes_records_summary_and_throughput(scenarios_dir, tmp_path):
    proc = sse_sim("run", str(scenarios_dir / "slow_mobile.yaml"), "--seed", "3", "--out", str(tmp_path), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert "loss_rate_dropped_overflow" in proc.stdout
    records = pd.read_parquet(tmp_path / "records.parquet")
    check_frame(records, "records")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"]["seed"] == 3 and summary["run"]["scenario"]["name"] == "slow_mobile"
    assert summary["summary"]["attempts_n"] == len(records)
    assert summary["summary"]["loss_rate_dropped_overflow"] > 0.01
    check_frame(pd.read_csv(tmp_path / "throughput.csv"), "throughput")


def test_check_fails_on_a_broken_slo_and_names_it(scenarios_dir):
    proc = sse_sim("check", str(scenarios_dir / "slow_mobile.yaml"), "--max-loss", "0.001", "--max-p99", "60")
    assert proc.returncode == 1
    assert "SLO BROKEN: loss rate" in proc.stderr and "p99" not in proc.stderr


def test_check_passes_when_the_slo_holds(scenarios_dir):
    proc = sse_sim(
        "check", str(scenarios_dir / "slow_mobile.yaml"), "--max-loss", "0.5", "--max-cause", "lost_disconnected=0"
    )
    assert proc.returncode == 0, proc.stderr
    assert "SLO met" in proc.stdout


def test_check_per_cause_limit(scenarios_dir):
    proc = sse_sim("check", str(scenarios_dir / "slow_mobile.yaml"), "--max-cause", "dropped_overflow=0.0001")
    assert proc.returncode == 1
    assert "dropped_overflow" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "{s}"], "needs at least one of"),
        (["check", "{s}", "--max-cause", "typo=1"], "unknown cause 'typo'"),
        (["check", "{s}", "--max-cause", "dropped_overflow=x"], "must be a number"),
        (["run", "missing.yaml"], "no such scenario file"),
        (["columns", "nope"], "unknown table"),
        # mistakes click itself catches, whatever typer or click version is installed
        (["run", "{s}", "--seeds", "3"], "No such option: --seeds"),
        (["runn"], "No such command 'runn'"),
        (["check", "{s}", "--max-loss", "5%"], "Invalid value for '--max-loss'"),
        (["replicate", "{s}", "--seeds", "0"], "Invalid value for '--seeds'"),
        (["schema", "foo"], "No such command 'foo'"),
        (["size", "x.yaml"], "Missing option '--max-loss'"),
    ],
)
def test_usage_errors_are_one_line_without_traceback(scenarios_dir, args, message):
    proc = sse_sim(*[a.format(s=scenarios_dir / "mm1k.yaml") for a in args])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("sse-sim: ")


@pytest.mark.parametrize("args", [[], ["run"], ["gateway"], ["token"], ["compare"], ["size"], ["schema"]])
def test_help_reads_cleanly(args):
    proc = sse_sim(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: sse-sim" in proc.stdout
    assert "<bool>" not in proc.stdout
    assert "--help" in proc.stdout and "Show this message and exit." in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        None,
        ["--help"],
        ["token", "--brand", "1001", "--player", "7"],
        ["token", "--brand", "1001", "--player", "7", "--query"],
    ],
)
def test_the_command_line_starts_without_the_heavy_libraries(argv):
    """--help and token load no numba, pandas, pydantic, matplotlib or uvicorn (start-up time)."""
    heavy = ["numba", "pandas", "pydantic", "matplotlib", "uvicorn", "redis", "fakeredis", "scipy", "numpy"]
    run = "" if argv is None else f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
    code = (
        "import sys\n"
        "from sse_sim.cli import app, main\n"
        f"{run}"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
    if argv and argv[0] == "token":
        assert proc.stdout.startswith("v1.1001.7.")


def test_validate_and_schema(scenarios_dir):
    for name in ("baseline", "mm1k", "deploy_storm", "slow_mobile", "bench_10m"):
        proc = sse_sim("validate", str(scenarios_dir / f"{name}.yaml"))
        assert proc.returncode == 0 and "valid" in proc.stdout, proc.stderr
    schema = json.loads(sse_sim("schema", "scenario").stdout)
    assert schema["title"] == "Scenario"
    assert {"duration_s", "publishers", "gateway"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_replicate_prints_intervals(scenarios_dir, tmp_path):
    proc = sse_sim("replicate", str(scenarios_dir / "slow_mobile.yaml"), "--seeds", "3", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    ci = pd.read_csv(tmp_path / "ci.csv")
    row = ci.set_index("metric").loc["loss_rate_dropped_overflow"]
    assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["seeds_n"] == 3
    assert len(pd.read_csv(tmp_path / "per_seed.csv")) == 3
