"""Driver of test_checkpoint_kills: MO-DPO on the tiny model, killed during checkpoint writes.

Run as ``python tests/support/kill_checkpoints.py OUT SEED``; prints one JSON line with what it
saw. The imports happen once; every training process is a fork that dies by SIGKILL at a chosen
moment of a checkpoint save (before the weights, with the weights cut short, after the optimizer
or the RNG state, half-way through trainer_state.json, after a complete save, or a random
instant of the save), then the next fork resumes with ``train(resume_from_checkpoint=True)``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import sys
import threading
from pathlib import Path

import torch

torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import Trainer  # noqa: E402
from transformers.trainer_callback import TrainerState  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.storage.checkpoints import latest_checkpoint  # noqa: E402
from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer  # noqa: E402

STEPS = 6
POINTS = ("before-weights", "weights-cut", "after-optimizer", "after-rng", "state-half",
          "complete", "random")
SCHEDULE = {"name": "anneal", "start": [1.0, 0.0], "end": [0.0, 1.0], "steps": STEPS}


def _data() -> Dataset:
    rows = [{"prompt": f"Q{i % 5}:", "chosen": " aeiou" * (1 + i % 3), "rejected": " xyz",
             "pref_a": 1.0 if i % 2 else -1.0, "pref_b": -1.0 if i % 2 else 1.0}
            for i in range(16)]
    return Dataset.from_list(rows)


def _trainer(out: Path) -> MultiObjectiveDPOTrainer:
    model, tok = tiny_causal_lm(0)
    args = MultiObjectiveDPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to="none", per_device_train_batch_size=4, learning_rate=5e-3, max_steps=STEPS,
        logging_steps=1, save_strategy="steps", save_steps=1, seed=0, disable_tqdm=True,
        dataloader_num_workers=0, beta=0.5, max_length=64, objectives=["a", "b"],
        schedule=SCHEDULE)
    return MultiObjectiveDPOTrainer(model, copy.deepcopy(model), args=args,
                                    train_dataset=_data(), processing_class=tok)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(trainer: MultiObjectiveDPOTrainer, step: int, point: str, rng: random.Random) -> None:
    """Kill this process at ``point`` of the save of checkpoint ``step``."""
    at = lambda: trainer.state.global_step == step  # noqa: E731

    def after(fn, name):
        def wrapped(*args, **kwargs):
            if at() and point == "before-weights" and name == "save_model":
                _die()
            result = fn(*args, **kwargs)
            if at() and point == "weights-cut" and name == "save_model":
                weights = Path(args[0]) / "model.safetensors"
                weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
                _die()
            if at() and (point, name) in {("after-optimizer", "_save_optimizer_and_scheduler"),
                                          ("after-rng", "_save_rng_state")}:
                _die()
            return result
        return wrapped

    for name in ("save_model", "_save_optimizer_and_scheduler", "_save_rng_state"):
        setattr(trainer, name, after(getattr(trainer, name), name))
    save_to_json = TrainerState.save_to_json

    def state_json(self, path):
        if at() and point == "state-half":
            text = json.dumps(self.__dict__, default=str)
            Path(path).write_text(text[: len(text) // 2])
            _die()
        save_to_json(self, path)
        if at() and point == "complete":
            _die()

    TrainerState.save_to_json = state_json
    save_checkpoint = Trainer._save_checkpoint
    delay = rng.uniform(0.0, 0.05)

    def timed(self, *args, **kwargs):
        if at() and point == "random":
            threading.Timer(delay, _die).start()
        return save_checkpoint(self, *args, **kwargs)

    Trainer._save_checkpoint = timed


def _run(out: Path, kill: tuple[int, str] | None, rng: random.Random) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            trainer = _trainer(out)
            if kill is not None:
                _install(trainer, *kill, rng)
            resume = latest_checkpoint(out, ("moalign_state.json",)) is not None
            trainer.train(resume_from_checkpoint=True if resume else None)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent through the code
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 3
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _state(folder: Path) -> dict:
    return json.loads((folder / "moalign_state.json").read_text())


def main(out: Path, seed: int) -> dict:
    rng = random.Random(seed)
    reference = out / "reference"
    assert _run(reference, None, rng) == 0
    killed = out / "killed"
    log, trl_picked_damaged = [], 0
    done = 0  # the last checkpoint known complete
    for _ in range(4):
        if done == STEPS:  # a kill after the last complete save: nothing left to interrupt
            break
        kill = (rng.randint(done + 1, STEPS), rng.choice(POINTS))
        code = _run(killed, kill, rng)
        valid = latest_checkpoint(killed, ("moalign_state.json",))
        last = get_last_checkpoint(str(killed))
        if last is not None and (valid is None or Path(last) != valid):
            trl_picked_damaged += 1
        step = int(valid.name.split("-")[1]) if valid else 0
        log.append({"kill": kill, "code": code, "valid": step, "trl": last and Path(last).name})
        assert code in (-signal.SIGKILL, 0), log
        assert step >= max(done, kill[0] - 1 if code == -signal.SIGKILL else STEPS), log
        if valid is not None:  # what a resume loads equals what the uninterrupted run saved
            assert _state(valid) == _state(reference / valid.name), log
            load_file(valid / "model.safetensors")
            torch.load(valid / "optimizer.pt", weights_only=True)
        done = step
    assert _run(killed, None, rng) == 0, log
    final = killed / f"checkpoint-{STEPS}"
    assert _state(final) == _state(reference / final.name)
    got = load_file(final / "model.safetensors")
    want = load_file(reference / final.name / "model.safetensors")
    diff = max(float((got[k] - want[k]).abs().max()) for k in want)
    return {"log": log, "trl_picked_damaged": trl_picked_damaged, "max_weight_diff": diff}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
