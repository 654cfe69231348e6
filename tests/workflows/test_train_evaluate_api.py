"""``moalign.train`` / ``moalign.evaluate``: the Python calls behind ``moalign train`` and
``moalign eval``, and the one held-out split and prompt selection that train, trace and eval
share."""

from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from datasets import Dataset

import moalign
from moalign.cli import main
from moalign.errors import ConfigError

TINY = dict(trainer="mo_dpo", model="tiny", dataset="hh-rlhf",
            objectives=["helpfulness", "harmlessness"], weights=[0.3, 0.7],
            lora={"r": 4, "alpha": 8}, max_examples=8, max_prompt_tokens=48, max_steps=2,
            max_length=96, learning_rate=0.01, progress=False, precision="float32")


def _cli(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def _losses(folder) -> list[float]:
    record = json.loads((folder / "train.json").read_text())
    return [e["loss"] for e in record["log_history"] if "loss" in e]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same keys trained by ``moalign train`` and by ``moalign.train``."""
    root = tmp_path_factory.mktemp("api")
    config = root / "tiny.yaml"
    import yaml

    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(root / "cli")}))
    assert _cli(["train", "--config", str(config), "--quiet"]) == 0
    record = moalign.train(TINY, output_dir=str(root / "py"))
    return root, record


@pytest.mark.slow
def test_python_train_is_the_command(both):
    from safetensors.torch import load_file

    root, record = both
    assert record == json.loads((root / "py" / "train.json").read_text())
    assert record["steps"] == 2 and record["metrics"]["harmlessness"]["weights"] == 0.7
    assert _losses(root / "py") == _losses(root / "cli") and len(_losses(root / "cli")) == 2
    a = load_file(str(root / "cli" / "adapter_model.safetensors"))
    b = load_file(str(root / "py" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


@pytest.mark.slow
def test_python_train_control_other_learning_rate_trains_otherwise(both, tmp_path):
    root, _ = both
    moalign.train(TINY, output_dir=str(tmp_path / "other"), learning_rate=0.05)
    assert _losses(tmp_path / "other") != _losses(root / "cli")  # the comparison can fail


@pytest.mark.slow
def test_python_evaluate_is_the_command(both, tmp_path):
    root, _ = both
    out = tmp_path / "eval.json"
    assert _cli(["eval", "--model", str(root / "py"), "--metric", "implicit", "--n", "6",
                 "-o", str(out)]) == 0
    by_cli = json.loads(out.read_text())
    by_python = moalign.evaluate({"model": str(root / "py"), "metric": "implicit"}, n=6)
    assert by_python["scores"] == by_cli["scores"] and by_python["n"] == by_cli["n"]
    assert by_python["n"] == {"helpfulness": 6, "harmlessness": 6}
    config = moalign.EvalConfig(model=str(root / "py"), metric="implicit", n=6)
    assert moalign.evaluate(config)["scores"] == by_cli["scores"]


def test_bad_keys_are_refused_before_anything_loads(monkeypatch, tmp_path):
    from moalign.models import specs

    def forbidden(*a, **k):
        raise AssertionError("a model loaded for a bad configuration")

    monkeypatch.setattr(specs, "load_model_spec", forbidden)
    with pytest.raises(ConfigError) as err:
        moalign.train(TINY, output_dir=str(tmp_path / "x"), test_size=1.5, lerning_rate=0.1)
    assert "'test_size'" in str(err.value) and "learning_rate" in str(err.value)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="'metric' must be one of generation, implicit"):
        moalign.evaluate(model="tiny", metric="accuracy")


# ------------------------------------------------------------------ one held-out split


@pytest.mark.slow
def test_train_trace_and_eval_hold_out_the_same_rows():
    from moalign.fronts.config import resolve_front_config
    from moalign.fronts.context import load_preference_splits
    from moalign.workflows import resolve_eval_config, resolve_train_config
    from moalign.workflows.scoring import _rows
    from moalign.workflows.train_data import training_split

    def held_out(test_size: float, seed: int):
        resolved = resolve_train_config({**TINY, "test_size": test_size, "seed": seed,
                                         "output_dir": "unused"})
        train = training_split(resolved, seed)
        front = resolve_front_config({"trainer": "mo_dpo", "model": "tiny", "dataset": "hh-rlhf",
                                      "objectives": ["helpfulness", "harmlessness"],
                                      "test_size": test_size, "seed": seed, "train_pairs": None})
        front_train, front_test = load_preference_splits(front)
        test = _rows(resolve_eval_config({"model": "tiny", "metric": "implicit", "reference": "tiny",
                                          "test_size": test_size, "seed": seed}))
        return train, front_train, front_test, test

    train, front_train, front_test, test = held_out(0.3, 3)
    assert test["prompt"] == front_test["prompt"] and test["chosen"] == front_test["chosen"]
    assert train["prompt"] == front_train["prompt"]  # the same training rows, same order
    assert not {repr(p) for p in train["prompt"]} & {repr(p) for p in test["prompt"]}
    assert len(test) + len(train) == len(moalign.data.load_dataset("hh-rlhf"))
    other = held_out(0.3, 4)[3]  # control: another seed holds out other rows
    assert other["prompt"] != test["prompt"]


def test_default_literals_are_defined_once():
    import dataclasses

    from moalign.data import MAX_PROMPT_TOKENS, TEST_SIZE
    from moalign.fronts.config import FrontConfig
    from moalign.rewards.training import RewardTrainingConfig
    from moalign.workflows import EvalConfig, TrainRunConfig

    def default(cls, name):
        return {f.name: f.default for f in dataclasses.fields(cls)}[name]

    for cls in (TrainRunConfig, EvalConfig, FrontConfig, RewardTrainingConfig):
        assert default(cls, "test_size") is TEST_SIZE, cls
    for cls in (TrainRunConfig, EvalConfig):
        assert default(cls, "max_prompt_tokens") is MAX_PROMPT_TOKENS, cls


# ------------------------------------------------------------------ one prompt selection


def test_distinct_prompt_rows_takes_each_objectives_prompts_in_turn():
    from moalign.data.selection import distinct_prompt_rows

    nan = float("nan")
    ds = Dataset.from_dict({
        "prompt": ["p0", "p1", "p0", "p3", "p4", "p5"],
        "pref_a": [1.0, nan, -1.0, 1.0, nan, 0.0],   # labelled rows 0, 2, 3 (5 is a tie)
        "pref_b": [nan, 1.0, 1.0, nan, -1.0, 1.0],  # labelled rows 1, 2, 4, 5
    })
    # a: 0; b: 1; a: 2 repeats p0, so 3; b: 2 repeats p0, so 4; a: none left; b: 5
    assert distinct_prompt_rows(ds, ["a", "b"], 10) == [0, 1, 3, 4, 5]
    assert distinct_prompt_rows(ds, ["a", "b"], 3) == [0, 1, 3]
    assert distinct_prompt_rows(ds, ["b", "a"], 3) == [1, 0, 4]
    # a prompt dataset (no label column for an objective): distinct prompts in order
    assert distinct_prompt_rows(ds, ["a", "length"], 4) == [0, 1, 3, 4]


def test_eval_and_front_traces_choose_the_same_prompts(monkeypatch):
    import moalign.evaluation
    import moalign.objective
    from moalign.data import heldout_split, load_dataset
    from moalign.fronts import evaluate as front_evaluate
    from moalign.models import tiny_causal_lm
    from moalign.workflows import scoring

    names = ["helpfulness", "harmlessness"]
    _, test = heldout_split(load_dataset("hh-rlhf"))
    model, tokenizer = tiny_causal_lm(seed=0)
    seen = {}

    def fake_evaluate_policy(model, tokenizer, prompts, objectives, **kw):
        seen["prompts"] = prompts
        zeros = dict.fromkeys(names, 0.0)
        return SimpleNamespace(scores=zeros, stderr=zeros, counts=dict.fromkeys(names, 0),
                               completions=[""] * len(prompts))

    monkeypatch.setattr(moalign.evaluation, "evaluate_policy", fake_evaluate_policy)
    monkeypatch.setattr(moalign.objective, "ObjectiveSet",
                        lambda specs: SimpleNamespace(names=tuple(specs), required_columns=()))
    cfg = scoring.EvalConfig(model="tiny", objectives=names, n=12)
    scoring._evaluate_generation(cfg, model, tokenizer, test)
    front_cfg = SimpleNamespace(objective_names=names, eval_prompts=12, train={})
    ctx = SimpleNamespace(heldout={}, test_ds=test, tokenizer=tokenizer)
    assert front_evaluate._eval_prompts(front_cfg, ctx) == seen["prompts"]
    assert len(seen["prompts"]) == 12
    # both objectives' prompts are represented, in turn
    rows = ctx.heldout["prompt_rows"]
    labelled = {n: set(np.flatnonzero(np.isfinite(np.asarray(test[f"pref_{n}"], float))
                                      & (np.asarray(test[f"pref_{n}"], float) != 0)).tolist())
                for n in names}
    assert rows[0] in labelled["helpfulness"] and rows[1] in labelled["harmlessness"]


def test_the_readme_python_example_is_a_valid_configuration(tmp_path):
    import re
    from pathlib import Path

    from moalign.workflows import resolve_eval_config, resolve_train_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    call = re.search(r"moalign\.train\((\{.*?\})\)", readme)
    assert call, "the README shows moalign.train(...)"
    keys = eval(call.group(1), {})  # a literal dict in our own README
    resolved = resolve_train_config({**keys, "output_dir": str(tmp_path / "out")})
    assert resolved.run.weights == [0.3, 0.7] and resolved.run.trainer == "mo_dpo"
    assert 'moalign.evaluate(model="out", metric="implicit")' in readme
    with pytest.raises(ConfigError, match="reference"):  # "out" is no train output here
        resolve_eval_config({"model": "tiny", "metric": "implicit"})
