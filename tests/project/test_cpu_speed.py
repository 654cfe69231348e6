"""benchmarks/cpu_speed.py runs end to end with --tiny and prints both tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the whole benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_speed_tiny_prints_the_tables():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_speed.py"), "--tiny",
                           "--threads", "1"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("forward, 4 x 32 tokens", "training step (full model, fwd + bwd)",
                "greedy generation, batch 4", "greedy generation, batch 1",
                "log-probs of 8 HH pairs", "LoRA r=32 soup point", "greedy generation, 4 HH"):
        assert row in out, out
    assert "bf16 / fp32" in out and "moalign vs plain transformers" in out
    assert "precision auto ->" in out
    assert "how close to the limit" in out and "bfloat16 matmul" in out
    assert "evaluation / peak" in out
