"""Numbers out of range and data with nothing to learn, refused when the config is read.

Each case runs ``moalign train | trace --config FILE`` with every model loader forbidden and
checks what every bad-input case checks (exit code 2, the offending key and its allowed range
named, no traceback, nothing finished-looking left behind), plus a time bound: the refusal
comes in seconds, before any training.
"""

from __future__ import annotations

import time

import pytest

from moalign.errors import ConfigError
from tests.support.corpus import ModelLoaded, jsonl, pref_rows, run_cli_case

#: Seconds within which a bad value must be refused (the imports included).
BOUND = 10.0

TRAIN = "trainer: mo_dpo\nmodel: tiny\n"
TRACE = "method: soup\nmodel: tiny\n"
PPO = "trainer: ppo\nmodel: tiny\n"
GRPO = "trainer: grpo\nmodel: tiny\n"


def _config(command: str, yaml: str, *expect: str) -> dict:
    return {"argv": [command, "--config", "{tmp}/c.yaml", "--output_dir", "{tmp}/out"],
            "files": {"c.yaml": yaml}, "expect": list(expect)}


def _data(command: str, rows: list[dict], *expect: str) -> dict:
    return {"argv": [command, "--model", "tiny", "--dataset", "{tmp}/d.jsonl",
                     "--output_dir", "{tmp}/out"],
            "files": {"d.jsonl": jsonl(rows)}, "expect": list(expect)}


CASES = {
    # moalign trace: counts of the front itself
    "trace-eval-pairs-zero": _config("trace", TRACE + "eval_pairs: 0\n",
                                     "'eval_pairs' must be >= 1, got 0"),
    "trace-eval-prompts-negative": _config(
        "trace", TRACE + "metric: generation\neval_prompts: -2\n",
        "'eval_prompts' must be >= 1, got -2"),
    "trace-train-pairs-zero": _config("trace", TRACE + "train_pairs: 0\n",
                                      "'train_pairs' must be >= 1 (or null), got 0"),
    "trace-max-length-zero": _config("trace", TRACE + "max_length: 0\n",
                                     "'max_length' must be >= 1, got 0"),
    "trace-seed-negative": _config("trace", TRACE + "seed: -1\n", "'seed' must be >= 0, got -1"),
    "trace-grid-too-fine": _config("trace", TRACE + "grid: 101\n",
                                   "'grid' must be between 1 and 100, got 101"),
    # moalign trace: the trainer settings under train:
    "trace-train-negative-max-steps": _config("trace", TRACE + "train: {max_steps: -5}\n",
                                              "train: 'max_steps' must be >= 1, got -5"),
    "trace-train-epochs-max-steps": _config("trace", TRACE + "train: {max_steps: -1}\n",
                                            "train: 'max_steps' must be >= 1, got -1"),
    "trace-train-batch-size-zero": _config(
        "trace", TRACE + "train: {per_device_train_batch_size: 0}\n",
        "train: 'per_device_train_batch_size' must be >= 1, got 0"),
    "trace-train-negative-learning-rate": _config(
        "trace", TRACE + "train: {learning_rate: -0.001}\n",
        "train: 'learning_rate' must be >= 0, got -0.001"),
    "trace-train-beta-zero": _config("trace", TRACE + "train: {beta: 0}\n",
                                     "train: 'beta' must be > 0, got 0"),
    "trace-train-accumulation-zero": _config(
        "trace", TRACE + "train: {gradient_accumulation_steps: 0}\n",
        "train: 'gradient_accumulation_steps' must be >= 1, got 0"),
    "trace-train-weight-decay": _config("trace", TRACE + "train: {weight_decay: -0.1}\n",
                                        "train: 'weight_decay' must be >= 0, got -0.1"),
    "trace-train-label-smoothing": _config(
        "trace", TRACE + "train: {label_smoothing: 0.7}\n",
        "train: 'label_smoothing' must be in [0, 0.5), got 0.7"),
    "trace-train-prompt-tokens-zero": _config("trace", TRACE + "train: {max_prompt_tokens: 0}\n",
                                              "train: 'max_prompt_tokens' must be >= 1, got 0"),
    # moalign trace: generation and report settings
    "trace-generation-no-new-tokens": _config(
        "trace", TRACE + "metric: generation\ngeneration: {max_new_tokens: 0}\n",
        "generation: 'max_new_tokens' must be >= 1, got 0"),
    "trace-generation-batch-size-zero": _config(
        "trace", TRACE + "metric: generation\ngeneration: {batch_size: 0}\n",
        "generation: 'batch_size' must be >= 1, got 0"),
    "trace-generation-temperature-zero": _config(
        "trace", TRACE + "metric: generation\ngeneration: {do_sample: true, temperature: 0}\n",
        "generation: 'temperature' must be > 0, got 0"),
    "trace-generation-top-p": _config(
        "trace", TRACE + "metric: generation\ngeneration: {top_p: 1.2}\n",
        "generation: 'top_p' must be in (0, 1], got 1.2"),
    "trace-generation-batch-tokens-zero": _config(
        "trace", TRACE + "metric: generation\ngeneration: {max_batch_tokens: 0}\n",
        "generation: 'max_batch_tokens' must be >= 1 (or null), got 0"),
    "trace-report-n-zero": _config(
        "trace", TRACE + "report: {length: {dataset: gsm8k, n: 0}}\n",
        "report.length: 'n' must be >= 1, got 0"),
    "trace-several-at-once": _config(
        "trace", TRACE + "eval_pairs: 0\ntrain: {max_steps: -2, beta: -1}\n",
        "'eval_pairs' must be >= 1, got 0", "train: 'max_steps' must be >= 1, got -2",
        "train: 'beta' must be > 0, got -1"),
    # moalign train, the DPO family
    "train-negative-max-steps": _config(
        "train", TRAIN + "max_steps: -3\n",
        "'max_steps' must be >= 1 (or -1: train num_train_epochs), got -3"),
    "train-max-steps-zero": _config("train", TRAIN + "max_steps: 0\n", "'max_steps' must be >= 1"),
    "train-beta-negative": _config("train", TRAIN + "beta: -0.1\n", "'beta' must be > 0, got -0.1"),
    "train-learning-rate-nan": _config("train", TRAIN + "learning_rate: .nan\n",
                                       "'learning_rate' must be >= 0, got nan"),
    "train-logging-steps-zero": _config("train", TRAIN + "logging_steps: 0\n",
                                        "'logging_steps' must be > 0, got 0"),
    "train-epochs-zero": _config("train", TRAIN + "max_steps: -1\nnum_train_epochs: 0\n",
                                 "'num_train_epochs' must be > 0, got 0"),
    "train-max-length-zero": _config("train", TRAIN + "max_length: 0\n",
                                     "'max_length' must be >= 1 (or null), got 0"),
    "modpo-beta-zero": _config("train", "trainer: modpo\nmodel: tiny\nbeta: 0\n",
                               "'beta' must be > 0, got 0"),
    # moalign train, the online trainers
    "ppo-batch-size-zero": _config("train", PPO + "batch_size: 0\n",
                                   "'batch_size' must be >= 1, got 0"),
    "ppo-no-new-tokens": _config("train", PPO + "max_new_tokens: 0\n",
                                 "'max_new_tokens' must be >= 1, got 0"),
    "ppo-top-p-above-one": _config("train", PPO + "top_p: 2\n", "'top_p' must be in (0, 1], got 2"),
    "ppo-gamma-above-one": _config("train", PPO + "gamma: 1.5\n",
                                   "'gamma' must be in [0, 1], got 1.5"),
    "ppo-negative-cliprange": _config("train", PPO + "cliprange: -0.2\n",
                                      "'cliprange' must be > 0, got -0.2"),
    "grpo-one-generation": _config("train", GRPO + "num_generations: 1\n",
                                   "'num_generations' must be >= 2 (or null), got 1"),
    "grpo-no-completion-tokens": _config("train", GRPO + "max_completion_length: 0\n",
                                         "'max_completion_length' must be >= 1 (or null), got 0"),
    "grpo-temperature-negative": _config("train", GRPO + "temperature: -1\n",
                                         "'temperature' must be > 0, got -1"),
    # data with nothing to learn
    "train-all-pairs-identical": _data(
        "train", pref_rows(rejected=lambda i: f" a helpful answer {i}"),
        "dataset '{tmp}/d.jsonl': nothing trainable remains", "(chosen == rejected): 12"),
    "train-all-replies-empty": _data("train", pref_rows(chosen="  "),
                                     "dataset '{tmp}/d.jsonl': nothing trainable remains",
                                     "(empty reply): 12"),
    "train-no-pair-labelled": _data(
        "train", pref_rows(pref_helpfulness=0.0, pref_harmlessness=float("nan")),
        "dataset '{tmp}/d.jsonl': nothing trainable remains", "(no label for any objective): 12"),
    "trace-all-pairs-identical": _data(
        "trace", pref_rows(chosen=" same", rejected=" same"),
        "dataset '{tmp}/d.jsonl': nothing trainable remains", "(chosen == rejected): 12"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_out_of_range_or_empty_is_refused_in_seconds(case, cli, tmp_path, no_model_load):
    start = time.perf_counter()
    run_cli_case(case, cli, tmp_path)
    assert time.perf_counter() - start < BOUND


def test_partly_degenerate_data_is_reported_and_trains_on_the_rest(cli, tmp_path, capsys,
                                                                  no_model_load):
    """Three identical pairs are dropped with a counted reason; the other nine go on to the
    model (which the test forbids, so that is how far the run gets)."""
    rows = pref_rows(rejected=lambda i: f" a helpful answer {i}" if i < 3 else " no.")
    (tmp_path / "d.jsonl").write_text(jsonl(rows))
    with pytest.raises(ModelLoaded):
        cli("train", "--model", "tiny", "--dataset", tmp_path / "d.jsonl",
            "--output_dir", tmp_path / "out")
    err = capsys.readouterr().err
    assert "12 rows in, 9 converted" in err and "chosen == rejected): 3" in err, err


API = [
    ("dpo-max-steps", "moalign.trainers.dpo", "MultiObjectiveDPOConfig",
     dict(objectives=["a"], max_steps=-5, output_dir="unused", report_to="none"),
     "'max_steps' must be >= 1 \\(or -1: train num_train_epochs\\), got -5"),
    ("grpo-generations", "moalign.trainers.grpo", "MultiObjectiveGRPOConfig",
     dict(num_generations=1, output_dir="unused", report_to="none"),
     "'num_generations' must be >= 2"),
    ("ppo-mini-batch", "moalign.trainers.ppo", "MultiObjectivePPOConfig",
     dict(mini_batch_size=0), "'mini_batch_size' must be >= 1, got 0"),
    ("front-eval-pairs", "moalign.fronts.config", "FrontConfig", dict(eval_pairs=0),
     "'eval_pairs' must be >= 1, got 0"),
]


@pytest.mark.parametrize("module, name, kwargs, match", [a[1:] for a in API],
                         ids=[a[0] for a in API])
def test_config_objects_refuse_out_of_range_values(module, name, kwargs, match):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)


def test_range_messages():
    from moalign.config.checking import Range, range_problems

    ranges = {"a": Range(low=1, also=(-1,), note="epochs"), "b": Range(low=0, high=1,
              high_open=True), "c": Range(low=0, none=True), "d": Range(high=5, high_open=True)}
    assert range_problems({"a": -1, "b": 0.5, "c": None, "d": 4}, ranges) == []
    assert range_problems({"a": 0, "b": 1, "d": 5, "c": "x"}, ranges, prefix="p: ") == [
        "p: 'a' must be >= 1 (or -1: epochs), got 0", "p: 'b' must be in [0, 1), got 1",
        "p: 'd' must be < 5, got 5"]
    assert range_problems({"a": True, "c": float("inf")}, ranges) == [
        "'c' must be >= 0 (or null), got inf"]
