"""What an install contains: every package of ``moalign/``, and the built-in objectives of the
top-level folder ``objectives/`` under the name ``moalign_objectives`` (never a global package
``objectives``, which another project's module of that name would collide with)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILT_INS = ("helpfulness", "harmlessness", "length", "reasoning_accuracy")


def _setuptools() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_names_every_folder():
    setuptools = _setuptools()["tool"]["setuptools"]
    folders = sorted(".".join(p.parent.relative_to(ROOT).parts)
                     for p in (ROOT / "moalign").rglob("__init__.py")
                     if "__pycache__" not in p.parts)
    assert sorted(setuptools["packages"]) == sorted([*folders, "moalign_objectives"])
    assert setuptools["package-dir"] == {"moalign_objectives": "objectives"}


def test_built_in_entry_points_name_the_installed_package():
    group = _setuptools()["project"]["entry-points"]["moalign.objectives"]
    assert sorted(group) == sorted(BUILT_INS)
    for name, target in group.items():
        module = target.split(":")[0]
        assert module == f"moalign_objectives.{name}"
        assert (ROOT / "objectives" / f"{name}.py").is_file()


def test_installed_objectives_import_from_anywhere_and_objectives_is_free(tmp_path):
    """From a folder outside the repository: ``moalign_objectives`` imports and every built-in
    loads through its entry point; the name ``objectives`` is not taken."""
    script = (
        "import importlib.util, moalign, moalign_objectives.helpfulness\n"
        "from moalign.objective import get_objective_class\n"
        f"for name in {BUILT_INS!r}:\n"
        "    assert get_objective_class(name).__module__ == 'moalign_objectives.' + name\n"
        "print(importlib.util.find_spec('objectives'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
