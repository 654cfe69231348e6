"""One writer per output folder (``moalign.storage.lock.output_lock``).

- two ``moalign train`` processes started together on one ``output_dir``: one trains, the other
  is refused at once (exit code 2, naming the folder and the winner's pid), and the folder holds
  the winner's run;
- a holder killed by SIGKILL leaves no stale lock: the next ``moalign train`` starts and finishes;
- the lock itself: refused while held by another process, re-entrant in one process, gone with
  its holder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from moalign.storage.lock import FolderInUseError, lock_path, output_lock  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}

#: Holds the lock of sys.argv[1] until killed.
HOLDER = """
import sys, time
from moalign.storage.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""

#: ``moalign train`` started at a signal: imports first, then says "ready" and waits for the
#: file sys.argv[1] to appear, so that two of them reach the lock at the same moment.
RACER = """
import os, sys, time
from moalign.cli import main
import moalign.cli.train, moalign.workflows.training, moalign.trainers.registry, moalign.models.specs  # the slow imports
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
sys.exit(main(["train", *sys.argv[2:]]))
"""

TRAIN = ["--model", "tiny", "--max_examples", "8", "--max_steps", "2", "--progress", "false",
         "--per_device_train_batch_size", "2", "--max_length", "64", "--max_prompt_tokens", "32"]


def _hold(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE,
                            text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held", f"holder exited with {proc.poll()}"
    return proc


def _train(*argv: str) -> tuple[int, str, str]:
    from moalign.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["train", *argv])
    return rc, out.getvalue(), err.getvalue()


def test_the_lock_refuses_another_process_and_dies_with_it(tmp_path):
    out = tmp_path / "out"
    holder = _hold(out)
    try:
        start = time.perf_counter()
        with pytest.raises(FolderInUseError) as info, output_lock(out):
            pass
        assert time.perf_counter() - start < 1.0  # refused at once, not after a wait
        assert info.value.pid == holder.pid
        assert str(out) in str(info.value) and f"pid {holder.pid}" in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(out).exists()  # a killed holder leaves its file, not its lock
    with output_lock(out) as lock:
        assert lock == lock_path(out)
        assert lock.read_text().strip() == str(os.getpid())
        with output_lock(str(out) + "/"):  # re-entrant, whatever the spelling
            pass
        assert lock.exists()
    assert not lock_path(out).exists()  # released and removed


@pytest.mark.slow
def test_two_trains_started_together_one_is_refused(tmp_path):
    go = tmp_path / "go"
    out = tmp_path / "out"
    procs = []
    for weights in ("[0.2,0.8]", "[0.9,0.1]"):
        procs.append(subprocess.Popen(
            [sys.executable, "-c", RACER, str(go), *TRAIN, "--output_dir", str(out),
             "--weights", weights], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=ENV))
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
        go.touch()
        results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    winner = next(i for i, r in enumerate(results) if r[0] == 0)
    loser = results[1 - winner]
    assert (f"'output_dir': '{out}' is in use by another moalign process "
            f"(pid {procs[winner].pid})") in loser[2], loser[2]
    assert "Traceback" not in loser[2] and "saved" not in loser[1]
    record = json.loads((out / "train.json").read_text())
    assert record["weights"] == [[0.2, 0.8], [0.9, 0.1]][winner]
    assert not lock_path(out).exists()


def test_a_train_killed_by_sigkill_leaves_no_stale_lock(tmp_path):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "out"
    holder = _hold(out)
    rc, _, err = _train(*TRAIN, "--output_dir", str(out))
    assert rc == 2 and f"pid {holder.pid}" in err, err
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(out).exists()
    rc, stdout, err = _train(*TRAIN, "--output_dir", str(out))
    assert rc == 0, err
    assert "saved the LoRA adapter" in stdout and (out / "train.json").is_file()
