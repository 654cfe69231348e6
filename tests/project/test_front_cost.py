"""benchmarks/front_cost.py runs end to end (tiny model, minimal sizes): sweep, soup and an
adaptive sweep, with hypervolume ratios and their paired-bootstrap intervals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "front_cost.py"


@pytest.mark.slow
def test_front_cost_benchmark_compares_soup_and_adaptive_with_the_sweep(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin",
           "MOALIGN_CPU_BF16": os.environ.get("MOALIGN_CPU_BF16", "0")}  # auto as in the suite
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--points", "3", "--steps", "1", "--pairs", "8",
         "--eval-pairs", "4", "--methods", "sweep,soup", "--weights", "adaptive",
         "--resamples", "200", "--output", str(tmp_path / "traces")],
        capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()
            if re.match(r"^(sweep|soup|adaptive) +\d", line)}
    assert set(rows) == {"sweep", "soup", "adaptive"}
    assert rows["sweep"].split()[1] == "3" and rows["soup"].split()[1] == "2"
    assert "1.000 [1.000, 1.000]" in rows["sweep"]  # the anchor against itself
    assert (tmp_path / "traces" / "adaptive" / "adaptive.json").is_file()
