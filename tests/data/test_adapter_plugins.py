"""A dataset adapter from a separately installed package: listed by ``moalign datasets`` and
used by ``moalign train``, through the ``moalign.datasets`` entry-point group.

The package is installed into a temporary folder (its ``*.dist-info`` as pip leaves it) that a
subprocess puts on ``PYTHONPATH``; the running environment is not touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts `python -m moalign` processes (one trains)

PLUGIN = '''
from datasets import Dataset

from moalign.data import AdapterReport, AdapterResult, DatasetAdapter


def convert(records, *, objective="helpfulness"):
    rows = list(records)
    report = AdapterReport(source="qa-votes", records_in=len(rows))
    out = {"prompt": [], "chosen": [], "rejected": [], "pref_" + objective: []}
    for i, row in enumerate(rows):
        if row["up"] == row["down"]:
            report.drop("no majority", i)
            continue
        good, bad = (row["a"], row["b"]) if row["up"] > row["down"] else (row["b"], row["a"])
        out["prompt"].append(row["q"])
        out["chosen"].append(good)
        out["rejected"].append(bad)
        out["pref_" + objective].append(1.0)
    report.records_kept = report.rows_out = len(out["prompt"])
    return AdapterResult(Dataset.from_dict(out), report)


QA_VOTES = DatasetAdapter("qa-votes", "preference", ("q", "a", "b", "up", "down"), convert,
                          "question + two answers with up / down votes (test plugin)",
                          labels=lambda o: [o.get("objective", "helpfulness")])
'''


def _install(site: Path) -> None:
    (site / "qa_votes_plugin").mkdir(parents=True)
    (site / "qa_votes_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "qa_votes_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qa-votes-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[moalign.datasets]\nqa-votes = qa_votes_plugin:QA_VOTES\n")


def _moalign(site: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "moalign", *argv], env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_third_party_adapter_is_listed_and_trains(tmp_path):
    site = tmp_path / "site"
    _install(site)
    listed = _moalign(site, "datasets", "-v")
    assert listed.returncode == 0, listed.stderr
    assert "qa-votes" in listed.stdout and "qa_votes_plugin:QA_VOTES" in listed.stdout

    rows = [{"q": f"Question {i}?", "a": f"A good answer {i}.", "b": f"Meh {i}.",
             "up": 3 + i % 2, "down": 1} for i in range(8)]
    rows.append({"q": "Tie?", "a": "x", "b": "y", "up": 2, "down": 2})
    data = tmp_path / "votes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    config = tmp_path / "train.yaml"
    config.write_text(textwrap.dedent(f"""
        trainer: mo_dpo
        model: tiny
        dataset: {{source: {data}, adapter: qa-votes}}
        objectives: [helpfulness]
        output_dir: {out}
        max_steps: 1
        per_device_train_batch_size: 2
    """))
    trained = _moalign(site, "train", "--config", str(config), "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert "qa-votes: 9 rows in" in trained.stderr and "dropped (no majority): 1" in trained.stderr
    record = json.loads((out / "train.json").read_text())
    assert record["steps"] == 1 and record["dataset"]["adapter"] == "qa-votes"


def test_without_the_plugin_the_adapter_is_unknown_before_training(tmp_path):
    data = tmp_path / "votes.jsonl"
    data.write_text(json.dumps({"q": "?", "a": "x", "b": "y", "up": 1, "down": 0}) + "\n")
    config = tmp_path / "train.yaml"
    config.write_text(f"model: tiny\ndataset: {{source: {data}, adapter: qa-votes}}\n"
                      f"output_dir: {tmp_path / 'out'}\n")
    result = _moalign(tmp_path, "train", "--config", str(config))
    assert result.returncode != 0
    assert "unknown dataset adapter 'qa-votes'" in result.stderr and "pku-saferlhf" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
