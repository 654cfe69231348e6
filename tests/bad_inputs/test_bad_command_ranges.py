"""Numbers out of range in ``moalign eval``, ``moalign sft`` and ``moalign reward`` files, and bad
``resume`` values of ``moalign train`` / ``moalign sft``, refused when the config is read.

Each case runs the command with every model loader forbidden and checks what every bad-input case
checks (exit code 2, the offending key named with its allowed range, no traceback, nothing
finished-looking left behind), plus a time bound: the refusal comes in seconds, before any work.
"""

from __future__ import annotations

import json
import struct
import time

import pytest

from tests.support.corpus import run_cli_case

#: Seconds within which a bad value must be refused (the imports included).
BOUND = 10.0

EVAL = "model: tiny\ndataset: gsm8k\nobjectives: [length]\n"
TRAIN = "trainer: mo_dpo\nmodel: tiny\n"
#: A checkpoint folder that passes the checks of a complete one (an empty safetensors file).
CHECKPOINT = {
    "model.safetensors": struct.pack("<Q", 2) + b"{}",
    "trainer_state.json": json.dumps({"global_step": 2}),
    "moalign_state.json": "{}",
}


def _case(command: str, yaml: str, *expect: str, files: dict | None = None) -> dict:
    out = ["--output", "{tmp}/out/eval.json"] if command == "eval" else ["--output_dir", "{tmp}/out"]
    return {"argv": [command, "--config", "{tmp}/c.yaml", *out],
            "files": {"c.yaml": yaml, **(files or {})}, "expect": list(expect)}


def _checkpoint(folder: str) -> dict:
    return {f"{folder}/{name}": content for name, content in CHECKPOINT.items()}


CASES = {
    # moalign eval
    "eval-n-zero": _case("eval", EVAL + "n: 0\n", "'n' must be >= 1, got 0"),
    "eval-beta-zero": _case("eval", EVAL + "beta: 0\n", "'beta' must be > 0, got 0"),
    "eval-batch-size-zero": _case("eval", EVAL + "batch_size: 0\n",
                                  "'batch_size' must be >= 1, got 0"),
    "eval-max-length-negative": _case("eval", EVAL + "max_length: -8\n",
                                      "'max_length' must be >= 1, got -8"),
    "eval-prompt-tokens-zero": _case("eval", EVAL + "max_prompt_tokens: 0\n",
                                     "'max_prompt_tokens' must be >= 1, got 0"),
    "eval-seed-negative": _case("eval", EVAL + "seed: -1\n", "'seed' must be >= 0, got -1"),
    "eval-test-size-one": _case("eval", EVAL + "test_size: 1\n",
                                "'test_size' must be in (0, 1), got 1"),
    "eval-generation-no-new-tokens": _case(
        "eval", EVAL + "generation: {max_new_tokens: 0}\n",
        "generation: 'max_new_tokens' must be >= 1, got 0"),
    "eval-generation-batch-size-zero": _case("eval", EVAL + "generation: {batch_size: 0}\n",
                                             "generation: 'batch_size' must be >= 1, got 0"),
    "eval-generation-temperature-negative": _case(
        "eval", EVAL + "generation: {do_sample: true, temperature: -0.5}\n",
        "generation: 'temperature' must be > 0, got -0.5"),
    "eval-generation-top-p-zero": _case("eval", EVAL + "generation: {top_p: 0}\n",
                                        "generation: 'top_p' must be in (0, 1], got 0"),
    "eval-generation-batch-tokens-zero": _case(
        "eval", EVAL + "generation: {max_batch_tokens: 0}\n",
        "generation: 'max_batch_tokens' must be >= 1 (or null), got 0"),
    "eval-generation-seed-negative": _case("eval", EVAL + "generation: {seed: -3}\n",
                                           "generation: 'seed' must be >= 0, got -3"),
    # moalign sft
    "sft-negative-max-steps": _case(
        "sft", "max_steps: -3\n", "'max_steps' must be >= 1 (or -1: train num_train_epochs), got -3"),
    "sft-learning-rate-zero": _case("sft", "learning_rate: 0\n",
                                    "'learning_rate' must be > 0, got 0"),
    "sft-epochs-zero": _case("sft", "max_steps: -1\nnum_train_epochs: 0\n",
                             "'num_train_epochs' must be > 0, got 0"),
    "sft-seed-negative": _case("sft", "seed: -2\n", "'seed' must be >= 0, got -2"),
    "sft-save-steps-negative": _case("sft", "save_steps: -1\n", "'save_steps' must be >= 0, got -1"),
    "sft-lora-dropout-one": _case("sft", "lora_dropout: 1\n", "'lora_dropout' must be in [0, 1), got 1"),
    "sft-max-length-one": _case("sft", "max_length: 1\nmax_prompt_tokens: null\n",
                                "'max_length' must be >= 2 (or null), got 1"),
    "sft-resume-without-checkpoint": _case(
        "sft", "resume: true\n", "'resume: true': no complete checkpoint in '{tmp}/out/trainer'"),
    "sft-resume-missing-folder": _case(
        "sft", "resume: '{tmp}/nope'\n", "'resume': checkpoint '{tmp}/nope' does not exist"),
    "sft-unfinished-without-resume": _case(
        "sft", "save_steps: 2\n",
        "'output_dir': '{tmp}/out' holds an unfinished run (newest complete checkpoint: "
        "checkpoint-2); set resume: true", files=_checkpoint("out/trainer/checkpoint-2")),
    # moalign reward
    "reward-negative-max-steps": _case(
        "reward", "method: full\nmax_steps: -4\n",
        "'max_steps' must be >= 1 (or -1: train num_train_epochs), got -4"),
    "reward-one-fold": _case("reward", "cv_folds: 1\n", "'cv_folds' must be >= 2, got 1"),
    "reward-seed-negative": _case("reward", "seed: -1\n", "'seed' must be >= 0, got -1"),
    "reward-batch-size-zero": _case("reward", "batch_size: 0\n", "'batch_size' must be >= 1, got 0"),
    "reward-l2-negative": _case("reward", "l2: -1\n", "'l2' must be > 0 (or null), got -1"),
    "reward-one-train-pair": _case("reward", "max_train_pairs: 1\n",
                                   "'max_train_pairs' must be >= 2 (or null), got 1"),
    "reward-epochs-negative": _case("reward", "method: lora\nnum_train_epochs: -1\n",
                                    "'num_train_epochs' must be > 0, got -1"),
    # moalign train: resume
    "train-resume-without-checkpoint": _case(
        "train", TRAIN + "resume: true\n",
        "'resume: true': no complete checkpoint in '{tmp}/out/trainer'"),
    "train-resume-damaged-folder": _case(
        "train", TRAIN + "resume: '{tmp}/ckpt'\n", "'resume': checkpoint '{tmp}/ckpt' is incomplete",
        files={"ckpt/model.safetensors": CHECKPOINT["model.safetensors"]}),
    "train-resume-and-overwrite": _case(
        "train", TRAIN + "resume: true\noverwrite: true\n",
        "'resume' continues an unfinished run and 'overwrite: true' starts it over"),
    "train-resume-a-finished-run": _case(
        "train", TRAIN + "resume: true\n", "'resume': '{tmp}/out' is a finished run",
        files={"out/train.json": "{}"}),
    "train-resume-empty": _case("train", TRAIN + "resume: ''\n",
                                "'resume' must be true, false, auto or a checkpoint folder, got ''"),
    "train-resume-foreign-checkpoint": _case(
        "train", TRAIN + "resume: '{tmp}/ckpt'\n",
        "'resume': '{tmp}/ckpt' is not a checkpoint of the unfinished run in '{tmp}/out'",
        files={**_checkpoint("ckpt"), **_checkpoint("out/trainer/checkpoint-2")}),
    "train-unfinished-without-resume": _case(
        "train", TRAIN,
        "'output_dir': '{tmp}/out' holds an unfinished run (newest complete checkpoint: "
        "checkpoint-2); set resume: true", files=_checkpoint("out/trainer/checkpoint-2")),
    "train-resume-auto-in-a-foreign-folder": _case(
        "train", TRAIN + "resume: auto\n",
        "'output_dir': '{tmp}/out' is a non-empty folder that was not written by moalign train",
        files={"out/notes.txt": "keep me"}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_out_of_range_or_bad_resume_is_refused_in_seconds(case, cli, tmp_path, no_model_load):
    start = time.perf_counter()
    run_cli_case(case, cli, tmp_path)
    assert time.perf_counter() - start < BOUND
