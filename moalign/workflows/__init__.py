"""The two library calls behind ``moalign train`` and ``moalign eval``.

:func:`train` trains one policy with any trainer and saves it with its ``train.json`` record;
:func:`evaluate` scores one policy on every objective. Each takes the keys of its command's file
(:class:`TrainRunConfig` plus the trainer's fields; :class:`EvalConfig`) as a mapping, checks all
of them before anything loads, and returns what the command prints. The CLI is a thin shell over
them; front traces (:mod:`moalign.fronts`) train their runs through the same
:mod:`moalign.trainers.runs` and take their held-out data from the same
:func:`moalign.data.heldout_split`.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "training": ["train", "train_resolved"],
    "train_config": ["TRAIN_RECORD", "ResolvedTrain", "TrainRunConfig", "resolve_train_config"],
    "scoring": ["EvalConfig", "evaluate", "evaluate_resolved", "resolve_eval_config"],
})

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = attach(__name__, _EXPORTS)
