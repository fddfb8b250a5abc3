"""The Makefile's set-up commands: `make run` installs once, `make lab` starts (as root too)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from conftest import ROOT

from sse_sim.real.redis_server import free_port

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _venv_ready() -> bool:
    return (ROOT / ".venv" / ".installed").exists()


def test_make_run_does_not_reinstall_an_installed_package():
    if not _venv_ready():
        pytest.fail("run the suite through `make test`, which installs the package into .venv")
    plan = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert "sse-sim run data/scenarios/baseline.yaml" in plan.stdout
    assert "pip install" not in plan.stdout, plan.stdout


def test_make_lab_passes_allow_root_exactly_when_root():
    plan = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert ("--allow-root" in plan.stdout) == (os.geteuid() == 0)


@pytest.mark.slow
def test_make_lab_starts_and_serves():
    if not _venv_ready():
        pytest.fail("run the suite through `make test`, which installs the package into .venv")
    port = free_port()
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token= --ServerApp.open_browser=False"
    proc = subprocess.Popen(
        ["make", "lab", f"LAB_ARGS={args}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5) as resp:
                    status = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.2)  # polling a server that is still starting, bounded by the deadline
        if status is None:
            out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
            pytest.fail(f"make lab did not serve within 180 s (exit {proc.poll()}): {out[-2000:]}")
        assert "version" in status
    finally:
        # stop what this test started: the make process group, by its id
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        proc.stdout.close()
