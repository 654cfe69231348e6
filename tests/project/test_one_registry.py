"""One registry type for every named family, one "did you mean", one door for plugins.

Objectives, dataset adapters, scalarizers, schedules, trainers, front methods, named datasets
and the subcommands are each a :class:`moalign._plugins.Registry`; an unknown name in any of
them raises the family's own error type with the same message shape; a third-party package's
entry point is found, checked and loaded through the same registry its built-ins use.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from moalign._plugins import Registry, did_you_mean
from moalign.cli import COMMANDS
from moalign.data import adapters
from moalign.data.catalog import CATALOG
from moalign.errors import ConfigError, DataError, UnknownObjectiveError
from moalign.fronts.plan import METHODS
from moalign.objective.registry import OBJECTIVES
from moalign.tradeoff.scalarize import SCALARIZERS
from moalign.tradeoff.schedule import SCHEDULES
from moalign.trainers.registry import TRAINERS

#: family, a typo, the name it is close to, the error type an unknown name raises
FAMILIES = [
    (OBJECTIVES, "lenght", "length", UnknownObjectiveError),
    (adapters._REGISTRY, "pku-safe", "pku-saferlhf", DataError),
    (SCALARIZERS, "tchebychef", "tchebycheff", ConfigError),
    (SCHEDULES, "swep", "sweep", ConfigError),
    (TRAINERS, "mo_dop", "mo_dpo", ConfigError),
    (METHODS, "sop", "soup", ConfigError),
    (CATALOG, "gsm8", "gsm8k", DataError),
    (COMMANDS, "trian", "train", ConfigError),
]
IDS = [family.kind for family, *_ in FAMILIES]


@pytest.mark.parametrize("family, typo, close, error", FAMILIES, ids=IDS)
def test_every_family_is_the_one_registry(family, typo, close, error):
    assert type(family) is Registry
    assert close in family and typo not in family
    assert family.names() == sorted(family) and len(family) == len(family.names())
    assert family.get(typo) is None


@pytest.mark.parametrize("family, typo, close, error", FAMILIES, ids=IDS)
def test_unknown_names_get_one_message_shape(family, typo, close, error):
    with pytest.raises(error) as info:
        family[typo]
    shape = (rf"unknown {re.escape(family.kind)} '{re.escape(typo)}'; did you mean "
             rf"'{re.escape(close)}'\? \(available: (.+)\)")
    found = re.search(shape, str(info.value))
    assert found, str(info.value)
    assert found.group(1).split(", ") == family.names()
    with pytest.raises(error, match=r"unknown .*'zzzzzzzz' \(available: "):
        family["zzzzzzzz"]


def test_the_public_lookups_raise_the_registry_message():
    from moalign.data.adapters import get_adapter
    from moalign.objective import load_objective
    from moalign.tradeoff.scalarize import get_scalarizer
    from moalign.tradeoff.schedule import get_schedule

    cases = [(lambda: load_objective("lenght"), OBJECTIVES, "lenght"),
             (lambda: get_adapter("pku-safe"), adapters._REGISTRY, "pku-safe"),
             (lambda: get_scalarizer("tchebychef"), SCALARIZERS, "tchebychef"),
             (lambda: get_schedule("swep", 2), SCHEDULES, "swep")]
    for call, family, typo in cases:
        with pytest.raises(Exception) as info:
            call()
        assert family.unknown_message(typo) in str(info.value)
    with pytest.raises(UnknownObjectiveError) as info:
        load_objective("lenght")
    assert info.value.objective == "lenght"  # the key the error names


def test_did_you_mean_is_one_shape():
    assert did_you_mean("lenght", ["length", "helpfulness"]) == "; did you mean 'length'?"
    assert did_you_mean("zzz", ["length"]) == ""


def test_names_follow_one_rule_and_a_taken_name_is_refused():
    with pytest.raises(ConfigError, match="invalid scalarizer name 'Bad-Name'"):
        SCALARIZERS.register("Bad-Name", lambda: None)
    with pytest.raises(ConfigError, match="schedule name 'sweep' is already registered"):
        SCHEDULES.register("sweep", lambda k: None)


def test_front_methods_are_one_table_for_config_and_trace():
    from moalign.fronts import config, sweep, trace

    assert config.METHOD_NAMES == tuple(METHODS) == ("sweep", "soup", "conditioned", "decoding")
    assert trace.METHODS is METHODS
    assert METHODS["sweep"] is sweep.policies


def test_front_trainer_tuples_come_from_the_trainer_registry():
    from moalign.fronts.plan import CONDITIONED_TRAINERS, FRONT_TRAINERS, RL_TRAINERS

    assert set(FRONT_TRAINERS) == set(TRAINERS) - {"conditioned_dpo"}
    assert set(RL_TRAINERS) == {"grpo", "ppo"}
    assert set(CONDITIONED_TRAINERS) == {"mo_dpo", "grpo", "ppo"}


# --------------------------------------------------------------------------------------------
# a third-party package registers through the same door as the built-ins
# --------------------------------------------------------------------------------------------

GROUP = "moalign_test.widgets"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder with an installed package (its ``*.dist-info``, as pip leaves it) on sys.path;
    its modules are forgotten after the test."""
    root = tmp_path / "site"
    (root / "widget_plugin").mkdir(parents=True)
    (root / "widget_plugin" / "__init__.py").write_text(
        "class Gear:\n    size = 3\n\n\nclass NotAWidget:\n    pass\n")
    info = root / "widget_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: widget-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\ngear = widget_plugin:Gear\nbroken = widget_plugin:NotAWidget\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    sys.modules.pop("widget_plugin", None)
    importlib.invalidate_caches()


def _widgets() -> tuple[Registry, list[str]]:
    seen: list[str] = []

    def accept(name: str, obj, where: str):
        seen.append(f"{name} <- {where}")
        if not hasattr(obj, "size"):
            raise ConfigError(f"widget '{name}': {where} has no size")
        return obj

    widgets = Registry("widget", group=GROUP, accept=accept)

    class Bolt:
        size = 1

    widgets.register("bolt", Bolt)  # a built-in
    widgets.register("nut", path="widget_plugin:Gear")  # a built-in imported on first use
    return widgets, seen


def test_a_third_party_entry_point_registers_through_the_same_door(site: Path):
    widgets, seen = _widgets()
    assert widgets.names() == ["bolt", "broken", "gear", "nut"]
    assert list(widgets) == ["bolt", "nut", "broken", "gear"]  # built-ins, then entry points
    assert widgets.source("gear") == "widget_plugin:Gear"
    assert widgets.source("bolt") == "registered in-process"
    assert widgets["gear"].size == 3 and widgets["bolt"].size == 1
    assert widgets["nut"] is widgets["gear"]
    assert seen == ["bolt <- @register('bolt')", "gear <- entry point 'widget_plugin:Gear'",
                    "nut <- path 'widget_plugin:Gear'"]
    with pytest.raises(ConfigError, match="widget 'broken': entry point .* has no size"):
        widgets["broken"]
    with pytest.raises(ConfigError, match="already provided by the entry point"):
        widgets.register("gear", type("Other", (), {"size": 2}))
    with pytest.raises(ConfigError, match=r"unknown widget 'geer'; did you mean 'gear'\?"):
        widgets["geer"]


def test_a_third_party_objective_and_adapter_use_the_built_in_registries(tmp_path, monkeypatch):
    root = tmp_path / "site"
    (root / "extra_plugin").mkdir(parents=True)
    (root / "extra_plugin" / "__init__.py").write_text(
        "from moalign.data.adapters import CANONICAL\n"
        "from moalign.objective import Objective\n\n\n"
        "class Shouting(Objective):\n"
        "    def score(self, prompts, completions, **columns):\n"
        "        return [float(str(c).isupper()) for c in completions]\n\n\n"
        "ALIAS = CANONICAL\n")
    info = root / "extra_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[moalign.objectives]\nshouting = extra_plugin:Shouting\n\n"
        "[moalign.datasets]\ncanonical-copy = extra_plugin:ALIAS\n")
    monkeypatch.syspath_prepend(str(root))
    try:
        OBJECTIVES.refresh()
        adapters._REGISTRY.refresh()
        assert "shouting" in OBJECTIVES.names() and "length" in OBJECTIVES.names()
        assert OBJECTIVES["shouting"].name == "shouting"  # checked by the same accept
        assert OBJECTIVES.source("shouting") == "extra_plugin:Shouting"
        assert adapters.get_adapter("canonical-copy") is adapters.CANONICAL
    finally:
        sys.modules.pop("extra_plugin", None)
        sys.path.remove(str(root))
        importlib.invalidate_caches()
        OBJECTIVES.refresh()
        adapters._REGISTRY.refresh()
    assert "shouting" not in OBJECTIVES
