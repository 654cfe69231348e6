"""``moalign train`` killed by SIGKILL, then resumed with ``resume: true``.

A child process runs ``moalign train`` (MO-DPO on the tiny model, a checkpoint every step) and
kills itself right after checkpoint 3 is complete; the test then leaves a half-written
``checkpoint-4`` as a killed save would (no ``trainer_state.json``, weights cut short), resumes,
and checks that the run continued from checkpoint 3 (never the damaged folder) and ended where an
uninterrupted run ends: the same step count, logged losses and adapter weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test trains and kills or resumes `moalign train` runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from moalign.cli import main  # noqa: E402

STEPS = 5
CONFIG = """\
trainer: mo_dpo
model: tiny
dataset: hh-rlhf
objectives: [helpfulness, harmlessness]
weights: [0.3, 0.7]
lora: {{r: 4, alpha: 8}}
max_examples: 8
max_prompt_tokens: 32
max_length: 64
per_device_train_batch_size: 2
learning_rate: 0.01
max_steps: {steps}
save_strategy: steps
save_steps: 1
progress: false
output_dir: {out}
"""

#: Runs ``moalign train`` and dies by SIGKILL once checkpoint ``KILL_AT`` is completely written.
CHILD = """
import os, signal, sys
from transformers.trainer_callback import TrainerState
save = TrainerState.save_to_json
def save_then_die(self, path):
    save(self, path)
    if self.global_step == int(os.environ["KILL_AT"]) and "checkpoint-" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
TrainerState.save_to_json = save_then_die
from moalign.cli import main
sys.exit(main(["train", "--config", sys.argv[1], *sys.argv[2:]]))
"""


def _train(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["train", *argv])
    return rc, out.getvalue(), err.getvalue()


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """An output folder left by a ``moalign train`` killed after checkpoint 3, with a
    half-written checkpoint-4 next to it."""
    root = tmp_path_factory.mktemp("resume")
    (root / "killed.yaml").write_text(CONFIG.format(out=root / "killed", steps=STEPS))
    env = {**os.environ, "KILL_AT": "3", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root / "killed.yaml")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    checkpoints = root / "killed" / "trainer"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert not (root / "killed" / "train.json").exists()
    half = checkpoints / "checkpoint-4"  # what a kill in the middle of the next save leaves
    shutil.copytree(checkpoints / "checkpoint-3", half)
    (half / "trainer_state.json").unlink()
    weights = half / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return root


def test_a_killed_train_resumes_from_its_last_complete_checkpoint(killed, caplog):
    import torch
    from transformers.trainer_utils import get_last_checkpoint

    # the negative control: TRL's own choice is the half-written folder
    assert Path(get_last_checkpoint(str(killed / "killed" / "trainer"))).name == "checkpoint-4"

    torch.set_num_threads(1)
    (killed / "reference.yaml").write_text(CONFIG.format(out=killed / "reference", steps=STEPS))
    rc, _, err = _train("--config", str(killed / "reference.yaml"))
    assert rc == 0, err
    # resume: false refuses the unfinished folder and says how to continue it
    rc, _, err = _train("--config", str(killed / "killed.yaml"))
    assert rc == 2 and "set resume: true to continue it" in err and "checkpoint-3" in err, err
    rc, stdout, err = _train("--config", str(killed / "killed.yaml"), "--resume", "true")
    assert rc == 0, err
    assert "resumed from" in stdout and "checkpoint-3" in stdout, stdout
    assert "skipping checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    record = json.loads((killed / "killed" / "train.json").read_text())
    reference = json.loads((killed / "reference" / "train.json").read_text())
    assert record["resumed_from"] == str(killed / "killed" / "trainer" / "checkpoint-3")
    assert record["steps"] == reference["steps"] == STEPS
    losses = [(e["step"], e["loss"]) for e in record["log_history"] if "loss" in e]
    want = [(e["step"], e["loss"]) for e in reference["log_history"] if "loss" in e]
    assert [s for s, _ in losses] == list(range(1, STEPS + 1))
    assert [s for s, _ in want] == [s for s, _ in losses]
    assert [v for _, v in losses] == pytest.approx([v for _, v in want], abs=1e-6)
    got, ref = _weights(killed / "killed"), _weights(killed / "reference")
    assert max(float((got[k] - ref[k]).abs().max()) for k in ref) < 1e-6
    # the checkpoints (the damaged one rewritten by the resumed run) travel with the result
    final = killed / "killed" / "trainer" / f"checkpoint-{STEPS}"
    assert (final / "trainer_state.json").is_file()
    # a finished run is not resumed again
    rc, _, err = _train("--config", str(killed / "killed.yaml"), "--resume", "true")
    assert rc == 2 and "'resume'" in err and "is a finished run" in err, err


def test_overwriting_a_finished_run_unmarks_it_before_new_checkpoints_arrive(tmp_path):
    """``overwrite: true`` over a finished run, killed after the new run's first checkpoint: the
    folder no longer says it is finished (its old ``train.json`` is not in it), and it resumes.
    The old result waited beside it, under a temporary's name, until the new one was complete."""
    import torch

    torch.set_num_threads(1)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "run", steps=2))
    rc, _, err = _train("--config", str(config))
    assert rc == 0, err
    assert (tmp_path / "run" / "train.json").is_file()
    env = {**os.environ, "KILL_AT": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(config), "--overwrite", "true"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "train.json").exists()  # not finished-looking
    assert [p.name for p in (tmp_path / "run" / "trainer").glob("checkpoint-*")] == ["checkpoint-1"]
    from moalign.storage.checkpoints import is_temporary

    aside = [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
    assert len(aside) == 1 and is_temporary(aside[0]), list(tmp_path.iterdir())
    assert (aside[0] / "train.json").is_file()  # the old result, not yet destroyed
    rc, stdout, err = _train("--config", str(config), "--resume", "true")
    assert rc == 0 and "checkpoint-1" in stdout, err
    assert json.loads((tmp_path / "run" / "train.json").read_text())["steps"] == 2
    assert not aside[0].exists()  # removed once the new result is complete


def test_an_overwrite_that_fails_puts_the_finished_run_back(tmp_path, monkeypatch):
    """``overwrite: true`` over a finished run whose new run fails after writing its first
    checkpoint files: exit code 2, and the old result is back, byte for byte, with nothing of
    the failed run mixed in."""
    import torch

    import moalign.trainers.runs as runs
    from moalign.errors import DataError

    torch.set_num_threads(1)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "run", steps=1))
    rc, _, err = _train("--config", str(config))
    assert rc == 0, err
    before = {p.relative_to(tmp_path): p.read_bytes()
              for p in (tmp_path / "run").rglob("*") if p.is_file()}

    def fails(spec, args, *a, **kw):
        partial = Path(args.output_dir) / "checkpoint-1"
        partial.mkdir(parents=True)
        (partial / "trainer_state.json").write_text("{}")
        raise DataError("a problem found only when the trainer tokenizes")

    monkeypatch.setattr(runs, "train_and_save", fails)
    rc, _, err = _train("--config", str(config), "--overwrite", "true")
    assert rc == 2 and "found only when the trainer tokenizes" in err, err
    after = {p.relative_to(tmp_path): p.read_bytes()
             for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.yaml"]  # no leftovers


def test_resuming_with_another_configuration_is_refused_before_loading(tmp_path):
    """A run killed after its first checkpoint, resumed with other weights, another LoRA rank or
    another trainer: refused (exit code 2) naming each changed key with both values, the
    checkpoints left as they were; resumed with its own configuration, it finishes."""
    import torch

    torch.set_num_threads(1)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "run", steps=2))
    env = {**os.environ, "KILL_AT": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(config)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    checkpoints = tmp_path / "run" / "trainer"
    before = sorted(p.name for p in checkpoints.iterdir())
    for argv, changed in [
        (["--weights", "[0.5,0.5]"], ["weights: [0.3, 0.7] -> [0.5, 0.5]"]),
        (["--lora.r", "8", "--beta", "0.3"], ["lora.r: 4 -> 8", "beta: 0.1 -> 0.3"]),
        (["--trainer", "conditioned_dpo", "--weights", "null"],
         ['trainer: "mo_dpo" -> "conditioned_dpo"']),
    ]:
        rc, _, err = _train("--config", str(config), "--resume", "true", *argv)
        assert rc == 2, err
        assert f"the run in '{tmp_path / 'run'}' was trained with another configuration" in err
        assert all(c in err for c in changed), err
        assert "set overwrite: true" in err and "choose another output_dir" in err
        assert "Traceback" not in err
        assert sorted(p.name for p in checkpoints.iterdir()) == before
        assert not (tmp_path / "run" / "train.json").exists()
    assert (checkpoints / "run_config.json").is_file()  # the record the check compares with
    rc, stdout, err = _train("--config", str(config), "--resume", "true", "--progress", "true")
    assert rc == 0 and "checkpoint-1" in stdout, err
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["weights"] == [0.3, 0.7] and record["steps"] == 2
