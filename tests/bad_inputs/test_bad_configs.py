"""Bad YAML configuration files, and the configuration objects of the API.

The YAML cases run ``moalign train | trace | eval --config FILE`` with the model loaders
forbidden; the API cases check that each config class raises a specific exception type whose
message names the offending key or value.
"""

from __future__ import annotations

import math

import pytest

from moalign.config import build_config, load_yaml, parse_overrides
from moalign.errors import ConfigError, UnknownObjectiveError, WeightsError
from moalign.weights import as_weights, weight_problems
from tests.support.corpus import run_cli_case


def _config(command: str, yaml: str) -> dict:
    """The argv and files of ``moalign <command> --config {tmp}/c.yaml`` (output in ``out``)."""
    out = ["--output", "{tmp}/out/eval.json"] if command == "eval" else ["--output_dir", "{tmp}/out"]
    return {"argv": [command, "--config", "{tmp}/c.yaml", *out], "files": {"c.yaml": yaml}}


TRAIN = "trainer: mo_dpo\nmodel: tiny\n"
TRACE = "method: soup\nmodel: tiny\n"
EVAL = "model: tiny\ndataset: gsm8k\nobjectives: [length]\n"

CASES = [
    dict(id="unknown-key-train", **_config("train", TRAIN + "lerning_rate: 0.1\n"),
         expect=["{tmp}/c.yaml", "unknown key 'lerning_rate'; did you mean 'learning_rate'?"]),
    dict(id="unknown-key-trace", **_config("trace", TRACE + "gird: 3\n"),
         expect=["unknown key 'gird'; did you mean 'grid'?"]),
    dict(id="unknown-key-eval", **_config("eval", EVAL + "metrc: implicit\n"),
         expect=["unknown key 'metrc'; did you mean 'metric'?"]),
    dict(id="unknown-nested-key", **_config("trace", TRACE + "train: {bta: 0.2}\n"),
         expect=["train: unknown key 'bta'; did you mean 'beta'?"]),
    dict(id="unknown-lora-option", **_config("trace", TRACE + "lora: {rank: 4}\n"),
         expect=["'lora': unknown LoRA option 'rank'"]),
    dict(id="wrong-type-int", **_config("train", TRAIN + "max_steps: two\n"),
         expect=["'max_steps' must be int, got 'two' (str)"]),
    dict(id="wrong-type-float", **_config("trace", TRACE + "test_size: big\n"),
         expect=["'test_size' must be float, got 'big'"]),
    dict(id="wrong-type-bool", **_config("train", TRAIN + "overwrite: maybe\n"),
         expect=["'overwrite' must be bool, got 'maybe'"]),
    dict(id="wrong-type-list", **_config("eval", "model: tiny\nobjectives: 3\n"),
         expect=["'objectives' must be list[str], got 3"]),
    dict(id="wrong-type-mapping", **_config("trace", TRACE + "train: [1, 2]\n"),
         expect=["'train' must be dict[str, Any], got [1, 2]"]),
    dict(id="value-out-of-range", **_config("trace", TRACE + "test_size: 1.5\ngrid: 0\n"),
         expect=["'test_size' must be in (0, 1), got 1.5", "'grid' must be between 1 and 100, got 0"]),
    dict(id="malformed-yaml", **_config("train", "model: tiny\nweights: [0.5, 0.5\n"),
         expect=["invalid configuration in {tmp}/c.yaml", "cannot parse YAML", "line 3"]),
    dict(id="tab-indented-yaml", **_config("train", "train:\n\tbeta: 0.1\n"),
         expect=["{tmp}/c.yaml", "cannot parse YAML"]),
    dict(id="yaml-top-level-list", **_config("train", "- model: tiny\n"),
         expect=["the top level must be a mapping of keys to values, got list"]),
    dict(id="yaml-python-tag", **_config(
        "train", 'model: !!python/object/apply:os.system ["touch {tmp}/pwned"]\n'),
         expect=["cannot parse YAML", "python/object/apply:os.system"], outputs=["out", "pwned"]),
    dict(id="yaml-duplicate-key", **_config("train", "model: tiny\nseed: 1\nbeta: 0.1\nseed: 2\n"),
         expect=["{tmp}/c.yaml", "key 'seed' is set twice, on line 2 and on line 4"]),
    dict(id="yaml-duplicate-nested-key", **_config(
        "trace", "model: tiny\ntrain:\n  beta: 0.1\n  max_steps: 2\n  beta: 0.2\n"),
         expect=["{tmp}/c.yaml", "key 'beta' is set twice, on line 3 and on line 5"]),
    dict(id="missing-config-file", argv=["trace", "--config", "{tmp}/nope.yaml"],
         expect=["config file '{tmp}/nope.yaml' does not exist"]),
    dict(id="weights-negative", **_config("train", TRAIN + "weights: [-0.2, 1.2]\n"),
         expect=["'weights' must be non-negative, got [-0.2, 1.2]"]),
    dict(id="weights-wrong-length", **_config("train", TRAIN + "weights: [1.0]\n"),
         expect=["'weights' has 1 entries but there are 2 objectives"]),
    dict(id="weights-sum-zero", **_config("train", TRAIN + "weights: [0.0, 0.0]\n"),
         expect=["'weights' must sum to 1 (a point on the simplex), got sum 0"]),
    dict(id="weights-nan", **_config("train", TRAIN + "weights: [.nan, 1.0]\n"),
         expect=["'weights' contains a non-finite value"]),
    dict(id="trace-weights-off-simplex", **_config("trace", TRACE + "weights: [[1, 0], [0.5, 0.6]]\n"),
         expect=["weights[1] must sum to 1", "[0.5, 0.6]"]),
    dict(id="trace-reference-point-length", **_config("trace", TRACE + "reference_point: [0, 0, 0]\n"),
         expect=["'reference_point' has 3 entries for 2 objectives"]),
    dict(id="trace-owned-train-key", **_config("trace", TRACE + "train: {weights: [1, 0]}\n"),
         expect=["'train': 'weights' is set by the trace itself"]),
    dict(id="trace-decoding-needs-generation", **_config("trace", "method: decoding\nmodel: tiny\n"),
         expect=["the 'decoding' method has no single policy", "use metric: generation"]),
    dict(id="unknown-objective-spec", **_config("eval", "model: tiny\nobjectives: ['length:target']\n"),
         expect=["cannot parse objective spec 'length:target'", "expected 'name:key=value,...'"]),
    dict(id="objective-bad-argument", **_config("eval", "model: tiny\nobjectives: ['length:tagret=80']\n"),
         expect=["objective 'length': bad arguments", "tagret"]),
    dict(id="ppo-constraint-not-an-objective", **_config(
        "train", "trainer: ppo\nmodel: tiny\nconstraints: {harmlessness: 0.2}\n"),
         expect=["constraint on objective 'harmlessness'", "(reasoning_accuracy, length)"]),
    dict(id="ppo-weights-and-schedule", **_config(
        "train", "trainer: ppo\nmodel: tiny\nweights: [0.5, 0.5]\nschedule: dirichlet\n"),
         expect=["give either 'weights' or 'schedule', not both"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_config_file(case, cli, tmp_path, no_model_load):
    run_cli_case(case, cli, tmp_path)


def test_a_python_tag_runs_nothing(cli, tmp_path, no_model_load):
    marker = tmp_path / "pwned"
    for i, payload in enumerate([f'!!python/object/apply:os.system ["touch {marker}"]',
                                 "!!python/name:os.system",
                                 f'!!python/object/new:pathlib.Path ["{marker}"]']):
        (tmp_path / f"c{i}.yaml").write_text(f"model: {payload}\n")
        cli("train", "--config", tmp_path / f"c{i}.yaml").failed_cleanly("cannot parse YAML")
    assert not marker.exists()


# ------------------------------------------------------------------------------------ API


def _dpo(**kw):
    from moalign.trainers import MultiObjectiveDPOConfig

    return MultiObjectiveDPOConfig(**{"output_dir": "unused", "report_to": "none", **kw})


def _ppo(**kw):
    from moalign.trainers.ppo import MultiObjectivePPOConfig

    return MultiObjectivePPOConfig(**kw)


def _front(**kw):
    from moalign.fronts.trace import FrontConfig

    return FrontConfig(**kw)


def _tradeoff(**kw):
    from moalign.tradeoff.tradeoff import TradeOff

    return TradeOff(["helpfulness", "harmlessness"], **kw)


API = [
    ("load_yaml-missing", lambda t: load_yaml(t / "nope.yaml"), ConfigError, "nope.yaml' does not exist"),
    ("build_config-unknown-key", lambda t: build_config(type(_front()), {"gird": 3}),
     ConfigError, "unknown key 'gird'; did you mean 'grid'?"),
    ("build_config-wrong-type", lambda t: build_config(type(_front()), {"grid": "4"}),
     ConfigError, "'grid' must be int, got '4' \\(str\\)"),
    ("parse_overrides-positional", lambda t: parse_overrides(["--beta", "0.1", "oops"]),
     ConfigError, "unexpected argument 'oops'"),
    ("FrontConfig-weights", lambda t: _front(weights=[[0.5, 0.6]]), ConfigError,
     "weights\\[0\\] must sum to 1"),
    ("FrontConfig-method", lambda t: _front(method="soupp"), ConfigError, "'method' must be one of"),
    ("FrontConfig-duplicate-objectives", lambda t: _front(objectives=["a", "a"]), ConfigError,
     "'objectives' must be distinct names, got \\['a', 'a'\\]"),
    ("DPOConfig-no-objectives", lambda t: _dpo(), ConfigError, "'objectives' is required"),
    ("DPOConfig-negative-weights", lambda t: _dpo(objectives=["a", "b"], weights=[-1.0, 2.0]),
     ConfigError, "'weights' must be non-negative"),
    ("DPOConfig-weights-length", lambda t: _dpo(objectives=["a", "b"], weights=[1.0]),
     ConfigError, "'weights' has 1 entries but there are 2 objectives"),
    ("DPOConfig-bad-objective-name", lambda t: _dpo(objectives=["Helpful!"]), ConfigError,
     "invalid objective name 'Helpful!'"),
    ("PPOConfig-weights-off-simplex", lambda t: _ppo(weights=[0.5, 0.6]), WeightsError,
     "must sum to 1 .*sum 1.1"),
    ("PPOConfig-steps", lambda t: _ppo(max_steps=0), ConfigError, "'max_steps' must be >= 1, got 0"),
    ("TradeOff-constraint-unknown", lambda t: _tradeoff(constraints={"honesty": 0.5}),
     UnknownObjectiveError, "constraint on objective 'honesty'"),
    ("TradeOff-constraint-threshold", lambda t: _tradeoff(constraints={"helpfulness": "high"}),
     ConfigError, "threshold of 'helpfulness' must be a finite number, got 'high'"),
    ("TradeOff-weights-and-schedule", lambda t: _tradeoff(weights=[0.5, 0.5], schedule="dirichlet"),
     ConfigError, "give either fixed 'weights' or a weight 'schedule'"),
]


@pytest.mark.parametrize("make, error, match", [a[1:] for a in API], ids=[a[0] for a in API])
def test_bad_config_object(make, error, match, tmp_path):
    with pytest.raises(error, match=match):
        make(tmp_path)


WEIGHTS = [
    ([-0.5, 1.5], 2, "must be non-negative"),
    ([0.2, 0.3, 0.5], 2, "has 3 entries but there are 2 objectives"),
    ([0.0, 0.0], 2, "must sum to 1 .*got sum 0"),
    ([0.7, 0.7], 2, "must sum to 1 .*got sum 1.4"),
    ([math.nan, 1.0], 2, "non-finite value"),
    ([[0.5, 0.5]], None, "1-D vector"),
    ([], None, "non-empty"),
    (["a", "b"], 2, "vector of numbers"),
]


@pytest.mark.parametrize("weights, k, match", WEIGHTS)
def test_weights_off_the_simplex(weights, k, match):
    with pytest.raises(WeightsError, match=match):
        as_weights(weights, k, name="weights")
    if k is not None and weights and all(isinstance(w, float) for w in weights):
        assert weight_problems(weights, k)  # the config-side check finds a problem too


def test_online_trainers_check_constraints_before_loading_the_policy(tmp_path):
    """A missing model path would raise ModelError: the constraint error must come first."""
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    args = MultiObjectivePPOConfig(constraints={"honesty": 0.5}, output_dir=str(tmp_path / "o"))
    with pytest.raises(UnknownObjectiveError, match="constraint on objective 'honesty'") as info:
        MultiObjectivePPOTrainer(tmp_path / "no-such-model", ["length", "reasoning_accuracy"], args)
    assert info.value.objective == "honesty"
    assert not (tmp_path / "o").exists()
