"""Bad command lines: malformed ``--key value`` overrides, unknown names, bad option values.

In-process cases go through ``moalign.cli.main`` with every model loader forbidden; a few
run ``python -m moalign`` in a real subprocess to show that no traceback reaches stderr, and
that ``--debug`` does show one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from moalign.errors import ConfigError
from tests.support.corpus import ROOT, front_dict, run_cli_case

TRAIN = ["train", "--model", "tiny", "--output_dir", "{tmp}/out"]
TRACE = ["trace", "--model", "tiny", "--output_dir", "{tmp}/out"]
EVAL = ["eval", "--model", "tiny", "--dataset", "gsm8k", "--objectives", "length",
        "--output", "{tmp}/out/eval.json"]
FRONT = json.dumps(front_dict())

CASES = [
    dict(id="unknown-subcommand", argv=["trian"], expect=["invalid choice: 'trian'"]),
    dict(id="unknown-key-did-you-mean", argv=[*TRAIN, "--lerning_rate", "0.1"],
         expect=["unknown key 'lerning_rate'; did you mean 'learning_rate'?"]),
    dict(id="weights-without-value-then-flag", argv=[*TRAIN, "--weights", "--beta", "0.1"],
         expect=["'weights' must be", "got True"]),
    dict(id="weights-without-value-at-end", argv=[*TRAIN, "--weights"],
         expect=["'weights' must be", "got True"]),
    dict(id="nested-key-without-value", argv=[*TRACE, "--train.max_steps", "--grid", "2"],
         expect=["train: 'max_steps' must be int, got True"]),
    dict(id="stray-positional", argv=[*TRAIN, "stray"],
         expect=["unexpected argument 'stray'", "--key value"]),
    dict(id="single-dash-option", argv=[*TRAIN, "-x", "1"], expect=["unexpected argument '-x'"]),
    dict(id="override-conflict", argv=[*TRACE, "--train", "4", "--train.max_steps", "2"],
         expect=["'--train.max_steps' conflicts with an earlier value"]),
    dict(id="weights-negative", argv=[*TRAIN, "--weights", "[-0.5,1.5]"],
         expect=["'weights' must be non-negative", "-0.5"]),
    dict(id="weights-wrong-length", argv=[*TRAIN, "--weights", "0.2,0.3,0.5"],
         expect=["'weights' has 3 entries but there are 2 objectives"]),
    dict(id="weights-sum-zero", argv=[*TRAIN, "--weights", "[0,0]"],
         expect=["'weights' must sum to 1", "got sum 0"]),
    dict(id="weights-off-simplex", argv=[*TRAIN, "--weights", "[0.7,0.7]"],
         expect=["'weights' must sum to 1", "got sum 1.4"]),
    dict(id="weights-not-numbers", argv=[*TRAIN, "--weights", "[high,low]"],
         expect=["'weights' must be list[float]", "'high'"]),
    dict(id="unknown-trainer", argv=[*TRAIN, "--trainer", "mo_dop"],
         expect=["'trainer' must be one of mo_dpo, conditioned_dpo, modpo, ppo, grpo",
                 "got 'mo_dop'", "did you mean 'mo_dpo'?"]),
    dict(id="unknown-objective-lists-the-available", argv=[*EVAL[:5], "--objectives", "lenght"],
         expect=["unknown objective 'lenght'", "did you mean 'length'?",
                 "(registered: ", "harmlessness, helpfulness, length", "reasoning_accuracy"]),
    dict(id="unknown-method", argv=[*TRACE, "--method", "soupp"],
         expect=["'method' must be one of", "got 'soupp'"]),
    dict(id="unknown-metric-choice", argv=[*EVAL, "--metric", "implicitt"],
         expect=["invalid choice: 'implicitt'"]),
    dict(id="unknown-generation-setting", argv=[*EVAL, "--generation", "{max_new_token: 4}"],
         expect=["unknown generation setting 'max_new_token'", "did you mean 'max_new_tokens'?"]),
    dict(id="missing-model-path", argv=[*TRAIN, "--model", "{tmp}/no-such-model"],
         expect=["'{tmp}/no-such-model' does not exist"]),
    dict(id="model-folder-not-a-checkpoint", files={"empty/notes.txt": "x"},
         argv=[*EVAL, "--model", "{tmp}/empty"],
         expect=["the folder '{tmp}/empty' has no config.json or adapter_config.json"]),
    dict(id="lora-not-a-mapping", argv=[*TRAIN, "--lora", "3"],
         expect=["'lora' must be dict | None, got 3"]),
    dict(id="ppo-constraint-on-unknown-objective",
         argv=[*TRAIN, "--trainer", "ppo", "--constraints", "{honesty: 0.5}"],
         expect=["constraint on objective 'honesty'", "(reasoning_accuracy, length)"]),
    dict(id="grpo-constraint-on-unknown-objective",
         argv=[*TRAIN, "--trainer", "grpo", "--constraints", "{lenght: 0.5}"],
         expect=["constraint on objective 'lenght'", "(reasoning_accuracy, length)"]),
    dict(id="fixed-field-of-a-trainer",
         argv=[*TRAIN, "--trainer", "conditioned_dpo", "--conditioning", "none"],
         expect=["'conditioning' is fixed to 'prompt' by trainer 'conditioned_dpo'"]),
    dict(id="output-dir-not-written-by-moalign", files={"out/notes.txt": "keep me"}, argv=TRAIN,
         expect=["'output_dir': '{tmp}/out' is a non-empty folder"]),
    dict(id="trace-output-dir-is-a-file", files={"out": "not a folder"}, argv=TRACE,
         expect=["'output_dir': '{tmp}/out' exists and is not a folder"]),
    dict(id="demo-bad-override", argv=["demo", "--tiny", "--output", "{tmp}/out", "--grid", "zero"],
         expect=["'grid' must be int, got 'zero'", "'tiny' demo preset"]),
    dict(id="objectives-takes-no-options", argv=["objectives", "--bogus"],
         expect=["takes no options", "bogus"]),
    dict(id="plot-missing-file", argv=["plot", "{tmp}/missing/front.json", "-o", "{tmp}/out/p.png"],
         expect=["'{tmp}/missing/front.json' is neither a front.json file nor a folder"]),
    dict(id="plot-without-output", files={"front.json": FRONT}, argv=["plot", "{tmp}/front.json"],
         expect=["the following arguments are required: --output/-o"]),
    dict(id="plot-unknown-format", files={"front.json": FRONT},
         argv=["plot", "{tmp}/front.json", "-o", "{tmp}/out/p.jpg"],
         expect=["--output '{tmp}/out/p.jpg' must end in .png, .pdf, .svg"]),
    dict(id="plot-labels-count", files={"front.json": FRONT},
         argv=["plot", "{tmp}/front.json", "-o", "{tmp}/out/p.png", "--labels", "a,b"],
         expect=["--labels has 2 labels for 1 fronts"]),
    dict(id="plot-unknown-option", files={"front.json": FRONT},
         argv=["plot", "{tmp}/front.json", "-o", "{tmp}/out/p.png", "--dpi", "300"],
         expect=["unknown option '--dpi'"]),
    # a value that starts like a list or a mapping must parse as one
    dict(id="list-missing-bracket", argv=[*TRAIN, "--weights", "[0.5,0.5"],
         expect=["'--weights': '[0.5,0.5' looks like a list but does not parse"]),
    dict(id="list-extra-bracket", argv=[*TRAIN, "--weights", "[0.5,0.5]]"],
         expect=["'--weights': '[0.5,0.5]]' looks like a list but does not parse"]),
    dict(id="list-missing-bracket-with-equals", argv=[*TRAIN, "--weights=[0.3, 0.7"],
         expect=["'--weights': '[0.3, 0.7' looks like a list but does not parse"]),
    dict(id="mapping-missing-brace", argv=[*TRAIN, "--lora", "{r: 4, alpha: 8"],
         expect=["'--lora': '{r: 4, alpha: 8' looks like a mapping but does not parse"]),
    dict(id="nested-list-missing-bracket", argv=[*TRACE, "--grid", "3", "--train.weights", "[1,"],
         expect=["'--train.weights': '[1,' looks like a list but does not parse"]),
    dict(id="eval-mapping-missing-brace", argv=[*EVAL, "--generation", "{max_new_tokens: 4"],
         expect=["'--generation': '{max_new_tokens: 4' looks like a mapping but does not parse"]),
    dict(id="two-malformed-values-both-named",
         argv=[*TRAIN, "--weights", "[0.5,0.5", "--objectives", "[helpfulness"],
         expect=["2 problems", "'--weights'", "'--objectives'"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_command_line(case, cli, tmp_path, no_model_load):
    run_cli_case(case, cli, tmp_path)


def test_output_dir_of_someone_else_is_left_alone(cli, tmp_path, no_model_load):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    cli("train", "--model", "tiny", "--output_dir", tmp_path / "out", "--overwrite", "true") \
        .failed_cleanly("was not written by moalign train; refusing to replace it")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep me"


def test_several_problems_are_reported_together(cli, tmp_path, no_model_load):
    result = cli("train", "--model", tmp_path / "nope", "--lerning_rate", "0.1", "--weights",
                 "[1,1]", "--max_steps", "two", "--output_dir", tmp_path / "out")
    result.failed_cleanly("(4 problems)", "'lerning_rate'", "'weights' must sum to 1",
                          "'max_steps' must be int, got 'two'", "nope' does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_in_process(where, no_model_load):
    argv = ["train", "--trainer", "mo_dop", "--model", "tiny"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    from moalign.cli import main

    with pytest.raises(ConfigError, match="did you mean 'mo_dpo'"):
        main(argv)


# --------------------------------------------------------------------------- real processes


def _moalign(*argv: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "moalign", *argv], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


SUBPROCESS = [
    dict(id="malformed-yaml", files={"bad.yaml": "method: soup\ngrid: [1, 2\n"},
         argv=["trace", "--config", "bad.yaml"], expect=["cannot parse YAML", "bad.yaml", "line 2"]),
    dict(id="missing-config-file", argv=["trace", "--config", "nope.yaml"],
         expect=["config file 'nope.yaml' does not exist"]),
    dict(id="corrupt-front", files={"front.json": '{"objectives": ["a", "b"], "points": ['},
         argv=["plot", "front.json", "-o", "p.png"], expect=["front.json: not valid JSON"]),
]


@pytest.mark.parametrize("case", SUBPROCESS, ids=[c["id"] for c in SUBPROCESS])
def test_no_traceback_reaches_stderr_of_a_real_process(case, tmp_path):
    for name, text in case.get("files", {}).items():
        (tmp_path / name).write_text(text)
    proc = _moalign(*case["argv"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("moalign: error: ")
    for needle in case["expect"]:
        assert needle in proc.stderr, proc.stderr
    assert not (tmp_path / "p.png").exists()
    debug = _moalign("--debug", *case["argv"], cwd=tmp_path)
    assert debug.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in debug.stderr
    assert "moalign.errors." in debug.stderr  # the exception's type, shown in full
    for needle in case["expect"]:
        assert needle in debug.stderr, debug.stderr
