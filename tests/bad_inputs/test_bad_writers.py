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

from tests.support.corpus import finished_outputs

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


# ------------------------------------------------------------------------ unwritable folders

TRAIN = ["train", "--model", "tiny", "--output_dir", "{tmp}/out"]
#: A finished ``moalign train`` output (what overwrite: true would replace).
FINISHED_RUN = {"out/train.json": "{}", "out/adapter_config.json": "{}"}


def _unwritable(monkeypatch, *folders: Path) -> None:
    """Make the write check fail in ``folders`` as a read-only folder would (the tests may run
    as root, whom file modes do not stop)."""
    import moalign.storage.files as files

    probe = files._probe
    refused = {Path(f) for f in folders}

    def check(folder: Path) -> None:
        if Path(folder) in refused:
            raise PermissionError(13, "Permission denied", str(folder))
        probe(folder)

    monkeypatch.setattr(files, "_probe", check)


@pytest.mark.parametrize("where", ["out", "parent", "checkpoints"])
def test_an_unwritable_output_folder_is_refused_before_training(where, cli, tmp_path, monkeypatch,
                                                               no_model_load):
    from tests.support.corpus import write_files

    files = {"out/trainer/checkpoint-1/x": "x"} if where == "checkpoints" else FINISHED_RUN
    write_files(tmp_path, files)
    folder = {"out": tmp_path / "out", "parent": tmp_path,
              "checkpoints": tmp_path / "out" / "trainer"}[where]
    _unwritable(monkeypatch, folder)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    extra = ["--overwrite", "true"]
    result = cli(*(a.format(tmp=tmp_path) for a in TRAIN), *extra)
    result.failed_cleanly(f"'output_dir': cannot write in '{folder}' (Permission denied)",
                          "make it writable or choose another output_dir")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root")
def test_a_read_only_output_folder_is_refused_before_training(cli, tmp_path, no_model_load):
    from tests.support.corpus import write_files

    write_files(tmp_path, FINISHED_RUN)
    (tmp_path / "out").chmod(0o555)
    try:
        result = cli(*(a.format(tmp=tmp_path) for a in TRAIN), "--overwrite", "true")
    finally:
        (tmp_path / "out").chmod(0o755)
    result.failed_cleanly(f"cannot write in '{tmp_path / 'out'}'")
    assert (tmp_path / "out" / "train.json").read_text() == "{}"


def test_an_output_dir_under_a_file_is_refused(cli, tmp_path, no_model_load):
    (tmp_path / "afile").write_text("not a folder")
    result = cli("train", "--model", "tiny", "--output_dir", tmp_path / "afile" / "out")
    result.failed_cleanly(f"'output_dir': cannot write in '{tmp_path / 'afile'}'")
    assert (tmp_path / "afile").read_text() == "not a folder"
