"""Objective plugins that break their contract, and objective specs that cannot be used.

The misbehaving plugins live in ``tests/support/badplugins/objectives.py`` (loaded by
``module:Class`` spec, the way a user's own objective is). Every error is an
:class:`ObjectiveError` that names the objective and, where one example is at fault, its index.
"""

from __future__ import annotations

import pytest

from moalign.errors import ObjectiveError, UnknownObjectiveError
from moalign.objective import ObjectiveSet, load_objective
from tests.support.corpus import run_cli_case

PLUGINS = "tests.support.badplugins"
PKG = f"{PLUGINS}.objectives"
PROMPTS = ["p1", "p2"]
COMPLETIONS = ["first", "second"]

SCORING = [
    ("Raises", "objective 'raises' raised ZeroDivisionError at index 1: division by zero", 1),
    ("ReturnsNaN", "objective 'returns_nan' returned nan at index 1; return None for an example "
                   "that cannot be scored", 1),
    ("ReturnsInf", "objective 'returns_inf' returned inf at index 1", 1),
    ("ReturnsTooMany", "objective 'returns_too_many' returned 3 scores for 2 completions", None),
    ("ReturnsString", "objective 'returns_string' returned str, expected a list of 2 floats", None),
    ("ReturnsScalar", "objective 'returns_scalar' returned float, expected a list of 2 floats", None),
    ("ReturnsDict", "objective 'returns_dict' returned dict, expected a list of 2 floats", None),
    ("ReturnsText", "objective 'returns_text' returned a non-numeric score 'high' at index 1", 1),
]


@pytest.mark.parametrize("cls, message, index", SCORING, ids=[s[0] for s in SCORING])
def test_a_plugin_that_breaks_the_scoring_contract(cls, message, index):
    objective = load_objective(f"{PKG}:{cls}")
    for call in (lambda: objective(PROMPTS, COMPLETIONS),
                 lambda: ObjectiveSet([objective, "length"]).score(PROMPTS, COMPLETIONS)):
        with pytest.raises(ObjectiveError) as info:
            call()
        assert message in str(info.value)
        assert info.value.objective == objective.name and info.value.index == index


def test_a_plugin_missing_its_column_is_named():
    objective = load_objective(f"{PKG}:NeedsAnswer")
    with pytest.raises(ObjectiveError, match="objective 'needs_answer' needs the column 'answer' "
                                             "\\(columns given: solution\\)"):
        objective(PROMPTS, COMPLETIONS, solution=["1", "2"])
    with pytest.raises(ObjectiveError, match="column 'answer' has 1 values for 2 completions"):
        objective(PROMPTS, COMPLETIONS, answer=["1"])
    with pytest.raises(ObjectiveError, match="got 1 prompts for 2 completions"):
        objective(PROMPTS[:1], COMPLETIONS, answer=["1", "2"])


SPECS = [
    ("unknown-name", "helpfulnes", UnknownObjectiveError,
     "unknown objective 'helpfulnes'; did you mean 'helpfulness'\\? \\(available: .*length"),
    ("unparseable-spec", "length:target", ObjectiveError,
     "cannot parse objective spec 'length:target': expected 'name:key=value,...', got 'target'"),
    ("empty-key", "length:=80", ObjectiveError, "cannot parse objective spec 'length:=80'"),
    ("unknown-argument", "length:tagret=80", ObjectiveError, "objective 'length': bad arguments"),
    ("dict-without-name", {"nome": "length"}, ObjectiveError, "has no 'name' key"),
    ("not-a-spec", 42, ObjectiveError, "a name, a 'name:key=value' string or a dict; got int"),
    ("module-not-found", f"{PLUGINS}.missing:Thing", UnknownObjectiveError,
     f"cannot import objective '{PLUGINS}.missing:Thing'"),
    ("class-not-found", f"{PKG}:Nope", UnknownObjectiveError, f"cannot import objective '{PKG}:Nope'"),
    ("not-an-objective", f"{PKG}:NotAnObjective", ObjectiveError,
     f"'{PKG}:NotAnObjective' is not an Objective subclass"),
    ("constructor-raises", f"{PKG}:BrokenInit", ObjectiveError,
     f"objective '{PKG}:BrokenInit' could not be built: RuntimeError: no GPU found"),
    ("module-raises-on-import", f"{PLUGINS}.broken_import:Anything", ObjectiveError,
     f"importing '{PLUGINS}.broken_import' raised RuntimeError: plugin configuration file"),
]


@pytest.mark.parametrize("spec, error, match", [s[1:] for s in SPECS], ids=[s[0] for s in SPECS])
def test_an_objective_spec_that_cannot_be_used(spec, error, match):
    with pytest.raises(error, match=match):
        load_objective(spec)


def test_a_set_with_a_repeated_objective():
    with pytest.raises(ObjectiveError, match="objective names must be unique in a set; repeated: "
                                             "length") as info:
        ObjectiveSet(["length", "length:target=10"])
    assert info.value.objective == "length"
    with pytest.raises(UnknownObjectiveError, match="objective 'honesty' is not in this set"):
        ObjectiveSet(["length"])["honesty"]


def test_a_bad_registration_is_refused():
    from moalign.objective import Objective, register_objective

    with pytest.raises(ObjectiveError, match="invalid objective name 'Bad-Name'"):
        register_objective("Bad-Name")
    with pytest.raises(ObjectiveError, match="already provided by the entry point"):
        register_objective("length")(type("Impostor", (Objective,), {}))


# ------------------------------------------------------------------------------------ CLI


CLI = [
    dict(id="constructor-raises", argv=["eval", "--model", "tiny", "--dataset", "gsm8k",
                                        "--objectives", f"{PKG}:BrokenInit", "-o", "{tmp}/out/e.json"],
         expect=[f"'objectives': objective '{PKG}:BrokenInit' could not be built",
                 "no GPU found for the judge model"]),
    dict(id="module-raises-on-import", argv=["train", "--trainer", "grpo", "--model", "tiny",
                                             "--objectives", f"{PLUGINS}.broken_import:X,length",
                                             "--output_dir", "{tmp}/out"],
         expect=[f"importing '{PLUGINS}.broken_import' raised RuntimeError"]),
]


@pytest.mark.parametrize("case", CLI, ids=[c["id"] for c in CLI])
def test_a_broken_plugin_on_the_command_line(case, cli, tmp_path, no_model_load):
    run_cli_case(case, cli, tmp_path)


@pytest.mark.parametrize("cls, message", [("ReturnsNaN", "objective 'returns_nan' returned nan"),
                                          ("Raises", "objective 'raises' raised ZeroDivisionError")])
def test_a_plugin_failing_during_eval_leaves_no_result(cls, message, cli, tmp_path):
    """Scoring needs generations, so the tiny model loads here; the failure is still a clean
    message naming the objective, and ``--output`` is not written."""
    out = tmp_path / "out" / "eval.json"
    cli("eval", "--model", "tiny", "--dataset", "gsm8k", "--objectives", f"length,{PKG}:{cls}",
        "--n", "3", "--generation", "{max_new_tokens: 3}", "--quiet", "-o", out) \
        .failed_cleanly(message)
    assert not out.exists() and not out.parent.exists()
