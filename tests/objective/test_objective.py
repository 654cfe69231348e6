"""The objective system: base class checks, registry, specs, ObjectiveSet, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from moalign_objectives.length import Length

import moalign
from moalign.errors import MoalignError, ObjectiveError, UnknownObjectiveError
from moalign.objective import (
    Objective,
    ObjectiveSet,
    as_text,
    available_objectives,
    check_scores,
    get_objective_class,
    load_objective,
    register_objective,
)
from moalign.objective import registry as obj_mod

BUILT_INS = {"reasoning_accuracy", "helpfulness", "harmlessness", "length"}


@pytest.fixture(autouse=True)
def clean_registry():
    """Undo in-process registrations made by a test."""
    registered = dict(obj_mod._registered)
    yield
    obj_mod._registered.clear()
    obj_mod._registered.update(registered)


class Const(Objective):
    """Scores every completion with ``value``; ``None`` where the completion is empty."""

    def __init__(self, value: float = 1.0):
        self.value = value

    def score(self, prompts, completions, **columns):
        return [None if not as_text(c) else self.value for c in completions]


def _registered(name: str, score, required=()):
    """Register a one-off objective class whose score() is ``score``."""
    cls = type(
        f"Obj_{name}",
        (Objective,),
        {"score": lambda self, p, c, **k: score(p, c, **k), "required_columns": tuple(required)},
    )
    return register_objective(name)(cls)


# --------------------------------------------------------------------------------------------
# as_text
# --------------------------------------------------------------------------------------------


def test_as_text_forms():
    assert as_text("hi") == "hi"
    assert as_text({"role": "assistant", "content": "x"}) == "x"
    assert as_text([]) == ""
    convo = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a1 "},
        {"role": "assistant", "content": "a2"},
    ]
    assert as_text(convo) == "a1 a2"
    assert as_text([{"role": "user", "content": "only user"}]) == "only user"
    with pytest.raises(TypeError, match="int"):
        as_text(3)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_built_ins_are_available_and_sorted():
    names = available_objectives()
    assert BUILT_INS <= set(names)
    assert names == sorted(names)
    assert moalign.available_objectives() == names


def test_register_objective_makes_it_loadable():
    @register_objective("const_one")
    class ConstOne(Const):
        description = "always one"

    assert ConstOne.name == "const_one"
    assert "const_one" in available_objectives()
    built = load_objective("const_one")
    assert isinstance(built, ConstOne) and built.__name__ == "const_one"
    assert built(["p", "p"], ["a", ""]) == [1.0, None]
    # registering the same class again is harmless
    assert register_objective("const_one")(ConstOne) is ConstOne


@pytest.mark.parametrize("bad", ["Upper", "1abc", "with-dash", "", "has space", "_x", None])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(ObjectiveError, match="invalid objective name"):
        register_objective(bad)


def test_name_clash_with_registered_class():
    register_objective("clash_me")(type("A", (Const,), {}))
    with pytest.raises(ObjectiveError, match="'clash_me' is already registered by .*A"):
        register_objective("clash_me")(type("B", (Const,), {}))


def test_name_clash_with_entry_point():
    with pytest.raises(ObjectiveError, match="'length' is already provided by the entry point"):
        register_objective("length")(type("MyLength", (Const,), {}))


def test_register_requires_objective_subclass_and_matching_name():
    with pytest.raises(ObjectiveError, match="must decorate an Objective subclass"):
        register_objective("not_a_class")(lambda p, c: [1.0])
    with pytest.raises(ObjectiveError, match="declares name 'other'"):
        register_objective("declared")(type("D", (Const,), {"name": "other"}))


def test_unknown_objective_lists_available_and_suggests():
    with pytest.raises(UnknownObjectiveError) as info:
        load_objective("lenght")
    message = str(info.value)
    assert "unknown objective 'lenght'" in message
    assert "; did you mean 'length'?" in message
    for name in BUILT_INS:
        assert name in message
    assert info.value.objective == "lenght"
    assert isinstance(info.value, LookupError) and isinstance(info.value, MoalignError)
    with pytest.raises(UnknownObjectiveError, match=r"\(available: ") as info:
        get_objective_class("zzzzzz")
    assert "did you mean" not in str(info.value)


# --------------------------------------------------------------------------------------------
# load_objective specs
# --------------------------------------------------------------------------------------------


def test_spec_string_with_typed_values():
    obj = load_objective("length:target=7, unit=chars ,mode=negative")
    assert isinstance(obj, Length)
    assert (obj.target, obj.unit, obj.mode) == (7, "chars", "negative")
    assert isinstance(obj.target, int)


def test_spec_dict_and_kwargs_override():
    obj = load_objective({"name": "length", "target": 3, "unit": "chars"})
    assert (obj.target, obj.unit) == (3, "chars")
    obj = load_objective("length:target=3", target=9)
    assert obj.target == 9
    obj = load_objective({"name": "length", "target": 3}, target=4)
    assert obj.target == 4


def test_spec_module_class():
    obj = load_objective("moalign_objectives.length:Length", target=5)
    assert isinstance(obj, Length) and obj.target == 5
    with pytest.raises(UnknownObjectiveError, match="cannot import objective 'moalign_objectives.nope:X'"):
        load_objective("moalign_objectives.nope:X")
    with pytest.raises(ObjectiveError, match="not an Objective subclass"):
        load_objective("moalign.errors:ObjectiveError")
    with pytest.raises(ObjectiveError, match="bad arguments"):
        load_objective("moalign_objectives.length:Length", bogus=1)


def test_instance_passes_through():
    built = Length(target=3)
    assert load_objective(built) is built
    with pytest.raises(ObjectiveError, match="already built"):
        load_objective(built, target=4)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("length:target", "cannot parse objective spec 'length:target'"),
        ("length:=3", "cannot parse objective spec"),
        ({"target": 3}, "has no 'name' key"),
        (42, "got int"),
        ("length:bogus=1", "objective 'length': bad arguments"),
        ("length:target=0", "objective 'length': bad arguments.*target"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ObjectiveError, match=match):
        load_objective(spec)


# --------------------------------------------------------------------------------------------
# Checks every objective gets from __call__
# --------------------------------------------------------------------------------------------


def test_wrong_number_of_scores_names_objective():
    obj = load_objective(_registered("too_few", lambda p, c, **k: [1.0] * (len(c) - 1)).name)
    with pytest.raises(ObjectiveError, match="'too_few' returned 2 scores for 3 completions") as e:
        obj(None, ["a", "b", "c"])
    assert e.value.objective == "too_few"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_score_names_objective_and_index(bad):
    obj = load_objective(_registered("nonfinite", lambda p, c, **k: [0.0, 1.0, bad]).name)
    with pytest.raises(ObjectiveError, match=r"'nonfinite' returned .* at index 2") as e:
        obj(None, ["a", "b", "c"])
    assert (e.value.objective, e.value.index) == ("nonfinite", 2)
    assert "return None" in str(e.value)


def test_non_numeric_and_non_list_scores():
    obj = load_objective(_registered("textual", lambda p, c, **k: [1.0, "high"]).name)
    with pytest.raises(ObjectiveError, match="non-numeric score 'high' at index 1") as e:
        obj(None, ["a", "b"])
    assert e.value.index == 1
    obj = load_objective(_registered("scalar", lambda p, c, **k: 1.0).name)
    with pytest.raises(ObjectiveError, match="'scalar' returned float, expected a list of 2"):
        obj(None, ["a", "b"])


def test_array_scores_are_accepted():
    obj = load_objective(_registered("arr", lambda p, c, **k: np.array([0.5, 1.5])).name)
    assert obj(None, ["a", "b"]) == [0.5, 1.5]
    obj = load_objective(_registered("tens", lambda p, c, **k: torch.tensor([0.25, 2.0])).name)
    assert obj(None, ["a", "b"]) == [0.25, 2.0]


def _explode_on_bad(prompts, completions, **columns):
    return [1.0 / (len(as_text(c)) - 3) for c in completions]  # "bad" has 3 characters


def test_plugin_exception_names_objective_and_index():
    obj = load_objective(_registered("exploding", _explode_on_bad).name)
    with pytest.raises(
        ObjectiveError, match="'exploding' raised ZeroDivisionError at index 2"
    ) as e:
        obj(["p"] * 4, ["good", "fine", "bad", "okay"])
    assert (e.value.objective, e.value.index) == ("exploding", 2)
    assert isinstance(e.value.__cause__, ZeroDivisionError)


def test_plugin_exception_index_with_sliced_columns():
    def needs_column(prompts, completions, ref):
        assert len(ref) == len(completions)
        return [float(int(r)) for r in ref]

    obj = load_objective(_registered("column_user", needs_column, required=["ref"]).name)
    assert obj(None, ["a", "b"], ref=["1", "2"]) == [1.0, 2.0]
    with pytest.raises(ObjectiveError, match="raised ValueError at index 1") as e:
        obj(None, ["a", "b", "c"], ref=np.array(["1", "x", "3"]))
    assert e.value.index == 1


def test_unimplemented_score_is_reported():
    obj = load_objective(register_objective("lazy")(type("Lazy", (Objective,), {})).name)
    with pytest.raises(ObjectiveError, match="'lazy' raised NotImplementedError"):
        obj(None, ["a"])


def test_input_length_and_column_checks():
    obj = load_objective(
        _registered("needs_ref", lambda p, c, ref, **k: [1.0] * len(c), ["ref"]).name
    )
    with pytest.raises(ObjectiveError, match="got 1 prompts for 2 completions"):
        obj(["p"], ["a", "b"], ref=["x", "y"])
    with pytest.raises(
        ObjectiveError, match=r"'needs_ref' needs the column 'ref' \(columns given: other\)"
    ):
        obj(None, ["a"], other=[1])
    with pytest.raises(ObjectiveError, match="needs the column 'ref'"):
        obj(None, ["a"], ref=None)
    with pytest.raises(ObjectiveError, match="column 'ref' has 3 values for 2 completions"):
        obj(None, ["a", "b"], ref=[1, 2, 3])
    assert obj(None, ["a", "b"], ref=["x", "y"], trainer_state=None) == [1.0, 1.0]


def test_check_scores_returns_floats_and_none():
    out = check_scores("x", [1, None, np.float32(0.5), True], 4)
    assert out == [1.0, None, 0.5, 1.0]
    assert all(v is None or type(v) is float for v in out)


def test_trl_reward_function_name():
    assert Length().__name__ == "length"
    assert Const().__name__ == "Const"  # unregistered: the class name


# --------------------------------------------------------------------------------------------
# ObjectiveSet
# --------------------------------------------------------------------------------------------


def test_objective_set_scores_b_by_k_with_nan_mask():
    @register_objective("half")
    class Half(Const):
        def __init__(self):
            super().__init__(0.5)

    oset = ObjectiveSet(["length:target=2", {"name": "half"}])
    completions = ["one", "one two three", ""]
    rewards = oset.score(["p"] * 3, completions)
    assert oset.names == ("length", "half") and rewards.names == oset.names
    assert rewards.values.shape == (3, 2) and rewards.values.dtype == torch.float32
    # length, target 2 words: 1 word -> 1, 3 words -> 2 - 3/2 = 0.5, 0 words -> 1
    expected = torch.tensor([[1.0, 0.5], [0.5, 0.5], [1.0, math.nan]])
    assert torch.equal(rewards.mask, ~torch.isnan(expected))
    assert torch.allclose(rewards.values[rewards.mask], expected[~torch.isnan(expected)])
    assert torch.isnan(rewards.values[2, 1])
    assert oset(["p"] * 3, completions).values.shape == (3, 2)  # __call__ == score


def test_objective_set_access_and_columns():
    oset = ObjectiveSet(["length", "reasoning_accuracy:reference_column=ref"])
    assert len(oset) == 2 and [o.__name__ for o in oset] == ["length", "reasoning_accuracy"]
    assert oset["reasoning_accuracy"] is oset[1]
    assert oset.index("reasoning_accuracy") == 1
    assert oset.required_columns == ("ref",)
    with pytest.raises(UnknownObjectiveError, match="'helpfulness' is not in this set"):
        oset["helpfulness"]
    assert ObjectiveSet("length").names == ("length",)
    assert ObjectiveSet(Length(target=4))[0].target == 4


def test_objective_set_errors():
    with pytest.raises(ObjectiveError, match="at least one objective"):
        ObjectiveSet([])
    with pytest.raises(ObjectiveError, match="repeated: length") as e:
        ObjectiveSet(["length", "length:target=3"])
    assert e.value.objective == "length"
    with pytest.raises(UnknownObjectiveError, match="did you mean 'length'"):
        ObjectiveSet(["length", "lenth"])


def test_objective_set_error_names_the_failing_member():
    _registered("bad_member", lambda p, c, **k: [0.0, float("nan")])
    oset = ObjectiveSet(["length", "bad_member"])
    with pytest.raises(ObjectiveError, match="'bad_member' returned nan at index 1") as e:
        oset.score(None, ["a", "b"])
    assert (e.value.objective, e.value.index) == ("bad_member", 1)
    oset = ObjectiveSet(["length", "reasoning_accuracy"])
    with pytest.raises(ObjectiveError, match="'reasoning_accuracy' needs the column 'answer'"):
        oset.score(None, ["a", "b"])


def test_overrides_and_yaml_read_exponent_floats_as_numbers(tmp_path):
    from moalign.config import load_yaml, parse_overrides

    assert parse_overrides(["--learning_rate", "1e-3"]) == {"learning_rate": 1e-3}
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 5e-4\nname: 1e3x\nnested: {lr: [2E-5]}\n")
    assert load_yaml(path) == {"learning_rate": 5e-4, "name": "1e3x", "nested": {"lr": [2e-5]}}
