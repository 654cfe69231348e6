"""Multi-objective DPO: weighted per-objective DPO losses, and weight-conditioned DPO.

:class:`MultiObjectiveDPOTrainer` is a ``trl.DPOTrainer`` whose loss is ``sum_k w_k l_k``, with
``l_k`` the pairwise loss of ``loss_type`` (DPO, Rafailov et al. 2023, by default; IPO, robust
DPO, EXO, NCA, SPPO, APO, DiscoPOP, ...: :mod:`moalign.trainers.dpo_losses`) of each pair under
objective k's own label (``pref_<k>`` column: +1 as is, -1 with chosen and rejected swapped,
0/NaN left out), normalized over the labelled pairs as
:data:`~moalign.trainers.dpo_losses.LABEL_NORMALIZATIONS` documents: the whole loss reads top to
bottom in :mod:`moalign.trainers.dpo_losses`.
All K losses come from **one** policy forward pass and one reference pass (or precomputed
reference log-probs), since they differ only in the sign each label gives the same margin.

The weights, schedule and scalarizer are a :class:`~moalign.tradeoff.tradeoff.TradeOff`, as in
every moalign trainer: fixed ``weights`` or a ``schedule`` (:mod:`moalign.tradeoff.schedule`:
annealed, MGDA on the per-objective gradients, ...), asked once per optimizer step, and any
``scalarizer`` of :mod:`moalign.tradeoff.scalarize` to combine the per-objective losses (linear;
Tchebycheff on losses minimizes ``max_k w_k (l_k - l*_k)`` with ``l* = 0``, the infimum of the
DPO loss).

With ``conditioning="prompt"`` each pair gets its own weight vector drawn from a Dirichlet
distribution, shown to the model by :func:`moalign.tradeoff.conditioning.apply_condition`, and used in
that pair's loss: one run trains a policy for every weight vector (as Rewards-in-Context, Yang
et al. 2024, and Directional Preference Alignment, Wang et al. 2024, condition on prompts).
The condition leads the prompt and is never truncated: TRL's ``truncation_mode: keep_end``,
which cuts sequences from their start, is refused with conditioning (a
:class:`~moalign.errors.ConfigError`); ``keep_start`` keeps it.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from trl import DPOConfig

from moalign.config.fields import doc
from moalign.data.schema import pref_column
from moalign.errors import ConfigError, DataError, MoalignError, WeightsError
from moalign.tradeoff.conditioning import (
    WEIGHTS_COLUMN,
    apply_condition,
    condition_field_problems,
    quantize_weights,
)
from moalign.tradeoff.tradeoff import TradeOff, refuse_renamed_fields
from moalign.trainers._dpo_base import (
    _MultiObjectiveDPOBase,
    check_label_columns,
    loss_type_problems,
    trl_option_problems,
)
from moalign.trainers.dpo_losses import (
    LABEL_NORMALIZATIONS,
    PAIRWISE,
    REFUSED,
    PairLoss,
    label_signs,
    mo_dpo_loss,
    per_objective_losses,
)
from moalign.trainers.ranges import DPO_RANGES, trainer_range_problems
from moalign.weights import weight_problems

__all__ = ["MultiObjectiveDPOConfig", "MultiObjectiveDPOTrainer"]

#: Values of ``conditioning``.
CONDITIONING_MODES = ("prompt",)
#: Scalarizer names whose ideal point defaults to the loss infimum 0 (in reward units, -0).
_IDEAL_AT_ZERO = ("tchebycheff", "augmented_tchebycheff")


def _objective_problems(objectives: Any) -> list[str]:
    if not isinstance(objectives, (list, tuple)) or not objectives:
        return ["'objectives' is required: a non-empty list of objective names (one pref_<name> "
                "column each)"]
    problems = []
    for name in objectives:
        try:
            pref_column(name)
        except DataError as exc:
            problems.append(f"'objectives': {exc}")
    dupes = sorted({n for n in objectives if list(objectives).count(n) > 1})
    if dupes:
        problems.append(f"'objectives' repeats {', '.join(map(repr, dupes))}")
    return problems


def _scalarizer_spec(spec: Any, k: int) -> Any:
    """The spec with ``ideal = 0`` filled in for plain Tchebycheff (losses are >= 0)."""
    if isinstance(spec, str) and spec in _IDEAL_AT_ZERO:
        return {"name": spec, "ideal": [0.0] * k}
    if isinstance(spec, dict) and spec.get("name") in _IDEAL_AT_ZERO and "ideal" not in spec:
        return {**spec, "ideal": [0.0] * k}
    return spec


def _scalarizer_name(spec: Any) -> Any:
    return spec if isinstance(spec, str) else spec.get("name") if isinstance(spec, dict) else spec


@refuse_renamed_fields
@dataclass
class MultiObjectiveDPOConfig(DPOConfig):
    """Configuration of :class:`MultiObjectiveDPOTrainer`: ``trl.DPOConfig`` plus the fields below.

    Invalid values raise one :class:`~moalign.errors.ConfigError` listing every problem. Note
    that TRL's defaults (``bf16=True``, ``gradient_checkpointing=True``) target GPUs; on CPU set
    ``use_cpu=True, bf16=False``.
    """

    loss_type: list[str] = doc(
        factory=lambda: ["sigmoid"],
        help="The pairwise loss applied to each objective's orientation of a pair "
             f"(moalign.trainers.dpo_losses): one of {list(PAIRWISE)}, or a list summed with "
             "`loss_weights` as in TRL. Ties (label 0) are skipped for every loss; "
             "`label_smoothing` is read by robust and exo_pair only. Refused: "
             + "; ".join(f"{k} ({v})" for k, v in REFUSED.items()) + ".")
    objectives: list[str] | None = doc(
        None, "Objective names, in order. Each needs a `pref_<name>` column (+1 chosen better, -1 "
        "rejected better, 0 tie, NaN unlabelled).")
    weights: list[float] | None = doc(
        None, "Fixed weights, one per objective, on the simplex. Leave unset to use `schedule`, "
        "conditioning, or uniform weights.")
    schedule: str | dict | None = doc(
        None, "A moalign.tradeoff.schedule spec asked once per optimizer step instead of fixed "
        "weights: e.g. {'name': 'anneal', 'start': [...], 'end': [...], 'steps': N} or 'mgda' "
        "(min-norm weights of the per-objective gradients, computed on each batch: K extra "
        "backward passes).")
    scalarizer: str | dict = doc(
        "linear", "How per-objective losses combine: a moalign.tradeoff.scalarize spec, 'linear' "
        "(sum_k w_k l_k) or 'tchebycheff' (max_k w_k l_k, ideal loss 0; {'name': 'tchebycheff', "
        "'rho': 0.05} for the augmented form).")
    label_normalization: str = doc(
        "objective", "Normalization over labelled pairs: 'objective' (l_k = mean loss over the "
        "pairs labelled for k in the whole optimizer step, all micro-batches and processes; "
        "weights never renormalized), 'batch' (sum over labelled pairs / batch size) or 'pair' "
        "(weights renormalized over each pair's labelled objectives). See "
        "moalign.trainers.dpo_losses.LABEL_NORMALIZATIONS.")
    conditioning: str | None = doc(
        None, "'prompt': per-pair Dirichlet weights, shown to the model with "
        "moalign.tradeoff.conditioning.apply_condition and used in that pair's loss (one policy "
        "for every weight vector). None: no conditioning.")
    condition_style: str = doc(
        "system", "Where the condition goes in chat prompts: 'system' (a system message) or "
        "'prefix' (first line of the first user message). Plain text prompts always get it as "
        "their first line.")
    condition_format: str = doc(
        "full", "How the condition lists the weights: 'full' (every objective) or 'nonzero' "
        "(the objectives weighted 0 left out; moalign.tradeoff.conditioning).")
    dirichlet_alpha: float = doc(
        1.0, "Concentration of the Dirichlet the conditioning weights are drawn from (1 = uniform "
        "on the simplex, < 1 favours the vertices). Draws are seeded by `seed` and made once per "
        "pair when the dataset is prepared.")

    _VALID_DICT_FIELDS = DPOConfig._VALID_DICT_FIELDS + ["schedule", "scalarizer"]

    def __post_init__(self):
        problems = self.moalign_problems()
        if problems:
            raise ConfigError(problems, source=type(self).__name__)
        super().__post_init__()

    def moalign_problems(self) -> list[str]:
        """Every problem with the multi-objective fields (empty when the config is valid)."""
        from moalign.tradeoff.scalarize import get_scalarizer
        from moalign.tradeoff.schedule import MGDAWeights

        problems = _objective_problems(self.objectives)
        problems += trainer_range_problems(self, DPO_RANGES)
        problems += trl_option_problems(self, None)
        problems += loss_type_problems(  # is the default ideal loss 0 filled in for Tchebycheff?
            self.loss_type, self.loss_weights, self.label_smoothing, self.discopop_tau,
            ideal_at_zero=_scalarizer_spec(self.scalarizer, 1) is not self.scalarizer)
        if problems and not isinstance(self.objectives, (list, tuple)):
            return problems
        k = len(self.objectives or [])
        if self.weights is not None:
            problems += weight_problems(self.weights, k or None)
            if self.schedule is not None:
                problems.append("set either 'weights' or 'schedule', not both")
        schedule = None
        if self.schedule is not None and k:
            try:  # the schedule the trainer's TradeOff will ask
                schedule = TradeOff([str(n) for n in self.objectives], schedule=self.schedule,
                                    gradients=True).schedule
            except MoalignError as exc:
                problems.append(f"'schedule': {exc}")
        try:
            get_scalarizer(_scalarizer_spec(self.scalarizer, max(k, 1)))
        except MoalignError as exc:
            problems.append(f"'scalarizer': {exc}")
        linear = _scalarizer_name(self.scalarizer) == "linear"
        if self.label_normalization not in LABEL_NORMALIZATIONS:
            problems.append(f"'label_normalization' must be one of {list(LABEL_NORMALIZATIONS)}, "
                            f"got {self.label_normalization!r}")
        if isinstance(schedule, MGDAWeights):
            if not linear:
                problems.append("the 'mgda' schedule combines the objectives linearly; set "
                                "scalarizer: linear")
            if self.label_normalization == "pair":
                problems.append("the 'mgda' schedule needs per-objective losses: use "
                                "label_normalization 'objective' or 'batch'")
            from moalign.tradeoff.mgda import mgda_setup_problems

            problems += mgda_setup_problems(self)
        if self.conditioning is not None:
            if self.conditioning not in CONDITIONING_MODES:
                problems.append(f"'conditioning' must be one of {list(CONDITIONING_MODES)} or "
                                f"null, got {self.conditioning!r}")
            if self.weights is not None or self.schedule is not None:
                problems.append("conditioning draws a weight vector per pair: leave 'weights' and "
                                "'schedule' unset")
            if not linear and self.label_normalization != "pair":
                problems.append("per-pair weights with a non-linear scalarizer need "
                                "label_normalization: pair")
            if self.truncation_mode == "keep_end":  # the condition leads every prompt
                problems.append("conditioning shows each pair's weights at the start of its "
                                "prompt, which truncation_mode 'keep_end' cuts off first: use "
                                "truncation_mode: keep_start (a condition is never truncated)")
        return problems + condition_field_problems(self.condition_style, self.condition_format,
                                                   self.dirichlet_alpha)


class MultiObjectiveDPOTrainer(_MultiObjectiveDPOBase):
    """``trl.DPOTrainer`` optimizing a weighted combination of per-objective DPO losses.

    Takes the arguments of ``trl.DPOTrainer`` (model, ref_model, args, datasets, processing
    class, peft_config, ...), with ``args`` a :class:`MultiObjectiveDPOConfig`. The datasets need
    ``prompt``/``chosen``/``rejected`` and one ``pref_<objective>`` column per objective; they
    are checked before any tokenization. Logged per objective: ``objective/<k>/loss``,
    ``objective/<k>/accuracy`` (implicit-reward accuracy under k's labels),
    ``objective/<k>/margin``, ``objective/<k>/labelled`` (fraction of pairs) and, through the
    trainer's :class:`~moalign.tradeoff.tradeoff.TradeOff` (``self.tradeoff``), ``weights/<k>``
    (with conditioning: the batch mean of the per-pair weights).

    An eval dataset may carry a ``condition_weights`` column (a list of K weights per pair) to
    evaluate a conditioned policy at chosen weight vectors; otherwise its weights are drawn
    like the training set's.
    """

    _tag_names = ["trl", "dpo", "moalign"]
    _name = "MO-DPO"

    def __init__(self, model, ref_model=None, args: MultiObjectiveDPOConfig | None = None,
                 data_collator=None, train_dataset=None, eval_dataset=None, processing_class=None,
                 compute_metrics=None, callbacks=None, optimizers=(None, None),
                 quantization_config=None, peft_config=None):
        from moalign.tradeoff.schedule import MGDAWeights

        if not isinstance(args, MultiObjectiveDPOConfig):
            raise ConfigError("MultiObjectiveDPOTrainer needs args=MultiObjectiveDPOConfig("
                              f"objectives=[...], ...), got {type(args).__name__}")
        names = list(args.objectives)
        k = len(names)
        self._mo_names = tuple(names)
        self._pair_loss = PairLoss.from_config(args)
        self._label_columns = tuple(pref_column(n) for n in names)
        self._conditioned = args.conditioning == "prompt"
        self._mo_columns = self._label_columns + ((WEIGHTS_COLUMN,) if self._conditioned else ())
        # with conditioning the weights come with each pair; the TradeOff keeps the scalarizer
        self.tradeoff = TradeOff.from_config(
            names, args, scalarizer=_scalarizer_spec(args.scalarizer, k), gradients=True)
        if self._conditioned or self.tradeoff.schedule.kind != "fixed":
            need = names
        else:
            need = [n for n, x in zip(names, self.tradeoff.weights, strict=True) if x > 0]
        self._mgda = isinstance(self.tradeoff.schedule, MGDAWeights)
        self._weights_step = -1  # the optimizer step the weights were asked at (-1: not yet)
        self._step_sums = np.zeros((2, k))  # per-objective loss sums and counts of this step
        # label_normalization "objective" divides by the labelled pairs of the whole optimizer
        # step, counted by _get_num_items_in_batch; the loss is then already a share of the step
        self._step_normalized = args.label_normalization == "objective"
        self._step_counts: torch.Tensor | None = None

        if train_dataset is not None:
            check_label_columns(train_dataset, names, need_labels=need, split="train")
            self._check_condition_column(train_dataset, "train")
        for split, ds in self._eval_splits(eval_dataset).items():
            check_label_columns(ds, names, split=split)
            self._check_condition_column(ds, split)
        self._init_dpo(model, ref_model, args, data_collator, train_dataset, eval_dataset,
                       processing_class, compute_metrics, callbacks, optimizers,
                       quantization_config, peft_config)
        # Trainer divides a loss by the accumulation steps unless it says it is scaled already
        self.loss_is_scaled_for_ga = self._step_normalized

    # ------------------------------------------------------------------ conditioning
    def _check_condition_column(self, dataset, split: str) -> None:
        from datasets import Dataset

        if not self._conditioned:
            return
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"conditioning='prompt' needs a map-style datasets.Dataset for "
                              f"{split}, got {type(dataset).__name__}")
        if WEIGHTS_COLUMN in dataset.column_names:
            k = len(self._mo_names)
            for row, w in enumerate(dataset[WEIGHTS_COLUMN]):
                try:
                    if w is None or len(w) != k:
                        raise WeightsError(f"expected {k} weights (one per objective), got {w!r}")
                    quantize_weights(np.asarray(w, dtype=float))
                except (WeightsError, TypeError, ValueError) as exc:
                    raise DataError(
                        f"{split} dataset, row {row}, column '{WEIGHTS_COLUMN}': {exc}") from None

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if self._conditioned and "prompt_ids" not in (dataset.column_names or []):
            dataset = self._condition(dataset, args, dataset_name)
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _condition(self, dataset, args: MultiObjectiveDPOConfig, name: str):
        """Give each pair a (rounded) weight vector and show it in its prompt."""
        from moalign.tradeoff.schedule import DirichletWeights

        if "prompt" not in dataset.column_names:
            from trl.data_utils import extract_prompt

            dataset = dataset.map(extract_prompt)
        if WEIGHTS_COLUMN in dataset.column_names:
            raw = np.asarray(dataset[WEIGHTS_COLUMN], dtype=np.float64)
        else:
            seed = int(args.seed) + zlib.crc32(name.encode())
            raw = DirichletWeights(len(self._mo_names), args.dirichlet_alpha, seed).ask_batch(len(dataset))
        weights = np.stack([quantize_weights(w) for w in raw]) if len(raw) else raw
        names, style, form = list(self._mo_names), args.condition_style, args.condition_format

        def add(example, idx):
            return {"prompt": apply_condition(example["prompt"], weights[idx], names, style,
                                              form=form),
                    WEIGHTS_COLUMN: weights[idx].tolist()}

        return dataset.map(add, with_indices=True, desc=f"Conditioning {name} dataset")

    # ------------------------------------------------------------------ weights
    def current_weights(self) -> np.ndarray | None:
        """The weights of the current step (``None`` with conditioning or before the first step)."""
        if self._conditioned or self._weights_step < 0:
            return None
        return self.tradeoff.weights.copy()

    def _step_weights(self, training: bool) -> np.ndarray:
        """Ask the schedule once per optimizer step, after telling it about the previous one."""
        step = self.state.global_step
        if self._weights_step < 0 or (training and step != self._weights_step):
            if self._weights_step >= 0:
                counts = self._step_sums[1]
                losses = np.where(counts > 0, self._step_sums[0] / np.maximum(counts, 1), np.nan)
                self.tradeoff.tell({"step": step, "losses": losses})
            self._step_sums[:] = 0.0
            self.tradeoff.ask()
            self._weights_step = step
        return self.tradeoff.weights

    def _mgda_weights(self, model, losses: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """Min-norm weights of the per-objective gradients of this batch (Sener & Koltun 2018).

        Objectives with no labelled pair in the batch (on any process) get weight 0.
        """
        from moalign.tradeoff.mgda import (
            MGDA_ALTERNATIVES,
            gram_matrix,
            min_norm_weights_from_gram,
            partitioned_parameters,
        )

        per_objective = per_objective_losses(losses, mask, self.args.label_normalization)
        params = [p for p in model.parameters() if p.requires_grad]
        if partitioned_parameters(params):
            raise ConfigError("the 'mgda' schedule needs whole per-objective gradients, but "
                              f"{len(partitioned_parameters(params))} trainable parameters hold "
                              "no elements in this process (partitioned, as by DeepSpeed "
                              "ZeRO-3); " + MGDA_ALTERNATIVES)
        present = mask.any(dim=0).float()
        rows = []
        for j in range(len(self._mo_names)):
            if bool(present[j]):
                grads = torch.autograd.grad(per_objective[j], params, retain_graph=True,
                                            allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                       for g, p in zip(grads, params, strict=True)]))
            else:
                rows.append(torch.zeros(sum(p.numel() for p in params), device=losses.device,
                                        dtype=losses.dtype))
        g = torch.stack(rows).detach()
        if self.accelerator.num_processes > 1:
            g = self.accelerator.reduce(g, reduction="mean")
            present = self.accelerator.reduce(present, reduction="sum")
        keep = (present > 0).cpu().numpy()
        if keep.all():
            self.tradeoff.tell({"gram": gram_matrix(g)})
            w = self.tradeoff.ask()
        elif keep.any():
            w = np.zeros(len(self._mo_names))
            w[keep] = min_norm_weights_from_gram(gram_matrix(g[torch.as_tensor(keep)]).cpu().numpy())
            w = self.tradeoff.set_weights(w)
        else:
            w = self.tradeoff.ask()
        self._weights_step = self.state.global_step
        return w

    # ------------------------------------------------------------------ step-wide normalization
    def _get_num_items_in_batch(self, batch_samples: list, device) -> torch.Tensor | None:
        """With ``label_normalization="objective"``: ``[K + 1]`` counts for the optimizer step
        whose micro-batches are ``batch_samples``, summed over processes: the pairs labelled for
        each objective, then the number of micro-batches.

        ``transformers.Trainer`` calls this once per optimizer step, before the step's forward
        and backward passes, and hands the result to every :meth:`compute_loss` of the step as
        ``num_items_in_batch`` (what it does with its own token counts): the same mechanism,
        counting labelled pairs instead of tokens.
        """
        if not self._step_normalized or not batch_samples:
            return super()._get_num_items_in_batch(batch_samples, device)
        counts = torch.zeros(len(self._label_columns) + 1, dtype=torch.long)
        for batch in batch_samples:
            labels = torch.stack([torch.as_tensor(batch[c]) for c in self._label_columns], dim=1)
            counts[:-1] += label_signs(labels)[1].sum(dim=0).cpu()
        counts[-1] = len(batch_samples)
        counts = counts.to(device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return counts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._step_counts = num_items_in_batch if (
            self._step_normalized and isinstance(num_items_in_batch, torch.Tensor)) else None
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._step_counts = None

    def _normalizers(self, training: bool, device) -> tuple[torch.Tensor | None, int, float]:
        """``(counts, parts, scale)`` of this batch's loss: the step's labelled-pair counts per
        objective and its number of micro-batches over all processes, and the factor that turns
        the data-parallel gradient mean into a sum. Outside a training step (evaluation, a direct
        call): this batch alone."""
        step = self._step_counts
        if step is None or not training:
            return None, 1, 1.0
        return step[:-1].to(device), int(step[-1]), float(self.accelerator.num_processes)

    # ------------------------------------------------------------------ loss
    def _pairs_loss(self, model, mode, logratios, extra, inputs, outputs):
        """The loss of :func:`~moalign.trainers.dpo_losses.mo_dpo_loss` with this step's
        weights: each pair's own (conditioning), MGDA's of this batch's losses, or the
        trade-off's of this optimizer step."""
        training = mode == "train"
        if self._conditioned:
            weights = extra[WEIGHTS_COLUMN]
        elif self._mgda and training:  # min-norm weights of this batch's loss gradients
            weights = functools.partial(self._mgda_weights, model)
        else:
            weights = self._step_weights(training)
        self.tradeoff.scalarizer.train(training)
        counts, parts, scale = self._normalizers(training, logratios[0].device)
        out = mo_dpo_loss(
            logratios, torch.stack([extra[c] for c in self._label_columns], dim=1), weights,
            self.tradeoff.scalarizer, beta=self.beta, loss_type=self._pair_loss,
            normalization=self.args.label_normalization,
            lengths=inputs["completion_mask"].sum(dim=1).chunk(2, dim=0), counts=counts,
            parts=parts)
        # the auxiliary loss counts once per step: 1 / parts of it per micro-batch and process
        loss = self._add_aux_loss(out.loss * parts, outputs, mode) * (scale / parts)
        stats = self._log_objective_metrics(mode, out.stats, out.losses.shape[0])
        self._log_tradeoff(mode, weights=out.weights.mean(dim=0).tolist() if self._conditioned
                           else None)
        if training and not self._conditioned:
            self._step_sums += stats[:2].flip(0).cpu().numpy()  # rows: loss sum, count
        return loss

    # ------------------------------------------------------------------ checkpoint state
    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(), "weights_step": self._weights_step}

    def load_checkpoint_state(self, state) -> None:
        super().load_checkpoint_state(state)
        self._weights_step = int(state.get("weights_step", -1))
