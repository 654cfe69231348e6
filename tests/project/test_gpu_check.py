"""benchmarks/gpu_check.sh runs end to end on a CPU with --cpu --tiny (the GPU run uses the same
code with SmolLM2-135M in bf16) and prints every check's line (the DPO / GRPO pairs, placement,
MO-PPO, a soup front, ZeRO-2 / ZeRO-3 / FSDP2 or why they were skipped), and refuses cleanly
when asked for a GPU that is not there."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_with_tiny_model(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--tiny", "--steps", "3",
         "--warmup", "1", "--batch-size", "4", "--num-generations", "2"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    results = {r["trainer"]: r for r in report["results"]}
    assert sorted(results) == ["mo-dpo", "mo-grpo", "trl-dpo", "trl-grpo"]
    for r in results.values():
        assert "error" not in r, r
        assert r["steps"] == 3 and r["seconds_per_step"] > 0 and r["tokens_per_second"] > 0
        assert r["peak_memory_gib"] is None  # no GPU memory to report on a CPU
    # same data and seed: both DPO trainers saw the same batches, hence as many tokens
    a, b = results["mo-dpo"], results["trl-dpo"]
    assert a["tokens_per_second"] * a["seconds_per_step"] == pytest.approx(
        b["tokens_per_second"] * b["seconds_per_step"], rel=1e-6)
    assert "mo-dpo / trl-dpo: tokens/s x" in proc.stdout
    # every further check prints its line: placement, MO-PPO, a soup front, ZeRO-2/3, FSDP2
    lines = {line.split(":")[0]: line for line in proc.stdout.splitlines() if ": " in line}
    assert lines["placement"].endswith("-> all on cpu"), lines["placement"]
    for part in ("policy cpu", "reference cpu", "critic cpu", "reward model cpu",
                 "front evaluation cpu"):
        assert part in lines["placement"]
    assert " s/step over 3 steps, peak memory -" in lines["mo-ppo"]
    assert "points" in lines["soup front"] and "evaluated on cpu" in lines["soup front"]
    deepspeed = importlib.util.find_spec("deepspeed") is not None  # the test extra has it
    for mode in ("zero-2", "zero-3"):
        line = lines[f"{mode} (1 process)"]
        assert ("-> ok (" if deepspeed else "skipped: deepspeed is not installed") in line, line
        assert "failed" not in line and "FAILED" not in line, line
    assert "skipped: FSDP2 needs CUDA" in lines["fsdp2 (1 process)"]
    checks = report["checks"]
    assert checks["mo-ppo"]["placement"]["reward model"] == "cpu"
    assert checks["soup-front"]["trained_on"] == ["cpu"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_gpu_check_without_gpu_says_how_to_run_it():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "--cpu" in proc.stderr and "Traceback" not in proc.stderr
