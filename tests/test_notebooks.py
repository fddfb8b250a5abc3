"""The notebooks under notebooks/ execute without error in quick mode, and are committed without outputs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import nbformat
import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# TQDM_DISABLE is left out on purpose: the notebooks themselves must keep progress bars out of
# an executed notebook, where they would stay behind as frozen "0%" text
QUICK_ENV = {"SSE_SIM_QUICK": "1", "MPLBACKEND": "Agg"}

# what each executed notebook must show, besides running cleanly
EXPECTED_OUTPUT = {
    "01_quickstart": ["published: events/s", "delivered: deliveries/s (attempts: events × clients)"],
    "04_buffer_sizing": ["overflow loss was 0 in every seed at buffer_size [10, 20, 50, 100, 200]", "closed form: K = 23"],
    "06_designs_side_by_side": ["designs compared: 5 on 2 workloads", "largest replay burst:", "lost_connection_limit"],
    "07_production_to_scenario": ["captured", "'kind': 'poisson'", "activity_sigma", "'kind': 'burst'"],
    "08_platform_at_scale": ["without records: True", "share of each node's attempts lost:", "node 3:", "clients that lost nothing:"],
    "05_sim_vs_real": ["kernel socket buffers, measured:", "simulator, no socket buffers (K = 51)", "simulator, calibrated (K = "],
}


def code_of(path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def markdown_of(path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


def output_text(cell) -> str:
    parts = []
    for o in cell.outputs:
        parts.append(o.get("text", ""))
        parts.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    return "".join(parts)


def test_the_eight_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_bursts.ipynb",
        "03_disconnects.ipynb",
        "04_buffer_sizing.ipynb",
        "05_sim_vs_real.ipynb",
        "06_designs_side_by_side.ipynb",
        "07_production_to_scenario.ipynb",
        "08_platform_at_scale.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: run nbstripout"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.get("metadata", {})


def test_nbstripout_verify_passes():
    proc = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_that_take_a_while_say_whether_to_show_progress(path):
    # sweep, size_buffer and replicate show progress bars unless told; simulate only when asked
    for source in code_of(path):
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("sweep", "size_buffer", "replicate"):
                assert "progress" in keywords, f"{path.name}: {name}(...) without progress=: {ast.unparse(node)}"
                assert ast.unparse(keywords["progress"]) in ("False", "PROGRESS", "not QUICK"), ast.unparse(node)
            if name == "simulate" and "progress" in keywords:
                assert ast.unparse(keywords["progress"]) != "True", ast.unparse(node)
    setup = code_of(path)[0]
    if "PROGRESS" in "".join(code_of(path)):
        assert "PROGRESS = not QUICK" in setup


def test_quickstart_tells_events_per_second_from_deliveries_per_second():
    path = ROOT / "notebooks" / "01_quickstart.ipynb"
    text = markdown_of(path)
    assert "`published_per_s` counts **events**" in text and "`delivered_per_s` counts **deliveries**" in text
    assert any("deliveries/s (attempts: events × clients)" in c for c in code_of(path))


def test_buffer_sizing_notebook_does_not_read_as_advice_to_shrink():
    path = ROOT / "notebooks" / "04_buffer_sizing.ipynb"
    text = markdown_of(path)
    assert "overflow loss is zero at every buffer size evaluated" in text and "not advice to shrink the buffer" in text
    code = "\n".join(code_of(path))
    # the evidence behind the baseline's verdict is shown: seeds, attempts and intervals per size
    for column in ("seeds_n", "attempts_n", "overflow_loss_rate_ci_high", "disconnect_loss_rate_ci_high"):
        assert column in code
    assert "flaps.report()" not in code
    # the closed form goes through the plot, which keeps it to the simulated sizes and the data's decades
    assert "reference=lambda size: mm1k_blocking(0.9, size + 1)" in code
    assert "ax.plot(" not in code


def test_sim_vs_real_notebook_explains_kernel_socket_buffering():
    path = ROOT / "notebooks" / "05_sim_vs_real.ipynb"
    text = markdown_of(path)
    for phrase in ("kernel's socket buffers", "`clients.socket_buffer_events`", "K = buffer_size + 1 + socket_buffer_events", "`compare` measures it"):
        assert phrase in text, phrase
    code = "\n".join(code_of(path))
    assert "comparison.socket_buffer_events" in code and '"clients.socket_buffer_events": 0' in code


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_in_quick_mode(path, monkeypatch):
    from nbclient import NotebookClient

    for key, value in QUICK_ENV.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this environment
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a cell did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    # warnings from the library's own calls are bugs: the notebook's stderr must be clean
    stderr = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Warning" not in stderr, stderr
    shown = "".join(output_text(c) for c in code)
    # no progress bar left behind, as text or as a widget
    assert "it/s" not in shown and "%|" not in shown, shown[:2000]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in code for o in c.outputs)
    for expected in EXPECTED_OUTPUT.get(path.stem, []):
        assert expected in shown, expected
