"""pyproject.toml is the source of dependencies; environment.yml must mirror it exactly."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import ROOT

import sse_sim

# PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"redis": "redis-py"}
# conda-only entries: the interpreter, pip itself, and the server the real-Redis tests start
CONDA_ONLY = {"python", "pip", "redis-server"}


# a version, then optionally ",<upper" for a library whose private internals the gateway uses
# (sse_sim/real/gateway/compat.py)
BOUNDS = r"([0-9][0-9A-Za-z.]*(?:,<[0-9][0-9A-Za-z.]*)?)"


def parse(req: str) -> tuple[str, str]:
    m = re.fullmatch(rf"\s*([A-Za-z0-9_.\-]+)\s*>=\s*{BOUNDS}\s*", req)
    assert m, f"requirement {req!r} must be 'name>=lower-bound' or 'name>=lower,<upper'"
    return m.group(1).lower(), m.group(2)


def pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs += extra
    return dict(parse(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert dep.get("pip") == ["-e ."], "only the package itself comes from pip"
            continue
        m = re.fullmatch(rf"([A-Za-z0-9_.\-]+)(?:\s*>=\s*{BOUNDS})?", dep)
        assert m, dep
        out[m.group(1).lower()] = m.group(2) or ""
    return out


def test_environment_yml_mirrors_pyproject():
    py = pyproject_requirements()
    conda = conda_requirements()
    expected = {CONDA_NAMES.get(name, name): bound for name, bound in py.items()}
    missing = {k: v for k, v in expected.items() if k not in conda}
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    differing = {k: (v, conda[k]) for k, v in expected.items() if conda[k] != v}
    assert not differing, f"version bounds differ (pyproject, environment.yml): {differing}"
    extra = set(conda) - set(expected) - CONDA_ONLY
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"


def test_public_names_are_exported():
    assert sorted(sse_sim.__all__) == sorted(set(sse_sim.__all__))
    for name in sse_sim.__all__:
        assert hasattr(sse_sim, name), name
    public = {n for n in vars(sse_sim) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(sse_sim, n)).__name__ == "module"}
    assert public - modules - {"annotations"} <= set(sse_sim.__all__) | {"__version__"}


def test_py_typed_marker_is_shipped():
    assert (ROOT / "sse_sim" / "py.typed").exists()
