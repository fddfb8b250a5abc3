"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "data" / "scenarios"


@pytest.fixture
def scenarios_dir() -> Path:
    """Folder of the shipped scenarios."""
    return SCENARIOS


@pytest.fixture(scope="session")
def redis_server():  # type: ignore[no-untyped-def]
    """A throwaway redis-server for the whole session; fails (never skips) in CI when none exists."""
    import os

    from sse_sim.errors import SseSimError
    from sse_sim.real.redis_server import RedisServer

    try:
        server = RedisServer()
    except SseSimError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"real-Redis tests must run in CI: {exc}")
        pytest.skip(f"no redis-server here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    """URL of the session's throwaway redis-server."""
    return redis_server.url


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless Chromium for the real-EventSource tests; fails (never skips) in CI when none exists."""
    import os
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("real-browser tests must run in CI: no chromium (scripts/ensure-chromium.sh installs it)")
        pytest.skip("no chromium here (scripts/ensure-chromium.sh installs it as root on Debian)")
    return path
