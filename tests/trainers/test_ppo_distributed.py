"""MO-PPO's per-process sampling streams, without launching processes.

A process is simulated by the ``process_index`` its ``Accelerator`` reports while the trainer is
built (the one moment the trainer reads it to pick its stream); the rollouts that follow run as
the single real process. The stream is the global torch RNG, so each simulated process samples
right after it is built. The 1 vs 2 process equality of the batch statistics (whitening,
normalizers, multipliers) is checked with real processes by ``scripts/dist_check.py``
(``tests/project/test_distributed.py``).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("accelerate")

from accelerate import Accelerator  # noqa: E402

from moalign.objective import Objective  # noqa: E402
from moalign.trainers import ppo  # noqa: E402
from moalign.trainers.ppo_distributed import sampling_seed, seed_sampling  # noqa: E402

PROMPT = "Say something:"


class Length(Objective):
    name = "length"

    def score(self, prompts, completions, **columns):
        return [float(len(str(c))) for c in completions]


def _trainer(tmp_path, process_index: int, monkeypatch, seed: int = 3):
    """A LoRA MO-PPO trainer built as process ``process_index`` would build it."""
    from peft import LoraConfig

    from moalign.models import tiny_causal_lm

    model, tok = tiny_causal_lm(0)
    args = ppo.MultiObjectivePPOConfig(
        output_dir=str(tmp_path / f"rank{process_index}"), max_steps=1, use_cpu=True, seed=seed,
        batch_size=4, max_new_tokens=8, mini_batch_size=4, ppo_epochs=1, save_final=False,
        generation_kwargs={"suppress_tokens": [tok.eos_token_id]})
    lora = LoraConfig(task_type="CAUSAL_LM", r=2, lora_alpha=4, lora_dropout=0.0,
                      target_modules=["q_proj", "v_proj"])
    with monkeypatch.context() as m:
        m.setattr(Accelerator, "process_index", property(lambda self: process_index))
        trainer = ppo.MultiObjectivePPOTrainer(model, [Length()], args,
                                               train_dataset=[{"prompt": PROMPT}] * 4,
                                               processing_class=tok, peft_config=lora)
    return trainer


def _responses(trainer) -> list[list[int]]:
    rollout = trainer.rollout()
    assert rollout.prompts == [PROMPT] * 4
    return rollout.response_ids.tolist()


def _parameters(trainer) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.clone() for name in ("policy", "critic")
            for k, v in getattr(trainer, name).state_dict().items()}


def test_sampling_seed_is_per_process_and_reproducible():
    assert sampling_seed(7, 0) == 7  # process 0 keeps the run's stream
    seeds = [sampling_seed(7, r) for r in range(64)]
    assert len(set(seeds)) == 64
    assert seeds == [sampling_seed(7, r) for r in range(64)]
    assert all(0 <= s < 2**63 for s in seeds)
    # not seed + rank: process 1 of seed 0 does not replay process 0 of seed 1
    assert sampling_seed(0, 1) != sampling_seed(1, 0)
    assert sampling_seed(0, 1) != sampling_seed(1, 1)
    with pytest.raises(ValueError, match="process_index"):
        sampling_seed(0, -1)


def test_seed_sampling_leaves_process_0_alone_and_moves_the_others():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert seed_sampling(5, 0) == 5
    assert torch.equal(torch.get_rng_state(), state)
    seed_sampling(5, 1)
    first = torch.rand(3)
    seed_sampling(5, 1)
    assert torch.equal(torch.rand(3), first)
    torch.manual_seed(sampling_seed(5, 1))
    assert torch.equal(torch.rand(3), first)


def test_two_processes_draw_different_responses_to_the_same_prompt(tmp_path, monkeypatch):
    # one real process holds one global RNG: each simulated process samples right after it
    # is built, before the next one is
    rank0 = _trainer(tmp_path, 0, monkeypatch)
    r0 = _responses(rank0)
    rank1 = _trainer(tmp_path, 1, monkeypatch)
    r1 = _responses(rank1)
    # the models are built alike on every process (LoRA adapter and value heads included)
    a, b = _parameters(rank0), _parameters(rank1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len({tuple(r) for r in r0}) == 4  # really sampled
    assert all(x != y for x, y in zip(r0, r1))
    # the same seed and process give the same responses again
    assert _responses(_trainer(tmp_path, 0, monkeypatch)) == r0
    assert _responses(_trainer(tmp_path, 1, monkeypatch)) == r1
    # a different run seed moves process 1 too
    assert _responses(_trainer(tmp_path, 1, monkeypatch, seed=4)) != r1


def test_without_per_process_seeds_both_processes_draw_the_same(tmp_path, monkeypatch):
    """Negative control: every process on the stream of ``set_seed(seed)`` (the behaviour
    before per-process seeds) duplicates the responses, which the test above would catch."""
    monkeypatch.setattr(ppo, "seed_sampling", lambda seed, process_index: seed)
    assert _responses(_trainer(tmp_path, 1, monkeypatch)) == \
        _responses(_trainer(tmp_path, 0, monkeypatch))


def test_a_checkpoint_restores_the_stream_of_its_process(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, 1, monkeypatch)
    _responses(trainer)
    path = trainer.save_checkpoint(tmp_path / "checkpoint")
    after = _responses(trainer)
    restored = _trainer(tmp_path, 0, monkeypatch)  # built with another stream
    assert _responses(restored) != after
    restored.load_checkpoint(path)
    assert _responses(restored) == after
