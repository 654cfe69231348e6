"""MO-DPO, MO-GRPO and MO-PPO under DeepSpeed ZeRO-2 and ZeRO-3 with 2 CPU processes.

``scripts/zero_check.py`` launches each stage with ``DS_ACCELERATOR=cpu accelerate launch``
(2 processes over gloo; under ZeRO-3 every parameter partitioned); each trainer trains 3 steps
with a checkpoint at step 2, a fresh trainer resumes from it, both save their policy, and the
script (a process that did not train) reloads each saved adapter and compares it with the
tensors training produced. The resumed run must start from the trade-off state (schedule
position, Lagrange multiplier) the uninterrupted run had at step 2 and end with its end state.
Before the fixes of ``moalign.trainers.ppo_engine``, MO-PPO failed there at ``prepare`` (no
micro-batch size for DeepSpeed's ``auto``), then at its first gather (no ``ddp_backend``), then
at reading its checkpoint's optimizer state (process 0's ZeRO partition, pickled).

The verdict logic is checked on its own, on reports written by hand: a resumed run that did not
restore the state, an empty or different saved tensor, ZeRO-3 without partitioned parameters.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "zero_check.py"


def _state(t: int, multiplier: float) -> dict:
    return {"weights": [0.5, 0.5], "schedule": {"kind": "anneal", "t": t},
            "constraints": {"names": ["ascii", "high"], "thresholds": [0.99, None],
                            "multipliers": [multiplier, 0.0]}}


def _write_run(folder: Path, zc, partitioned: int = 8, stage: int = 3) -> dict:
    """A report and saved adapters as the worker writes them, for a run that passes."""
    import torch
    from peft import get_peft_model

    from moalign.models import tiny_causal_lm

    folder.mkdir(parents=True)
    for run in ("uninterrupted", "resumed"):
        model, _ = tiny_causal_lm(0)
        policy = get_peft_model(model, zc._lora())
        torch.manual_seed(1)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.data.normal_()
        policy.save_pretrained(str(folder / run))
        torch.save({n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n},
                   folder / f"{run}-trained.pt")
    fresh = _state(0, 0.0)
    common = {"steps": 3, "processes": 2, "distributed_type": "DEEPSPEED", "seconds": 1.0,
              "partitioned": partitioned, "lora_B_max": 1.0, "end": _state(3, 0.7)}
    report = {"fresh_state": fresh, "checkpoint": "checkpoint-2",
              "uninterrupted": {**common, "start": fresh, "start_step": 0,
                                "at_save": _state(2, 0.45)},
              "resumed": {**common, "start": _state(2, 0.45), "start_step": 2}}
    (folder / "report.json").write_text(json.dumps(report))
    return report


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    zc = load_script("zero_check")
    folder = tmp_path_factory.mktemp("zero-check") / "good"
    return zc, folder, _write_run(folder, zc)


def test_a_good_run_passes(good_run):
    zc, folder, _ = good_run
    r = zc.check("mo-ppo", folder, 3)
    assert r["ok"], r
    assert zc._tradeoff_figures(r) == "schedule t=2, lambda_ascii=0.4500"
    # ZeRO-2 does not partition: 8 partitioned tensors there mean the stage was not the one run
    assert not zc.check("mo-ppo", folder, 2)["ok"]
    assert not zc.check("mo-ppo", folder.parent / "missing", 3)["ok"]


def _not_restored(report, folder):  # the resumed run started from a fresh trade-off
    report["resumed"]["start"] = report["fresh_state"]


def _other_end(report, folder):
    report["resumed"]["end"] = _state(3, 0.71)


def _other_tensors(report, folder):  # the saved adapter is not what was trained
    import torch

    trained = torch.load(folder / "resumed-trained.pt")
    trained[next(k for k in trained if "lora_B" in k)] += 1e-3
    torch.save(trained, folder / "resumed-trained.pt")


def _no_adapter(report, folder):
    (folder / "uninterrupted" / "adapter_model.safetensors").unlink()


def _crashed(report, folder):
    report.clear()
    report["error"] = "RuntimeError: ProcessGroupGloo::allgather: invalid output tensor list"


@pytest.mark.parametrize("change, words", [
    (_not_restored, "did not start from the saved step"),
    (_other_end, "ended with another trade-off state"),
    (_other_tensors, "reloads other tensors than it trained"),
    (_no_adapter, "does not reload"),
    (_crashed, "allgather")])
def test_a_broken_run_fails(good_run, tmp_path, change, words):
    zc, good, report = good_run
    folder = tmp_path / "run"
    shutil.copytree(good, folder)
    report = copy.deepcopy(report)
    change(report, folder)
    (folder / "report.json").write_text(json.dumps(report))
    r = zc.check("mo-ppo", folder, 3)
    assert not r["ok"]
    assert words in (r.get("error") or "; ".join(r["problems"])), r


@pytest.mark.slow
def test_every_trainer_trains_saves_reloads_and_resumes_under_zero2_and_zero3(tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "results.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=1200)
    log = proc.stdout + proc.stderr[-3000:]
    results = json.loads(out.read_text()) if out.is_file() else {}
    assert set(results) == {f"{t} zero-{s}" for t in ("mo-dpo", "mo-grpo", "mo-ppo")
                            for s in (2, 3)}, log
    for name, r in results.items():
        assert r["ok"], (name, r, log)
        assert r["processes"] == 2 and r["distributed_type"] == "DEEPSPEED", (name, r)
        assert r["partitioned"] == (r["tensors"] if name.endswith("3") else 0), (name, r)
        assert r["adapter_diff"] == 0.0, (name, r)  # resumed exactly where it stopped
    assert proc.returncode == 0, log
    assert sum(" PASS " in line for line in proc.stdout.splitlines()) == 6, log
