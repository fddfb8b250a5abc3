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
