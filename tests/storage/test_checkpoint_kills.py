"""SIGKILL during trainer checkpoint writes, several times, then resume: no damaged checkpoint is
loaded, no finished step is lost, and the resumed run ends bit-for-bit where an uninterrupted
one does. TRL's own choice (``get_last_checkpoint``, the highest-numbered folder) is recorded
as the negative control: it picks the half-written folder every time the kill leaves one.

The work is in :mod:`tests.support.kill_checkpoints` (one process, forked per training run, so
the imports are paid once). ``MOALIGN_KILL_SEED`` picks other kill moments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # one process trains, is killed and resumes several times

DRIVER = Path(__file__).resolve().parents[1] / "support" / "kill_checkpoints.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
       "TOKENIZERS_PARALLELISM": "false"}
#: kill points that always leave the folder of that step half-written
DAMAGING = {"before-weights", "weights-cut", "after-optimizer", "after-rng", "state-half"}


def test_sigkill_during_checkpoint_writes_then_resume(tmp_path):
    seed = os.environ.get("MOALIGN_KILL_SEED", "0")
    proc = subprocess.run([sys.executable, str(DRIVER), str(tmp_path), seed], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    log = result["log"]
    assert any(entry["code"] == -9 for entry in log), log
    for entry in log:
        (step, point), code = entry["kill"], entry["code"]
        if code == -9 and point in DAMAGING:  # TRL would resume the damaged folder
            assert entry["trl"] == f"checkpoint-{step}" and entry["valid"] == step - 1, log
    assert result["max_weight_diff"] == 0.0, result
    print("kills (step, point, exit code, resumed from, TRL's pick):",
          [(*e["kill"], e["code"], e["valid"], e["trl"]) for e in log])
