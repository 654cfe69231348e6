"""Every example config runs: on the tiny model, for one or two steps, through the CLI a user
types (``moalign train / trace --config examples/configs/<name>.yaml``).

Objectives scored by a reward model (helpfulness / harmlessness) find tiny random reward models
where ``moalign reward`` would have put trained ones (``$MOALIGN_CACHE/reward-models/<name>``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moalign.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"
TRAIN = ["mo_dpo.yaml", "conditioned_dpo.yaml", "modpo.yaml", "grpo_gsm8k.yaml",
         "ppo_constrained.yaml"]
TRACE = ["trace_tiny.yaml", "trace_soup.yaml"]
#: fronts traced with an RL trainer, and the overrides that keep them to seconds on tiny
RL_TRACE = {"trace_grpo_sweep.yaml": ["--train.max_completion_length", "8"],
            "trace_grpo_soup.yaml": ["--train.max_completion_length", "8"],
            "trace_conditioned_grpo.yaml": ["--train.max_completion_length", "8"],
            "trace_ppo_lagrangian.yaml": ["--train.max_new_tokens", "8"]}
UF_ROWS = [{"instruction": f"Explain {w}.", "completions": [
    {"response": f"{w} is explained well.", "annotations": {
        "helpfulness": {"Rating": "5"}, "honesty": {"Rating": str(2 + i % 3)}}},
    {"response": "No idea.", "annotations": {
        "helpfulness": {"Rating": "1"}, "honesty": {"Rating": "3"}}}]}
    for i, w in enumerate(["rain", "wind", "snow", "tides", "stars", "clouds", "fog", "hail"])]


@pytest.fixture(autouse=True)
def reward_models(tmp_path_factory, monkeypatch):
    """Tiny random reward models for the helpfulness / harmlessness objectives."""
    from moalign.models import tiny_reward_model

    cache = tmp_path_factory.getbasetemp() / "reward-cache"
    for i, name in enumerate(("helpfulness", "harmlessness")):
        folder = cache / "reward-models" / name
        if not folder.is_dir():
            model, tok = tiny_reward_model(seed=i)
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
    monkeypatch.setenv("MOALIGN_CACHE", str(cache))


def test_every_example_is_covered():
    covered = {*TRAIN, *TRACE, *RL_TRACE, "mo_dpo_ultrafeedback.yaml", "ppo_constrained.yaml", "sft.yaml",
               "reward_helpfulness.yaml", "reward_harmlessness.yaml", "trace_pku.yaml"}
    assert {p.name for p in EXAMPLES.glob("*.yaml")} <= covered


def _train(config: Path, out: Path, *extra: str) -> dict:
    rc = main(["train", "--config", str(config), "--model", "tiny", "--output_dir", str(out),
               "--max_steps", "1", "--max_examples", "8", "--quiet", *extra])
    assert rc == 0
    return json.loads((out / "train.json").read_text())


@pytest.mark.parametrize("name", TRAIN)
def test_train_example_runs_on_the_tiny_model(name, tmp_path):
    record = _train(EXAMPLES / name, tmp_path / "out")
    assert record["steps"] == 1


def test_ultrafeedback_example_runs_from_a_local_copy(tmp_path):
    data = tmp_path / "ultrafeedback.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in UF_ROWS))
    record = _train(EXAMPLES / "mo_dpo_ultrafeedback.yaml", tmp_path / "out",
                    "--dataset.source", str(data), "--test_size", "0.25")
    assert record["steps"] == 1 and record["objectives"] == ["helpfulness", "honesty"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TRACE)
def test_trace_example_runs_on_the_tiny_model(name, tmp_path):
    out = tmp_path / "front"
    rc = main(["trace", "--config", str(EXAMPLES / name), "--model", "tiny", "--output_dir",
               str(out), "--grid", "1", "--train.max_steps", "1", "--train_pairs", "8",
               "--eval_pairs", "8", "--quiet"])
    assert rc == 0
    assert len(json.loads((out / "front.json").read_text())["points"]) == 2


PKU_ROWS = [{"prompt": f"Question {i}?", "response_0": f"A careful answer {i}.",
             "response_1": f"A risky answer {i}.", "better_response_id": i % 2,
             "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": i % 3 == 0}
            for i in range(24)]


@pytest.mark.slow
def test_pku_front_example_traces_from_a_local_copy(tmp_path):
    data = tmp_path / "pku.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in PKU_ROWS))
    out = tmp_path / "front"
    rc = main(["trace", "--config", str(EXAMPLES / "trace_pku.yaml"), "--model", "tiny",
               "--dataset.source", str(data), "--output_dir", str(out), "--grid", "1",
               "--train.max_steps", "1", "--train_pairs", "8", "--eval_pairs", "4", "--quiet"])
    assert rc == 0
    front = json.loads((out / "front.json").read_text())
    assert front["metadata"]["dataset"]["adapter"] == "pku-saferlhf" and len(front["points"]) == 2


def test_pku_front_example_with_its_hub_id_offline_fails_fast(tmp_path, monkeypatch, capsys):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    rc = main(["trace", "--config", str(EXAMPLES / "trace_pku.yaml"), "--model", "tiny",
               "--output_dir", str(tmp_path / "front")])
    err = capsys.readouterr().err
    assert rc != 0 and "offline" in err and "local copy" in err and "Traceback" not in err
    assert time.perf_counter() - start < 10 and not (tmp_path / "front").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RL_TRACE))
def test_rl_trace_example_runs_on_the_tiny_model(name, tmp_path):
    from moalign.config import load_yaml

    out = tmp_path / "front"
    rc = main(["trace", "--config", str(EXAMPLES / name), "--model", "tiny", "--output_dir",
               str(out), "--grid", "1", "--train.max_steps", "1", "--train_pairs", "8",
               "--eval_prompts", "4", "--generation.max_new_tokens", "8", "--quiet",
               *RL_TRACE[name]])
    assert rc == 0
    front = json.loads((out / "front.json").read_text())
    given = load_yaml(EXAMPLES / name)
    assert front["metadata"]["trainer"] == given["trainer"] and front["method"] == given["method"]
    assert len(front["points"]) == len(given.get("weights") or [0, 0])
