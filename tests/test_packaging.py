"""Packaging (issue 26): the distribution's name and metadata, the editable install's import path, the wheel.

The distribution is ``mlip-torch`` (``mlip`` on PyPI is an unrelated JAX library); the import name is ``mlip``.
The editable install must be a plain path entry: setuptools' import-hook finder lost to a folder named ``mlip/``
in the working directory (the parent of a clone named mlip), which Python took for a namespace package.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

import mlip

REPO = Path(__file__).resolve().parents[1]
DIST = "mlip-torch"
COMMANDS = ("align", "bonds", "convert", "data", "eval", "lammps", "preprocess", "report", "select", "train",
            "uncertainty")


def _distribution() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"the distribution {DIST} is not installed: run `make install-test` (or pip install -e .)")


def _editable_of_this_repo(dist: importlib.metadata.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    info = json.loads(text)
    url = urllib.parse.urlparse(info.get("url", ""))
    if url.scheme != "file" or not info.get("dir_info", {}).get("editable"):
        return False
    return Path(urllib.request.url2pathname(url.path)).resolve() == REPO


def test_distribution_name_version_and_commands():
    dist = _distribution()
    assert dist.metadata["Name"] == DIST
    assert dist.version == mlip.__version__
    scripts = {ep.name: ep for ep in dist.entry_points if ep.group == "console_scripts"}
    assert sorted(scripts) == sorted(f"mlip-{c}" for c in COMMANDS)
    for command in COMMANDS:
        ep = scripts[f"mlip-{command}"]
        assert ep.value == f"mlip.cli.{command}:main"
        assert callable(ep.load())
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert {"test", "ondisk", "cueq", "cuda", "lammps", "torchsim"} <= extras


def test_clone_parent_folder_is_a_namespace_candidate(tmp_path):
    # The set-up of the next test reproduces the hazard: a folder mlip/ without __init__.py (the clone) holding
    # data/ (the bundled data), which the path finder offers as a namespace package mlip with a subpackage data.
    (tmp_path / "mlip" / "data").mkdir(parents=True)
    spec = importlib.machinery.PathFinder.find_spec("mlip", [str(tmp_path)])
    assert spec is not None and spec.origin is None  # a namespace portion, no __init__.py
    assert list(spec.submodule_search_locations) == [str(tmp_path / "mlip")]


def test_import_from_the_parent_of_a_clone_named_mlip(tmp_path):
    dist = _distribution()
    if not _editable_of_this_repo(dist):
        pytest.skip(f"{DIST} is not an editable install of {REPO} (make install-test installs it so)")
    (tmp_path / "mlip" / "data").mkdir(parents=True)
    code = ("import json, mlip\nfrom mlip.data import keys\n"
            "print(json.dumps([mlip.__file__, keys.__file__]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    package_file, keys_file = (Path(p) for p in json.loads(proc.stdout.splitlines()[-1]))
    assert package_file == REPO / "mlip" / "__init__.py"
    assert keys_file == REPO / "mlip" / "data" / "keys.py"


def test_editable_install_is_a_path_entry():
    dist = _distribution()
    if not _editable_of_this_repo(dist):
        pytest.skip(f"{DIST} is not an editable install of {REPO}")
    pth = [f for f in dist.files or [] if f.suffix == ".pth"]
    assert pth, f"no .pth file among {DIST}'s installed files"
    lines = [line.strip() for f in pth for line in Path(dist.locate_file(f)).read_text().splitlines()]
    assert str(REPO) in lines
    assert not any(line.startswith("import") for line in lines), lines  # no import hook


def test_wheel_ships_the_package_only(tmp_path):
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is not installed in this environment")
    proc = subprocess.run([sys.executable, "-c", f"from hatchling.build import build_wheel; "
                                                 f"print(build_wheel({str(tmp_path)!r}))"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = tmp_path / proc.stdout.split()[-1]
    assert wheel.name == f"mlip_torch-{mlip.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = f"mlip_torch-{mlip.__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"mlip", info}
    for needed in ("mlip/__init__.py", "mlip/py.typed", "mlip/cli/train.py", "mlip/data/keys.py"):
        assert needed in names
    assert f"Name: {DIST}\n" in metadata and f"Version: {mlip.__version__}\n" in metadata
    assert "License-Expression: MIT" in metadata
    assert "mlip-train = mlip.cli.train:main" in entry_points
