"""Multi-objective GRPO: TRL's ``GRPOTrainer`` with moalign objectives, schedules and constraints.

The objectives are TRL reward functions as they are (an :class:`~moalign.objective.Objective`
has TRL's reward signature). What moalign adds, a :class:`~moalign.tradeoff.tradeoff.TradeOff` as in every moalign trainer,
happens each time a generation batch is scored, before TRL turns the rewards ``[B, K]`` into
advantages:

- the weight **schedule** is asked for the weights of this batch (annealing, Dirichlet, ...);
- with **constraints** ``objective_j >= threshold_j`` the Lagrange multipliers take one
  projected dual-ascent step on the batch's mean rewards (Safe RLHF, Dai et al. 2023);
- the trainer's ``reward_weights`` (the tensor TRL multiplies the rewards by) is set to the
  coefficients of the combined signal, ``(w_k + lambda_k) / (1 + sum_j lambda_j)`` (just ``w``
  without constraints);
- an objective that scored none of the batch is an error; per-objective weights
  (``weights/<k>``), multipliers (``lagrange/<k>``) and constraint slacks
  (``constraint/<k>/slack``) are logged next to TRL's per-reward means (``rewards/<k>/mean``).

With ``conditioning="prompt"`` each prompt shows its own Dirichlet-drawn weights and its
completions' rewards are weighted by them (:mod:`moalign.trainers.conditioned_rl`). The
evaluation prompts are conditioned the same way with their own seeded draws (a separate stream
per evaluation set), their rewards are weighted with those draws, and ``eval_weights/<k>`` logs
the mean of the evaluation batch's weights.

A missing score (an objective returning ``None`` for a completion) follows the rule of
:mod:`moalign.tradeoff.scalarize`, as in MO-PPO: that completion's weights are renormalized
over the objectives that scored it (TRL's own ``nansum`` would count the missing score as 0).

The fixed weights are the config's ``weights``, as in every moalign trainer config; TRL's own
field ``reward_weights`` must stay unset (the trainer fills TRL's weights itself, batch by
batch), and setting it is a :class:`~moalign.errors.ConfigError` pointing to ``weights``.

The normalization choice is TRL's ``multi_objective_aggregation``: ``"sum_then_normalize"``
(weighted sum, then group normalization as in GRPO, Shao et al. 2024) or
``"normalize_then_sum"`` (each objective normalized within its group before weighting, as
GDPO argues). TRL sums weighted rewards itself, so only the linear scalarizer applies here.

With ``beta > 0`` and a policy that is not a peft model, TRL loads the reference model from the
policy's ``name_or_path``; a model built in memory is first saved to ``reference_dir`` so the
reference is exactly the initial policy (by the main process, atomically, while the other
processes wait).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from trl import GRPOConfig, GRPOTrainer

from moalign.config.fields import doc, document_fields
from moalign.errors import ConfigError, DataError
from moalign.objective import ObjectiveSet
from moalign.tradeoff.conditioning import WEIGHTS_COLUMN
from moalign.tradeoff.tradeoff import TradeOff, check_scored, refuse_renamed_fields
from moalign.trainers.checkpoint_state import TrainerState
from moalign.trainers.conditioned_rl import (
    ConditioningFields,
    PerCompletionWeights,
    condition_prompts,
    conditioning_problems,
    row_weights,
)
from moalign.trainers.ranges import GRPO_RANGES, trainer_range_problems
from moalign.weights import as_weights

__all__ = ["MultiObjectiveGRPOConfig", "MultiObjectiveGRPOTrainer"]

_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
_REWARD_WEIGHTS = ("'reward_weights' is TRL's field, which this trainer sets itself from the "
                   "trade-off on every batch: give the fixed objective weights as 'weights'")


@refuse_renamed_fields
@dataclass
class MultiObjectiveGRPOConfig(GRPOConfig, ConditioningFields):
    """Configuration of :class:`MultiObjectiveGRPOTrainer`: TRL's ``GRPOConfig`` plus the
    trade-off, with the field names of every moalign trainer config. ``weights`` are the fixed
    objective weights and must lie on the simplex (default: uniform); TRL's ``reward_weights``
    must stay unset (the trainer sets TRL's weights from the trade-off on every batch);
    ``multi_objective_aggregation`` picks the normalization."""

    weights: list[float] | None = doc(
        None, "Fixed objective weights on the simplex, one per objective (default: uniform). "
        "Leave TRL's reward_weights unset: the trainer sets it from these.")
    schedule: str | dict | None = doc(
        None, "Weight schedule spec for moalign.tradeoff.schedule.get_schedule; asked once per generation "
        "batch (exclusive with weights).")
    constraints: dict | None = doc(
        None, "Constraints objective name -> threshold on its mean reward (GRPO-Lagrangian).")
    lagrangian_lr: float = doc(0.05, "Dual-ascent step size of the multipliers.")
    lagrangian_init: float = doc(0.0, "Initial value of every multiplier.")
    lagrangian_max: float | None = doc(None, "Upper bound of the multipliers (None: unbounded).")
    reference_dir: str | None = doc(
        None, "Where an in-memory policy is saved for TRL to load the reference from when beta > 0 "
        "(default: <output_dir>/reference).")

    def __post_init__(self) -> None:
        problems = trainer_range_problems(self, GRPO_RANGES)  # before TRL's own checks
        if problems:
            raise ConfigError(problems, source=type(self).__name__)
        super().__post_init__()
        if self.multi_objective_aggregation not in _AGGREGATIONS:
            problems.append(f"'multi_objective_aggregation' must be one of {list(_AGGREGATIONS)}, "
                            f"got {self.multi_objective_aggregation!r}")
        if self.reward_weights is not None:
            problems.append(_REWARD_WEIGHTS)
        if self.weights is not None and self.schedule is not None:
            problems.append("give either 'weights' or 'schedule', not both")
        problems += conditioning_problems(self)
        if problems:
            raise ConfigError(problems, source=type(self).__name__)
        if self.weights is not None:
            as_weights(self.weights, name="weights")


document_fields(MultiObjectiveGRPOConfig, only_own=True)


class MultiObjectiveGRPOTrainer(TrainerState, GRPOTrainer):
    """``trl.GRPOTrainer`` trained on K objectives with scheduled weights and constraints.

    ``objectives`` is an :class:`~moalign.objective.ObjectiveSet` or what builds one (names,
    specs, :class:`~moalign.objective.Objective` instances); ``schedule`` (an object) overrides
    the config's spec. Other arguments are ``GRPOTrainer``'s. Each checkpoint keeps the
    trade-off's state in ``moalign_tradeoff.json`` (:class:`TrainerState`).
    """

    state_file = "moalign_tradeoff.json"
    resume_required = (state_file,)

    def __init__(self, model: Any, objectives: Any, args: MultiObjectiveGRPOConfig | None = None,
                 train_dataset: Any = None, eval_dataset: Any = None, processing_class: Any = None,
                 schedule: Any = None, **kwargs: Any):
        if args is None:
            args = MultiObjectiveGRPOConfig("moalign-grpo")
        elif not isinstance(args, MultiObjectiveGRPOConfig):
            raise ConfigError(f"args must be a MultiObjectiveGRPOConfig, got {type(args).__name__}")
        if args.reward_weights is not None:  # set after the config was built
            raise ConfigError([_REWARD_WEIGHTS], source=type(args).__name__)
        objective_set = objectives if isinstance(objectives, ObjectiveSet) else ObjectiveSet(objectives)
        tradeoff = TradeOff.from_config(objective_set.names, args, schedule=schedule)
        _check_columns(train_dataset, objective_set.required_columns)
        if args.conditioning is not None:  # each prompt shows the weights of its rewards
            train_dataset = condition_prompts(train_dataset, objective_set.names, args)
            eval_dataset = _condition_eval(eval_dataset, objective_set.names, args)
        model = _with_loadable_name(model, args, kwargs.get("peft_config"))
        super().__init__(model=model, reward_funcs=list(objective_set.objectives), args=args,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        self.objective_set = objective_set
        self.tradeoff = tradeoff
        self.reward_weights = self._current_reward_weights()

    def _current_reward_weights(self) -> torch.Tensor:
        return torch.tensor(self.tradeoff.linear_weights(), dtype=torch.float32)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        check_scored(rewards, self.objective_set.names)
        means = torch.nanmean(rewards.detach().cpu().double(), dim=0).numpy()
        mode = "train" if self.model.training else "eval"
        rows = None  # conditioned: each completion's weights, those its prompt shows
        if self.args.conditioning is not None:
            rows = torch.as_tensor(row_weights([x[WEIGHTS_COLUMN] for x in inputs]))
            rows = self.accelerator.gather(rows.to(rewards.device, torch.float32))
        if mode == "train":
            self.tradeoff.tell({"step": self.state.global_step})
            weights = self.tradeoff.ask()
            self.tradeoff.update_multipliers(rewards)
            if rows is not None:
                weights = self.tradeoff.set_weights(rows.double().mean(0).cpu().numpy())
            self.tradeoff.tell({"weights": weights, "rewards": means})
        # TRL reads self.reward_weights right after this returns, in training and evaluation
        # alike: set it for this batch every time, never left over from another batch
        coef = rows if rows is not None else self._current_reward_weights().to(rewards.device)
        if rows is not None or bool(torch.isnan(rewards).any()):
            self.reward_weights = PerCompletionWeights(present_weights(rewards, coef))
        else:
            self.reward_weights = coef.cpu()
        shown = None if rows is None else rows.double().mean(0).cpu().numpy()
        self._log_tradeoff(mode, means, shown)
        return rewards

    def _log_tradeoff(self, mode: str, means: np.ndarray, weights: np.ndarray | None = None
                      ) -> None:
        # TRL logs rewards/<k>/mean itself (the same means): the trade-off adds the rest;
        # weights/<k> are this batch's (the mean of its per-prompt weights when conditioned)
        for key, value in self.tradeoff.metrics(means, weights=weights, log_rewards=False).items():
            self._metrics[mode][key].append(value)

    def load_checkpoint_state(self, state) -> None:
        super().load_checkpoint_state(state)
        self.reward_weights = self._current_reward_weights()


def present_weights(rewards: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Per-completion coefficients ``[B, K]`` for rewards ``[B, K]`` (NaN: not scored) and
    weights ``coef`` (``[K]`` or ``[B, K]``): each row's weights over the objectives that scored
    it, scaled back to the row's total, the missing-score rule of
    :mod:`moalign.tradeoff.scalarize` (and of MO-PPO's advantages). TRL's ``nansum`` of
    ``rewards * coef`` is then the renormalized weighted sum; a row with no scored objective of
    positive weight gets 0 coefficients."""
    c = coef.to(rewards.device, rewards.dtype).expand_as(rewards)
    scored = ~torch.isnan(rewards)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    kept = torch.where(scored, c, zero).sum(dim=1, keepdim=True)
    scale = torch.where(kept > 0, c.sum(dim=1, keepdim=True) / kept.clamp(min=1e-30), zero)
    return torch.where(scored, c * scale, zero)


def _condition_eval(dataset: Any, names: Any, args: MultiObjectiveGRPOConfig) -> Any:
    """Evaluation prompts conditioned like the training ones, with their own seeded draws (one
    stream per evaluation set): each eval completion is rewarded with its own prompt's weights."""
    if dataset is None:
        return None
    if isinstance(dataset, dict):
        return {key: condition_prompts(value, names, args, name=f"eval/{key}")
                for key, value in dataset.items()}
    return condition_prompts(dataset, names, args, name="eval")


def _check_columns(dataset: Any, required: tuple[str, ...]) -> None:
    """The objectives' required columns must be in the dataset, checked before any model loads."""
    columns = getattr(dataset, "column_names", None)
    if columns is None or isinstance(columns, dict):
        return
    missing = [c for c in ("prompt", *required) if c not in columns]
    if missing:
        raise DataError(f"the training dataset has no column '{missing[0]}' "
                        f"(columns: {', '.join(columns)})")


def _with_loadable_name(model: Any, args: MultiObjectiveGRPOConfig, peft_config: Any) -> Any:
    """Save an in-memory policy so TRL can build the reference from its name (beta > 0)."""
    if isinstance(model, str) or args.beta == 0.0 or peft_config is not None:
        return model
    if hasattr(model, "disable_adapter"):  # a peft model: TRL disables the adapter instead
        return model
    source = str(getattr(model.config, "_name_or_path", "") or "")
    if source and os.path.isdir(source) and os.path.isfile(os.path.join(source, "config.json")):
        return model
    folder = args.reference_dir or os.path.join(args.output_dir, "reference")
    # one process writes (per node with save_on_each_node, as the Trainer saves), under a
    # temporary name renamed when whole; the others wait for it before TRL loads the folder
    with args.main_process_first(local=args.save_on_each_node, desc="the reference copy"):
        if args.should_save:
            from moalign.storage.files import atomic_directory

            with atomic_directory(folder, overwrite=True) as tmp:
                model.save_pretrained(tmp)
    model.config._name_or_path = folder
    return model
