"""``moalign sft``: configuration, data formats and a few TRL SFTTrainer steps on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from moalign.errors import ConfigError, DataError
from moalign.trainers.sft import SFTTrainingConfig, load_sft_dataset, train_sft


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from moalign.models import tiny_causal_lm

    folder = tmp_path_factory.mktemp("tiny-lm")
    model, tok = tiny_causal_lm(seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


PROMPT_COMPLETION = [
    {"prompt": [{"role": "user", "content": f"count to {i}"}],
     "completion": [{"role": "assistant", "content": " ".join(str(k) for k in range(1, i + 2))}]}
    for i in range(12)
]


def test_cli_sft_runs_steps_and_checkpoint_reloads_with_transformers(tiny_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from moalign.cli import main

    data = _jsonl(tmp_path / "sft.jsonl", PROMPT_COMPLETION)
    config = tmp_path / "sft.yaml"
    config.write_text(f"model: {tiny_dir}\ndataset: {data}\noutput_dir: {tmp_path / 'out'}\n"
                      "lora: false\nmax_steps: 50\nlearning_rate: 0.01\nbatch_size: 4\n"
                      "logging_steps: 1\n")
    code = main(["sft", "--config", str(config), "--max-steps", "6", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "train loss" in capsys.readouterr().out
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and len(metrics["loss_history"]) == 6
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]  # it learned something
    trained = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    w_new = trained.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(w_new, base.model.layers[0].self_attn.q_proj.weight)


def test_lora_is_merged_into_a_plain_checkpoint(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = _jsonl(tmp_path / "sft.jsonl", PROMPT_COMPLETION)
    result = train_sft(dict(model=tiny_dir, dataset=data, output_dir=str(tmp_path / "out"),
                            lora=True, lora_target_modules=["q_proj", "v_proj"], max_steps=3,
                            learning_rate=0.05, batch_size=4))
    assert result.steps == 3
    assert not (result.output_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(result.output_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    q_new = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_new, base.model.layers[0].self_attn.q_proj.weight)
    # LoRA touched only its targets
    assert torch.equal(merged.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    tok = AutoTokenizer.from_pretrained(result.output_dir)
    assert tok.chat_template


def test_long_prompts_keep_their_end_so_completions_survive(tiny_dir, tmp_path):
    long = [{"prompt": [{"role": "user", "content": "old turn " * 40},
                        {"role": "assistant", "content": "ok"},
                        {"role": "user", "content": "last question?"}],
             "completion": [{"role": "assistant", "content": "the answer"}]}] * 4
    data = _jsonl(tmp_path / "long.jsonl", long)
    result = train_sft(dict(model=tiny_dir, dataset=data, output_dir=str(tmp_path / "out"),
                            lora=False, max_steps=1, max_length=96, max_prompt_tokens=64,
                            batch_size=2))
    assert result.metrics["prompts_shortened"] == 4
    assert result.steps == 1 and result.train_loss > 0  # the completion tokens were trained on


@pytest.mark.slow
def test_bundled_hh_rlhf_gives_chosen_replies_as_targets():
    from moalign.data import load_hh_rlhf

    ds = load_sft_dataset("hh-rlhf/helpful-base")
    ref = load_hh_rlhf("helpful-base").dataset
    assert ds.column_names == ["prompt", "completion"] and len(ds) == len(ref)
    for i in (0, 17, len(ds) - 1):
        assert ds[i]["prompt"] == ref[i]["prompt"]
        assert ds[i]["completion"] == ref[i]["chosen"]
    assert len(load_sft_dataset("hh-rlhf", max_examples=50)) == 50


def test_other_formats_and_missing_columns(tmp_path):
    msgs = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
             "extra": 1}]
    assert load_sft_dataset(_jsonl(tmp_path / "m.jsonl", msgs)).column_names == ["messages"]
    assert load_sft_dataset(_jsonl(tmp_path / "t.jsonl", [{"text": "abc"}])).column_names == ["text"]
    with pytest.raises(DataError, match="columns: answer, question"):
        load_sft_dataset(_jsonl(tmp_path / "q.jsonl", [{"question": "1+1", "answer": "2"}]))


def test_config_problems_are_reported_together(tiny_dir, tmp_path):
    from moalign.config import load_command_config

    existing = tmp_path / "exists"
    existing.mkdir()
    config = tmp_path / "sft.yaml"
    config.write_text(f"max_step: 3\nlearning_rate: fast\nmodel: {tmp_path / 'nope'}\n"
                      f"dataset: {tmp_path / 'nope.jsonl'}\noutput_dir: {existing}\n")
    with pytest.raises(ConfigError) as err:
        load_command_config(SFTTrainingConfig, str(config), {"lora_r": 0})
    text = str(err.value)
    assert "did you mean 'max_steps'" in text
    assert "'learning_rate' must be float" in text
    assert "nope' does not exist" in text and "nope.jsonl" in text
    assert "already exists" in text and "'lora_r' must be >= 1" in text
    assert len(err.value.problems) == 6
    # the same checks guard the library entry point
    with pytest.raises(ConfigError, match="max_steps"):
        SFTTrainingConfig(model=tiny_dir, max_steps=0)


#: Runs ``moalign sft`` and dies by SIGKILL once checkpoint ``KILL_AT`` is completely written.
KILLED_SFT = """
import os, signal, sys
from transformers.trainer_callback import TrainerState
save = TrainerState.save_to_json
def save_then_die(self, path):
    save(self, path)
    if self.global_step == int(os.environ["KILL_AT"]) and "checkpoint-" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
TrainerState.save_to_json = save_then_die
from moalign.cli import main
sys.exit(main(["sft", "--config", sys.argv[1], "--quiet"]))
"""


@pytest.mark.slow
def test_a_killed_sft_resumes_from_its_last_complete_checkpoint(tiny_dir, tmp_path, caplog):
    """Killed after checkpoint 2, with a half-written checkpoint-3 beside it (no
    trainer_state.json, weights cut short): ``resume: true`` continues from checkpoint 2 and
    ends with the losses and weights of an uninterrupted run."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    from moalign.cli import main

    data = _jsonl(tmp_path / "sft.jsonl", PROMPT_COMPLETION)
    body = (f"model: {tiny_dir}\ndataset: {data}\nlora: false\nmax_steps: 4\nsave_steps: 1\n"
            "learning_rate: 0.01\nbatch_size: 2\nlogging_steps: 1\n")
    for name in ("killed", "reference"):
        (tmp_path / f"{name}.yaml").write_text(body + f"output_dir: {tmp_path / name}\n")
    env = {**os.environ, "KILL_AT": "2", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_SFT, str(tmp_path / "killed.yaml")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    checkpoints = tmp_path / "killed" / "trainer"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-1",
                                                                      "checkpoint-2"]
    half = checkpoints / "checkpoint-3"
    shutil.copytree(checkpoints / "checkpoint-2", half)
    (half / "trainer_state.json").unlink()
    weights = half / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    torch.set_num_threads(1)
    assert main(["sft", "--config", str(tmp_path / "reference.yaml"), "--quiet"]) == 0
    with pytest.raises(ConfigError, match="set resume: true to continue it"):
        SFTTrainingConfig(model=tiny_dir, dataset=data, output_dir=str(tmp_path / "killed"))
    assert main(["sft", "--config", str(tmp_path / "killed.yaml"), "--resume", "true",
                 "--quiet"]) == 0
    assert "skipping checkpoint" in caplog.text and "checkpoint-3" in caplog.text
    got = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert got["resumed_from"] == str(checkpoints / "checkpoint-2")
    assert got["steps"] == want["steps"] == 4
    assert got["loss_history"] == pytest.approx(want["loss_history"], abs=1e-6)
    a = load_file(tmp_path / "killed" / "model.safetensors")
    b = load_file(tmp_path / "reference" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in b) < 1e-6
    assert (tmp_path / "killed" / "trainer" / "checkpoint-4" / "trainer_state.json").is_file()
    with pytest.raises(ConfigError, match="is a finished run"):
        SFTTrainingConfig(model=tiny_dir, dataset=data, output_dir=str(tmp_path / "killed"),
                          resume=True)
