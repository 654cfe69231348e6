"""The evaluate bridge works offline, with combine and save."""

from __future__ import annotations

import json

import evaluate
import pytest

from moalign.evaluation.hf_evaluate import objective_metric
from moalign.objective import load_objective


@pytest.fixture(autouse=True)
def _writable_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_metric_matches_objective_mean():
    completions = ["a b", "a b c d e", "one"]
    prompts = ["p", "q", "r"]
    res = objective_metric("length:target=2").compute(predictions=completions, prompts=prompts)
    direct = load_objective("length:target=2")(prompts, completions)
    assert res["length"] == pytest.approx(sum(direct) / 3)
    assert res["length_n"] == 3


def test_combine_and_save_with_a_reference_column(tmp_path):
    metrics = evaluate.combine(
        [objective_metric("length:target=3"), objective_metric("reasoning_accuracy")]
    )
    res = metrics.compute(
        predictions=["The answer is 4.", "so it is \\boxed{7}"],
        prompts=["2+2?", "3+5?"],
        references=["4", "8"],
    )
    assert res["reasoning_accuracy"] == pytest.approx(0.5)  # 4 == 4, 7 != 8
    assert res["length"] == pytest.approx(2 - 4 / 3)  # both replies have 4 words, target 3
    path = evaluate.save(str(tmp_path / "res.json"), **res)
    saved = json.loads(open(path).read())
    assert saved["reasoning_accuracy"] == pytest.approx(0.5)
