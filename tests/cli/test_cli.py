"""The ``moalign`` CLI end to end on tiny models: demo, resume, train, eval, trace, plot, errors.

One tiny demo is traced per module (``tiny_demo``) and reused by the tests that read a front.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from moalign import pareto  # noqa: E402
from moalign.cli import main  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"



def _run(argv: list[str]) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - start


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "tiny"
    rc, stdout, stderr, wall = _run(["demo", "--tiny", "--output", str(out), "--quiet"])
    assert rc == 0, stderr
    return {"dir": out, "stdout": stdout, "wall": wall}


# ------------------------------------------------------------------------------------ demo


def test_demo_tiny_front_is_schema_valid_and_agrees_with_pareto(tiny_demo):
    from moalign.pareto.front import ParetoFront

    out = tiny_demo["dir"]
    data = json.loads((out / "front.json").read_text())
    assert set(data) >= {"objectives", "method", "reference_point", "hypervolume", "points", "cost"}
    assert data["objectives"] == ["helpfulness", "harmlessness"] and data["method"] == "soup"
    assert set(data["cost"]) >= {"train_seconds", "eval_seconds", "train_steps"}
    assert data["cost"]["train_steps"] == 4  # 2 runs x 2 steps
    points = data["points"]
    assert len(points) >= 5
    for p in points:
        assert set(p) >= {"id", "weights", "scores", "stderr", "nondominated", "checkpoint"}
        assert set(p["scores"]) == set(data["objectives"]) == set(p["stderr"])
        assert min(p["weights"]) >= 0 and sum(p["weights"]) == pytest.approx(1.0)
        assert (out / p["checkpoint"]).is_dir()
    assert len({tuple(p["weights"]) for p in points}) == len(points)
    ParetoFront.load(out / "front.json")  # the library's own schema check

    scores = np.array([[p["scores"][o] for o in data["objectives"]] for p in points])
    flags = np.array([p["nondominated"] for p in points])
    np.testing.assert_array_equal(flags, pareto.is_nondominated(scores))
    assert data["hypervolume"] == pytest.approx(pareto.hypervolume(scores, data["reference_point"]),
                                                abs=1e-12)
    assert (out / "front.png").read_bytes()[:8] == PNG_MAGIC

    # what the command printed: the paths, the baseline row, and in words what is beyond noise
    text = tiny_demo["stdout"]
    assert str(out / "front.json") in text and str(out / "front.png") in text
    m = re.search(r"hypervolume ([\d.e+-]+) \[([\d.e+-]+), ([\d.e+-]+)\]", text)
    assert m, text
    assert float(m.group(1)) == pytest.approx(data["hypervolume"], rel=1e-5)
    assert [float(m.group(2)), float(m.group(3))] == pytest.approx(data["hypervolume_ci"], rel=1e-2)
    for objective, t in data["tradeoff"].items():
        line = next(s for s in text.splitlines() if re.match(rf"\s+{objective}\s+span ", s))
        assert line.endswith("significant") or line.endswith("within noise"), line
        assert f"from {t['from']} to {t['to']}" in line
    assert re.search(r"^   baseline +\(starting policy\) +0\.5 \[0\.5, 0\.5\]", text, re.M), text
    assert "wall time" in text
    # the header, the replies of the start and of both end points, the phases
    assert text.splitlines()[0].startswith("precision: float32") or \
        text.splitlines()[0].startswith("precision: bfloat16")
    for who in ("starting policy", "all weight on helpfulness (w1.00-0.00)",
                "all weight on harmlessness (w0.00-1.00)"):
        assert re.search(rf"^  {re.escape(who)}: ", text, re.M), text
    assert re.search(r"^time: .*training \d+ s \(4 steps\), evaluation \d+ s, replies", text, re.M)


def test_demo_tiny_stores_per_example_scores_and_intervals(tiny_demo):
    """Acceptance: the per-example files reproduce every stored score exactly, every interval
    contains its estimate, and the baseline is measured like any point (not written down)."""
    from moalign.pareto.bootstrap import read_per_example

    out = tiny_demo["dir"]
    data = json.loads((out / "front.json").read_text())
    objectives = data["objectives"]
    assert data["bootstrap"] == {"resamples": 2000, "level": 0.95, "seed": 0}
    assert data["metadata"]["reference"] == "baseline"
    base = data["metadata"]["baseline"]
    assert data["reference_point"] == [base["scores"][o] for o in objectives]
    assert set(base) >= {"scores", "stderr", "ci", "per_example"}
    sizes = set()
    for entry in [*data["points"], base]:
        assert set(entry["ci"]) == set(objectives)
        per = read_per_example(out / entry["per_example"], objectives)
        sizes.add(per.shape[0])
        for k, o in enumerate(objectives):
            col = per[np.isfinite(per[:, k]), k]
            assert col.size > 0 and set(col.tolist()) <= {0.0, 0.5, 1.0}  # implicit outcomes
            assert entry["scores"][o] == col.mean()  # exactly, not approximately
            assert entry["stderr"][o] == pytest.approx(col.std(ddof=1) / np.sqrt(col.size),
                                                       rel=1e-12)
            lo, hi = entry["ci"][o]
            assert lo <= entry["scores"][o] <= hi
        # one line per held-out example, one key per objective, null where unlabelled
        lines = (out / entry["per_example"]).read_text().splitlines()
        assert all(set(json.loads(line)) == set(objectives) for line in lines)
    assert len(sizes) == 1  # every point and the baseline on the same examples
    assert data["metadata"]["heldout"]["examples"] == sizes.pop()
    # the start is its own reference: every pair ties, because the two passes agree
    base_per = read_per_example(out / base["per_example"], objectives)
    assert set(base_per[np.isfinite(base_per)].tolist()) == {0.5}
    lo, hi = data["hypervolume_ci"]
    assert lo <= data["hypervolume"] <= hi
    gain = data["hypervolume_gain"]
    assert gain["ci"][0] <= gain["value"] <= gain["ci"][1]
    assert gain["value"] == pytest.approx(data["hypervolume"])  # reference = the baseline
    assert set(data["tradeoff"]) == set(objectives)
    for objective, t in data["tradeoff"].items():
        assert t["ci"][0] <= t["span"] <= t["ci"][1]
        ends = {p["id"]: p for p in data["points"]}
        k = objectives.index(objective)
        assert ends[t["to"]]["weights"][k] == 1.0 and ends[t["from"]]["weights"][k] == 0.0
        assert t["span"] == pytest.approx(ends[t["to"]]["scores"][objective]
                                          - ends[t["from"]]["scores"][objective])
    for p in data["points"]:
        for o, (lo, hi) in p["delta_ci"].items():
            assert lo <= p["scores"][o] - base["scores"][o] <= hi


def test_demo_rerun_reuses_finished_points(tiny_demo, monkeypatch):
    import moalign.fronts.runs
    import moalign.fronts.trace

    out = tiny_demo["dir"]
    before = json.loads((out / "front.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in [*out.glob("runs/*/run.json"),
                                                 *out.glob("points/*/point.json")]}
    assert len(stamps) == 2 + len(before["points"])

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run or point was recomputed")

    monkeypatch.setattr(moalign.fronts.runs, "train_run", forbidden)
    monkeypatch.setattr(moalign.fronts.trace, "evaluate_front_policy", forbidden)
    rc, stdout, stderr, wall = _run(["demo", "--tiny", "--output", str(out), "--quiet"])
    assert rc == 0, stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    after = json.loads((out / "front.json").read_text())
    assert [p["scores"] for p in after["points"]] == [p["scores"] for p in before["points"]]
    assert after["hypervolume"] == before["hypervolume"] and after["cost"] == before["cost"]
    assert f"2 finished run(s) and {len(before['points'])} finished point(s) reused" in stdout
    assert wall < tiny_demo["wall"]


def test_demo_rerun_with_other_settings_is_refused(tiny_demo):
    rc, stdout, stderr, _ = _run(["demo", "--tiny", "--output", str(tiny_demo["dir"]), "--grid", "3"])
    assert rc == 2 and "changed: grid" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------------------------ train / eval

TINY_DPO = """\
trainer: mo_dpo
model: tiny
dataset: hh-rlhf
objectives: [helpfulness, harmlessness]
weights: [0.3, 0.7]
output_dir: {out}
lora: {{r: 4, alpha: 8}}
max_examples: 8
max_prompt_tokens: 48
max_steps: 2
max_length: 96
learning_rate: 0.01
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("train")
    config = root / "tiny_dpo.yaml"
    config.write_text(TINY_DPO.format(out=root / "out"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc, stdout, stderr, _ = _run(["train", "--config", str(config), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, stderr
    return {"dir": root / "out", "stdout": stdout}


def test_train_tiny_mo_dpo_saves_an_adapter_that_changes_the_policy(trained):
    import torch
    from peft import PeftModel

    from moalign.models import tiny_causal_lm

    out = trained["dir"]
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    record = json.loads((out / "train.json").read_text())
    assert record["trainer"] == "mo_dpo" and record["steps"] == 2
    metrics = record["metrics"]
    assert metrics["helpfulness"]["weights"] == pytest.approx(0.3)
    assert metrics["harmlessness"]["weights"] == pytest.approx(0.7)
    for name in ("helpfulness", "harmlessness"):
        assert name in trained["stdout"]
        assert "loss" in metrics[name] and 0 <= metrics[name]["accuracy"] <= 1
    base, _ = tiny_causal_lm(seed=0)
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        ref = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, str(out))(input_ids=ids).logits
    assert not torch.allclose(ref, tuned)  # trained LoRA B factors are no longer zero


def test_eval_implicit_on_the_train_output(trained, tmp_path):
    result_file = tmp_path / "eval.json"
    rc, stdout, stderr, _ = _run(["eval", "--model", str(trained["dir"]), "--metric", "implicit",
                                  "--n", "6", "-o", str(result_file)])
    assert rc == 0, stderr
    result = json.loads(result_file.read_text())
    for name in ("helpfulness", "harmlessness"):
        assert result["n"][name] == 6 and 0 <= result["scores"][name] <= 1
        assert name in stdout


def test_eval_of_a_policy_against_itself_scores_one_half():
    # every implicit reward is 0: each pair is a tie, which counts one half
    rc, stdout, stderr, _ = _run(["eval", "--model", "tiny", "--reference", "tiny",
                                  "--metric", "implicit", "--n", "4"])
    assert rc == 0, stderr
    rows = {line.split()[0]: line.split() for line in stdout.splitlines()[2:]}
    assert float(rows["helpfulness"][1]) == 0.5 and float(rows["harmlessness"][1]) == 0.5


@pytest.mark.parametrize("trainer, extra", [
    ("ppo", ["--max_new_tokens", "8", "--batch_size", "2", "--mini_batch_size", "2"]),
    ("grpo", ["--max_completion_length", "8", "--per_device_train_batch_size", "4",
              "--num_generations", "2"]),
])
def test_train_online_trainers_on_bundled_gsm8k(trainer, extra, tmp_path):
    out = tmp_path / trainer
    rc, stdout, stderr, _ = _run(["train", "--trainer", trainer, "--model", "tiny", "--lora", "null",
                                  "--max_steps", "1", "--max_examples", "4", "--quiet",
                                  "--weights", "[0.8,0.2]", "--output_dir", str(out), *extra])
    assert rc == 0, stderr
    record = json.loads((out / "train.json").read_text())
    assert record["steps"] == 1 and record["objectives"] == ["reasoning_accuracy", "length"]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert record["metrics"]["length"]["weights"] == pytest.approx(0.2)


def test_missing_labels_come_from_a_scorer():
    from datasets import Dataset

    from moalign.objective import load_objective
    from moalign.workflows.train_data import _label_with_scorers

    words = lambda n: " ".join(["w"] * n)  # noqa: E731  (length: 1 up to 100 words, 0 at 200)
    ds = Dataset.from_list([
        {"prompt": "q", "chosen": words(150), "rejected": words(10)},
        {"prompt": "q", "chosen": words(20), "rejected": words(120)},
        {"prompt": "q", "chosen": words(30), "rejected": words(40)},
    ])
    labelled = _label_with_scorers(ds, ["length"])
    length = load_objective("length")
    expected = np.sign(np.array(length(ds["prompt"], ds["chosen"]))
                       - np.array(length(ds["prompt"], ds["rejected"])))
    np.testing.assert_array_equal(labelled["pref_length"], expected)
    assert expected.tolist() == [-1.0, 1.0, 0.0]


# ------------------------------------------------------------------------------------ errors

BAD_TRAIN = """\
trainer: mo_dpo
model: ./no-such-model
dataset: hh-rlhf
objectives: [helpfulness, harmlessnes]
weights: [0.7, 0.7]
lerning_rate: 0.001
max_steps: two
output_dir: {out}
"""


def test_train_config_problems_are_reported_together(tmp_path, monkeypatch):
    import moalign.data.catalog
    import moalign.models.specs

    def forbidden(*args, **kwargs):
        raise AssertionError("loaded something before the configuration was checked")

    monkeypatch.setattr(moalign.models.specs, "load_model_spec", forbidden)
    monkeypatch.setattr(moalign.data.catalog, "load_dataset", forbidden)
    config = tmp_path / "bad.yaml"
    config.write_text(BAD_TRAIN.format(out=tmp_path / "out"))
    rc, stdout, stderr, _ = _run(["train", "--config", str(config)])
    assert rc == 2
    assert "Traceback" not in stderr and "5 problems" in stderr
    assert "unknown key 'lerning_rate'; did you mean 'learning_rate'?" in stderr
    assert "'max_steps' must be int, got 'two'" in stderr
    assert "'weights' must sum to 1" in stderr
    assert "unknown objective 'harmlessnes'" in stderr and "did you mean 'harmlessness'" in stderr
    assert "no-such-model" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("trainer, typo, field", [
    ("modpo", "bta", "beta"),
    ("ppo", "kl_coeff", "kl_coef"),
    ("grpo", "num_generation", "num_generations"),
    ("conditioned_dpo", "dirichlet_alfa", "dirichlet_alpha"),
])
def test_each_trainer_checks_its_own_fields(trainer, typo, field, tmp_path):
    rc, _, stderr, _ = _run(["train", "--trainer", trainer, "--model", "tiny", f"--{typo}", "1",
                             "--weights", "[0.5,0.2,0.3]", "--output_dir", str(tmp_path / "o")])
    assert rc == 2 and "Traceback" not in stderr
    assert f"did you mean '{field}'?" in stderr and "'weights' has 3 entries" in stderr


def test_unknown_trainer_and_fixed_field(tmp_path):
    rc, _, stderr, _ = _run(["train", "--trainer", "mo_dop", "--model", "tiny"])
    assert rc == 2 and "did you mean 'mo_dpo'?" in stderr
    rc, _, stderr, _ = _run(["train", "--trainer", "conditioned_dpo", "--model", "tiny",
                             "--conditioning", "none", "--output_dir", str(tmp_path / "o")])
    assert rc == 2 and "'conditioning' is fixed to 'prompt'" in stderr


def test_trace_command_runs_an_example_config(tmp_path):
    examples = Path(__file__).resolve().parents[2] / "examples" / "configs"
    out = tmp_path / "front"
    rc, stdout, stderr, _ = _run(["trace", "--config", str(examples / "trace_tiny.yaml"),
                                  "--method", "conditioned", "--grid", "1", "--train.max_steps", "1",
                                  "--output_dir", str(out), "--quiet"])
    assert rc == 0, stderr
    data = json.loads((out / "front.json").read_text())
    assert data["method"] == "conditioned" and [p["weights"] for p in data["points"]] == [[1, 0], [0, 1]]
    assert data["cost"]["train_steps"] == 1
    assert "conditioned front, 2 points" in stdout and str(out / "front.png") in stdout


def test_trace_config_problems_are_reported_together(tmp_path):
    config = tmp_path / "trace.yaml"
    config.write_text("method: soupp\nmodel: tiny\nobjectives: [helpfulness, honesty]\n"
                      "grid: four\ntrain: {lerning_rate: 0.1, weights: [1, 0]}\n"
                      "lora: {rank: 4}\ndataset: missing.jsonl\n")
    rc, _, stderr, _ = _run(["trace", "--config", str(config), "--output_dir", str(tmp_path / "f")])
    assert rc == 2 and "Traceback" not in stderr
    for needle in ("'grid' must be int", "'method' must be one of",
                   "train: unknown key 'lerning_rate'; did you mean 'learning_rate'?",
                   "'weights' is set by the trace itself", "unknown LoRA option 'rank'",
                   "dataset 'missing.jsonl' is neither"):
        assert needle in stderr, needle
    config.write_text("model: tiny\nobjectives: [helpfulness, honesty]\n")
    rc, _, stderr, _ = _run(["trace", "--config", str(config)])
    assert rc == 2 and "no label column 'pref_honesty'" in stderr


def test_debug_shows_the_traceback():
    with pytest.raises(Exception, match="did you mean 'mo_dpo'"):
        main(["train", "--trainer", "mo_dop", "--debug"])


def test_example_configs_validate():
    from moalign.config import load_yaml
    from moalign.fronts.config import resolve_front_config
    from moalign.workflows.train_config import resolve_train_config

    examples = Path(__file__).resolve().parents[2] / "examples" / "configs"
    for name in ("trace_soup.yaml", "trace_tiny.yaml"):
        assert resolve_front_config(load_yaml(examples / name)).metric == "implicit"
    for name in ("mo_dpo.yaml", "conditioned_dpo.yaml", "grpo_gsm8k.yaml"):
        if (examples / name).is_file():
            resolve_train_config(load_yaml(examples / name))


def test_bundled_columns_match_the_loaders():
    from moalign.data.catalog import CATALOG, load_dataset

    for name, entry in CATALOG.items():
        assert set(load_dataset(name).column_names) == entry.columns, name


# ------------------------------------------------------------------------------------ plot


def test_plot_overlays_two_fronts(tiny_demo, tmp_path):
    from moalign.pareto.front import FrontPoint, ParetoFront

    a = tiny_demo["dir"] / "front.json"
    first = ParetoFront.load(a)
    other = ParetoFront(
        objectives=first.objectives, method="sweep", reference_point=first.reference_point,
        points=[FrontPoint(id=p.id, weights=p.weights, scores={k: v * 0.9 for k, v in p.scores.items()},
                           stderr=p.stderr) for p in first.points])
    b = other.save(tmp_path / "b.json")
    target = tmp_path / "cmp.png"
    rc, stdout, stderr, _ = _run(["plot", str(a), str(b), "-o", str(target)])
    assert rc == 0, stderr
    assert target.read_bytes()[:8] == PNG_MAGIC
    for label, front in (("soup", first), ("sweep", other)):
        line = next(s for s in stdout.splitlines() if s.startswith(label + ":"))
        hv = float(re.search(r"hypervolume ([\d.e+-]+)", line).group(1))
        assert hv == pytest.approx(pareto.hypervolume(front.scores_array, first.reference_point),
                                   rel=1e-5)

    rc, _, stderr, _ = _run(["plot", str(a), str(tmp_path / "none.json"), "-o", "x.gif",
                             "--labels", "only-one"])
    assert rc == 2 and "Traceback" not in stderr and "3 problems" in stderr


def test_plot_refuses_fronts_with_different_reference_points(tiny_demo, tmp_path):
    from moalign.pareto.front import ParetoFront

    a = tiny_demo["dir"] / "front.json"
    first = ParetoFront.load(a)
    moved = ParetoFront.from_dict({**first.to_dict(), "reference_point": [0.0, 0.0]})
    shutil.copytree(tiny_demo["dir"], tmp_path / "b", ignore=shutil.ignore_patterns("front.*"))
    b = moved.save(tmp_path / "b" / "b.json")  # beside the same per-example files
    target = tmp_path / "cmp.png"
    rc, stdout, stderr, _ = _run(["plot", str(a), str(b), "-o", str(target)])
    assert rc == 2 and "Traceback" not in stderr and not target.exists()
    assert "reference point [0.0, 0.0]" in stderr and "not comparable" in stderr
    assert "--reference-point" in stderr and "--common-reference" in stderr

    rc, stdout, stderr, _ = _run(["plot", str(a), str(b), "-o", str(target),
                                  "--reference-point", "0.25,0.25"])
    assert rc == 0, stderr
    for label, front in zip(("soup (tiny)", "soup (b.json)"), (first, moved), strict=True):
        line = next(s for s in stdout.splitlines() if s.startswith(label))
        hv = float(re.search(r"hypervolume ([\d.e+-]+)", line).group(1))
        assert hv == pytest.approx(pareto.hypervolume(front.scores_array, [0.25, 0.25]), rel=1e-5)
    assert "recomputed at reference point [0.25, 0.25]" in stdout

    rc, stdout, stderr, _ = _run(["plot", str(a), str(b), "-o", str(target), "--common-reference"])
    assert rc == 0, stderr
    assert f"recomputed at reference point {first.reference_point}" in stdout
    # the same held-out examples and scores: the paired difference is exactly 0
    assert "hypervolume soup (b.json) minus soup (tiny): +0 [+0, +0]" in stdout
    assert "within noise" in stdout
