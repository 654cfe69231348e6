"""Bad fronts and checkpoints: front.json files that are not one, reference points that nothing
dominates, model folders that are not checkpoints, damaged or changed traces on resume.

One tiny trace is run per module (``traced``, a few seconds) and copied for each resume case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from moalign.errors import CheckpointError, ModelError
from moalign.pareto import ParetoError, hypervolume
from moalign.pareto.front import FrontPoint, ParetoFront
from tests.support.corpus import (
    FINISHED,
    finished_outputs,
    front_dict,
    jsonl,
    pref_rows,
    run_cli_case,
)

# ------------------------------------------------------------------------------------ hypervolume


def test_a_reference_point_dominated_by_nothing_gives_hypervolume_zero(cli, tmp_path):
    """Documented result: when no point strictly dominates the reference point, the
    hypervolume is 0.0 (not an error), in the library, in front.json and in ``moalign plot``."""
    scores = np.array([[0.7, 0.4], [0.5, 0.6]])
    for ref in ([0.9, 0.9], [0.7, 0.0], [1.0, -1.0], [0.5, 0.6]):  # above / on the points
        assert hypervolume(scores, ref) == 0.0
    assert hypervolume(np.zeros((0, 2)), [0.0, 0.0]) == 0.0
    front = ParetoFront.from_dict(front_dict(reference_point=[0.8, 0.8]))
    assert front.hypervolume() == 0.0 and front.to_dict()["hypervolume"] == 0.0
    assert front.hypervolume([0.0, 0.0]) == pytest.approx(0.7 * 0.4 + 0.5 * 0.2)  # sanity
    front.save(tmp_path / "front.json")
    result = cli("plot", tmp_path / "front.json", "-o", tmp_path / "p.png")
    assert result.rc == 0, result.err
    assert "hypervolume 0  [" in result.out and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("points, ref, match", [
    ([[0.5, float("nan")]], [0.0, 0.0], "finite"),
    ([[0.5, 0.5]], [0.0, 0.0, 0.0], "3"),
    ([[0.5, 0.5]], [0.0, float("inf")], "finite"),
    ([0.5, 0.5, 0.5], [0.0, 0.0], "shape|2-D|\\[N, K\\]"),
])
def test_hypervolume_of_unusable_input(points, ref, match):
    with pytest.raises(ParetoError, match=match):
        hypervolume(points, ref)


# ------------------------------------------------------------------------------------ front.json


def _points(**changes):
    p = front_dict()["points"]
    p[0] = {**p[0], **changes}
    return p


FRONT_FILES = [
    ("corrupt-json", '{"objectives": ["helpfulness", "harmlessness"], "poin', "not valid JSON"),
    ("empty-file", "", "not valid JSON"),
    ("not-an-object", "[1, 2]", "expected a JSON object, got list"),
    ("null-objectives", front_dict(objectives=None), "objectives must be a non-empty list of names"),
    ("no-points-field", {k: v for k, v in front_dict().items() if k != "points"},
     "missing field 'points'"),
    ("no-objectives-field", {k: v for k, v in front_dict().items() if k != "objectives"},
     "missing field 'objectives'"),
    ("unknown-field", front_dict(hypervolumes=1.0), "unknown field(s) ['hypervolumes']"),
    ("point-without-scores", front_dict(points=[{"id": "a", "weights": [1, 0]}]),
     "points[0] is missing field 'scores'"),
    ("score-of-unknown-objective", front_dict(points=_points(scores={"helpfulness": 1, "honesty": 1})),
     "missing objectives ['harmlessness'], unknown objectives ['honesty']"),
    ("score-not-finite", front_dict(points=_points(scores={"helpfulness": None, "harmlessness": 1})),
     "scores['helpfulness'] must be a finite number, got None"),
    ("weights-off-simplex", front_dict(points=_points(weights=[0.7, 0.7])), "must sum to 1"),
    ("negative-stderr", front_dict(points=_points(stderr={"helpfulness": -0.1})), ">= 0"),
    ("duplicate-ids", front_dict(points=_points(id="w0.00-1.00")), "is used by another point"),
    ("reference-point-length", front_dict(reference_point=[0.0]), "reference_point must have 2 values"),
]


@pytest.mark.parametrize("content, match", [f[1:] for f in FRONT_FILES], ids=[f[0] for f in FRONT_FILES])
def test_a_front_file_that_is_not_one(content, match, cli, tmp_path):
    path = tmp_path / "front.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(CheckpointError) as info:
        ParetoFront.load(path)
    assert str(path) in str(info.value) and match in str(info.value)
    cli("plot", path, "-o", tmp_path / "out" / "p.png").failed_cleanly(str(path), match)
    assert not (tmp_path / "out").exists()


def test_a_front_point_of_the_wrong_shape_is_refused_by_the_api():
    front = ParetoFront(["a", "b"], [FrontPoint("p", {"a": 1.0, "b": 0.0})])
    with pytest.raises(ParetoError, match="points\\[1\\].*missing objectives \\['b'\\]"):
        front.add(FrontPoint("q", {"a": 1.0}))
    with pytest.raises(ParetoError, match="a point with id 'p' is already on the front"):
        front.add(FrontPoint("p", {"a": 0.0, "b": 1.0}))
    with pytest.raises(ParetoError, match="no reference_point"):
        front.hypervolume()


# ------------------------------------------------------------------------------------ checkpoints


def _tiny_folder(path: Path) -> Path:
    from moalign.models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return _tiny_folder(tmp_path_factory.mktemp("tiny") / "model")


def _damage(kind: str, folder: Path, tiny: Path) -> str:
    """Make ``folder`` a model folder damaged as ``kind``; return what the message must name."""
    if kind == "empty":
        folder.mkdir()
        return "has no config.json or adapter_config.json"
    if kind == "a-file":
        folder.write_text("weights")
        return "is a file but not a .gguf file"
    shutil.copytree(tiny, folder)
    weights = folder / "model.safetensors"
    if kind == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:-100])
        return f"weights file '{weights}' is truncated"
    if kind == "garbage-weights":
        weights.write_bytes(b"\xff" * 64)
        return f"weights file '{weights}' is corrupt"
    if kind == "adapter-config-garbage":
        (folder / "adapter_config.json").write_text("{not json")
        return f"adapter config '{folder / 'adapter_config.json'}' is corrupt"
    if kind == "adapter-pickle":
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
        return "is saved as a pickle (adapter_model.bin)"
    if kind == "config-garbage":
        (folder / "config.json").write_text("{oops")
        return "is not a valid JSON file"
    if kind == "config-without-model-type":
        (folder / "config.json").write_text("{}")
        return "model_type"
    weights.unlink()  # "no-weights"
    return "model.safetensors"


#: damage -> whether the command's up-front check finds it (before any model loads)
CHECKPOINTS = {"empty": True, "a-file": True, "truncated-weights": True, "garbage-weights": True,
               "adapter-config-garbage": True, "adapter-pickle": True, "config-garbage": False,
               "config-without-model-type": False, "no-weights": False}


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_a_checkpoint_folder_that_is_not_one(kind, tiny_checkpoint, cli, tmp_path, monkeypatch):
    from moalign.models import load_policy

    folder = tmp_path / "model"
    named = _damage(kind, folder, tiny_checkpoint)
    with pytest.raises(ModelError) as info:
        load_policy(folder)
    assert named in str(info.value) and str(folder) in str(info.value)
    if CHECKPOINTS[kind]:
        import moalign.models.specs

        def forbidden(*args, **kwargs):
            raise AssertionError("the damaged checkpoint was found only by loading it")

        monkeypatch.setattr(moalign.models.specs, "load_model_spec", forbidden)
    out = tmp_path / "out" / "eval.json"
    cli("eval", "--model", folder, "--dataset", "gsm8k", "--objectives", "length", "--quiet",
        "-o", out).failed_cleanly(named)
    assert not out.parent.exists()


def test_a_trainer_checkpoint_that_is_not_one(tiny_checkpoint, tmp_path):
    from moalign.storage.checkpoints import check_trainer_checkpoint, latest_checkpoint

    with pytest.raises(CheckpointError, match="no trainer_state.json"):
        check_trainer_checkpoint(tiny_checkpoint)
    with pytest.raises(CheckpointError, match="does not exist"):
        check_trainer_checkpoint(tmp_path / "checkpoint-3")
    shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint-3")
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3')
    assert latest_checkpoint(tmp_path) is None  # a half-written checkpoint is never resumed


def test_eval_of_a_damaged_train_output(tmp_path, cli, no_model_load):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.json").write_text('{"trainer": "mo_dpo", "model": "ti')
    cli("eval", "--model", tmp_path / "run", "--objectives", "length", "--dataset", "gsm8k") \
        .failed_cleanly(f"moalign train record '{tmp_path / 'run' / 'train.json'}' is corrupt")
    (tmp_path / "run" / "train.json").write_text('{"trainer": "mo_dpo"}')
    cli("eval", "--model", tmp_path / "run", "--objectives", "length", "--dataset", "gsm8k") \
        .failed_cleanly("train.json' is incomplete: no key 'model'")


# ------------------------------------------------------------------------------------ traces

TRACE_YAML = """\
method: soup
model: tiny
dataset: {data}
grid: 1
train_pairs: 4
eval_pairs: 4
include_baseline: false
max_length: 48
train: {{max_steps: 1, per_device_train_batch_size: 2, max_length: 48}}
lora: {{r: 2, lora_alpha: 4}}
progress: false
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Path:
    """A finished tiny trace: 2 runs, 2 points, front.json (a few seconds)."""
    from moalign.cli import main

    base = tmp_path_factory.mktemp("trace")
    (base / "d.jsonl").write_text(jsonl(pref_rows(16)))
    (base / "trace.yaml").write_text(TRACE_YAML.format(data=base / "d.jsonl"))
    assert main(["trace", "--config", str(base / "trace.yaml"), "--output_dir",
                 str(base / "front")]) == 0
    assert (base / "front" / "front.json").is_file()
    return base


def _resume(traced: Path, tmp: Path, *extra: str) -> list[str]:
    """Copy the finished trace to ``tmp/out``; return the argv that resumes it there."""
    shutil.copytree(traced / "front", tmp / "out")
    return ["trace", "--config", str(traced / "trace.yaml"), "--output_dir", str(tmp / "out"),
            *extra]


RESUME = {
    "truncated-point": ("points/w1.00-0.00/point.json", '{"scores": {"helpfulness": 0.',
                        ["front point '{tmp}/out/points/w1.00-0.00/point.json' is corrupt",
                         "delete '{tmp}/out/points/w1.00-0.00' to recompute it"]),
    "point-without-a-score": ("points/w0.00-1.00/point.json",
                              '{"scores": {"helpfulness": 0.5}, "stderr": {}, "eval_seconds": 1}',
                              ["w0.00-1.00/point.json' has no score for harmlessness"]),
    "truncated-run-record": ("runs/only_helpfulness/run.json", '{"seconds": 1.0, "st',
                             ["run record '{tmp}/out/runs/only_helpfulness/run.json' is corrupt",
                              "delete '{tmp}/out/runs/only_helpfulness' to retrain it"]),
    "truncated-adapter": ("runs/only_harmlessness/adapter/adapter_model.safetensors", None,
                          ["weights file '{tmp}/out/runs/only_harmlessness/adapter/"
                           "adapter_model.safetensors' is truncated"]),
    "corrupt-config": ("config.json", '{"method": "soup", "gri', ["trace configuration "
                                                                 "'{tmp}/out/config.json' is corrupt"]),
}


@pytest.mark.parametrize("damage", list(RESUME))
def test_a_damaged_trace_is_reported_on_resume(damage, traced, cli, tmp_path):
    """As a trace killed before it wrote front.json leaves it, plus one damaged file."""
    argv = _resume(traced, tmp_path)
    (tmp_path / "out" / "front.json").unlink()
    (tmp_path / "out" / "front.png").unlink()
    name, text, expect = RESUME[damage]
    path = tmp_path / "out" / name
    if text is None:
        path.write_bytes(path.read_bytes()[:-16])
    else:
        path.write_text(text)
    run_cli_case(dict(argv=argv, expect=expect, outputs=[]), cli, tmp_path)
    assert not (tmp_path / "out" / "front.json").exists()
    assert not (tmp_path / "out" / "front.png").exists()


def test_a_run_folder_without_run_json_is_retrained_not_loaded(traced, cli, tmp_path):
    """Documented: a run folder without run.json is unfinished (its writer died); the resume
    trains it again in its place instead of loading whatever adapter it holds."""
    argv = _resume(traced, tmp_path, "--quiet")
    run = tmp_path / "out" / "runs" / "only_helpfulness"
    (run / "run.json").unlink()
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"half-written")
    for stale in ("front.json", "front.png"):
        (tmp_path / "out" / stale).unlink()
    result = cli(*argv)
    assert result.rc == 0, result.err
    assert json.loads((run / "run.json").read_text())["steps"] == 1
    assert (tmp_path / "out" / "front.json").is_file()


def test_a_rerun_with_a_changed_config_is_refused(traced, cli, tmp_path, no_model_load):
    argv = _resume(traced, tmp_path, "--grid", "2", "--seed", "1")
    before = {p: p.read_bytes() for p in finished_outputs(tmp_path / "out")}
    assert any(p.name == "front.json" for p in before)
    cli(*argv).failed_cleanly(f"'{tmp_path / 'out'}' holds a trace with a different configuration "
                              "(changed: grid, seed); choose another output_dir or delete it")
    assert {p: p.read_bytes() for p in finished_outputs(tmp_path / "out")} == before
    assert sorted(p.name for p in (tmp_path / "out" / "points").iterdir()) == \
        ["w0.00-1.00", "w1.00-0.00"]


def test_finished_names_cover_what_a_trace_writes(traced):
    """The corpus's notion of 'finished-looking' covers every record a trace writes."""
    names = {p.name for p in (traced / "front").rglob("*") if p.is_file()}
    assert {"front.json", "front.png", "run.json", "point.json", "adapter_model.safetensors"} \
        <= names & FINISHED
