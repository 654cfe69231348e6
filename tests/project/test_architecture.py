"""The architecture check: the import contracts of ``pyproject.toml`` (``[tool.importlinter]``:
layers, no circles between siblings, the public facades) hold, and the layout stays readable.

The contracts are checked by ``lint-imports`` on the real package; the negative controls run the
same command on a copy of the package with one import added that runs upward or closes a
circle, which must be reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "moalign"
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"


def _lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([LINT, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=package_parent, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "moalign",
                    ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    return tmp_path


@pytest.mark.parametrize("module, line, broken", [
    # data is below fronts: a data module importing a front module runs upward
    ("data/selection.py", "from moalign.fronts import config as _up\n", "layers below it BROKEN"),
    # a lazy import inside a function counts as much as one at the top
    ("weights.py", "def _late():\n    from moalign.pareto import hypervolume  # noqa\n",
     "layers below it BROKEN"),
    # two modules of one package importing each other: a circle between siblings
    ("fronts/config.py", "from moalign.fronts import trace as _circle\n",
     "No import circle between sibling modules or subpackages, at any depth BROKEN"),
    # the public facade is not for internal use
    ("trainers/registry.py", "from moalign import scalarize as _facade\n",
     "Internal code imports moalign.tradeoff, not the public facades BROKEN"),
])
def test_an_added_bad_import_is_caught(package_copy: Path, module: str, line: str, broken: str):
    target = package_copy / "moalign" / module
    target.write_text(target.read_text() + "\n" + line)
    result = _lint(package_copy)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout


def test_layout_stays_readable():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, f"modules over 500 lines: {long}"


def test_every_subpackage_is_in_a_layer():
    text = (ROOT / "pyproject.toml").read_text()
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    layered = text[text.index("layers = ["):text.index("exhaustive =")]
    missing = [p for p in packages if f'"{p}' not in layered and f"| {p}" not in layered
               and f"{p} |" not in layered]
    assert not missing, f"subpackages in no layer of [tool.importlinter]: {missing}"
