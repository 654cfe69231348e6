"""One batcher for reward scoring (``rewards.head._batches``, used by reward checkpoints and
reward-model objectives) and one chosen-vs-rejected scoring
(``evaluation.core.pair_score_margins``, used by ``moalign train``'s labels and MODPO's
margins)."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from moalign.evaluation.core import pair_score_margins
from moalign.models import tiny_reward_model
from moalign.rewards.head import _batches, reward_scores
from moalign.rewards.model import RewardModelObjective
from moalign.trainers.modpo import add_margin_columns, margin_column
from moalign.workflows.train_data import _label_with_scorers

ENCODED = [([5] * n, n // 2) for n in (3, 9, 1, 12, 7)]


def test_reward_batches_group_by_length_and_pad_on_the_right():
    seen = []
    for rows, ids, mask, starts, lengths in _batches(ENCODED, 2, pad_id=0):
        assert ids.shape[1] % 8 == 0 and ids.shape == mask.shape
        for r, i in enumerate(rows):
            n = len(ENCODED[i][0])
            assert lengths[r] == n and starts[r] == ENCODED[i][1]
            assert mask[r, :n].all() and not mask[r, n:].any()
        seen += rows
    assert seen == [3, 1, 4, 0, 2]  # longest first, every row once


def test_an_objective_scores_through_the_checkpoint_batcher():
    model, tok = tiny_reward_model(seed=0)
    objective = RewardModelObjective(model, tok, batch_size=2)
    prompts, replies = ["Hi", "A longer question here?", "ok"], ["Hello", "An answer", "x"]
    pairs = [objective._encode(p, c) for p, c in zip(prompts, replies)]
    expected = reward_scores(model, pairs, batch_size=2)[:, 0]
    assert objective(prompts, replies) == pytest.approx(expected.tolist(), abs=1e-6)


def _rule(prompts, completions, **columns):
    return [None if c == "?" else float(len(c)) + columns["bonus"][i]
            for i, c in enumerate(completions)]


def test_labels_and_modpo_margins_are_one_scoring_of_the_pairs(monkeypatch):
    ds = Dataset.from_dict({"prompt": ["p"] * 4, "chosen": ["aaa", "a", "?", "bb"],
                            "rejected": ["a", "aaa", "b", "cc"], "bonus": [0.5, 0.0, 1.0, 2.0]})
    margins = pair_score_margins(ds, _rule, batch_size=3)
    assert margins[:2].tolist() == [2.0, -2.0] and math.isnan(margins[2]) and margins[3] == 0.0
    added = add_margin_columns(ds, {"rule": _rule}, batch_size=2)[margin_column("rule")]
    assert added[:2] == [2.0, -2.0] and math.isnan(added[2]) and added[3] == 0.0
    monkeypatch.setattr("moalign.objective.load_objective", lambda name: _rule)
    labels = _label_with_scorers(ds, ["rule"])["pref_rule"]
    assert labels[:2] == [1.0, -1.0] and math.isnan(labels[2]) and labels[3] == 0.0
