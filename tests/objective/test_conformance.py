"""Conformance: every registered objective honours the Objective contract.

Each objective needs one row in :data:`FACTORIES` that builds it offline (a plugin contract:
adding an objective means adding its row here). Checks: one finite float or ``None`` per
completion, the same scores when called twice, chat-message completions and prompts accepted,
TRL's extra keyword arguments ignored, a valid registry name and a one-line description.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import moalign
from moalign.objective import Objective, get_objective_class

PROMPTS = [
    "What is 6 times 7?",
    "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many?",
    "Write one short sentence about the sea.",
    "Simplify 2/4.",
]
COMPLETIONS = [
    "6 * 7 = 42. The answer is 42.",
    "In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72.\n#### 72",
    "The sea is wide and full of salt.",
    "It is $\\boxed{\\frac{1}{2}}$.",
]
COLUMNS = {"answer": ["42", "#### 72", None, "0.5"]}


@pytest.fixture(scope="module")
def tiny_reward_model_dir(tmp_path_factory) -> Path:
    """A tiny random sequence classifier and its tokenizer, saved like a checkpoint."""
    from moalign.models import tiny_reward_model

    model, tokenizer = tiny_reward_model(seed=0)
    path = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    """A tiny random two-label classifier ("safe" / "harmful")."""
    from moalign.models import tiny_reward_model

    model, tokenizer = tiny_reward_model(
        seed=1, num_labels=2, id2label={0: "safe", 1: "harmful"}, label2id={"safe": 0, "harmful": 1}
    )
    path = tmp_path_factory.mktemp("tiny-cls")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


#: objective name -> function(request) building it offline
FACTORIES: dict[str, Callable[[Any], Objective]] = {
    "length": lambda request: moalign.load_objective("length", target=5),
    "reasoning_accuracy": lambda request: moalign.load_objective("reasoning_accuracy"),
    "helpfulness": lambda request: moalign.load_objective(
        "helpfulness", model=str(request.getfixturevalue("tiny_reward_model_dir")), batch_size=3
    ),
    "harmlessness": lambda request: moalign.load_objective(
        "harmlessness", model=str(request.getfixturevalue("tiny_classifier_dir")), batch_size=3
    ),
}


def _build(name: str, request) -> Objective:
    if name not in FACTORIES:
        pytest.fail(
            f"objective '{name}' is registered but has no conformance row: add a factory that "
            f"builds it offline to FACTORIES in {Path(__file__).name}"
        )
    obj = FACTORIES[name](request)
    assert isinstance(obj, Objective)
    return obj


def _check(name: str, scores: Any, n: int) -> list[float | None]:
    assert isinstance(scores, list), f"{name} returned {type(scores).__name__}, not a list"
    assert len(scores) == n, f"{name} returned {len(scores)} scores for {n} completions"
    for i, s in enumerate(scores):
        assert s is None or (isinstance(s, float) and math.isfinite(s)), (name, i, s)
    return scores


@pytest.mark.parametrize("name", moalign.available_objectives())
def test_objective_conforms(name, request):
    obj = _build(name, request)
    cls = get_objective_class(name)
    assert isinstance(obj, cls)
    assert obj.__name__ == name
    description = cls.description or (cls.__doc__ or "").strip()
    assert description and "\n" not in description.strip().splitlines()[0]
    for column in obj.required_columns:
        assert column in COLUMNS, f"{name} needs the column '{column}'; add it to COLUMNS"

    n = len(COMPLETIONS)
    first = _check(name, obj(PROMPTS, COMPLETIONS, **COLUMNS), n)
    again = _check(name, obj(PROMPTS, COMPLETIONS, **COLUMNS), n)
    assert first == again, f"{name} is not deterministic: {first} then {again}"
    assert any(s is not None for s in first), f"{name} scored nothing"

    # one example at a time gives the same scores as the batch
    for i in range(n):
        single = _check(
            name,
            obj(
                PROMPTS[i : i + 1],
                COMPLETIONS[i : i + 1],
                **{k: v[i : i + 1] for k, v in COLUMNS.items()},
            ),
            1,
        )
        if single[0] is None or first[i] is None:
            assert single[0] is first[i] is None, (name, i)
        else:
            assert single[0] == pytest.approx(first[i], rel=1e-4, abs=1e-5), (name, i)

    # conversational data, as TRL passes it, with TRL's extra keyword arguments
    chat_prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    chat_completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    chat = _check(
        name,
        obj(
            chat_prompts,
            chat_completions,
            completion_ids=[[1, 2]] * n,
            trainer_state=None,
            **COLUMNS,
        ),
        n,
    )
    assert chat == _check(name, obj(chat_prompts, chat_completions, **COLUMNS), n)

    # an empty batch is valid
    assert obj([], [], **{k: [] for k in COLUMNS}) == []


def test_every_factory_row_names_a_registered_objective():
    stale = sorted(set(FACTORIES) - set(moalign.available_objectives()))
    assert not stale, f"FACTORIES rows for objectives that are not registered: {stale}"
