"""A conditioned policy that reads its condition, measured.

One conditioned GRPO run on the learnable task of :mod:`tests.support.ascii_task` (the share of
ASCII characters in a reply against the share of the others), evaluated at the two vertices
(1, 0) and (0, 1) shown in the prompt: the points must follow their weights, each objective's
span (from the vertex that weights it 0 to the one that weights it 1) with its paired-bootstrap
interval above 0, and above the untrained start's span under the same conditions.

What makes it learnable in a test's budget:

- the condition in the ``nonzero`` format (:mod:`moalign.tradeoff.conditioning`): in the
  default ``full`` format the two vertices show the same tokens in another order
  (``ascii_share=1.00, other_share=0.00`` / ``ascii_share=0.00, other_share=1.00``), which the
  tiny model does not tell apart (the same 60 steps in the full format, seed 0: span -0.007
  [-0.029, 0.016]); ``nonzero`` shows ``ascii_share=1.00`` / ``other_share=1.00``;
- a tiny model drawn with larger initial weights (``initializer_range=0.3`` instead of 0.02),
  whose last hidden state already depends on the prompt's tokens, as a trained model's does;
- weights drawn near the vertices (``dirichlet_alpha: 0.05``), 8 prompts of 8 completions a
  step, 4-token replies (where the condition acts, also at evaluation) and 60 steps.

Controls, from the same start, data, seed and 128 held-out prompts: the untrained start
(``learning_rate: 0``) shown the same ``nonzero`` conditions, whose points already differ a
little (it is a random function of its prompt's tokens), and the untrained start shown the
``full`` conditions, which it cannot tell apart: a negative control whose spans' intervals cover
0. Every front is evaluated in float32 (``precision: float32``), so the result does not depend
on whether the CPU has bfloat16 units (the same numbers with ``MOALIGN_CPU_BF16=1``).

Measured (seed 0, both objectives alike, as they sum to 1 on every reply): trained span 0.629
[0.573, 0.684]; trained minus start 0.594 [0.527, 0.663]; start 0.035 [-0.007, 0.077]; negative
control -0.007 [-0.034, 0.020]. Seeds 1 to 5 of the same test: trained span 0.21 to 0.89, lower
bounds 0.16 to 0.85; trained minus start lower bounds 0.10 to 0.82; the negative control covered
0 with seeds 1 to 4 and not with seed 5 (-0.025 [-0.047, -0.005]), as a 95% interval of a null
misses 1 time in 20.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.errors import ConfigError, DataError
from moalign.models import tiny_tokenizer
from moalign.pareto.bootstrap import (
    bootstrap_settings,
    percentile_interval,
    read_per_example,
    resampled_means,
)
from moalign.tradeoff.conditioning import apply_condition, format_condition
from tests.support import ascii_task

OBJ = ["ascii_share", "other_share"]

#: Conditioned MO-GRPO settings under which the tiny model learns to read its condition.
TRAIN = {**ascii_task.GRPO_TRAIN, "max_steps": 60, "learning_rate": 3e-3,
         "per_device_train_batch_size": 64, "num_generations": 8, "max_completion_length": 4,
         "max_prompt_tokens": 24, "dirichlet_alpha": 0.05}


@pytest.fixture(autouse=True)
def registered():
    ascii_task.register()


# --------------------------------------------------------------------------------------------
# The format
# --------------------------------------------------------------------------------------------


def test_nonzero_format_leaves_out_the_objectives_weighted_0():
    assert format_condition([1, 0], OBJ, form="nonzero") == "Objective weights: ascii_share=1.00"
    assert format_condition([0.3, 0.7], OBJ, form="nonzero") == \
        "Objective weights: ascii_share=0.30, other_share=0.70"
    assert format_condition([0.5, 0, 0.5], list("abc"), form="nonzero") == \
        "Objective weights: a=0.50, c=0.50"
    # a weight that rounds to 0 is left out, as the rounded weights are what the loss uses
    assert format_condition([0.996, 0.004], OBJ, form="nonzero") == \
        "Objective weights: ascii_share=1.00"
    # the default is unchanged
    assert format_condition([1, 0], OBJ) == format_condition([1, 0], OBJ, form="full") == \
        "Objective weights: ascii_share=1.00, other_share=0.00"
    assert apply_condition("hi", [0, 1], OBJ, form="nonzero") == \
        "Objective weights: other_share=1.00\nhi"
    with pytest.raises(DataError, match="condition format"):
        format_condition([1, 0], OBJ, form="short")


def test_the_full_format_shows_the_vertices_as_the_same_tokens_and_nonzero_does_not():
    tok = tiny_tokenizer()

    def tokens(w, form):
        return sorted(tok(format_condition(w, OBJ, form=form))["input_ids"])

    assert tokens([1, 0], "full") == tokens([0, 1], "full")
    assert tokens([1, 0], "nonzero") != tokens([0, 1], "nonzero")


def test_condition_format_is_checked_by_every_conditioned_trainer(tmp_path):
    from moalign.trainers import MultiObjectiveDPOConfig
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig
    from moalign.trainers.ppo_config import MultiObjectivePPOConfig
    from tests.support.dpo_testkit import cpu_args

    values = {"conditioning": "prompt", "condition_format": "short"}
    with pytest.raises(ConfigError, match="'condition_format' must be one of"):
        MultiObjectivePPOConfig(output_dir=str(tmp_path), **values)
    with pytest.raises(ConfigError, match="'condition_format' must be one of"):
        MultiObjectiveGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **values)
    with pytest.raises(ConfigError, match="'condition_format' must be one of"):
        MultiObjectiveDPOConfig(**cpu_args(tmp_path), objectives=OBJ, **values)
    assert MultiObjectiveGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[],
                                    conditioning="prompt").condition_format == "full"


# --------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    """Three conditioned GRPO fronts from one start, on the same data, seed and held-out prompts:
    ``trained`` (the ``nonzero`` condition, 60 steps), ``start`` (the same with
    ``learning_rate: 0``: the untrained start shown the same conditions) and ``blind`` (the
    untrained start shown the default ``full`` condition, which it cannot tell apart)."""
    import torch

    from moalign.fronts.trace import trace_front
    from moalign.models import tiny_causal_lm

    ascii_task.register()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before the per-test one-thread fixture
    root = tmp_path_factory.mktemp("conditioned-learns")
    model, tok = tiny_causal_lm(seed=0, initializer_range=0.3)
    model.save_pretrained(str(root / "start-model"))
    tok.save_pretrained(str(root / "start-model"))
    untrained = {"learning_rate": 0.0, "max_steps": 1}
    runs = {"trained": {**TRAIN, "condition_format": "nonzero"},
            "start": {**TRAIN, "condition_format": "nonzero", **untrained},
            "blind": {**TRAIN, **untrained}}
    for name, train in runs.items():
        trace_front(ascii_task.front_config(
            root / name, method="conditioned", grid=1, model=str(root / "start-model"),
            train=train, train_pairs=256, eval_prompts=128, precision="float32", seed=0,
            generation={"max_new_tokens": 4, "do_sample": True, "batch_size": 64}))
    torch.set_num_threads(threads)
    return {name: root / name for name in runs}


def _front(folder):
    return json.loads((folder / "front.json").read_text())


def _per_example(folder):
    """Per-example scores ``[points, examples, objectives]`` (w1.00-0.00, w0.00-1.00) and the
    baseline's."""
    front = _front(folder)
    points = {p["id"]: p for p in front["points"]}
    scores = np.stack([read_per_example(folder / points[i]["per_example"], OBJ)
                       for i in ("w1.00-0.00", "w0.00-1.00")])
    return scores, read_per_example(folder / front["metadata"]["baseline"]["per_example"], OBJ)


SPAN_ENDS = {"ascii_share": ("w0.00-1.00", "w1.00-0.00"),
             "other_share": ("w1.00-0.00", "w0.00-1.00")}


@pytest.mark.slow
def test_conditioned_grpo_points_follow_the_weights_they_are_shown(fronts):
    front = _front(fronts["trained"])
    assert front["method"] == "conditioned" and front["metadata"]["precision"] == "float32"
    points = {p["id"]: p["scores"] for p in front["points"]}
    assert list(points) == ["w1.00-0.00", "w0.00-1.00"]
    assert points["w1.00-0.00"]["ascii_share"] > points["w0.00-1.00"]["ascii_share"]
    for name, ends in SPAN_ENDS.items():
        span = front["tradeoff"][name]
        assert (span["from"], span["to"]) == ends, span
        assert span["span"] > 0.1 and span["ci"][0] > 0, (name, span)


@pytest.mark.slow
def test_the_spans_were_learned_not_the_starts_reaction_to_the_text(fronts):
    """The untrained start already reacts to the condition's words (it is a random function of
    its prompt); training must move the points apart beyond that: the trained span minus the
    start's, paired over the same held-out prompts, has its interval above 0."""
    trained, base = _per_example(fronts["trained"])
    start, start_base = _per_example(fronts["start"])
    np.testing.assert_array_equal(base, start_base)  # the same prompts, replies and scores
    sets = np.concatenate([trained, start])  # [4, N, K]: trained (1,0), (0,1); start the same
    boot = resampled_means(sets)  # the front's own resampling settings (defaults)
    est = sets.mean(axis=1)
    for k, name in enumerate(OBJ):
        sign = 1.0 if name == "ascii_share" else -1.0  # to minus from, as the front's span
        gain = sign * ((est[0, k] - est[1, k]) - (est[2, k] - est[3, k]))
        samples = sign * ((boot[:, 0, k] - boot[:, 1, k]) - (boot[:, 2, k] - boot[:, 3, k]))
        lo, hi = percentile_interval(samples, gain, bootstrap_settings()["level"])
        assert gain > 0.1 and lo > 0, (name, gain, lo, hi)
        assert _front(fronts["start"])["tradeoff"][name]["span"] < gain


@pytest.mark.slow
def test_control_a_condition_the_model_cannot_tell_apart_gives_spans_within_noise(fronts):
    front = _front(fronts["blind"])
    for name in OBJ:
        span = front["tradeoff"][name]
        assert span["ci"][0] < 0 < span["ci"][1], (name, span)
        assert span["ci"][1] - span["ci"][0] > 0.01, span  # the points' replies do differ


@pytest.mark.slow
def test_the_traced_policy_is_shown_the_format_it_was_trained_with(fronts):
    """Export and ``moalign generate`` rebuild the point with the run's own condition text."""
    from moalign.fronts.export.traced import TracedFront

    for name, form, text in (("trained", "nonzero", "Objective weights: ascii_share=1.00\n"),
                             ("blind", "full",
                              "Objective weights: ascii_share=1.00, other_share=0.00\n")):
        traced = TracedFront(fronts[name])
        assert traced.condition_format == form
        policy, _ = traced.policy(point="w1.00-0.00")
        assert policy.transform_prompt("question") == f"{text}question"
