"""Crash safety: atomic writes survive SIGKILL, damaged checkpoints are reported, not loaded,
and a trace killed at random moments resumes to the same front.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from moalign.errors import CheckpointError
from moalign.storage.checkpoints import (
    check_adapter,
    check_safetensors,
    check_trainer_checkpoint,
    is_temporary,
    latest_checkpoint,
    read_json,
    scan_trace,
    stale_temporaries,
)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def _weights(path: Path, n: int = 16) -> Path:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"a": torch.arange(n, dtype=torch.float32), "b": torch.ones(2, 3)}, str(path))
    return path


# --------------------------------------------------------------------------------------------
# Writers killed mid-write
# --------------------------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import moalign.storage.files as io

    def die(*args):  # the process dies just before the rename that would publish the result
        os.kill(os.getpid(), signal.SIGKILL)

    io.os.replace = die
    out = Path(sys.argv[1])
    if sys.argv[2] == "file":
        io.atomic_write_json(out / "point.json", {"scores": {"a": 2.0}})
    else:
        with io.atomic_directory(out / "run") as tmp:
            (tmp / "run.json").write_text("{}")
""")


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_writer_killed_before_rename_leaves_old_content_and_a_marked_temporary(tmp_path, kind):
    (tmp_path / "point.json").write_text(json.dumps({"scores": {"a": 1.0}}))
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path), kind], env=ENV)
    assert proc.returncode == -signal.SIGKILL
    # the previous content is intact, the new folder never appeared under its name
    assert read_json(tmp_path / "point.json") == {"scores": {"a": 1.0}}
    assert not (tmp_path / "run").exists()
    leftovers = stale_temporaries(tmp_path)
    assert len(leftovers) == 1 and all(is_temporary(p) for p in leftovers)
    assert leftovers[0].name.startswith(".point.json." if kind == "file" else ".run.tmp-")


def test_is_temporary_names():
    assert is_temporary(".w0.50-0.50.tmp-ab12cd")
    assert is_temporary(".point.json.x1y2z3.tmp")
    assert is_temporary(".only_a.old-1234")
    for name in ("point.json", "w0.50-0.50", "checkpoint-3", ".hidden", "run.tmp"):
        assert not is_temporary(name), name


# --------------------------------------------------------------------------------------------
# Damaged files are detected and named
# --------------------------------------------------------------------------------------------


def test_read_json_names_the_file_and_the_problem(tmp_path):
    good = tmp_path / "point.json"
    good.write_text(json.dumps({"scores": {"a": 0.5}, "stderr": {}, "eval_seconds": 1.0}))
    assert read_json(good, required=("scores",))["scores"] == {"a": 0.5}
    text = good.read_text()
    cases = {
        "truncated": (text[: len(text) // 2], "not valid JSON"),
        "empty": ("", "not valid JSON"),
        "list": ("[1, 2]", "expected a JSON object"),
        "no-key": ('{"stderr": {}}', "no key 'scores'"),
        "binary": (None, "cannot be read"),
    }
    for name, (content, words) in cases.items():
        bad = tmp_path / name / "point.json"
        bad.parent.mkdir()
        if content is None:
            bad.write_bytes(b"\xff\xfe\x00garbage")
        else:
            bad.write_text(content)
        with pytest.raises(CheckpointError, match=words) as info:
            read_json(bad, required=("scores",), hint="delete it")
        assert str(bad) in str(info.value) and str(info.value).endswith("delete it")
    with pytest.raises(CheckpointError, match="missing"):
        read_json(tmp_path / "nothing.json")


def test_safetensors_truncation_and_garbage_are_caught(tmp_path):
    path = _weights(tmp_path / "w.safetensors")
    header = check_safetensors(path)
    assert set(header) >= {"a", "b"}
    data = path.read_bytes()
    variants = {
        "short": data[:-1],  # one byte missing
        "long": data + b"\0",
        "cut": data[:6],
        "header": data[:8] + b"{not json" + data[17:],
        "huge": (10**12).to_bytes(8, "little") + data[8:],
        "empty": b"",
    }
    for name, blob in variants.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(CheckpointError, match=f"{name}.safetensors"):
            check_safetensors(bad)


def test_adapter_check_refuses_pickles_and_damage(tmp_path):
    adapter = tmp_path / "adapter"
    _weights(adapter / "adapter_model.safetensors")
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    check_adapter(adapter)
    (adapter / "adapter_config.json").write_text('{"r": 4')
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        check_adapter(adapter)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text("{}")
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="pickle"):
        check_adapter(pickled)


def test_latest_checkpoint_skips_half_written_ones(tmp_path):
    def checkpoint(step: int, state: bool = True, truncate: bool = False) -> Path:
        folder = tmp_path / f"checkpoint-{step}"
        w = _weights(folder / "model.safetensors")
        if truncate:
            w.write_bytes(w.read_bytes()[:-4])
        if state:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        return folder

    assert latest_checkpoint(tmp_path) is None
    good = checkpoint(2)
    checkpoint(10)
    (tmp_path / "checkpoint-10" / "moalign_state.json").write_text('{"weights": [0.5,')
    checkpoint(12, state=False)  # the Trainer died before writing trainer_state.json
    checkpoint(11, truncate=True)
    (tmp_path / "checkpoint-99").write_text("not a folder")
    assert check_trainer_checkpoint(good)["global_step"] == 2
    assert latest_checkpoint(tmp_path) == good
    with pytest.raises(CheckpointError, match="no trainer_state.json"):
        check_trainer_checkpoint(tmp_path / "checkpoint-12")
    with pytest.raises(CheckpointError, match="moalign_state.json"):
        check_trainer_checkpoint(tmp_path / "checkpoint-10")


# --------------------------------------------------------------------------------------------
# A damaged trace is reported before any training
# --------------------------------------------------------------------------------------------

TRACE = dict(method="soup", model="tiny", train_pairs=16, eval_pairs=8, grid=2,
             train={"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64},
             lora={"r": 4, "lora_alpha": 8}, max_length=64, progress=False)


def _seed_trace(out: Path) -> None:
    """A trace folder as a previous run leaves it: config written, baseline evaluated."""
    from dataclasses import asdict

    from moalign.fronts.trace import FrontConfig

    cfg = FrontConfig(**TRACE, output_dir=str(out))
    saved = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "output_dir")}
    saved["precision"] = cfg.resolved_precision()  # a trace stores the precision it ran in
    from moalign.fronts.context import run_placement

    saved["dtype"] = run_placement(cfg)[1]  # and the dtype its weights loaded in
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(saved))
    (out / "baseline").mkdir()
    (out / "baseline" / "point.json").write_text(json.dumps(
        {"scores": {"helpfulness": 0.5, "harmlessness": 0.5},
         "stderr": {"helpfulness": 0.0, "harmlessness": 0.0}, "eval_seconds": 0.0}))


@pytest.mark.parametrize("damage, named", [
    ("config", "config.json"),
    ("baseline", "baseline/point.json"),
    ("baseline-keys", "baseline/point.json"),
    ("run-record", "only_helpfulness/run.json"),
    ("run-weights", "adapter_model.safetensors"),
])
def test_damaged_trace_files_stop_the_resume_with_a_named_error(tmp_path, damage, named):
    from moalign.fronts.trace import trace_front

    out = tmp_path / "trace"
    _seed_trace(out)
    run = out / "runs" / "only_helpfulness"
    if damage == "config":
        (out / "config.json").write_text((out / "config.json").read_text()[:40])
    elif damage == "baseline":
        (out / "baseline" / "point.json").write_text('{"scores": {"helpfulness": 0.')
    elif damage == "baseline-keys":
        (out / "baseline" / "point.json").write_text('{"scores": {"helpfulness": 0.5}, '
                                                     '"stderr": {}, "eval_seconds": 0}')
    else:
        run.mkdir(parents=True)
        (run / "run.json").write_text('{"seconds": 1.0, "steps": 2}' if damage == "run-weights"
                                      else '{"seconds": 1.0, "ste')
        (run / "adapter").mkdir()
        (run / "adapter" / "adapter_config.json").write_text("{}")
        w = _weights(run / "adapter" / "adapter_model.safetensors")
        w.write_bytes(w.read_bytes()[:-8])
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        trace_front({**TRACE, "output_dir": str(out)})
    assert named in str(info.value).replace(os.sep, "/")
    assert time.perf_counter() - started < 30  # reported before any training
    assert not (out / "front.json").exists()
    assert not scan_trace(out).ok


def test_scan_trace_sorts_finished_partial_and_stray(tmp_path):
    out = tmp_path / "trace"
    _seed_trace(out)
    run = out / "runs" / "only_a"
    _weights(run / "adapter" / "adapter_model.safetensors")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "run.json").write_text('{"seconds": 1, "steps": 2}')
    (out / "runs" / "only_b").mkdir()  # a folder without run.json: partial, recomputed
    (out / "runs" / ".only_b.tmp-x1").mkdir()  # a killed writer's temporary
    (out / "points" / "w1.00-0.00").mkdir(parents=True)
    (out / "points" / "w1.00-0.00" / "point.json").write_text(
        '{"scores": {"helpfulness": 1, "harmlessness": 0}, "stderr": {}, "eval_seconds": 0}')
    status = scan_trace(out)
    assert status.ok, status.problems
    assert status.runs == ["only_a"] and status.points == ["w1.00-0.00"]
    assert status.partial == [out / "runs" / "only_b"]
    assert status.temporaries == [out / "runs" / ".only_b.tmp-x1"]


# --------------------------------------------------------------------------------------------
# SIGKILL at random moments, then resume
# --------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, sys
    from moalign.fronts.trace import trace_front
    print("ready", flush=True)
    trace_front({**json.loads(sys.argv[1]), "output_dir": sys.argv[2]})
""")


def _start(out: Path) -> subprocess.Popen:
    """Start a trace in a child process; return once its imports are done."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(TRACE), str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-3000:]
    return proc


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def _records(out: Path) -> dict[str, str]:
    """Every finished record (run.json, point.json) with its exact content."""
    found = {}
    for pattern in ("runs/*/run.json", "points/*/point.json", "baseline/point.json"):
        for path in out.glob(pattern):
            found[str(path.relative_to(out))] = path.read_text()
    return found


def _front_summary(out: Path) -> dict:
    front = json.loads((out / "front.json").read_text())
    return {"reference_point": front["reference_point"], "hypervolume": front["hypervolume"],
            "points": [{k: p[k] for k in ("id", "weights", "scores", "stderr", "nondominated")}
                       for p in front["points"]]}


@pytest.mark.slow
def test_trace_killed_at_random_moments_resumes_to_the_same_front(tmp_path):
    reference = tmp_path / "reference"
    proc = _start(reference)
    start = time.perf_counter()
    _finish(proc)
    work = time.perf_counter() - start  # seconds of tracing after the imports

    rng = random.Random(int(os.environ.get("MOALIGN_KILL_SEED", "8")))
    out = tmp_path / "killed"
    kept: dict[str, str] = {}
    log = []
    for round_ in range(3):
        proc = _start(out)
        delay = rng.uniform(0.2, 0.9) * work  # training, evaluation, saving: any moment
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        log.append((round_, round(delay, 1), proc.returncode, sorted(_records(out))))
        status = scan_trace(out)
        assert status.ok, (log, status.problems)  # no corrupt file, whatever the moment
        for path in out.rglob("*.json"):
            if not any(is_temporary(p) for p in path.relative_to(out).parents[:-1]) \
                    and not is_temporary(path):
                read_json(path)
        records = _records(out)
        for name, content in kept.items():  # no finished record was lost or rewritten
            assert records.get(name) == content, (name, log)
        kept = records

    assert any(entry[2] == -signal.SIGKILL for entry in log), log
    assert kept, log  # some finished work existed when the last kill came: it must survive

    # a partial point folder and stray temporaries are ignored safely on resume
    partial = out / "points" / "w0.50-0.50"
    if (partial / "point.json").exists():
        (partial / "point.json").unlink()
        kept.pop("points/w0.50-0.50/point.json")
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "junk.txt").write_text("left by an interrupted copy")
    (out / "points" / ".w0.50-0.50.tmp-stray").mkdir()
    (out / "points" / ".w0.50-0.50.tmp-stray" / "point.json").write_text('{"scores": {"hel')
    (out / "runs").mkdir(exist_ok=True)
    (out / "runs" / ".only_helpfulness.tmp-stray").mkdir()

    _finish(_start(out))
    assert _front_summary(out) == _front_summary(reference), log
    final = _records(out)
    for name, content in kept.items():  # finished work was reused, not recomputed
        assert final[name] == content, (name, log)
    assert not (partial / "junk.txt").exists()
    assert scan_trace(out).ok
    print("kill rounds (round, delay s, exit code, finished records):", log,
          f"uninterrupted trace: {work:.1f} s after imports")


def test_atomic_writes_use_the_usual_permissions(tmp_path):
    import os
    import stat

    from moalign.storage.files import atomic_directory, atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
