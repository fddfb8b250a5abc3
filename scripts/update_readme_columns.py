"""Regenerate the README's results-columns section from the one place columns are defined."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- columns:start -->", "<!-- columns:end -->"


def generated() -> str:
    """Every documented table, as declared in sse_sim.tables."""
    from sse_sim.tables import columns_markdown

    return columns_markdown().strip()


def section(text: str) -> str:
    m = re.search(re.escape(START) + r"\n(.*?)\n?" + re.escape(END), text, re.S)
    if m is None:
        raise SystemExit(f"{README}: markers {START} / {END} not found")
    return m.group(1).strip()


def main() -> None:
    text = README.read_text()
    section(text)
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: f"{START}\n{generated()}\n{END}", text, flags=re.S)
    README.write_text(new)
    print(f"updated {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
