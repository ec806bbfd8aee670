"""A wheel of snnas is usable beyond this checkout: it ships the search spaces, and an install
that has never seen the source tree loads every one of them by name."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from snnas.spaces import list_spaces, load_space

ROOT = Path(__file__).resolve().parent.parent

# Run by an interpreter started with -I -S: no site hooks (so not the checkout's editable-install
# finder), no PYTHONPATH, no working directory on sys.path. The installed wheel comes first; the
# virtualenv's site-packages only supplies the dependencies (torch, optuna, ...).
PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path += sys.argv[2:]
import snnas
from snnas.groundtruth import find_table
from snnas.spaces import list_spaces, load_space
names = list_spaces()
table = find_table("fashion-10")
print(json.dumps({"file": snnas.__file__, "names": names, "table": str(table.path) if table else None,
                  "spaces": {n: {"source": load_space(n).source, "seeds": load_space(n).seeds()} for n in names}}))
"""


def _run(*cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    proc = subprocess.run(cmd, cwd=cwd, env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_an_installed_wheel_loads_every_space_by_name(tmp_path):
    # Build from a copy of the sources: setuptools writes build/ and *.egg-info beside them, and
    # a stale build/ could smuggle files into the wheel that the package data does not declare.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "snnas", src / "snnas", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(src), cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("snnas-*.whl")

    catalog = resources.files("snnas.spaces") / "catalog"
    names = list_spaces()
    assert {"dense_additive", "dense_ops", "uniform", "wiring"} <= set(names)
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith("snnas/spaces/catalog/")}
        assert shipped == {f"snnas/spaces/catalog/{n}.toml" for n in names}
        for n in names:  # the very bytes of the checkout's files
            assert zf.read(f"snnas/spaces/catalog/{n}.toml") == (catalog / f"{n}.toml").read_bytes()
        tables = {n for n in zf.namelist() if n.startswith("snnas/tables/") and n.endswith(".json")}
        assert tables == {f"snnas/tables/{p.name}" for p in (ROOT / "snnas" / "tables").glob("groundtruth_*.json")}
        assert tables, "the wheel ships no ground-truth table"
        [metadata] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        requires = zf.read(metadata).decode().splitlines()
    # pip install 'snnas[dashboard]' brings optuna-dashboard
    assert "Provides-Extra: dashboard" in requires
    assert any(r.startswith("Requires-Dist: optuna-dashboard") and 'extra == "dashboard"' in r for r in requires)

    site = tmp_path / "site"
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel),
         cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"  # a working directory with no checkout in it or above it
    elsewhere.mkdir()
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    out = _run(sys.executable, "-I", "-S", "-c", PROBE, str(site), *deps, cwd=elsewhere).stdout
    got = json.loads(out.strip().splitlines()[-1])

    assert Path(got["file"]).resolve().is_relative_to(site.resolve()), got["file"]  # the wheel, not the checkout
    assert got["names"] == names
    assert got["table"] and Path(got["table"]).resolve().is_relative_to(site.resolve()), got["table"]
    for n in names:
        assert Path(got["spaces"][n]["source"]).resolve().is_relative_to(site.resolve())
        expected = [[preset, params] for preset, params in load_space(n).seeds()]
        assert got["spaces"][n]["seeds"] == expected and expected, n


def test_names_come_from_the_package_and_paths_from_anywhere(tmp_path):
    from snnas.errors import SpaceError

    package = Path(resources.files("snnas") / "spaces" / "catalog")
    assert Path(load_space("uniform").source) == package / "uniform.toml"
    copy = tmp_path / "mine.toml"
    copy.write_bytes((package / "uniform.toml").read_bytes())
    assert load_space(str(copy)).source == str(copy)  # --space path/to/file.toml still works
    with pytest.raises(SpaceError, match="mine2.toml: not found"):
        load_space(str(tmp_path / "mine2.toml"))
    with pytest.raises(SpaceError, match="unknown; known spaces: dense_additive, dense_ops, efficient, uniform, wiring"):
        load_space("mine")


def test_the_shipped_tables_are_the_measured_ones():
    """The wheel's copies of the full-training tables are byte for byte the checkout's results (a
    table re-measured under bench/results must be copied to snnas/tables/ too)."""
    shipped = sorted((ROOT / "snnas" / "tables").glob("groundtruth_*.json"))
    assert shipped
    for path in shipped:
        assert path.read_bytes() == (ROOT / "bench" / "results" / path.name).read_bytes(), path.name
