"""Fronts from every trainer: ``trainer:`` (mo_dpo, modpo, grpo, ppo) with each method, full
fine-tuning (``lora: null``), objectives as specs, and the combinations refused up front.

The RL fronts train the tiny model on the learnable task of :mod:`ascii_task` (the share of
ASCII characters in the reply against the share of the others), so their points can be checked
to follow their weights.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from moalign.errors import ConfigError
from moalign.pareto.bootstrap import read_per_example
from tests.support import ascii_task

OBJ = ["ascii_share", "other_share"]


@pytest.fixture(autouse=True)
def registered():
    ascii_task.register()


def _front(out):
    return json.loads((out / "front.json").read_text())


def _per_example(out, point_id):
    front = _front(out)
    point = next(p for p in front["points"] if p["id"] == point_id)
    return read_per_example(out / point["per_example"], OBJ)


@pytest.fixture(scope="module")
def grpo_sweep(tmp_path_factory):
    """A GRPO sweep of 3 weight vectors (grid 2), fully fine-tuned."""
    from moalign.fronts.trace import trace_front

    ascii_task.register()
    out = tmp_path_factory.mktemp("grpo-sweep") / "front"
    trace_front(ascii_task.front_config(out))
    return out


# --------------------------------------------------------------------------------------------
# RL fronts
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_sweep_points_follow_their_weights(grpo_sweep):
    front = _front(grpo_sweep)
    assert front["metadata"]["trainer"] == "grpo" and front["metadata"]["metric"] == "generation"
    assert front["metadata"]["fine_tuning"] == "full"
    points = {p["id"]: p for p in front["points"]}
    assert list(points) == ["w1.00-0.00", "w0.50-0.50", "w0.00-1.00"]
    ascii_scores = [points[i]["scores"]["ascii_share"] for i in points]
    assert ascii_scores[0] > ascii_scores[1] > ascii_scores[2]  # more weight, higher score
    for name in OBJ:  # each end is beyond noise: the span's paired interval excludes 0
        span = front["tradeoff"][name]
        assert span["span"] > 0.05 and span["ci"][0] > 0, (name, span)
    # the two objectives sum to 1 on every reply, so at equal weights every GRPO reward of a
    # group is the same: zero advantages, no update, the starting policy exactly
    baseline = front["metadata"]["baseline"]["scores"]
    assert points["w0.50-0.50"]["scores"] == baseline
    runs = sorted(p.name for p in (grpo_sweep / "runs").iterdir())
    assert runs == ["w0_00-1_00", "w0_50-0_50", "w1_00-0_00"]
    record = json.loads((grpo_sweep / "runs" / "w1_00-0_00" / "run.json").read_text())
    assert record["trainer"] == "grpo" and record["steps"] == 20
    assert (grpo_sweep / "runs" / "w1_00-0_00" / "model" / "config.json").is_file()
    assert not (grpo_sweep / "runs" / "w1_00-0_00" / "trainer").exists()


@pytest.mark.slow
def test_soup_of_fully_fine_tuned_grpo_runs_is_exact_at_the_vertices(grpo_sweep, tmp_path):
    """The soup's runs are the sweep's vertex runs (same trainer, weights and seed), and at a
    vertex the weight interpolation is that run's model: the same per-example scores, bit for
    bit; in between it is a different policy."""
    from moalign.fronts.trace import trace_front

    out = tmp_path / "soup"
    trace_front(ascii_task.front_config(out, method="soup"))
    front = _front(out)
    assert front["method"] == "soup" and front["metadata"]["trainer"] == "grpo"
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["only_ascii_share",
                                                                "only_other_share"]
    for pid in ("w1.00-0.00", "w0.00-1.00"):
        np.testing.assert_array_equal(_per_example(out, pid), _per_example(grpo_sweep, pid))
    middle = _per_example(out, "w0.50-0.50")
    assert not np.array_equal(middle, _per_example(out, "w1.00-0.00"))
    assert not np.array_equal(middle, _per_example(out, "w0.00-1.00"))


@pytest.mark.slow
def test_lora_soup_of_grpo_runs_reproduces_each_run_at_its_vertex(tmp_path):
    import torch
    from peft import PeftModel

    from moalign.fronts.trace import trace_front
    from moalign.models import tiny_causal_lm

    out = tmp_path / "lora-soup"
    trace_front(ascii_task.front_config(out, method="soup", grid=1,
                                        lora={"r": 4, "lora_alpha": 8},
                                        train={**ascii_task.GRPO_TRAIN, "max_steps": 4}))
    front = _front(out)
    assert front["metadata"]["fine_tuning"] == "lora" and len(front["points"]) == 2
    ids = torch.tensor([[5, 17, 33, 80, 120, 201]])

    def logits(folder):
        base, _ = tiny_causal_lm(seed=0)
        with torch.no_grad():
            return PeftModel.from_pretrained(base, str(folder)).eval()(input_ids=ids).logits

    run = logits(out / "runs" / "only_ascii_share" / "adapter")
    soup = logits(out / "points" / "w1.00-0.00" / "adapter" / "soup")
    other = logits(out / "runs" / "only_other_share" / "adapter")
    assert float((soup - run).abs().max()) < 1e-5
    assert float((run - other).abs().max()) > 1e-4  # the runs differ: the check can fail


@pytest.mark.slow
def test_ppo_sweep_points_follow_their_weights(tmp_path):
    from moalign.fronts.trace import trace_front

    out = tmp_path / "ppo"
    trace_front(ascii_task.front_config(out, trainer="ppo", grid=1))
    front = _front(out)
    assert front["metadata"]["trainer"] == "ppo"
    first, last = front["points"]
    assert first["id"] == "w1.00-0.00" and last["id"] == "w0.00-1.00"
    assert first["scores"]["ascii_share"] > last["scores"]["ascii_share"]
    assert front["tradeoff"]["ascii_share"]["ci"][0] > 0
    record = json.loads((out / "runs" / "w1_00-0_00" / "run.json").read_text())
    assert record["trainer"] == "ppo" and record["steps"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["grpo", "ppo"])
def test_conditioned_rl_front_is_one_run_shown_every_weight_vector(trainer, tmp_path):
    """Conditioned GRPO / PPO: one run whose prompts showed Dirichlet-drawn weights (their
    rewards weighted by them: tests/trainers/test_conditioned_rl.py), evaluated with each
    weight vector of the front shown in the prompt. (In a few steps and with the default
    condition text the tiny model does not learn to read the condition, so the points are not
    expected to differ; tests/fronts/test_conditioned_learns.py measures one that does.)"""
    from moalign.fronts.trace import trace_front

    out = tmp_path / "conditioned"
    train = {**(ascii_task.GRPO_TRAIN if trainer == "grpo" else ascii_task.PPO_TRAIN),
             "max_steps": 2, "dirichlet_alpha": 0.5}
    trace_front(ascii_task.front_config(out, trainer=trainer, method="conditioned", train=train))
    front = _front(out)
    assert front["method"] == "conditioned" and front["metadata"]["trainer"] == trainer
    assert [p.name for p in (out / "runs").iterdir()] == ["conditioned"]
    record = json.loads((out / "runs" / "conditioned" / "run.json").read_text())
    assert record["conditioning"] == "prompt" and record["trainer"] == trainer
    assert [p["id"] for p in front["points"]] == ["w1.00-0.00", "w0.50-0.50", "w0.00-1.00"]
    assert all(p["checkpoint"] == "runs/conditioned/model" for p in front["points"])


@pytest.mark.slow
def test_decoding_mixes_fully_fine_tuned_grpo_runs(tmp_path):
    from moalign.fronts.trace import trace_front

    out = tmp_path / "decoding"
    train = {**ascii_task.GRPO_TRAIN, "max_steps": 2}
    trace_front(ascii_task.front_config(out, method="decoding", grid=1, train=train))
    front = _front(out)
    assert front["method"] == "decoding" and [p["id"] for p in front["points"]] == \
        ["w1.00-0.00", "w0.00-1.00"]


@pytest.mark.slow
def test_rl_objectives_are_loaded_once_for_rewards_and_scoring(tmp_path, monkeypatch):
    """One loaded copy of each objective rewards the runs and scores the points."""
    from moalign.fronts.config import resolve_front_config
    from moalign.fronts.trace import trace_front

    built = []
    original = ascii_task.AsciiShare.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ascii_task.AsciiShare, "__init__", counting)
    cfg = resolve_front_config(ascii_task.front_config(
        tmp_path / "f", grid=1, train={**ascii_task.GRPO_TRAIN, "max_steps": 1}))
    built.clear()  # the config check builds each objective once to test its arguments
    trace_front(cfg)
    assert len(built) == 1


# --------------------------------------------------------------------------------------------
# The configuration: trainer, train:, objectives, combinations
# --------------------------------------------------------------------------------------------


def _refused(match: str, **changes) -> ConfigError:
    from moalign.fronts.config import resolve_front_config

    start = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as info:
        resolve_front_config({"model": "tiny", **changes})
    assert time.perf_counter() - start < 20  # before any model loads
    return info.value


def test_train_fields_are_checked_against_the_chosen_trainer():
    _refused("did you mean 'num_generations'", trainer="grpo", method="sweep",
             objectives=OBJ, train={"num_generation": 4})
    _refused("unknown key 'num_generations'", trainer="mo_dpo", train={"num_generations": 4})
    _refused("did you mean 'kl_coef'", trainer="ppo", method="sweep", objectives=OBJ,
             train={"kl_coeff": 0.1})
    # a value the trainer config refuses, found by a trial config of the first run
    _refused("multi_objective_aggregation", trainer="grpo", method="sweep", objectives=OBJ,
             train={"multi_objective_aggregation": "max"})
    _refused("'train': 'weights' is set by the trace", trainer="grpo", objectives=OBJ,
             train={"weights": [1.0, 0.0]})
    _refused("not one of the objectives", trainer="ppo", method="sweep", objectives=OBJ,
             train={"constraints": {"harmlessness": 0.1}})


@pytest.mark.parametrize("changes, match", [
    ({"trainer": "modpo", "method": "soup"}, "MODPO trains on the first objective"),
    ({"trainer": "modpo", "method": "conditioned"}, "has no conditioned form"),
    ({"trainer": "grpo", "method": "conditioned", "objectives": OBJ,
      "train": {"constraints": {"ascii_share": 0.5}}}, "conditioning draws a weight vector"),
    ({"trainer": "modpo", "method": "sweep"}, "w_0 > 0.*give 'weights' explicitly"),
    ({"trainer": "modpo", "method": "sweep", "weights": "adaptive", "points": 6},
     "adaptive candidates include w_0 = 0"),
    ({"trainer": "grpo", "metric": "implicit", "objectives": OBJ}, "metric: implicit"),
    ({"trainer": "conditioned_dpo"}, "trainer: mo_dpo with method: conditioned"),
    ({"trainer": "gpro"}, "did you mean 'grpo'"),
    ({"method": "soup", "lora": {"r": 4, "use_dora": True}}, "use_dora.*method soup"),
    ({"weights": "adaptive"}, "needs 'points'"),
    ({"weights": "adaptive", "points": 3}, "smaller than the adaptive front's starting grid"),
    ({"points": 6}, "set weights: adaptive"),
    ({"weights": "evenly"}, "'weights' must be a list of weight vectors or 'adaptive'"),
])
def test_combinations_that_make_no_sense_are_refused_before_any_model_loads(changes, match):
    _refused(match, **changes)


def test_modpo_sweep_with_positive_first_weights_is_accepted():
    from moalign.fronts.config import resolve_front_config

    cfg = resolve_front_config({"model": "tiny", "trainer": "modpo", "method": "sweep",
                                "weights": [[1.0, 0.0], [0.5, 0.5]]})
    assert cfg.metric == "implicit"


def test_defaults_and_objective_specs():
    from moalign.fronts.config import FrontConfig, resolve_front_config

    assert FrontConfig(model="tiny").metric == "implicit"
    cfg = resolve_front_config({"model": "tiny", "trainer": "grpo", "method": "sweep",
                                "dataset": "gsm8k", "lora": None,
                                "objectives": ["moalign_objectives.length:Length",
                                               {"name": "reasoning_accuracy"}]})
    assert cfg.metric == "generation"  # the RL trainers' default
    assert cfg.objective_names == ["length", "reasoning_accuracy"]
    cfg = resolve_front_config({"model": "tiny", "trainer": "grpo", "method": "sweep",
                                "dataset": "gsm8k", "grid": 1,
                                "objectives": ["length:target=5,unit=chars",
                                               "reasoning_accuracy"]})
    assert cfg.objective_names == ["length", "reasoning_accuracy"]
    _refused("distinct names", trainer="grpo", dataset="gsm8k",
             objectives=["length:target=5", {"name": "length", "target": 9}])
    _refused("unknown objective 'lenght'.*did you mean 'length'", trainer="grpo",
             dataset="gsm8k", objectives=["lenght", "reasoning_accuracy"])


@pytest.mark.slow
def test_fully_fine_tuned_dpo_fronts_measure_against_the_starting_model(tmp_path):
    """lora: null for sweep and conditioned DPO: the implicit reward's reference is the
    starting model (were it the trained model itself, every pair would tie at 0.5)."""
    from moalign.fronts.trace import trace_front

    for method in ("sweep", "conditioned"):
        out = tmp_path / method
        trace_front({"method": method, "model": "tiny", "lora": None, "grid": 1,
                     "train_pairs": 16, "eval_pairs": 16, "max_length": 96, "progress": False,
                     "output_dir": str(out),
                     "train": {"max_steps": 2, "learning_rate": 1e-2, "max_length": 96,
                               "max_prompt_tokens": 48}})
        front = _front(out)
        assert front["metadata"]["fine_tuning"] == "full" and len(front["points"]) == 2
        assert (out / "runs" / ("conditioned" if method == "conditioned" else "w1_00-0_00")
                / "model").is_dir()
        scores = [s for p in front["points"] for s in p["scores"].values()]
        assert any(abs(s - 0.5) > 1e-9 for s in scores), (method, scores)
