"""Objectives from separately installed packages are discovered through their entry points.

A plugin package is written to a temporary folder and installed there (not into the running
environment), then that folder is put on ``sys.path`` / ``PYTHONPATH``. The main test builds and
installs a real package (its own ``pyproject.toml``) with ``pip install --target``; the error
cases write the installed metadata (``*.dist-info``) directly, which is what pip would leave.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import moalign
from moalign.cli import main
from moalign.errors import ObjectiveError, UnknownObjectiveError
from moalign.objective import ObjectiveSet, available_objectives, refresh_entry_points

PLUGIN_MODULE = '''
from moalign.objective import Objective, as_text


class Politeness(Objective):
    """Counts polite words."""

    description = "fraction of polite words (demo plugin)"

    def __init__(self, words=("please", "thanks")):
        self.words = tuple(words)

    def score(self, prompts, completions, **columns):
        out = []
        for c in completions:
            tokens = as_text(c).lower().split()
            out.append(sum(t in self.words for t in tokens) / len(tokens) if tokens else None)
        return out


class NotAnObjective:
    pass
'''

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"

[project.entry-points."moalign.objectives"]
{entry_points}

[tool.setuptools]
packages = ["{package}"]
"""


def _write_dist_info(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[moalign.objectives]\n{entry_points}\n")


def _write_module(site: Path, package: str, source: str) -> None:
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(textwrap.dedent(source))


@pytest.fixture
def on_path(monkeypatch):
    """Put folders on sys.path for one test; forget their modules and entry points after."""
    added: list[str] = []

    def add(site: Path) -> Path:
        monkeypatch.syspath_prepend(str(site))
        added.append(str(site))
        refresh_entry_points()
        return site

    yield add
    for path in added:
        while path in sys.path:
            sys.path.remove(path)
    for name, module in list(sys.modules.items()):
        if any(str(getattr(module, "__file__", "") or "").startswith(p) for p in added):
            del sys.modules[name]
    importlib.invalidate_caches()
    refresh_entry_points()


def _cli_output(capsys, *args: str) -> str:
    assert main(["objectives", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def pip_installed(tmp_path_factory) -> Path:
    """A real plugin package built from its own pyproject.toml and installed by pip into a
    temporary target folder."""
    pytest.importorskip("setuptools")
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    _write_module(src, "moalign_demo_plugin", PLUGIN_MODULE)
    (src / "pyproject.toml").write_text(
        PYPROJECT.format(
            dist="moalign-demo-plugin",
            package="moalign_demo_plugin",
            entry_points='politeness = "moalign_demo_plugin:Politeness"',
        )
    )
    site = root / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
        "-q",
        "--target",
        str(site),
        str(src),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (site / "moalign_demo_plugin-0.1.0.dist-info" / "entry_points.txt").exists()
    return site


def test_pip_installed_plugin_is_discovered(pip_installed, on_path, capsys):
    assert "politeness" not in available_objectives()
    on_path(pip_installed)
    assert "politeness" in available_objectives()
    assert "politeness" in moalign.available_objectives()

    obj = moalign.load_objective("politeness")
    assert type(obj).__module__ == "moalign_demo_plugin"
    assert obj.__name__ == "politeness"  # named by its entry point
    assert obj(None, ["please help", "no", ""]) == [0.5, 0.0, None]
    custom = moalign.load_objective({"name": "politeness", "words": ["no"]})
    assert custom(None, ["no"]) == [1.0]

    rewards = ObjectiveSet(["politeness", "length:target=1"]).score(None, ["thanks a lot"])
    assert rewards.names == ("politeness", "length")
    assert rewards.values[0, 0].item() == pytest.approx(1 / 3)

    out = _cli_output(capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("politeness"))
    assert "fraction of polite words (demo plugin)" in line
    for built_in in ("length", "reasoning_accuracy"):
        assert built_in in out
    verbose = _cli_output(capsys, "--verbose")
    assert "[moalign_demo_plugin:Politeness]" in verbose


def test_pip_installed_plugin_in_a_fresh_process(pip_installed):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(pip_installed), os.getcwd()]),
        HF_HUB_OFFLINE="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "moalign", "objectives"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "fraction of polite words (demo plugin)" in done.stdout
    assert "reasoning_accuracy" in done.stdout


def test_uninstalled_plugin_is_forgotten(tmp_path, on_path):
    site = tmp_path / "site"
    _write_module(site, "moalign_gone_plugin", PLUGIN_MODULE)
    _write_dist_info(site, "moalign-gone-plugin", "gone = moalign_gone_plugin:Politeness")
    on_path(site)
    assert moalign.load_objective("gone")(None, ["thanks"]) == [1.0]
    sys.path.remove(str(site))
    refresh_entry_points()
    assert "gone" not in available_objectives()
    with pytest.raises(UnknownObjectiveError, match="unknown objective 'gone'"):
        moalign.load_objective("gone")


def test_two_packages_claiming_one_name(tmp_path, on_path):
    site = tmp_path / "site"
    _write_module(site, "moalign_twin_a", PLUGIN_MODULE)
    _write_module(site, "moalign_twin_b", PLUGIN_MODULE)
    _write_dist_info(site, "moalign-twin-a", "twin = moalign_twin_a:Politeness")
    _write_dist_info(site, "moalign-twin-b", "twin = moalign_twin_b:Politeness")
    on_path(site)
    assert "twin" in available_objectives()
    with pytest.raises(ObjectiveError, match="provided by several installed packages") as info:
        moalign.load_objective("twin")
    assert "moalign_twin_a:Politeness" in str(info.value)
    assert "moalign_twin_b:Politeness" in str(info.value)
    assert info.value.objective == "twin"


def test_a_plugin_cannot_take_a_built_in_name(tmp_path, on_path):
    site = tmp_path / "site"
    _write_module(site, "moalign_thief", PLUGIN_MODULE)
    _write_dist_info(site, "moalign-thief", "length = moalign_thief:Politeness")
    on_path(site)
    with pytest.raises(ObjectiveError, match="'length' is provided by several installed packages"):
        moalign.load_objective("length")


@pytest.mark.parametrize(
    "entry, match",
    [
        ("broken = moalign_broken_plugin:Missing", "cannot import its entry point"),
        ("broken = moalign_no_such_module:Politeness", "No module named 'moalign_no_such_module'"),
        ("broken = moalign_broken_plugin:NotAnObjective", "is not an Objective subclass"),
    ],
)
def test_broken_plugins_give_clear_errors(tmp_path, on_path, capsys, entry, match):
    site = tmp_path / "site"
    _write_module(site, "moalign_broken_plugin", PLUGIN_MODULE)
    _write_dist_info(site, "moalign-broken-plugin", entry)
    on_path(site)
    with pytest.raises(ObjectiveError, match=match) as info:
        moalign.load_objective("broken")
    assert info.value.objective == "broken"
    assert "objective 'broken'" in str(info.value)
    # the listing still works and shows the problem on the plugin's line
    line = next(ln for ln in _cli_output(capsys).splitlines() if ln.startswith("broken"))
    assert "cannot load" in line


def test_plugin_declaring_another_name(tmp_path, on_path):
    site = tmp_path / "site"
    _write_module(site, "moalign_named_plugin", PLUGIN_MODULE + "\nPoliteness.name = 'polite'\n")
    _write_dist_info(site, "moalign-named-plugin", "courtesy = moalign_named_plugin:Politeness")
    on_path(site)
    with pytest.raises(ObjectiveError, match="declares name 'polite'"):
        moalign.load_objective("courtesy")
