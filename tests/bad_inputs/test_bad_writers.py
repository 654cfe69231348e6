"""A second writer on an output folder that another process is writing.

A small child process holds the lock of ``{tmp}/out`` (``moalign.storage.lock.output_lock``, what
every writing command takes); each command pointed at that folder is then refused at once, before
any model loads: exit code 2, the folder and the holder's pid named, no traceback, and the
holder's folder left as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import finished_outputs

#: Holds the lock of sys.argv[1] until killed.
HOLDER = """
import sys, time
from moalign.storage.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(target: Path) -> subprocess.Popen:
    """A child process that holds the lock of ``target`` (returned once it does)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()
    assert line.strip() == "held", f"the holder did not start (exit code {proc.poll()})"
    return proc


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from moalign.models import tiny_causal_lm

    path = tmp_path_factory.mktemp("tiny") / "model"
    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


COMMANDS = {
    "train": ["train", "--model", "tiny", "--output_dir", "{out}"],
    "train-resume-auto": ["train", "--model", "tiny", "--output_dir", "{out}", "--resume", "auto"],
    "trace": ["trace", "--model", "tiny", "--output_dir", "{out}"],
    "sft": ["sft", "--model", "{model}", "--output_dir", "{out}", "--overwrite", "true"],
    "reward": ["reward", "--objective", "helpfulness", "--model", "{model}",
               "--output_dir", "{out}"],
    "eval": ["eval", "--model", "tiny", "--dataset", "gsm8k", "--objectives", "length",
             "--output", "{out}/eval.json"],
}


@pytest.mark.parametrize("argv", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_folder_being_written_is_refused_naming_it_and_its_holder(
        argv, cli, tmp_path, tiny_model, no_model_load):
    out = tmp_path / "out"
    target = out / "eval.json" if argv[0] == "eval" else out
    holder = hold(target)
    try:
        start = time.perf_counter()
        result = cli(*(a.format(out=out, model=tiny_model) for a in argv))
        seconds = time.perf_counter() - start
    finally:
        holder.kill()
        holder.wait()
    result.failed_cleanly(f"'{target}' is in use by another moalign process (pid {holder.pid})",
                          "wait for it to finish")
    assert seconds < 10
    assert finished_outputs(out) == []
