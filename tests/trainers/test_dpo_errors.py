"""Bad inputs to the DPO-family trainers: clear errors, raised before any model work."""

from __future__ import annotations

import math

import pytest

from moalign.errors import ConfigError, DataError
from moalign.trainers import MODPOConfig, MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from tests.support.dpo_testkit import conflicting_pairs, cpu_args


class NoModel:
    """Stands in for a model: any use of it fails, so an error raised first came from the checks."""

    def __getattr__(self, name):
        raise AssertionError(f"the model was used ({name}) before the inputs were checked")


def config(tmp_path, **fields):
    return MultiObjectiveDPOConfig(**cpu_args(tmp_path), **fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"objectives": ["a", "b"], "weights": [1.0]}, "1 entries but there are 2 objectives"),
        ({"objectives": ["a", "b"], "weights": [0.6, 0.6]}, "must sum to 1"),
        ({"objectives": ["a", "b"], "weights": [1.5, -0.5]}, "non-negative"),
        ({"objectives": []}, "'objectives' is required"),
        ({"objectives": ["a", "a"]}, "repeats 'a'"),
        ({"objectives": ["Helpful"]}, "invalid objective name 'Helpful'"),
        ({"objectives": ["a", "b"], "weights": [0.5, 0.5], "schedule": "mgda"},
         "either 'weights' or 'schedule'"),
        ({"objectives": ["a", "b"], "schedule": "anealed"}, "did you mean 'anneal'"),
        ({"objectives": ["a", "b"], "scalarizer": "chebyshev"}, "unknown scalarizer"),
        ({"objectives": ["a", "b"], "label_normalization": "rows"}, "'label_normalization'"),
        ({"objectives": ["a", "b"], "conditioning": "prompt", "weights": [0.5, 0.5]},
         "leave 'weights'"),
        ({"objectives": ["a", "b"], "conditioning": "weights"}, "'conditioning' must be"),
        ({"objectives": ["a", "b"], "conditioning": "prompt", "scalarizer": "tchebycheff"},
         "label_normalization: pair"),
        ({"objectives": ["a", "b"], "schedule": "mgda", "scalarizer": "tchebycheff"},
         "set scalarizer: linear"),
        ({"objectives": ["a", "b"], "condition_style": "suffix"}, "'condition_style'"),
        ({"objectives": ["a", "b"], "dirichlet_alpha": 0.0}, "'dirichlet_alpha'"),
        ({"objectives": ["a"], "loss_type": "simpo"}, "'loss_type' must be one of"),
        ({"objectives": ["a"], "ld_alpha": 0.5}, "'ld_alpha'"),
    ],
)
def test_bad_config_fields(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **fields)


def test_every_config_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        config(tmp_path, objectives=["a", "b"], weights=[0.2], label_normalization="x",
               dirichlet_alpha=-1.0)
    text = "\n".join(info.value.problems)
    for key in ("'weights'", "'label_normalization'", "'dirichlet_alpha'"):
        assert key in text


def test_objective_without_label_column(tmp_path):
    args = config(tmp_path, objectives=["a", "harmlessness"], weights=[0.5, 0.5])
    with pytest.raises(DataError, match="no column 'pref_harmlessness'.*'harmlessness'"):
        MultiObjectiveDPOTrainer(NoModel(), args=args, train_dataset=conflicting_pairs(8))


def test_objective_with_positive_weight_and_no_labelled_pair(tmp_path):
    data = conflicting_pairs(8).map(lambda r: {"pref_b": math.nan if r["pref_b"] > 0 else 0.0})
    args = config(tmp_path, objectives=["a", "b"], weights=[0.5, 0.5])
    with pytest.raises(DataError, match="'pref_b': objective 'b' has positive weight but none of the 8"):
        MultiObjectiveDPOTrainer(NoModel(), args=args, train_dataset=data)
    # with weight 0 it is allowed (the check passes and the trainer goes on to use the model)
    args = config(tmp_path, objectives=["a", "b"], weights=[1.0, 0.0])
    with pytest.raises(AssertionError, match="the model was used"):
        MultiObjectiveDPOTrainer(NoModel(), args=args, train_dataset=data)


def test_invalid_label_value_names_row_and_column(tmp_path):
    data = conflicting_pairs(8)
    values = list(data["pref_a"])
    values[5] = 0.5
    data = data.remove_columns("pref_a").add_column("pref_a", values)
    args = config(tmp_path, objectives=["a", "b"])
    with pytest.raises(DataError, match="row 5, column 'pref_a': label 0.5"):
        MultiObjectiveDPOTrainer(NoModel(), args=args, train_dataset=data)


def test_eval_dataset_is_checked_too(tmp_path):
    args = config(tmp_path, objectives=["a", "b"])
    with pytest.raises(DataError, match="eval dataset has no column 'pref_b'"):
        MultiObjectiveDPOTrainer(NoModel(), args=args, train_dataset=conflicting_pairs(8),
                                 eval_dataset=conflicting_pairs(8).remove_columns("pref_b"))


def test_bad_condition_weights_column(tmp_path):
    data = conflicting_pairs(4).add_column("condition_weights", [[0.5, 0.5], [0.2, 0.8],
                                                                 [0.7, 0.7], [1.0, 0.0]])
    args = config(tmp_path, objectives=["a", "b"], conditioning="prompt")
    with pytest.raises(DataError, match="row 2, column 'condition_weights'.*sum to 1"):
        MultiObjectiveDPOTrainer(NoModel(), args=args, train_dataset=data)


def test_wrong_config_class(tmp_path):
    from trl import DPOConfig

    with pytest.raises(ConfigError, match="needs args=MultiObjectiveDPOConfig"):
        MultiObjectiveDPOTrainer(NoModel(), args=DPOConfig(**cpu_args(tmp_path)),
                                 train_dataset=conflicting_pairs(4))


def test_prompts_longer_than_max_length(tmp_path):
    from tests.support.dpo_testkit import tiny_pair

    model, ref, tok = tiny_pair(0)
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path, max_length=3), objectives=["a", "b"])
    with pytest.raises(DataError, match="no training pair is left.*max_length=3"):
        MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=conflicting_pairs(4),
                                 processing_class=tok)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"objectives": ["a", "b"], "weights": [0.0, 1.0]}, "w_0 .* must be > 0"),
        ({"objectives": ["a", "b"], "weights": [0.3, 0.3, 0.4]}, "3 entries but there are 2"),
        ({"objectives": None}, "'objectives' is required"),
        ({"objectives": ["a"], "loss_type": "hinge"}, "'loss_type' must be one of \\['sigmoid'\\]"),
    ],
)
def test_bad_modpo_config(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        MODPOConfig(**cpu_args(tmp_path), **fields)
