"""The plumbing the DPO-family trainers share on top of ``trl.DPOTrainer``; their loss is
:mod:`moalign.trainers.dpo_losses`, read top to bottom there.

- extra dataset columns (``pref_<k>`` labels, ``margin_<k>`` rewards, ``condition_weights``)
  survive ``remove_unused_columns`` (they join the signature columns) and reach the loss (the
  collator is wrapped by :class:`ColumnsCollator`);
- :meth:`_MultiObjectiveDPOBase._logratios` runs **one** policy forward pass (TRL's fused LM
  head) and one reference pass (TRL's :meth:`~trl.DPOTrainer.compute_ref_log_probs`: a
  reference model, the adapter-disabled peft base, or precomputed log-probs) and returns the
  chosen/rejected log-ratios every objective's loss is built from;
- the logging of the metrics the loss module computes: those TRL logs (TRL's keys:
  ``rewards/chosen``, ``logps/rejected``, ...), the per-objective ones
  (``objective/<k>/{loss,accuracy,margin,labelled}``) and those of the trainer's
  :class:`~moalign.tradeoff.tradeoff.TradeOff` (``weights/<k>``), whose state each checkpoint
  keeps through :class:`~moalign.trainers.checkpoint_state.TrainerState`;
- the checks of TRL options these losses do not implement, and of the loss options
  (:func:`loss_type_problems`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from trl import DPOTrainer

from moalign.data.schema import LABEL_VALUES, pref_column
from moalign.errors import DataError
from moalign.trainers.checkpoint_state import TrainerState
from moalign.trainers.dpo_losses import (
    PAIRWISE,
    REFUSED,
    REWARD_METRICS,
    SMOOTHED,
    STAT_ROWS,
    logratios,
    reward_metrics,
)

__all__ = ["ColumnsCollator", "check_label_columns", "loss_type_problems", "trl_option_problems"]

#: Keys of a collated batch that are not model inputs (TRL's own plus ours are filtered).
_TRL_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})


def trl_option_problems(args: Any, supported_loss_types: Sequence[str] | None) -> list[str]:
    """Problems with DPOConfig options that the multi-objective losses do not implement
    (``supported_loss_types=None``: the caller checks ``loss_type`` itself)."""
    problems = []
    loss_types = [args.loss_type] if isinstance(args.loss_type, str) else list(args.loss_type)
    unsupported = [t for t in loss_types if t not in (supported_loss_types or ())]
    if supported_loss_types is not None and (unsupported or len(loss_types) != 1):
        problems.append(
            f"'loss_type' must be one of {list(supported_loss_types)} (a single loss), got {loss_types}"
        )
    if args.ld_alpha is not None:
        problems.append("'ld_alpha' (LD-DPO length weighting) is not supported; leave it unset")
    if args.f_divergence_type != "reverse_kl":
        problems.append(f"'f_divergence_type' must be 'reverse_kl', got {args.f_divergence_type!r}")
    if args.use_weighting:
        problems.append("'use_weighting' (WPO) is not supported; set it to False")
    return problems


def loss_type_problems(loss_type: Any, loss_weights: Any, label_smoothing: Any,
                       discopop_tau: Any, *, ideal_at_zero: bool = False) -> list[str]:
    """Problems with ``loss_type`` and the parameters the chosen losses read.

    ``ideal_at_zero``: the scalarizer takes 0 as the ideal (lowest) loss, as MO-DPO's
    Tchebycheff does by default; the robust loss has no lower bound, so it needs another.
    """
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type or [])
    problems = []
    if not types:
        problems.append(f"'loss_type' must name at least one of {list(PAIRWISE)}")
    for name in types:
        if name in REFUSED:
            problems.append(f"'loss_type' {name!r} is not supported by MO-DPO: {REFUSED[name]}")
        elif name not in PAIRWISE:
            problems.append(f"'loss_type' must be one of {list(PAIRWISE)} (pairwise losses), "
                            f"got {name!r}")
    if loss_weights is not None and (not isinstance(loss_weights, Sequence) or len(loss_weights)
                                     != len(types) or not all(_finite(w) for w in loss_weights)):
        problems.append(f"'loss_weights' must be {len(types)} finite number(s), one per "
                        f"loss_type {types}, got {loss_weights!r}")
    if not _finite(label_smoothing):
        problems.append(f"'label_smoothing' must be a number, got {label_smoothing!r}")
        return problems
    if "robust" in types and not 0.0 <= label_smoothing < 0.5:
        problems.append("'label_smoothing' is the label-flip probability of loss_type 'robust' and "
                        f"must lie in [0, 0.5), got {label_smoothing}")
    if "exo_pair" in types and not 0.0 < label_smoothing < 1.0:
        problems.append("loss_type 'exo_pair' needs 0 < 'label_smoothing' < 1 (its epsilon; the EXO "
                        f"paper recommends 1e-3), got {label_smoothing}")
    if label_smoothing != 0.0 and not any(t in SMOOTHED for t in types):
        problems.append(f"'label_smoothing' is read only by loss_type {list(SMOOTHED)}; with "
                        f"{types} it would be ignored: leave it 0")
    if "robust" in types and ideal_at_zero and label_smoothing > 0:
        problems.append("the 'robust' loss is unbounded below, so the scalarizer's default ideal "
                        "loss 0 is no lower bound: give it an explicit 'ideal'")
    if "discopop" in types and not (_finite(discopop_tau) and discopop_tau > 0):
        problems.append(f"'discopop_tau' must be a number > 0, got {discopop_tau!r}")
    return problems


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _label_array(dataset: Any, column: str) -> np.ndarray:
    values = dataset[column]
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def check_label_columns(
    dataset: Any,
    objectives: Sequence[str],
    *,
    need_labels: Sequence[str] = (),
    split: str = "train",
) -> None:
    """Check, before any tokenization, that each objective has a valid ``pref_`` column.

    Every label must be +1, -1, 0 or NaN/None, and each objective in ``need_labels`` must have
    at least one pair labelled +1/-1. Raises :class:`DataError` naming the column and row.
    Iterable (streaming) datasets are checked for their columns only.
    """
    from datasets import Dataset

    columns = list(getattr(dataset, "column_names", None) or [])
    missing = [pref_column(k) for k in objectives if pref_column(k) not in columns]
    if missing and columns:
        raise DataError(
            f"{split} dataset has no column {', '.join(map(repr, missing))} for objective(s) "
            f"{', '.join(repr(m[len('pref_'):]) for m in missing)}; label columns present: "
            f"{', '.join(c for c in columns if c.startswith('pref_')) or 'none'}"
        )
    if not isinstance(dataset, Dataset):
        return
    if len(dataset) == 0:
        raise DataError(f"{split} dataset is empty")
    for k in objectives:
        column = pref_column(k)
        values = _label_array(dataset, column)
        bad = ~np.isnan(values) & ~np.isin(values, LABEL_VALUES)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{split} dataset, row {row}, column '{column}': label {float(values[row])!r} is not "
                "+1, -1, 0 or NaN"
            )
        if k in need_labels and not np.isin(values, (1.0, -1.0)).any():
            raise DataError(
                f"{split} dataset, column '{column}': objective '{k}' has positive weight but none "
                f"of the {len(values)} pairs is labelled +1 or -1 for it"
            )


@dataclass
class ColumnsCollator:
    """Wraps a collator and adds the named columns to the batch as float tensors.

    Scalars become ``[B]`` tensors and fixed-length lists ``[B, K]``; ``None`` becomes NaN.
    """

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]
    columns: tuple[str, ...]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        for column in self.columns:
            if column in examples[0]:
                values = [ex[column] for ex in examples]
                if isinstance(values[0], (list, tuple)):
                    values = [[np.nan if x is None else x for x in v] for v in values]
                else:
                    values = [np.nan if v is None else v for v in values]
                batch[column] = torch.tensor(values, dtype=torch.float64)
        return batch


class _MultiObjectiveDPOBase(TrainerState, DPOTrainer):
    """``trl.DPOTrainer`` with extra columns carried to the loss and per-objective metrics.

    Subclasses set ``self._mo_columns`` (before ``super().__init__``), ``self._mo_names``
    (objectives whose labels are logged) and ``self.tradeoff`` (the
    :class:`~moalign.tradeoff.tradeoff.TradeOff` over all their objectives), and implement
    ``_pairs_loss`` (the loss of a batch of pairs from their log-ratios, logging its
    per-objective metrics); ``_compute_loss`` runs the passes around it. The trade-off's state
    goes into each checkpoint's ``moalign_state.json`` (:class:`TrainerState`).
    """

    _mo_columns: tuple[str, ...] = ()
    _mo_names: tuple[str, ...] = ()
    tradeoff: Any = None

    @staticmethod
    def _default_reference(model, ref_model, args, peft_config):
        """The reference model to hand to ``DPOTrainer``.

        TRL reloads the policy from its path when no reference is given (and no adapter or
        precomputed log-probs make one unnecessary); a model built in memory from a config has
        no path, so it gets a frozen copy of its initial weights instead.
        """
        import copy

        from accelerate.utils import is_peft_model

        if (ref_model is None and peft_config is None and not isinstance(model, str)
                and not is_peft_model(model) and not args.precompute_ref_log_probs
                and not getattr(model.config, "_name_or_path", "")):
            return copy.deepcopy(model)
        return ref_model

    def _init_dpo(self, model, ref_model, args, data_collator, train_dataset, eval_dataset,
                  processing_class, compute_metrics, callbacks, optimizers, quantization_config,
                  peft_config) -> None:
        """``DPOTrainer.__init__`` with :meth:`_default_reference`, then :meth:`_finish_init`:
        the end of every multi-objective DPO trainer's ``__init__``."""
        ref_model = self._default_reference(model, ref_model, args, peft_config)
        super().__init__(model, ref_model=ref_model, args=args, data_collator=data_collator,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, compute_metrics=compute_metrics,
                         callbacks=callbacks, optimizers=optimizers,
                         quantization_config=quantization_config, peft_config=peft_config)
        self._finish_init()

    @staticmethod
    def _eval_splits(eval_dataset) -> dict[str, Any]:
        """``{split: dataset}`` of an ``eval_dataset``: one dataset (``"eval"``), a mapping of
        them, or ``None``."""
        if isinstance(eval_dataset, Mapping):
            return dict(eval_dataset)
        return {} if eval_dataset is None else {"eval": eval_dataset}

    def _finish_init(self) -> None:
        """Wrap the collator (after ``DPOTrainer.__init__`` built it) and set up metrics."""
        from datasets import Dataset

        if not isinstance(self.data_collator, ColumnsCollator):
            self.data_collator = ColumnsCollator(self.data_collator, tuple(self._mo_columns))
        if isinstance(self.train_dataset, Dataset) and len(self.train_dataset) == 0:
            raise DataError(
                "no training pair is left after tokenization: every prompt fills "
                f"max_length={self.args.max_length} tokens (weight conditions and chat templates "
                "add tokens); raise max_length or shorten the prompts"
            )

    # ------------------------------------------------------------------ reference log-probs
    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        """With several processes and an in-memory dataset, keep the precomputed reference
        log-probs in memory on every process.

        TRL hands them from the main process to the others through a cache file, named after
        the dataset's cache files; an in-memory dataset has none, so each process would look
        for a randomly named file in its own temporary folder and fail. Every process already
        holds all the log-probs (they are gathered), so each adds them as columns itself: no
        file, no shared filesystem needed. Otherwise TRL's own code runs.
        """
        from datasets import Dataset

        if (self.accelerator.num_processes == 1 or not isinstance(dataset, Dataset)
                or dataset.cache_files):
            return super()._precompute_ref_logps(dataset, name, batch_size)
        from torch.utils.data import DataLoader

        loader = self.accelerator.prepare(DataLoader(
            dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory))
        if self.ref_model is None and self.is_deepspeed_enabled:
            if self._precompute_engine is None:
                from trl.models import prepare_deepspeed

                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            reference = self._precompute_engine
        else:
            reference = self.ref_model or self.model
        chosen, rejected = [], []
        for batch in loader:  # batches are dealt to processes in turn; gathering restores order
            c, r = self.accelerator.gather_for_metrics(self.compute_ref_log_probs(reference, batch))
            chosen.append(c.float().cpu())
            rejected.append(r.float().cpu())
        chosen_t, rejected_t = torch.cat(chosen), torch.cat(rejected)
        if len(chosen_t) != len(dataset):
            raise RuntimeError(f"precomputed {len(chosen_t)} reference log-probs for the "
                               f"{len(dataset)} rows of the {name} dataset")
        return (dataset.add_column("ref_chosen_logps", chosen_t.tolist())
                .add_column("ref_rejected_logps", rejected_t.tolist()))

    # ------------------------------------------------------------------ columns
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in self._mo_columns:
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def _prepare_inputs(self, inputs):
        """Device placement of a batch, the moalign columns (``pref_<k>``, ``margin_<k>``,
        ``condition_weights``) kept in their dtype. Under DeepSpeed the ``Trainer`` casts every
        float tensor of a batch to the engine's dtype (``_prepare_input``): in bf16 the
        condition weights would leave the simplex and the margins keep ~3 digits."""
        columns = {c: inputs[c] for c in self._mo_columns if c in inputs}
        if not columns:
            return super()._prepare_inputs(inputs)
        prepared = super()._prepare_inputs({k: v for k, v in inputs.items() if k not in columns})
        for column, value in columns.items():
            prepared[column] = value.to(self.args.device) if torch.is_tensor(value) else value
        return prepared

    @staticmethod
    def _split_inputs(inputs: dict[str, Any], columns: Sequence[str]) -> tuple[dict, dict]:
        extra = {c: inputs[c] for c in columns if c in inputs}
        trl_inputs = {k: v for k, v in inputs.items() if k not in extra}
        return trl_inputs, extra

    # ------------------------------------------------------------------ forward passes
    def _logratios(self, model, inputs: dict[str, Any]):
        """One policy pass and one reference pass -> ``(chosen_logratios, rejected_logratios,
        chosen_logps, rejected_logps, outputs, seq_len)``.

        ``inputs`` holds only TRL's keys (input ids, masks, optional precomputed reference
        log-probs).
        """
        model_kwargs = {k: v for k, v in inputs.items() if k not in _TRL_NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        # prompt-learning adapters prepend virtual tokens: keep the positions of the real ones
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, inputs)
        chosen_lr, rejected_lr = logratios(chosen_logps, rejected_logps, ref_chosen, ref_rejected)
        return chosen_lr, rejected_lr, chosen_logps, rejected_logps, outputs, seq_len

    def _compute_loss(self, model, inputs, return_outputs):
        """One policy pass and one reference pass, the subclass's loss of the pairs
        (:meth:`_pairs_loss`) and the metrics TRL's ``DPOTrainer`` logs."""
        mode = "train" if self.model.training else "eval"
        trl_inputs, extra = self._split_inputs(inputs, self._mo_columns)
        chosen_lr, rejected_lr, chosen_logps, rejected_logps, outputs, seq_len = \
            self._logratios(model, trl_inputs)
        loss = self._pairs_loss(model, mode, (chosen_lr, rejected_lr), extra, trl_inputs,
                                outputs)
        self._log_standard_metrics(mode, trl_inputs, outputs, seq_len, chosen_lr, rejected_lr,
                                   chosen_logps, rejected_logps)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in trl_inputs.items()
                                   if k in ("input_ids", "attention_mask")})
            return loss, outputs
        return loss

    def _pairs_loss(self, model, mode: str, logratios: tuple[torch.Tensor, torch.Tensor],
                    extra: dict[str, Any], inputs: dict[str, Any], outputs) -> torch.Tensor:
        """The loss of a batch from the chosen / rejected log-ratios ``logratios`` of ``model``,
        the moalign columns ``extra`` and TRL's ``inputs`` and ``outputs``; logs the
        per-objective metrics."""
        raise NotImplementedError

    def _add_aux_loss(self, loss: torch.Tensor, outputs, mode: str) -> torch.Tensor:
        if not self.aux_loss_enabled:
            return loss
        aux = outputs.aux_loss
        self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux).mean().item())
        return loss + self.router_aux_loss_coef * aux

    # ------------------------------------------------------------------ metrics
    def _log_standard_metrics(self, mode, inputs, outputs, seq_len, chosen_logratios,
                              rejected_logratios, chosen_logps, rejected_logps) -> None:
        """The metrics ``trl.DPOTrainer`` logs, so that logs of both trainers read the same."""
        gather = self.accelerator.gather_for_metrics
        mask = inputs["completion_mask"][..., 1:]
        chosen_mask, rejected_mask = mask.chunk(2, dim=0)
        tokens = mask.sum()
        entropy = (outputs.entropy[:, -seq_len:].detach() * mask).sum()
        mean_logits = outputs.mean_logits[:, -seq_len:].detach()
        chosen_logits, rejected_logits = mean_logits.chunk(2, dim=0)
        chosen_top1, _ = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)
        sums = torch.stack([
            entropy.float(), tokens.float(),
            (chosen_logits * chosen_mask).sum().float(), chosen_mask.sum().float(),
            (rejected_logits * rejected_mask).sum().float(), rejected_mask.sum().float(),
            (chosen_top1 & chosen_mask.bool()).sum().float(),
        ])
        s = gather(sums.unsqueeze(0)).sum(0).tolist()
        m = self._metrics[mode]
        m["entropy"].append(s[0] / s[1] if s[1] > 0 else 0.0)
        if mode == "train":
            n_tokens = gather(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += n_tokens // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
        m["logits/chosen"].append(s[2] / s[3] if s[3] > 0 else 0.0)
        m["logits/rejected"].append(s[4] / s[5] if s[5] > 0 else 0.0)
        m["mean_token_accuracy"].append(s[6] / s[3] if s[3] > 0 else 0.0)
        per_pair = reward_metrics(chosen_logratios, rejected_logratios, chosen_logps,
                                  rejected_logps, self.beta)
        for key, value in zip(REWARD_METRICS, gather(per_pair).mean(0).tolist(), strict=True):
            m[key].append(value)

    def _log_objective_metrics(self, mode: str, stats: torch.Tensor, pairs: int) -> torch.Tensor:
        """Per-objective loss, implicit-reward accuracy and margin over labelled pairs, plus
        the fraction of pairs labelled, from this process's ``[4, K]`` sums ``stats``
        (:func:`~moalign.trainers.dpo_losses.objective_stats`) over its ``pairs`` pairs; returns
        the sums gathered over the processes."""
        stats = self.accelerator.gather_for_metrics(stats.unsqueeze(0)).sum(0)
        total_pairs = self.accelerator.gather_for_metrics(
            torch.tensor([float(pairs)], device=stats.device)).sum().item()
        rows = dict(zip(STAT_ROWS, stats.tolist(), strict=True))
        m = self._metrics[mode]
        for k, name in enumerate(self._mo_names):
            count = rows["count"][k]
            m[f"objective/{name}/labelled"].append(count / max(total_pairs, 1.0))
            if count > 0:
                m[f"objective/{name}/loss"].append(rows["loss"][k] / count)
                m[f"objective/{name}/accuracy"].append(rows["correct"][k] / count)
                m[f"objective/{name}/margin"].append(rows["margin"][k] / count)
        return stats

    def _log_tradeoff(self, mode: str, weights: Sequence[float] | None = None) -> None:
        """Log the trade-off's entries (``weights/<k>``; ``weights`` overrides the current ones)."""
        for key, value in self.tradeoff.metrics(weights=weights).items():
            self._metrics[mode][key].append(value)
