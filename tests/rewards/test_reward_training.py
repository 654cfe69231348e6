"""Reward-model training (``moalign reward``) on tiny models and synthetic preferences.

The synthetic preference (labelled synthetic: written here, not real data): the better reply
contains the marker word "thanks". About a third of the rows are labelled -1 (the better reply
is in ``rejected``), so orientation is exercised too.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from moalign.errors import ConfigError, DataError
from moalign.rewards.head import (
    RewardInputSpec,
    encode_reward_input,
    features,
    fit_bradley_terry,
    pairwise_accuracy,
    reward_scores,
    select_l2,
)
from moalign.rewards.training import (
    RewardTrainingConfig,
    default_reward_model_dir,
    load_preference_pairs,
    train_reward_model,
)

WORDS = "apple river stone cloud green table music light paper window garden quiet".split()


def _pairs(n: int = 120, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = " ".join(rnd.choice(WORDS) for _ in range(6))
        good = " ".join(rnd.choice(WORDS) for _ in range(4)) + " thanks"
        bad = " ".join(rnd.choice(WORDS) for _ in range(5))
        label = -1.0 if i % 3 == 0 else 1.0
        chosen, rejected = (good, bad) if label > 0 else (bad, good)
        rows.append({
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "pref_helpfulness": label,
            "pref_harmlessness": None,
        })
    return rows


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from moalign.models import tiny_causal_lm

    folder = tmp_path_factory.mktemp("tiny-lm")
    model, tok = tiny_causal_lm(seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", _pairs())


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _base(tiny_dir, pairs_file, tmp_path, **kw):
    cfg = dict(model=tiny_dir, dataset=pairs_file, objective="helpfulness",
               output_dir=str(tmp_path / "rm"), max_prompt_tokens=None,
               max_completion_tokens=None)
    cfg.update(kw)
    return cfg


# -- head-only ----------------------------------------------------------------------------------


def test_head_only_checkpoint_loads_as_objective_and_ranks_marker(tiny_dir, pairs_file, tmp_path):
    from moalign.rewards.model import RewardModelObjective

    result = train_reward_model(_base(tiny_dir, pairs_file, tmp_path, pooling="last"))
    assert result.n_train + result.n_test == 120
    assert result.test_accuracy >= 0.8  # chance is 0.5
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert metrics["n_test"] == result.n_test
    spec = json.loads((result.output_dir / "moalign_reward.json").read_text())
    assert spec["pooling"] == "last" and spec["objective"] == "helpfulness"

    # the saved folder is a plain HF sequence classifier that the objective loads and that
    # reproduces the held-out accuracy the trainer reported, pair by pair
    split = load_preference_pairs(pairs_file, "helpfulness")
    test = split["test"]
    objective = RewardModelObjective(model=str(result.output_dir))
    s_c = objective(test["prompt"], test["chosen"])
    s_r = objective(test["prompt"], test["rejected"])
    assert pairwise_accuracy(s_c, s_r) == pytest.approx(result.test_accuracy)
    # unseen prompts: the marker still wins
    fresh = _pairs(40, seed=7)
    good = [r["chosen"] if r["pref_helpfulness"] > 0 else r["rejected"] for r in fresh]
    bad = [r["rejected"] if r["pref_helpfulness"] > 0 else r["chosen"] for r in fresh]
    prompts = [r["prompt"] for r in fresh]
    assert pairwise_accuracy(objective(prompts, good), objective(prompts, bad)) >= 0.8


@pytest.mark.parametrize("pooling", ["last", "mean_completion"])
def test_forward_reproduces_fitted_scores(tiny_dir, pooling):
    """The head fitted on pooled features gives the same scores through the model's forward
    (``last``: the plain HF forward, one unpadded sequence at a time as the oracle)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=1).eval()
    spec = RewardInputSpec(max_prompt_tokens=20, max_completion_tokens=12, pooling=pooling)
    rows = _pairs(24, seed=3)
    enc = [encode_reward_input(tok, r["prompt"], r[k], spec) for r in rows for k in ("chosen", "rejected")]
    feats = features(model, enc, pooling, batch_size=5)
    diff = feats[0::2] - feats[1::2]
    w = fit_bradley_terry(diff, 1e-2)
    with torch.no_grad():
        model.score.weight.copy_(w.float().unsqueeze(0))
    fitted = feats.double() @ model.score.weight.double()[0]
    batched = reward_scores(model, enc, pooling, batch_size=7)[:, 0]
    torch.testing.assert_close(batched, fitted, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for (ids, start), expected in zip(enc, fitted, strict=True):
            x = torch.tensor([ids])
            if pooling == "last":
                got = model(input_ids=x).logits[0, 0].double()
            else:  # mean over the completion of the per-token scores
                hidden = model.model(input_ids=x).last_hidden_state[0]
                got = model.score(hidden[start:]).mean().double()
            assert float(got) == pytest.approx(float(expected), abs=1e-5)


def test_bradley_terry_matches_scipy_optimum():
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * np.array([1.0, 3.0, 0.2, 1.0, 5.0, 1.0])
    x[:, 0] += 0.8  # a direction that predicts the preference
    l2 = 0.05
    w = fit_bradley_terry(torch.tensor(x), l2).numpy()
    scale = np.sqrt((x**2).mean(0))

    def loss(v):  # the documented objective, in the scaled coordinates
        m = (x / scale) @ v
        return np.logaddexp(0, -m).mean() + 0.5 * l2 * v @ v

    ref = minimize(loss, np.zeros(6), method="BFGS", options={"gtol": 1e-10}).x / scale
    np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-6)


def test_select_l2_picks_the_best_cross_validated_candidate():
    rng = np.random.default_rng(1)
    noise = torch.tensor(rng.normal(size=(200, 10)))  # labels carry no signal
    best, cv = select_l2(noise, [1e-4, 10.0], folds=4)
    assert set(cv) == {1e-4, 10.0} and cv[best] == max(cv.values())
    assert all(0.35 <= a <= 0.65 for a in cv.values())  # chance, up to noise
    signal = noise.clone()
    signal[:, 0] = signal[:, 0].abs() + 2.0  # feature 0 decides every pair
    best, cv = select_l2(signal, [1e-4, 1e-2], folds=4)
    assert cv == {1e-4: 1.0, 1e-2: 1.0}
    assert best == 1e-2  # equal accuracy: the stronger regularization is kept


def test_encoding_matches_reward_model_objective_and_truncates_by_part(tiny_dir):
    from transformers import AutoTokenizer

    from moalign.rewards.model import RewardModelObjective

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    objective = RewardModelObjective(model=tiny_dir_classifier(tiny_dir))
    prompt = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"},
              {"role": "user", "content": "how are you?"}]
    for p, c in [(prompt, "fine, thanks"), ("plain prompt ", "plain reply"),
                 (prompt, [{"role": "assistant", "content": "ok"}])]:
        ids, start = encode_reward_input(tok, p, c)
        assert ids == objective.encode(p, c)
        if isinstance(p, list):  # the completion starts right after the generation prompt
            head = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            assert tok.decode(ids[:start]) == head
        full, start = encode_reward_input(tok, p, c)
        cut, cut_start = encode_reward_input(tok, p, c, RewardInputSpec(5, 3))
        assert cut_start == 5 and cut == full[start - 5:start] + full[start:start + 3]


def tiny_dir_classifier(tiny_dir: str) -> str:
    """A sequence-classification copy of the tiny LM (what a trained reward model looks like)."""
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = Path(tiny_dir) / "seqcls"
    if not out.is_dir():
        model = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=1)
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(out)
    return str(out)


def test_feature_cache_makes_reruns_skip_the_backbone(tiny_dir, pairs_file, tmp_path, monkeypatch):
    import moalign.rewards.head as rh

    cfg = _base(tiny_dir, pairs_file, tmp_path, max_prompt_tokens=24, max_completion_tokens=16)
    first = train_reward_model(cfg)
    # 240 sequences, a few identical after truncation: each distinct one is stored once
    assert 200 < first.metrics["feature_cache_entries"] <= 240

    def boom(*a, **k):
        raise AssertionError("features recomputed despite the cache")

    monkeypatch.setattr(rh, "features", boom)
    second = train_reward_model({**cfg, "output_dir": str(tmp_path / "rm2")})
    assert second.test_accuracy == first.test_accuracy
    # a different truncation is a different key: the backbone must run again
    with pytest.raises(AssertionError, match="recomputed"):
        train_reward_model({**cfg, "max_completion_tokens": 8, "output_dir": str(tmp_path / "rm3")})


def test_mean_pooled_layer_truncated_bfloat16_checkpoint_reproduces_its_accuracy(
        tiny_dir, pairs_file, tmp_path):
    """head_only with mean pooling, 1 of 2 layers and a bfloat16 backbone: the saved checkpoint
    has float32 weights, one layer, a spec, and scoring it as the spec says gives back the
    held-out accuracy the trainer measured."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = train_reward_model(_base(tiny_dir, pairs_file, tmp_path, num_layers=1,
                                      dtype="bfloat16", max_prompt_tokens=16,
                                      max_completion_tokens=40))
    assert result.test_accuracy >= 0.8
    spec = RewardInputSpec.load(result.output_dir)
    assert spec == RewardInputSpec(16, 40, "mean_completion")
    model = AutoModelForSequenceClassification.from_pretrained(result.output_dir).eval()
    assert model.config.num_hidden_layers == 1 and model.dtype == torch.float32
    base = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=1)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    test = load_preference_pairs(pairs_file, "helpfulness")["test"]
    enc = [encode_reward_input(tok, p, c, spec) for p, c in zip(test["prompt"], test["chosen"])]
    enc += [encode_reward_input(tok, p, r, spec) for p, r in zip(test["prompt"], test["rejected"])]
    s = reward_scores(model, enc, spec.pooling)[:, 0]
    n = len(test)
    # float32 scoring of a head fitted on bfloat16 features: the same ranking up to a pair or two
    assert abs(pairwise_accuracy(s[:n], s[n:]) - result.test_accuracy) <= 2 / n
    # the reward-model objective reads the spec and scores exactly the same way
    from moalign.rewards.model import RewardModelObjective

    objective = RewardModelObjective(model=str(result.output_dir))
    got = objective(list(test["prompt"]) * 2, list(test["chosen"]) + list(test["rejected"]))
    np.testing.assert_allclose(got, s.numpy(), rtol=1e-6, atol=1e-6)


def test_spec_file_round_trip_and_bad_values(tmp_path):
    spec = RewardInputSpec(64, None, "mean_completion")
    spec.save(tmp_path, objective="helpfulness")
    assert RewardInputSpec.load(tmp_path) == spec
    assert RewardInputSpec.load(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="pooling"):
        RewardInputSpec(pooling="max")


# -- TRL RewardTrainer ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["full", "lora"])
def test_trl_reward_trainer_paths(tiny_dir, pairs_file, tmp_path, method):
    from transformers import AutoModelForSequenceClassification

    from moalign.rewards.model import RewardModelObjective

    result = train_reward_model(_base(
        tiny_dir, pairs_file, tmp_path, method=method, learning_rate=3e-3, max_steps=16,
        batch_size=8, lora_target_modules=["q_proj", "v_proj"], max_test_pairs=24,
    ))
    assert result.metrics["steps"] == 16
    assert not (result.output_dir / "adapter_config.json").exists()  # LoRA merged: a plain folder
    AutoModelForSequenceClassification.from_pretrained(result.output_dir)
    test = load_preference_pairs(pairs_file, "helpfulness")["test"].shuffle(seed=0).select(range(24))
    objective = RewardModelObjective(model=str(result.output_dir))
    acc = pairwise_accuracy(objective(test["prompt"], test["chosen"]),
                            objective(test["prompt"], test["rejected"]))
    assert acc == pytest.approx(result.test_accuracy)
    assert acc >= 0.7


# -- configuration and data errors ---------------------------------------------------------------


def test_config_errors_are_all_reported_before_loading(tmp_path, monkeypatch):
    from moalign.config import load_command_config

    config = tmp_path / "reward.yaml"
    config.write_text("objectve: helpfulness\nbatch_size: many\ndataset: missing.jsonl\n"
                      "model: ./no/such/model\ntest_size: 1.5\n")
    with pytest.raises(ConfigError) as err:
        load_command_config(RewardTrainingConfig, str(config), {"pooling": "max"})
    text = str(err.value)
    assert "did you mean 'objective'" in text
    assert "'batch_size' must be int" in text
    assert "missing.jsonl" in text and "no/such/model" in text
    assert "'test_size'" in text and "'pooling'" in text
    assert len(err.value.problems) == 6


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    from moalign.cli import main

    code = main(["reward", "--objective", "helpfulnes", "--l2", "-1", "--dataset", "hh-rlhf"])
    err = capsys.readouterr().err
    assert code == 2
    assert "objective 'helpfulnes' has no labelled pairs" in err and "'l2'" in err


def test_cli_reward_trains_from_yaml_with_overrides(tiny_dir, pairs_file, tmp_path, capsys):
    from moalign.cli import main

    config = tmp_path / "reward.yaml"
    config.write_text(f"model: {tiny_dir}\ndataset: {pairs_file}\nobjective: helpfulness\n"
                      f"output_dir: {tmp_path / 'rm'}\nmax_prompt_tokens: 32\n")
    code = main(["reward", "--config", str(config), "--max-completion-tokens", "40", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert f"held-out accuracy  {metrics['test_accuracy']:.3f}" in out
    assert metrics["config"]["max_completion_tokens"] == 40  # the override won
    assert metrics["config"]["max_prompt_tokens"] == 32


def test_objective_without_labelled_pairs_is_a_data_error_before_the_model_loads(
        tiny_dir, tmp_path, monkeypatch):
    import moalign.rewards.training as rt

    rows = _pairs(10)
    for r in rows:
        r["pref_harmlessness"] = None
    path = _write_jsonl(tmp_path / "unlabelled.jsonl", rows)
    monkeypatch.setattr(rt, "_load_classifier", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(DataError, match="pref_harmlessness"):
        train_reward_model(dict(model=tiny_dir, dataset=path, objective="harmlessness",
                                output_dir=str(tmp_path / "x")))
    with pytest.raises(DataError, match="pref_safety"):
        train_reward_model(dict(model=tiny_dir, dataset=path, objective="safety",
                                output_dir=str(tmp_path / "x")))


def test_default_dir_follows_moalign_cache(tmp_path, monkeypatch):
    from moalign.models import default_reward_model_path

    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "c"))
    assert default_reward_model_dir("helpfulness") == tmp_path / "c" / "reward-models" / "helpfulness"
    assert default_reward_model_dir("harmlessness") == default_reward_model_path("harmlessness")


def test_bundled_pairs_are_oriented_and_split_20_percent():
    split = load_preference_pairs("hh-rlhf", "helpfulness")
    n = len(split["train"]) + len(split["test"])
    assert n == 2352  # 2354 helpful-base rows, 2 ties dropped
    assert math.isclose(len(split["test"]) / n, 0.2, abs_tol=0.01)
    assert set(split["test"]["pref_helpfulness"]) == {1.0}
    train_prompts = {json.dumps(p) for p in split["train"]["prompt"]}
    assert not any(json.dumps(p) in train_prompts for p in split["test"]["prompt"])


def test_reward_dtype_auto_follows_the_machine(monkeypatch):
    """``dtype: auto`` (the default) becomes bfloat16 only where the CPU has bfloat16 units, and
    the resolved value is what the config (and so the checkpoint record) holds."""
    import torch

    import moalign.models.precision as p
    from moalign.rewards.training import RewardTrainingConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert RewardTrainingConfig(objective="helpfulness").dtype == "bfloat16"
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ())
    assert RewardTrainingConfig(objective="helpfulness").dtype == "float32"
    # an explicit choice is kept whatever the machine
    assert RewardTrainingConfig(objective="helpfulness", dtype="bfloat16").dtype == "bfloat16"
