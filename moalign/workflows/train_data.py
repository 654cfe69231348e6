"""Rows of the commands' datasets, checked before any model loads.

:func:`check_prompt_columns` (``moalign train`` with ppo / grpo, ``moalign eval`` with the
generation metric) and :func:`training_split` (``moalign train``) raise a
:class:`~moalign.errors.DataError` naming the dataset and the column; :func:`preference_data`
and :func:`prompt_data` then shape the training split for the chosen trainer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moalign.data import catalog
from moalign.data.selection import first_labelled
from moalign.trainers.runs import check_prompt_columns, prompt_rows
from moalign.workflows.train_config import ResolvedTrain

__all__ = ["ROW_CHECKS", "check_prompt_columns", "preference_data", "prompt_data", "training_split"]


def _label_with_scorers(ds: Any, names: list[str], batch_size: int = 32) -> Any:
    """Add ``pref_<name>`` = sign(score(chosen) - score(rejected)) for objectives the data does
    not label (NaN where either side is unscored;
    :func:`moalign.evaluation.core.pair_score_margins`)."""
    from moalign.data import pref_column
    from moalign.evaluation.core import pair_score_margins
    from moalign.objective import load_objective

    for name in names:
        margins = pair_score_margins(ds, load_objective(name), batch_size=batch_size)
        ds = ds.add_column(pref_column(name), np.sign(margins).tolist())
    return ds


def _check_preference_rows(ds: Any, resolved: ResolvedTrain) -> None:
    """Core columns, row formats and labels of the ``pref_`` columns the trainer reads; an
    objective of positive weight needs at least one labelled pair."""
    from moalign.data import validate_preference_dataset

    run = resolved.run
    labelled = run.objectives[:1] if run.trainer == "modpo" else run.objectives
    present = [n for n in labelled if isinstance(n, str) and f"pref_{n}" in ds.column_names]
    weights = run.weights or [1.0] * len(run.objectives)
    schedule = getattr(resolved.args, "schedule", None)
    need = [n for n, w in zip(run.objectives, weights) if n in present
            and (w > 0 or schedule is not None or run.trainer == "conditioned_dpo")]
    validate_preference_dataset(ds, objectives=present, require_labels_for=need)


def _check_prompt_rows(ds: Any, resolved: ResolvedTrain) -> None:
    check_prompt_columns(ds, resolved.run.objectives, catalog.describe_spec(resolved.run.dataset),
                         f"trainer '{resolved.run.trainer}'")


#: kind of data -> check of the loaded rows (before any model loads)
ROW_CHECKS = {"preference": _check_preference_rows, "prompts": _check_prompt_rows}


def training_split(resolved: ResolvedTrain, seed: int) -> Any:
    """The training side of the seeded split, shuffled. The rows are checked first, so bad
    data is a :class:`~moalign.errors.DataError` before any model loads."""
    from moalign.data import heldout_split

    ds = catalog.load_dataset(resolved.run.dataset)
    ROW_CHECKS[resolved.spec.data](ds, resolved)
    return heldout_split(ds, test_size=resolved.run.test_size, seed=seed)[0]


def preference_data(resolved: ResolvedTrain, train: Any, tokenizer: Any) -> Any:
    """Training pairs from the training split (:func:`training_split`): at most
    ``max_examples`` pairs labelled for each objective, missing labels from scorers, prompts
    shortened from the left."""
    from moalign.data import pref_column, truncate_prompts

    run = resolved.run
    labelled = run.objectives[:1] if run.trainer == "modpo" else run.objectives
    missing = [n for n in labelled if pref_column(n) not in train.column_names]
    if run.max_examples is not None:
        train = train.select(first_labelled(train, labelled, run.max_examples))
    train = _label_with_scorers(train, missing)
    return truncate_prompts(train, tokenizer, run.max_prompt_tokens)[0]


def prompt_data(resolved: ResolvedTrain, train: Any, tokenizer: Any) -> Any:
    """Training prompts for online trainers (with the columns objectives read, e.g. ``answer``):
    :func:`moalign.trainers.runs.prompt_rows`, as front traces shape theirs."""
    run = resolved.run
    return prompt_rows(train, tokenizer, run.max_prompt_tokens, run.max_examples)
