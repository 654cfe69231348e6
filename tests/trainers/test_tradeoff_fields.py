"""One trade-off vocabulary for every trainer.

The four trainer configs (MO-DPO, also conditioned; MODPO; MO-PPO; MO-GRPO) spell their
trade-off fields alike (``weights``, ``schedule``, ``scalarizer``, ``constraints``), the same
values build the same :class:`~moalign.tradeoff.tradeoff.TradeOff`, every trainer logs
``weights/<objective>`` (the online ones also ``rewards/<objective>/mean`` and, with
constraints, ``lagrange/<objective>``), and a former field name is refused with a
:class:`~moalign.errors.ConfigError` that names today's.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

from moalign.errors import ConfigError  # noqa: E402
from moalign.tradeoff.tradeoff import FIELDS, RENAMED_FIELDS, TradeOff  # noqa: E402
from moalign.trainers import (  # noqa: E402
    MODPOConfig,
    MODPOTrainer,
    MultiObjectiveDPOConfig,
    MultiObjectiveDPOTrainer,
)
from moalign.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer  # noqa: E402
from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer  # noqa: E402
from tests.support import rl_bandit as bandit  # noqa: E402
from tests.support.dpo_testkit import conflicting_pairs, cpu_args, tiny_pair  # noqa: E402

#: config class -> the trade-off fields it has
SUPPORTED = {
    MultiObjectiveDPOConfig: {"weights", "schedule", "scalarizer"},
    MODPOConfig: {"weights"},
    MultiObjectivePPOConfig: {"weights", "schedule", "scalarizer", "constraints"},
    MultiObjectiveGRPOConfig: {"weights", "schedule", "constraints"},
}
ANNEAL = {"name": "anneal", "start": [0.9, 0.1], "end": [0.1, 0.9], "steps": 4}


def build(cls, tmp_path, **fields):
    """A CPU config of ``cls`` for objectives (a, b) with the given trade-off fields."""
    if cls is MultiObjectivePPOConfig:
        return cls(output_dir=str(tmp_path), use_cpu=True, **fields)
    if cls is MultiObjectiveGRPOConfig:
        return cls(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], **fields)
    return cls(**cpu_args(tmp_path), objectives=["a", "b"], **fields)


def test_every_trainer_config_spells_the_trade_off_fields_alike(tmp_path):
    for cls, supported in SUPPORTED.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert names & set(FIELDS) == supported, cls.__name__
        assert not names & {"weight_schedule"}, cls.__name__
        # the same `weights` give the same TradeOff in every trainer
        cfg = build(cls, tmp_path, weights=[0.3, 0.7])
        assert TradeOff.from_config(["a", "b"], cfg).weights.tolist() == pytest.approx([0.3, 0.7])
    for cls in (c for c, s in SUPPORTED.items() if "schedule" in s):
        cfg = build(cls, tmp_path, schedule=ANNEAL)
        tradeoff = TradeOff.from_config(["a", "b"], cfg)
        assert tradeoff.schedule.kind == "anneal" and tradeoff.ask().tolist() == [0.9, 0.1]
    for cls in (c for c, s in SUPPORTED.items() if "constraints" in s):
        tradeoff = TradeOff.from_config(["a", "b"], build(cls, tmp_path, constraints={"b": 0.5}))
        assert tradeoff.constraints.constrained.tolist() == [False, True]


@pytest.mark.parametrize("cls", list(SUPPORTED), ids=lambda c: c.__name__)
@pytest.mark.parametrize(("old", "value"), [("weight_schedule", ANNEAL),
                                            ("reward_weights", [0.5, 0.5])])
def test_a_former_field_name_is_refused_naming_the_new_one(cls, old, value, tmp_path):
    new = RENAMED_FIELDS[old]
    with pytest.raises(ConfigError, match=f"'{old}'.*'{new}'"):
        build(cls, tmp_path, **{old: value})


def test_a_former_field_name_in_a_train_file_names_the_new_one(tmp_path):
    from moalign.workflows.train_config import resolve_train_config

    base = {"model": "tiny", "output_dir": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match="'weight_schedule' is now called 'schedule'") as info:
        resolve_train_config({**base, "trainer": "mo_dpo", "weight_schedule": ANNEAL})
    assert not any("unknown key" in p for p in info.value.problems)
    with pytest.raises(ConfigError, match="'reward_weights' is TRL's field.*'weights'"):
        resolve_train_config({**base, "trainer": "grpo", "reward_weights": [0.5, 0.5]})
    # today's names pass, and top-level `weights` reach the GRPO config's `weights`
    assert resolve_train_config({**base, "trainer": "mo_dpo", "schedule": ANNEAL}).args.schedule
    resolved = resolve_train_config({**base, "trainer": "grpo", "weights": [0.8, 0.2]})
    assert resolved.args.weights == [0.8, 0.2] and resolved.args.reward_weights is None


# ------------------------------------------------------------------------- logged keys


def _dpo(tmp_path, **fields):
    model, ref, tok = tiny_pair(0)
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path, max_steps=1), objectives=["a", "b"],
                                   **fields)
    return MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=conflicting_pairs(8),
                                    processing_class=tok)


def _modpo(tmp_path):
    model, ref, tok = tiny_pair(0)
    data = conflicting_pairs(8).add_column("margin_b", [0.5] * 8)
    args = MODPOConfig(**cpu_args(tmp_path, max_steps=1), objectives=["a", "b"],
                       weights=[0.6, 0.4])
    return MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)


def _ppo(tmp_path):
    model, tok, arm_ids = bandit.reference_policy(steps=20)
    args = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=1, batch_size=1, num_samples_per_prompt=8,
        max_new_tokens=1, mini_batch_size=8, ppo_epochs=1, use_cpu=True, save_final=False,
        weights=[0.6, 0.4], constraints={"second": 0.5},
        generation_kwargs={"suppress_tokens": bandit.suppressed(tok, arm_ids)})
    return MultiObjectivePPOTrainer(model, bandit.objectives(), args,
                                    train_dataset=[{"prompt": bandit.PROMPT}], processing_class=tok)


def _grpo(tmp_path):
    model, tok, arm_ids = bandit.reference_policy(steps=20)
    args = MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=1, beta=0.0, use_cpu=True, bf16=False, report_to=[],
        logging_steps=1, save_strategy="no", disable_tqdm=True, weights=[0.6, 0.4],
        constraints={"second": 0.5},
        generation_kwargs={"suppress_tokens": bandit.suppressed(tok, arm_ids)})
    return MultiObjectiveGRPOTrainer(model, bandit.objectives(), args,
                                     train_dataset=Dataset.from_dict({"prompt": [bandit.PROMPT] * 8}),
                                     processing_class=tok)


def _log(trainer) -> dict[str, float]:
    result = trainer.train()
    history = trainer.log_history if isinstance(trainer, MultiObjectivePPOTrainer) else \
        trainer.state.log_history
    assert history and (not isinstance(result, list) or result == history)
    return {k: v for entry in history for k, v in entry.items()}


TRAINERS = {
    "mo_dpo": (lambda p: _dpo(p, weights=[0.3, 0.7]), ("a", "b"), {"a": 0.3, "b": 0.7}),
    "conditioned_dpo": (lambda p: _dpo(p, conditioning="prompt"), ("a", "b"), None),
    "modpo": (_modpo, ("a", "b"), {"a": 0.6, "b": 0.4}),
    "ppo": (_ppo, ("first", "second"), {"first": 0.6, "second": 0.4}),
    "grpo": (_grpo, ("first", "second"), {"first": 0.6, "second": 0.4}),
}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_every_trainer_logs_the_same_trade_off_keys(name, tmp_path):
    make, objectives, weights = TRAINERS[name]
    logged = _log(make(tmp_path))
    for k in objectives:
        assert f"weights/{k}" in logged, (name, sorted(logged))
        if weights is not None:
            assert logged[f"weights/{k}"] == pytest.approx(weights[k])
    if name in ("ppo", "grpo"):  # online: mean rewards, and the constrained objective's multiplier
        assert {f"rewards/{k}/mean" for k in objectives} <= set(logged)
        assert "lagrange/second" in logged and "constraint/second/slack" in logged
        assert "lagrange/first" not in logged
    else:  # TRL's DPO keys are TRL's
        assert {"rewards/chosen", "rewards/margins"} <= set(logged)
    # negative control: none of the keys of before
    assert not [k for k in logged if k.startswith(("weight/", "multiplier/", "reward/"))]
