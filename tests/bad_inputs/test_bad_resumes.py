"""Resuming an unfinished ``moalign train`` run with another configuration.

The unfinished run is built without training: a complete-looking ``checkpoint-2`` (an empty
safetensors file, a trainer state) and the ``run_config.json`` that ``moalign train`` writes beside
its checkpoints, made from the run's configuration by the same :func:`run_identity`. Each case
resumes it with one thing changed and must be refused before any model loads, naming every
changed key with its recorded and its new value, and the two ways out.
"""

from __future__ import annotations

import json
import struct
import time

import pytest

from tests.support.corpus import run_cli_case

BASE = ("trainer: mo_dpo\nmodel: tiny\nweights: [0.3, 0.7]\nlora: {r: 4, alpha: 8}\n"
        "max_examples: 8\nsave_strategy: steps\nsave_steps: 1\nbeta: 0.1\n")
CHECKPOINT = {
    "out/trainer/checkpoint-2/model.safetensors": struct.pack("<Q", 2) + b"{}",
    "out/trainer/checkpoint-2/trainer_state.json": json.dumps({"global_step": 2}),
    "out/trainer/checkpoint-2/moalign_state.json": "{}",
}
WAYS_OUT = "set overwrite: true (with resume: false or auto) to start it over, or choose another output_dir"


def _identity(tmp) -> str:
    import yaml

    from moalign.workflows.train_config import resolve_train_config, run_identity

    resolved = resolve_train_config({**yaml.safe_load(BASE), "output_dir": str(tmp / "out")})
    return json.dumps(run_identity(resolved.run, resolved.args))


CASES = {
    "weights": (["--weights", "[0.5,0.5]"], ["weights: [0.3, 0.7] -> [0.5, 0.5]"]),
    "trainer": (["--trainer", "conditioned_dpo", "--weights", "null"],
                ['trainer: "mo_dpo" -> "conditioned_dpo"', "weights: [0.3, 0.7] -> null"]),
    "lora-rank": (["--lora.r", "8"], ["lora.r: 4 -> 8"]),
    "lora-alpha": (["--lora.alpha", "16"], ["lora.lora_alpha: 8 -> 16"]),
    "lora-off": (["--lora", "null"], ["lora: {"]),
    "dataset": (["--dataset", "hh-rlhf/helpful-base", "--objectives", "[helpfulness]",
                 "--weights", "[1]"],
                ['dataset: "hh-rlhf" -> "hh-rlhf/helpful-base"',
                 'objectives: ["helpfulness", "harmlessness"] -> ["helpfulness"]']),
    "seed": (["--seed", "3"], ["seed: 42 -> 3"]),
    "beta": (["--beta", "0.5"], ["beta: 0.1 -> 0.5"]),
    "max-examples": (["--max_examples", "16"], ["max_examples: 8 -> 16"]),
    "learning-rate-and-weights": (["--learning_rate", "0.01", "--weights", "[1,0]"],
                                  ["learning_rate: ", " -> 0.01", "weights: [0.3, 0.7] -> [1.0, 0.0]"]),
}


@pytest.mark.parametrize("resume", ["true", "auto"])
@pytest.mark.parametrize("change", CASES.values(), ids=CASES.keys())
def test_resume_with_another_configuration_is_refused(change, resume, cli, tmp_path,
                                                      no_model_load):
    argv, expect = change
    files = {**CHECKPOINT, "c.yaml": BASE, "out/trainer/run_config.json": _identity(tmp_path)}
    start = time.perf_counter()
    result = run_cli_case({"argv": ["train", "--config", "{tmp}/c.yaml", "--output_dir",
                                    "{tmp}/out", "--resume", resume, *argv],
                           "files": files,
                           "expect": ["'resume': the run in '{tmp}/out' was trained with another "
                                      "configuration (", *expect, WAYS_OUT]}, cli, tmp_path)
    assert time.perf_counter() - start < 10
    assert "progress" not in result.err and "output_dir:" not in result.err  # cosmetic keys


def test_a_damaged_run_record_is_named(cli, tmp_path, no_model_load):
    run_cli_case({"argv": ["train", "--config", "{tmp}/c.yaml", "--output_dir", "{tmp}/out",
                           "--resume", "true"],
                  "files": {**CHECKPOINT, "c.yaml": BASE, "out/trainer/run_config.json": '{"trai'},
                  "expect": ["'resume': ", "{tmp}/out/trainer/run_config.json"]}, cli, tmp_path)


def test_the_same_configuration_passes_the_check(tmp_path):
    """Cosmetic keys (progress, logging) may change, and a LoRA option may be spelled out; the
    check then passes."""
    import yaml

    from moalign.workflows.train_config import resolve_train_config

    identity = _identity(tmp_path)
    (tmp_path / "out" / "trainer" / "checkpoint-2").mkdir(parents=True)
    for name, content in CHECKPOINT.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    (tmp_path / "out" / "trainer" / "run_config.json").write_text(identity)
    data = {**yaml.safe_load(BASE), "output_dir": str(tmp_path / "out"), "resume": True,
            "progress": False, "logging_steps": 7, "save_steps": 3,
            "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.05}}
    resolved = resolve_train_config(data)
    assert resolved.resume_from == str(tmp_path / "out" / "trainer" / "checkpoint-2")
