"""MODPO: multi-objective DPO with margins from the other objectives (Zhou et al. 2023).

Zhou et al., "Beyond One-Preference-Fits-All Alignment: Multi-Objective Direct Preference
Optimization" (2023, arXiv:2310.03708). For weights ``w = (w_0, w_rest)`` the policy is trained
on the preference labels of objective 0 with the loss

    -log sigmoid((1 / w_0) * (beta * delta - w_rest . (r_rest(y_w) - r_rest(y_l))))

where ``delta`` is the log-ratio margin of the better reply over the worse one (as in DPO) and
``r_rest`` are rewards of the other objectives: any moalign objective (a reward model, a rule)
or the implicit DPO reward of another policy (:class:`ImplicitReward`). Those margins
``r(chosen) - r(rejected)`` are computed **once**, before training, and stored as dataset
columns ``margin_<objective>`` (:func:`add_margin_columns`); the trainer does this itself for a
missing column when it is given a scorer or the objective is registered.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from trl import DPOConfig

from moalign.config.fields import doc
from moalign.data.schema import CORE_COLUMNS, pref_column
from moalign.errors import ConfigError, DataError, UnknownObjectiveError
from moalign.evaluation.core import pair_score_margins
from moalign.objective import Objective, load_objective
from moalign.tradeoff.tradeoff import TradeOff, refuse_renamed_fields
from moalign.trainers._dpo_base import (
    _MultiObjectiveDPOBase,
    check_label_columns,
    trl_option_problems,
)
from moalign.trainers.dpo import _objective_problems
from moalign.trainers.dpo_losses import label_signs, objective_stats, pair_losses
from moalign.trainers.ranges import DPO_RANGES, trainer_range_problems
from moalign.weights import weight_problems

__all__ = [
    "MARGIN_PREFIX",
    "ImplicitReward",
    "MODPOConfig",
    "MODPOTrainer",
    "add_margin_columns",
    "margin_column",
    "modpo_pair_losses",
]

MARGIN_PREFIX = "margin_"


def margin_column(name: str) -> str:
    """Column of objective ``name``'s margin rewards ``r(prompt, chosen) - r(prompt, rejected)``."""
    return MARGIN_PREFIX + pref_column(name)[len("pref_"):]


def modpo_pair_losses(
    delta: torch.Tensor,
    labels: torch.Tensor,
    margins: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MODPO per-pair losses ``[B]`` and mask ``[B]`` (Zhou et al. 2023, "Beyond
    One-Preference-Fits-All Alignment", eq. 8).

    ``-log sigmoid((1 / w_0) * s * (beta * delta - w_rest . m))``, where ``labels [B]`` is the
    label of the trained objective (``s`` its sign; ties/NaN masked), ``margins [B, K-1]`` the
    margin rewards ``r_k(chosen) - r_k(rejected)`` of the other objectives (in dataset
    orientation; the sign ``s`` turns them into ``r(y_w) - r(y_l)``) and ``weights [K]`` is
    ``(w_0, w_rest)``.
    """
    sign, mask = label_signs(labels.to(delta.dtype))
    w = weights.to(delta.dtype)
    rest = margins.to(delta.dtype) @ w[1:] if margins.numel() else torch.zeros_like(delta)
    z = sign * (beta * delta - rest) / w[0]
    losses = -F.logsigmoid(z)
    return torch.where(mask, losses, torch.zeros_like(losses)), mask


class ImplicitReward(Objective):
    """The implicit reward ``beta * (log pi(y|x) - log pi_ref(y|x))`` of a DPO-trained policy.

    Rafailov et al. 2023 (DPO, section 5). ``model`` is the trained policy; the reference is
    ``ref_model``, or, for a peft model, the model with its adapters disabled. ``adapter_name``
    picks one adapter of a multi-adapter peft model. Sequence log-probabilities come from
    :func:`moalign.evaluation.sequence_logprobs`.
    """

    description = "implicit DPO reward of a policy relative to its reference"

    def __init__(self, model: Any, tokenizer: Any, *, ref_model: Any = None,
                 adapter_name: str | None = None, beta: float = 0.1, batch_size: int = 8,
                 max_length: int = 512, name: str = "implicit_reward"):
        if ref_model is None and not hasattr(model, "disable_adapter"):
            raise ConfigError("ImplicitReward needs ref_model=, or a peft model whose disabled "
                              "adapter is the reference")
        self.name = name
        self.model, self.tokenizer, self.ref_model = model, tokenizer, ref_model
        self.adapter_name, self.beta = adapter_name, float(beta)
        self.batch_size, self.max_length = batch_size, max_length

    def _policy(self):
        if self.adapter_name is None:
            return contextlib.nullcontext()
        previous = self.model.active_adapter

        @contextlib.contextmanager
        def switch():
            self.model.set_adapter(self.adapter_name)
            try:
                yield
            finally:
                self.model.set_adapter(previous)

        return switch()

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        from moalign.evaluation import sequence_logprobs

        kw = dict(batch_size=self.batch_size, max_length=self.max_length)
        with self._policy():
            policy = sequence_logprobs(self.model, self.tokenizer, prompts, completions, **kw)
        if self.ref_model is not None:
            ref = sequence_logprobs(self.ref_model, self.tokenizer, prompts, completions, **kw)
        else:
            with self.model.disable_adapter():
                ref = sequence_logprobs(self.model, self.tokenizer, prompts, completions, **kw)
        return (self.beta * (policy - ref)).tolist()


def _as_scorer(name: str, scorer: Any) -> Callable[..., Sequence[float | None]]:
    if isinstance(scorer, (str, Mapping)):
        return load_objective(scorer)
    if not callable(scorer):
        raise ConfigError(f"the margin reward of '{name}' must be an objective, a spec or a "
                          f"callable, got {type(scorer).__name__}")
    return scorer


def add_margin_columns(dataset: Any, rewards: Mapping[str, Any], *, batch_size: int = 64,
                       overwrite: bool = False) -> Any:
    """Add ``margin_<name> = r(prompt, chosen) - r(prompt, rejected)`` for each reward.

    ``rewards`` maps objective names to a :class:`~moalign.objective.Objective` (reward model,
    rule, :class:`ImplicitReward`), an objective spec for :func:`~moalign.load_objective`, or any
    callable with the objective signature ``(prompts, completions, **columns)``. The other
    dataset columns are passed as keyword arguments. A pair either side of which is unscored
    (``None``) gets NaN (:func:`moalign.evaluation.core.pair_score_margins`). Existing margin
    columns are kept unless ``overwrite``.
    """
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        raise DataError(f"add_margin_columns needs a datasets.Dataset, got {type(dataset).__name__}")
    missing = [c for c in CORE_COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataError(f"dataset has no column '{missing[0]}' (columns: {', '.join(dataset.column_names)})")
    for name, spec in rewards.items():
        column = margin_column(name)
        if column in dataset.column_names:
            if not overwrite:
                continue
            dataset = dataset.remove_columns(column)
        margins = pair_score_margins(dataset, _as_scorer(name, spec), batch_size=batch_size)
        dataset = dataset.add_column(column, margins.tolist())
    return dataset


@refuse_renamed_fields
@dataclass
class MODPOConfig(DPOConfig):
    """Configuration of :class:`MODPOTrainer`: ``trl.DPOConfig`` plus the fields below.

    Of the trade-off fields every trainer config names alike (``weights``, ``schedule``,
    ``scalarizer``, ``constraints``) MODPO has ``weights`` only: its loss fixes how the
    objectives combine, for one weight vector per run. Invalid values raise one
    :class:`~moalign.errors.ConfigError` listing every problem. On CPU set
    ``use_cpu=True, bf16=False`` (TRL's defaults target GPUs).
    """

    objectives: list[str] | None = doc(
        None, "Objective names. The first is trained on its `pref_<name>` labels; each other one "
        "contributes the margin column `margin_<name>` (r(chosen) - r(rejected)).")
    weights: list[float] | None = doc(
        None, "(w_0, w_rest...), one per objective, on the simplex, with w_0 > 0. Default: "
        "uniform.")

    def __post_init__(self):
        problems = _objective_problems(self.objectives)
        problems += trl_option_problems(self, ("sigmoid",))
        problems += trainer_range_problems(self, DPO_RANGES)
        if self.weights is not None and isinstance(self.objectives, (list, tuple)):
            problems += weight_problems(self.weights, len(self.objectives))
            if not problems and not float(self.weights[0]) > 0:
                problems.append(f"'weights': w_0 (the weight of '{self.objectives[0]}') must be "
                                f"> 0, got {self.weights[0]}")
        if problems:
            raise ConfigError(problems, source=type(self).__name__)
        super().__post_init__()


class MODPOTrainer(_MultiObjectiveDPOBase):
    """MODPO (Zhou et al. 2023) as a ``trl.DPOTrainer``; see the module docstring for the loss.

    Takes the arguments of ``trl.DPOTrainer`` with ``args`` a :class:`MODPOConfig`, plus
    ``margin_rewards``: scorers (name -> objective, spec or callable) used to fill any missing
    ``margin_<name>`` column once, before tokenization; a missing column with no scorer is
    computed with the registered objective of that name, if there is one. The loss averages over
    the pairs labelled +1/-1 for the first objective (a -1 label swaps the pair and its margins).
    Logs ``objective/<k>/{loss,accuracy,margin,labelled}`` (plain DPO quantities) for every
    objective with a ``pref_`` column, and ``weights/<k>`` (from ``self.tradeoff``, the
    :class:`~moalign.tradeoff.tradeoff.TradeOff` holding the weights).
    """

    _tag_names = ["trl", "dpo", "modpo", "moalign"]
    _name = "MODPO"
    _paper = {
        "title": "Beyond One-Preference-Fits-All Alignment: Multi-Objective Direct Preference "
                 "Optimization",
        "id": "2310.03708",
        "citation": "@article{zhou2023modpo,\n  title = {Beyond One-Preference-Fits-All "
                    "Alignment: Multi-Objective Direct Preference Optimization},\n  author = "
                    "{Zhou, Zhanhui and Liu, Jie and Yang, Chao and Shao, Jing and Liu, Yu and "
                    "Yue, Xiangyu and Ouyang, Wanli and Qiao, Yu},\n  journal = {arXiv preprint "
                    "arXiv:2310.03708},\n  year = {2023}\n}",
    }

    def __init__(self, model, ref_model=None, args: MODPOConfig | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, compute_metrics=None,
                 callbacks=None, optimizers=(None, None), quantization_config=None,
                 peft_config=None, margin_rewards: Mapping[str, Any] | None = None):
        if not isinstance(args, MODPOConfig):
            raise ConfigError("MODPOTrainer needs args=MODPOConfig(objectives=[...], weights=[...]), "
                              f"got {type(args).__name__}")
        names = list(args.objectives)
        self.tradeoff = TradeOff.from_config(names, args)
        self._margin_columns = tuple(margin_column(n) for n in names[1:])
        if train_dataset is not None:
            train_dataset = self._with_margins(train_dataset, names[1:], margin_rewards or {}, "train")
            check_label_columns(train_dataset, names[:1], need_labels=names[:1], split="train")
            self._check_margins(train_dataset, names, "train")
            logged = [n for n in names if pref_column(n) in (train_dataset.column_names or [])]
        else:
            logged = names[:1]
        if isinstance(eval_dataset, Mapping):
            eval_dataset = {s: self._with_margins(d, names[1:], margin_rewards or {}, s)
                            for s, d in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._with_margins(eval_dataset, names[1:], margin_rewards or {}, "eval")
        for split, ds in self._eval_splits(eval_dataset).items():
            check_label_columns(ds, names[:1], split=split)
            self._check_margins(ds, names, split)
        self._mo_names = tuple(logged)
        self._label_columns = tuple(pref_column(n) for n in logged)
        self._mo_columns = self._label_columns + self._margin_columns
        self._init_dpo(model, ref_model, args, data_collator, train_dataset, eval_dataset,
                       processing_class, compute_metrics, callbacks, optimizers,
                       quantization_config, peft_config)

    @staticmethod
    def _with_margins(dataset, names: Sequence[str], rewards: Mapping[str, Any], split: str):
        columns = list(getattr(dataset, "column_names", None) or [])
        todo = {}
        for name in names:
            if margin_column(name) in columns:
                continue
            if name in rewards:
                todo[name] = rewards[name]
                continue
            try:
                todo[name] = load_objective(name)
            except UnknownObjectiveError:
                raise DataError(
                    f"{split} dataset has no column '{margin_column(name)}' for objective "
                    f"'{name}', and no scorer: pass margin_rewards={{'{name}': ...}} or add the "
                    "column with moalign.trainers.modpo.add_margin_columns"
                ) from None
        return add_margin_columns(dataset, todo) if todo else dataset

    @staticmethod
    def _check_margins(dataset, names: Sequence[str], split: str) -> None:
        from datasets import Dataset

        if not isinstance(dataset, Dataset):
            return
        labels = np.asarray([np.nan if v is None else v for v in dataset[pref_column(names[0])]],
                            dtype=np.float64)
        used = np.isin(labels, (1.0, -1.0))
        for name in names[1:]:
            column = margin_column(name)
            values = np.asarray([np.nan if v is None else v for v in dataset[column]], dtype=np.float64)
            bad = used & ~np.isfinite(values)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"{split} dataset, row {row}, column '{column}': margin is "
                                f"{values[row]} on a pair labelled for '{names[0]}'")

    def _pairs_loss(self, model, mode, logratios, extra, inputs, outputs):
        delta = logratios[0] - logratios[1]
        nan = torch.full_like(delta, math.nan)
        labels = torch.stack([extra.get(c, nan).to(delta.dtype) for c in self._label_columns], dim=1)
        margins = torch.stack([extra[c].to(delta.dtype) for c in self._margin_columns], dim=1) \
            if self._margin_columns else delta.new_zeros((delta.shape[0], 0))
        weights = torch.as_tensor(self.tradeoff.weights, dtype=delta.dtype, device=delta.device)
        losses, mask = modpo_pair_losses(delta, labels[:, 0], margins, weights, self.beta)
        count = mask.sum()
        loss = losses.sum() / count.clamp(min=1) if bool(count > 0) else losses.sum() * 0.0
        loss = self._add_aux_loss(loss, outputs, mode)
        dpo_losses, _ = pair_losses(delta.detach(), labels, self.beta)
        self._log_objective_metrics(mode, objective_stats(delta, labels, dpo_losses, self.beta),
                                    delta.shape[0])
        self._log_tradeoff(mode)
        return loss
