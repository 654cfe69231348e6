"""Work refused before it is done, not after: a front that could never be plotted, an evaluation
that would score nothing, a folder that cannot be written; and messages that name the thing
that is wrong (a column mapping, the objectives of two fronts).

A one-objective front trained its runs, wrote front.json and then failed at plotting; an
evaluation ``max_length`` shorter than every prompt scored every pair 0.5 and exited 0 with a
front.json; a read-only trace folder ended in a PermissionError once the first record was
written. Each is now refused up front, with nothing finished-looking left behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.corpus import finished_outputs, front_dict, jsonl, pref_rows, run_cli_case

TRACE = ["trace", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", "--output_dir", "{tmp}/out"]
TRACE_YAML = """\
method: soup
grid: 1
train_pairs: 4
eval_pairs: 4
train: {max_steps: 1, per_device_train_batch_size: 2, max_length: 48}
lora: {r: 2, lora_alpha: 4}
progress: false
"""
DATA = {"d.jsonl": jsonl(pref_rows(16)), "t.yaml": TRACE_YAML}


def _yaml(dataset: dict) -> str:
    return f"model: tiny\ndataset: {json.dumps(dataset)}\nobjectives: [helpfulness]\n" \
           "weights: [1]\nmax_steps: 1\n"


@pytest.fixture(scope="module", autouse=True)
def _imported() -> None:
    """The libraries a first case imports (transformers' model classes, read for the module
    names of a LoRA check) are imported once, so each case's time is its own work."""
    from moalign.models.specs import model_modules

    model_modules("tiny")

CASES = [
    dict(id="one-objective-front", argv=[*TRACE, "--objectives", "[helpfulness]"],
         expect=["'objectives': a front needs at least 2 objectives", "got ['helpfulness']"]),
    dict(id="one-objective-rl-front",
         argv=[*TRACE[:3], "--dataset", "gsm8k", *TRACE[5:], "--trainer", "grpo",
               "--objectives", "[reasoning_accuracy]"],
         expect=["'objectives': a front needs at least 2 objectives"]),
    dict(id="column-mapped-from-a-missing-column",
         files={"src.jsonl": jsonl({"q": r["prompt"], "chosen": r["chosen"],
                                    "rejected": r["rejected"], "pref_helpfulness": 1.0}
                                   for r in pref_rows(8)),
                "c.yaml": _yaml({"source": "{tmp}/src.jsonl", "columns": {"prompt": "question"}})},
         argv=["train", "--config", "{tmp}/c.yaml", "--output_dir", "{tmp}/out"],
         expect=["'dataset.columns': 'prompt: question' maps a column 'question' that source "
                 "'{tmp}/src.jsonl' does not have", "columns: chosen, pref_helpfulness, q"]),
    dict(id="plot-fronts-of-other-objectives",
         files={"a.json": json.dumps(front_dict()),
                "b.json": json.dumps(front_dict(
                    objectives=["helpfulness", "honesty"],
                    reference_point=[0.1, 0.1],
                    points=[{"id": "p", "weights": [1.0, 0.0], "stderr": {},
                             "scores": {"helpfulness": 0.6, "honesty": 0.5}}]))},
         argv=["plot", "{tmp}/a.json", "{tmp}/b.json", "-o", "{tmp}/out/p.png"],
         expect=["front 1 has objectives ['helpfulness', 'honesty'], front 0 has "
                 "['helpfulness', 'harmlessness']: fronts compare only on the same objectives"]),
    dict(id="plot-fronts-of-objectives-in-another-order",
         files={"a.json": json.dumps(front_dict()),
                "b.json": json.dumps(front_dict(objectives=["harmlessness", "helpfulness"]))},
         argv=["plot", "{tmp}/a.json", "{tmp}/b.json", "-o", "{tmp}/out/p.png",
               "--reference-point", "0,0"],
         expect=["front 1 has objectives ['harmlessness', 'helpfulness']",
                 "the same objectives in another order"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_refused_before_any_work(case, cli, tmp_path, no_model_load):
    start = time.perf_counter()
    run_cli_case({**case, "files": {**DATA, **case.get("files", {})}}, cli, tmp_path)
    assert time.perf_counter() - start < 10


def test_an_evaluation_max_length_that_leaves_nothing_to_score(cli, tmp_path, monkeypatch):
    """Refused when the held-out pairs are prepared: before the baseline is scored and before
    any run trains (the model loads: the prompts' lengths are counted in its tokens)."""
    import moalign.fronts.runs

    def forbidden(*args, **kwargs):
        raise AssertionError("a run was trained before the evaluation data was checked")

    monkeypatch.setattr(moalign.fronts.runs, "train_run", forbidden)
    start = time.perf_counter()
    run_cli_case({"argv": [*TRACE, "--config", "{tmp}/t.yaml", "--max_length", "8"],
                  "files": DATA,
                  "expect": ["'max_length': 8 tokens leave nothing to score: the 3 held-out "
                             "pairs have prompts of", "raise max_length above"]}, cli, tmp_path)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "out" / "points").exists()


# ------------------------------------------------------------------------ unwritable traces


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


@pytest.mark.parametrize("where", ["out", "points", "parent"])
def test_a_trace_into_an_unwritable_folder_is_refused(where, cli, tmp_path, monkeypatch,
                                                     no_model_load):
    """A resumed trace whose folder (or its points folder) cannot be written, and a new trace
    whose parent cannot: refused before any model loads, naming the folder."""
    from tests.support.corpus import write_files

    write_files(tmp_path, {**DATA, "out/config.json": "{}", "out/points/w1.00-0.00/x": "x"})
    folder = {"out": tmp_path / "out", "points": tmp_path / "out" / "points",
              "parent": tmp_path}[where]
    _unwritable(monkeypatch, folder)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = cli(*(a.format(tmp=tmp_path) for a in TRACE))
    result.failed_cleanly(f"'output_dir': cannot write in '{folder}' (Permission denied)",
                          "make it writable or choose another output_dir")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert finished_outputs(tmp_path / "out") == []
