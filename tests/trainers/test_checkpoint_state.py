"""Every trainer keeps its own checkpoint state through the one mechanism,
:mod:`moalign.trainers.checkpoint_state`: each state file of a checkpoint holds the bytes
``save_state`` wrote, and a resume reads each one through ``load_state``. A trainer that writes or
reads its state another way is caught by the same checks (the negative controls)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")

import moalign.trainers.checkpoint_state as mechanism  # noqa: E402
from moalign.errors import CheckpointError  # noqa: E402
from moalign.storage import readers  # noqa: E402
from moalign.trainers.checkpoint_state import load_state, save_state  # noqa: E402
from tests.support import rl_bandit as bandit  # noqa: E402
from tests.support.dpo_testkit import conflicting_pairs, cpu_args, tiny_pair  # noqa: E402


class Spy:
    """Records what goes through the mechanism's writer and reader, as the mechanism calls
    them: the bytes of each state file it wrote (the last one of each name) and the names of the
    files it read."""

    def __init__(self, monkeypatch):
        self.written: dict[str, bytes] = {}
        self.read: list[str] = []
        for name in ("atomic_write_json", "atomic_write_bytes"):
            monkeypatch.setattr(mechanism, name, self._writer(getattr(mechanism, name)))
        monkeypatch.setattr(mechanism, "readers", SimpleNamespace(
            read_json=self._reader(readers.read_json), torch_load=self._reader(readers.torch_load)))

    def _writer(self, write):
        def spied(path, *args, **kwargs):
            out = write(path, *args, **kwargs)
            self.written[Path(path).name] = Path(path).read_bytes()
            return out
        return spied

    def _reader(self, read):
        def spied(path, *args, **kwargs):
            self.read.append(Path(path).name)
            return read(path, *args, **kwargs)
        return spied

    def not_written(self, folder: Path, names) -> list[str]:
        """State files of ``folder`` that are not what the mechanism wrote."""
        return [n for n in names if self.written.get(n) != (folder / n).read_bytes()]

    def not_read(self, names) -> list[str]:
        return [n for n in names if n not in self.read]


# ------------------------------------------------------------------ the trainers


def _mo_dpo(folder, steps, cls=None):
    from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    model, ref, tok = tiny_pair(0)
    args = MultiObjectiveDPOConfig(**cpu_args(folder, max_steps=steps, save_strategy="steps",
                                              save_steps=1), objectives=["a", "b"],
                                   schedule={"name": "anneal", "start": [1.0, 0.0],
                                             "end": [0.0, 1.0], "steps": 10})
    return (cls or MultiObjectiveDPOTrainer)(model, ref, args=args,
                                             train_dataset=conflicting_pairs(16),
                                             processing_class=tok)


def _modpo(folder, steps):
    from moalign.trainers import MODPOConfig, MODPOTrainer

    model, ref, tok = tiny_pair(0)
    data = conflicting_pairs(16).add_column("margin_b", [0.5] * 16)
    args = MODPOConfig(**cpu_args(folder, max_steps=steps, save_strategy="steps", save_steps=1),
                       objectives=["a", "b"], weights=[0.6, 0.4])
    return MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)


def _grpo(folder, steps):
    trainer, _, _ = bandit.grpo_trainer(folder, steps, weights=[0.5, 0.5],
                                        constraints={"second": 0.9}, save_strategy="steps",
                                        save_steps=1)
    return trainer


def _ppo(folder, steps):
    trainer, _, _ = bandit.ppo_trainer(folder, steps, weights=[0.5, 0.5], save_steps=1,
                                       num_samples_per_prompt=8, mini_batch_size=8, ppo_epochs=1)
    return trainer


def _train_and_resume_trl(build, tmp_path):
    first = build(tmp_path / "run", 1)
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-1"
    resumed = build(tmp_path / "run", 2)
    return first, checkpoint, lambda: resumed.train(resume_from_checkpoint=str(checkpoint))


def _train_and_resume_ppo(build, tmp_path):
    first = build(tmp_path / "run", 1)
    first.train()
    checkpoint = tmp_path / "run" / "ppo" / "checkpoint-1"
    return first, checkpoint, lambda: build(tmp_path / "again", 2).load_checkpoint(checkpoint)


#: trainer -> (build, how it trains one step and resumes, the state files of its checkpoints)
TRAINERS = {
    "mo_dpo": (_mo_dpo, _train_and_resume_trl, ("moalign_state.json",)),
    "modpo": (_modpo, _train_and_resume_trl, ("moalign_state.json",)),
    "grpo": (_grpo, _train_and_resume_trl, ("moalign_tradeoff.json",)),
    "ppo": (_ppo, _train_and_resume_ppo, ("trainer_state.json", "optimizer.pt",
                                          "rng_state_0.pt")),
}


def test_every_trainer_of_moalign_train_is_covered():
    from moalign.trainers.registry import TRAINERS as REGISTERED

    trainers = {spec.trainer for spec in REGISTERED.values()}
    covered = {"moalign.trainers.dpo:MultiObjectiveDPOTrainer", "moalign.trainers.modpo:MODPOTrainer",
               "moalign.trainers.grpo:MultiObjectiveGRPOTrainer",
               "moalign.trainers.ppo:MultiObjectivePPOTrainer"}
    assert trainers == covered


@pytest.mark.parametrize("name", TRAINERS)
def test_each_trainer_writes_and_reads_its_state_through_the_mechanism(name, tmp_path,
                                                                       monkeypatch):
    build, run, files = TRAINERS[name]
    spy = Spy(monkeypatch)
    first, checkpoint, resume = run(build, tmp_path)
    if hasattr(first, "state_file"):  # a TRL-based trainer names its file once
        assert files == (first.state_file,) and first.resume_required == files
    assert spy.not_written(checkpoint, files) == []
    state = json.loads((checkpoint / files[0]).read_text())
    assert state["objectives"] == list(first.tradeoff.names)
    spy.read.clear()
    resume()
    assert spy.not_read(files) == []


# ------------------------------------------------------------------ negative controls


def test_a_trainer_that_writes_its_own_state_file_is_caught(tmp_path, monkeypatch):
    from moalign.trainers import MultiObjectiveDPOTrainer

    class OwnWriter(MultiObjectiveDPOTrainer):
        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            (folder / self.state_file).write_text(json.dumps(self.checkpoint_state()))

    spy = Spy(monkeypatch)
    _mo_dpo(tmp_path, 1, OwnWriter).train()
    assert spy.not_written(tmp_path / "checkpoint-1", ["moalign_state.json"]) == [
        "moalign_state.json"]


def test_a_trainer_that_reads_its_own_state_file_is_caught(tmp_path, monkeypatch):
    from moalign.trainers import MultiObjectiveDPOTrainer

    class OwnReader(MultiObjectiveDPOTrainer):
        def _restore_state(self, checkpoint):
            path = Path(checkpoint) / self.state_file
            self.load_checkpoint_state(json.loads(path.read_text()))

    _mo_dpo(tmp_path, 1).train()
    spy = Spy(monkeypatch)
    resumed = _mo_dpo(tmp_path, 2, OwnReader)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert resumed.tradeoff.schedule.t == 2  # the state came back, by the trainer's own read
    assert spy.not_read(["moalign_state.json"]) == ["moalign_state.json"]


# ------------------------------------------------------------------ the two functions


def test_json_and_torch_states_round_trip(tmp_path):
    save_state(tmp_path, "s.json", {"objectives": ["a", "b"], "step": 3})
    save_state(tmp_path, "rng.pt", {"torch": torch.get_rng_state(), "step": torch.tensor(3)})
    assert load_state(tmp_path, "s.json", required=("step",), objectives=["a", "b"]) == {
        "objectives": ["a", "b"], "step": 3}
    assert torch.equal(load_state(tmp_path, "rng.pt")["torch"], torch.get_rng_state())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries


@pytest.mark.parametrize("damage, match", [
    (lambda p: p.unlink(), "is missing"),
    (lambda p: p.write_text('{"objectives": ["a",'), "not valid JSON"),
    (lambda p: p.write_text('{"objectives": ["a", "b"]}'), "no key 'step'"),
    (lambda p: p.write_text('{"objectives": ["b", "a"], "step": 1}'),
     r"was trained on \['b', 'a'\], not \['a', 'b'\]"),
])
def test_a_bad_json_state_is_refused_naming_it(tmp_path, damage, match):
    save_state(tmp_path, "s.json", {"objectives": ["a", "b"], "step": 1})
    damage(tmp_path / "s.json")
    with pytest.raises(CheckpointError, match=match):
        load_state(tmp_path, "s.json", required=("step",), objectives=["a", "b"])


def test_a_truncated_torch_state_is_refused_naming_it(tmp_path):
    path = save_state(tmp_path, "optimizer.pt", {"x": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="optimizer state .*optimizer.pt"):
        load_state(tmp_path, "optimizer.pt", what="optimizer state")
